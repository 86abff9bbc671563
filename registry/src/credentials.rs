//! Registry credentials in docker's `config.json` (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`): `auths` entries, and the credential helpers it names
//! (`credsStore` for every registry, `credHelpers` per registry), which are run as
//! `docker-credential-<name> get|store|erase` with the secret on stdin and stdout, never in
//! their arguments.
//!
//! The file is rewritten whole (other fields kept as they were), mode 0600, through a
//! temporary file and a rename.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use super::error::{RegistryError, Result};
use rbuild_store::DOCKER_HUB;

/// The key docker uses for Docker Hub in `auths` and with helpers.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// A user name and a secret (password or token). The secret never appears in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub secret: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// docker's client configuration file, as a JSON value (fields rbuild does not know are
/// kept).
#[derive(Debug, Clone)]
pub struct DockerConfig {
    path: PathBuf,
    value: Map<String, Value>,
}

impl DockerConfig {
    /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
    pub fn default_path() -> PathBuf {
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
            return PathBuf::from(dir).join("config.json");
        }
        let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
        PathBuf::from(home).join(".docker/config.json")
    }

    pub fn load() -> Result<DockerConfig> {
        DockerConfig::open(&DockerConfig::default_path())
    }

    /// Reads the file at `path`; a missing file is an empty configuration.
    pub fn open(path: &Path) -> Result<DockerConfig> {
        match std::fs::read(path) {
            Ok(bytes) => DockerConfig::parse(path, &bytes),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                DockerConfig::parse(path, b"")
            }
            Err(source) => Err(RegistryError::Io {
                action: "read",
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// A configuration parsed from `bytes`, as if read from `path`.
    pub(crate) fn parse(path: &Path, bytes: &[u8]) -> Result<DockerConfig> {
        let value = if bytes.iter().all(u8::is_ascii_whitespace) {
            Map::new()
        } else {
            serde_json::from_slice(bytes).map_err(|err| RegistryError::Config {
                path: path.to_owned(),
                reason: err.to_string(),
            })?
        };
        Ok(DockerConfig {
            path: path.to_owned(),
            value,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The helper for `registry`: its `credHelpers` entry, else `credsStore`.
    fn helper(&self, registry: &str) -> Option<String> {
        self.value
            .get("credHelpers")
            .and_then(|h| h.get(registry))
            .or_else(|| self.value.get("credsStore"))
            .and_then(Value::as_str)
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
    }

    /// The credentials for `registry` (a host as in references: `docker.io`,
    /// `127.0.0.1:5000`), if any are configured.
    pub fn credentials(&self, registry: &str) -> Result<Option<Credentials>> {
        if let Some(helper) = self.helper(registry) {
            return helper_get(&helper, &server_key(registry));
        }
        self.auths_credentials(registry)
    }

    /// The credentials of `registry`'s `auths` entry (helpers left aside).
    pub(crate) fn auths_credentials(&self, registry: &str) -> Result<Option<Credentials>> {
        let Some(auths) = self.value.get("auths").and_then(Value::as_object) else {
            return Ok(None);
        };
        let entry = auths
            .iter()
            .find(|(key, _)| normalize_key(key) == registry)
            .map(|(_, entry)| entry);
        let Some(entry) = entry else {
            return Ok(None);
        };
        if let Some(auth) = entry
            .get("auth")
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
        {
            let decoded = STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| RegistryError::Config {
                    path: self.path.clone(),
                    reason: format!("the `auth` of `{registry}` is not base64 of `user:password`"),
                })?;
            let (username, secret) =
                decoded
                    .split_once(':')
                    .ok_or_else(|| RegistryError::Config {
                        path: self.path.clone(),
                        reason: format!("the `auth` of `{registry}` has no `:`"),
                    })?;
            return Ok(Some(Credentials {
                username: username.to_owned(),
                secret: secret.to_owned(),
            }));
        }
        let field = |name: &str| entry.get(name).and_then(Value::as_str).map(str::to_owned);
        Ok(match (field("username"), field("password")) {
            (Some(username), Some(secret)) => Some(Credentials { username, secret }),
            _ => None,
        })
    }

    /// Stores credentials for `registry` (in its helper when one is configured) and
    /// rewrites the file.
    pub fn store(&mut self, registry: &str, credentials: &Credentials) -> Result<()> {
        let key = server_key(registry);
        let helper = self.helper(registry);
        let auths = self
            .value
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if !auths.is_object() {
            *auths = Value::Object(Map::new());
        }
        let auths = auths.as_object_mut().expect("made an object above");
        auths.retain(|existing, _| normalize_key(existing) != registry);
        match helper {
            Some(helper) => {
                helper_store(&helper, &key, credentials)?;
                // docker keeps an empty entry so `docker info` lists the registry.
                let auths = self.value["auths"].as_object_mut().expect("an object");
                auths.insert(key, Value::Object(Map::new()));
            }
            None => {
                let auth =
                    STANDARD.encode(format!("{}:{}", credentials.username, credentials.secret));
                auths.insert(key, serde_json::json!({ "auth": auth }));
            }
        }
        self.save()
    }

    /// Removes the credentials for `registry`; returns whether there were any.
    pub fn erase(&mut self, registry: &str) -> Result<bool> {
        let mut found = false;
        if let Some(auths) = self.value.get_mut("auths").and_then(Value::as_object_mut) {
            let before = auths.len();
            auths.retain(|existing, _| normalize_key(existing) != registry);
            found = auths.len() != before;
        }
        if let Some(helper) = self.helper(registry) {
            found |= helper_erase(&helper, &server_key(registry))?;
        }
        if found {
            self.save()?;
        }
        Ok(found)
    }

    fn save(&self) -> Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|source| RegistryError::Io {
            action: "create",
            path: dir.to_owned(),
            source,
        })?;
        let tmp = dir.join(format!(".config.json.{}", rbuild_store::unique_name()));
        let io = |action, path: &Path| {
            let path = path.to_owned();
            move |source| RegistryError::Io {
                action,
                path,
                source,
            }
        };
        let bytes = serde_json::to_vec_pretty(&self.value).expect("JSON values serialize");
        let result = (|| {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io("create", &tmp))?;
            file.write_all(&bytes).map_err(io("write", &tmp))?;
            file.write_all(b"\n").map_err(io("write", &tmp))?;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(io("chmod", &tmp))?;
            file.sync_all().map_err(io("fsync", &tmp))?;
            std::fs::rename(&tmp, &self.path).map_err(io("replace", &self.path))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

/// The key docker uses for a registry in `auths` and with helpers.
fn server_key(registry: &str) -> String {
    if registry == DOCKER_HUB {
        DOCKER_HUB_KEY.to_owned()
    } else {
        registry.to_owned()
    }
}

/// `https://index.docker.io/v1/` → `docker.io`; `https://host:5000/v2/` → `host:5000`.
fn normalize_key(key: &str) -> String {
    let host = key.split_once("://").map_or(key, |(_, rest)| rest);
    let host = host.split('/').next().unwrap_or(host);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => DOCKER_HUB.to_owned(),
        other => other.to_owned(),
    }
}

fn run_helper(helper: &str, action: &str, input: &[u8]) -> Result<(bool, Vec<u8>, String)> {
    let program = format!("docker-credential-{helper}");
    let failed = |reason: String| RegistryError::CredentialHelper {
        helper: helper.to_owned(),
        reason,
    };
    let mut child = Command::new(&program)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| failed(format!("cannot run `{program}`: {err}")))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let written = stdin.write_all(input);
    drop(stdin);
    let output = child
        .wait_with_output()
        .map_err(|err| failed(format!("`{program} {action}`: {err}")))?;
    written.map_err(|err| failed(format!("`{program} {action}`: {err}")))?;
    let message = String::from_utf8_lossy(&output.stdout).trim().to_owned()
        + String::from_utf8_lossy(&output.stderr).trim();
    Ok((output.status.success(), output.stdout, message))
}

fn helper_get(helper: &str, key: &str) -> Result<Option<Credentials>> {
    let (ok, stdout, message) = run_helper(helper, "get", key.as_bytes())?;
    helper_get_answer(helper, ok, &stdout, &message)
}

/// What `docker-credential-<helper> get` answered: whether it succeeded, its stdout, and
/// its stdout and stderr as text (what `run_helper` returns).
pub(crate) fn helper_get_answer(
    helper: &str,
    ok: bool,
    stdout: &[u8],
    message: &str,
) -> Result<Option<Credentials>> {
    if !ok {
        if message.contains("credentials not found") {
            return Ok(None);
        }
        return Err(RegistryError::CredentialHelper {
            helper: helper.to_owned(),
            reason: format!("`get` failed: {message}"),
        });
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Answer {
        username: String,
        secret: String,
    }
    let answer: Answer =
        serde_json::from_slice(stdout).map_err(|err| RegistryError::CredentialHelper {
            helper: helper.to_owned(),
            reason: format!("`get` printed something other than credentials: {err}"),
        })?;
    Ok(Some(Credentials {
        username: answer.username,
        secret: answer.secret,
    }))
}

fn helper_store(helper: &str, key: &str, credentials: &Credentials) -> Result<()> {
    let input = serde_json::json!({
        "ServerURL": key,
        "Username": credentials.username,
        "Secret": credentials.secret,
    });
    let (ok, _, message) = run_helper(helper, "store", input.to_string().as_bytes())?;
    if !ok {
        return Err(RegistryError::CredentialHelper {
            helper: helper.to_owned(),
            reason: format!("`store` failed: {message}"),
        });
    }
    Ok(())
}

fn helper_erase(helper: &str, key: &str) -> Result<bool> {
    let (ok, _, message) = run_helper(helper, "erase", key.as_bytes())?;
    if ok {
        return Ok(true);
    }
    if message.contains("not found") {
        return Ok(false);
    }
    Err(RegistryError::CredentialHelper {
        helper: helper.to_owned(),
        reason: format!("`erase` failed: {message}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(user: &str, secret: &str) -> Credentials {
        Credentials {
            username: user.into(),
            secret: secret.into(),
        }
    }

    #[test]
    fn store_read_erase_keeps_other_fields_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker/config.json");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            &path,
            r#"{"psFormat":"table","auths":{"https://index.docker.io/v1/":{"auth":"dTpw"}}}"#,
        )
        .unwrap();
        let mut config = DockerConfig::open(&path).unwrap();
        assert_eq!(
            config.credentials("docker.io").unwrap(),
            Some(creds("u", "p"))
        );
        config
            .store("127.0.0.1:5000", &creds("me", "s3:cret"))
            .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let reread = DockerConfig::open(&path).unwrap();
        assert_eq!(
            reread.credentials("127.0.0.1:5000").unwrap(),
            Some(creds("me", "s3:cret"))
        );
        assert_eq!(reread.value["psFormat"], "table");
        let mut reread = reread;
        assert!(reread.erase("127.0.0.1:5000").unwrap());
        assert!(!reread.erase("127.0.0.1:5000").unwrap());
        assert_eq!(
            DockerConfig::open(&path)
                .unwrap()
                .credentials("127.0.0.1:5000")
                .unwrap(),
            None
        );
    }

    #[test]
    fn keys_are_normalized() {
        assert_eq!(normalize_key("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalize_key("http://r:5000/v2/"), "r:5000");
        assert_eq!(normalize_key("r:5000"), "r:5000");
    }

    #[test]
    fn debug_hides_the_secret() {
        let text = format!("{:?}", creds("me", "hunter2"));
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn helpers_get_secrets_on_stdin() {
        let dir = tempfile::tempdir().unwrap();
        // A helper that answers for one server, read from stdin.
        let helper = dir.path().join("docker-credential-rbuildtest");
        std::fs::write(
            &helper,
            "#!/bin/sh\nread server\n[ \"$1\" = get ] && [ \"$server\" = r.test:1 ] && echo '{\"ServerURL\":\"r.test:1\",\"Username\":\"h\",\"Secret\":\"from-helper\"}' && exit 0\necho 'credentials not found in native keychain'; exit 1\n",
        )
        .unwrap();
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"credHelpers":{"r.test:1":"rbuildtest"}}"#).unwrap();
        let old_path = std::env::var_os("PATH").unwrap_or_default();
        let mut new_path = std::ffi::OsString::from(dir.path());
        new_path.push(":");
        new_path.push(&old_path);
        // SAFETY: this test is the only one in this crate that reads PATH to run helpers,
        // and it sets PATH before running one.
        unsafe { std::env::set_var("PATH", &new_path) };
        let config = DockerConfig::open(&path).unwrap();
        assert_eq!(
            config.credentials("r.test:1").unwrap(),
            Some(creds("h", "from-helper"))
        );
        assert_eq!(config.credentials("other:1").unwrap(), None);
    }
}
