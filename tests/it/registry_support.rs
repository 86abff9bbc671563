//! Registries for the registry tests: Debian's `docker-registry` (the distribution
//! registry) started on a free 127.0.0.1 port with its storage in a temp dir, plain or
//! with htpasswd auth behind TLS (a CA and a certificate made with openssl), and a small
//! fault-injecting HTTP proxy to put in front of one.

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::support::{
    TestEnv, assert_success, free_port, require_tool, stdout, wait_for_port, write_busybox_image,
};

pub const REGISTRY: &str = "/usr/bin/docker-registry";

/// A running `docker-registry`, killed on drop.
pub struct TestRegistry {
    child: Child,
    _dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`
    pub host: String,
    /// The CA that signed its certificate, when it serves TLS.
    pub ca: Option<PathBuf>,
}

impl TestRegistry {
    /// A plain-HTTP registry without auth.
    pub fn start() -> TestRegistry {
        TestRegistry::launch(None)
    }

    /// A registry behind TLS that wants `user`/`password` (htpasswd, bcrypt).
    pub fn start_with_auth(user: &str, password: &str) -> TestRegistry {
        TestRegistry::launch(Some((user, password)))
    }

    fn launch(auth: Option<(&str, &str)>) -> TestRegistry {
        assert!(
            Path::new(REGISTRY).is_file(),
            "{REGISTRY} is missing: `.ci/run` installs it (apt-get install docker-registry)"
        );
        let dir = tempfile::Builder::new()
            .prefix("rbuild-registry-")
            .tempdir()
            .unwrap();
        let mut extra = String::new();
        let mut ca = None;
        if let Some((user, password)) = auth {
            require_tool("htpasswd");
            require_tool("openssl");
            let htpasswd = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .unwrap();
            assert!(htpasswd.status.success());
            fs::write(dir.path().join("htpasswd"), &htpasswd.stdout).unwrap();
            make_certificates(dir.path());
            ca = Some(dir.path().join("ca.pem"));
            extra = format!(
                "auth:\n  htpasswd:\n    realm: rbuild-tests\n    path: {}\n",
                dir.path().join("htpasswd").display()
            );
        }
        // The port is found free and then given to the registry: another process may take
        // it in between, so a registry that exits at once is started again on another.
        for _ in 0..5 {
            let port = free_port();
            let tls = if ca.is_some() {
                format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    dir.path().join("cert.pem").display(),
                    dir.path().join("key.pem").display()
                )
            } else {
                String::new()
            };
            let config = format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n{extra}http:\n  addr: 127.0.0.1:{port}\n  secret: rbuild-tests\n{tls}",
                dir.path().join("data").display()
            );
            let config_path = dir.path().join("config.yml");
            fs::write(&config_path, config).unwrap();
            let log = fs::File::create(dir.path().join("registry.log")).unwrap();
            let mut child = Command::new(REGISTRY)
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("start docker-registry");
            if wait_for_port(port, &mut child) {
                return TestRegistry {
                    child,
                    host: format!("127.0.0.1:{port}"),
                    _dir: dir,
                    ca,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "docker-registry did not start: {}",
            fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default()
        );
    }

    /// `host/path`
    pub fn reference(&self, path: &str) -> String {
        format!("{}/{path}", self.host)
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "registry log ({:?}):\n{}",
                self.child.try_wait(),
                fs::read_to_string(self._dir.path().join("registry.log")).unwrap_or_default()
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA and a certificate for 127.0.0.1 signed by it, in `dir` (`ca.pem`, `cert.pem`,
/// `key.pem`).
fn make_certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=rbuild test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "key.pem",
        "-out",
        "cert.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    fs::write(
        dir.join("ext.cnf"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "cert.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca-key.pem",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

/// Runs rbuild in `env` with its own (empty unless written) rbuild config and docker
/// config, and no proxy settings from the outside.
pub fn rbuild(env: &TestEnv, args: &[&str]) -> Output {
    command(env).args(args).output().expect("run rbuild")
}

pub fn command(env: &TestEnv) -> Command {
    // The registry listens on the machine's loopback.
    let mut cmd = env.host_command();
    cmd.env("XDG_CONFIG_HOME", env.path("config"))
        .env("DOCKER_CONFIG", env.path("docker"))
        .env("HOME", env.path("home"));
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Writes `env`'s rbuild config.toml.
pub fn write_config(env: &TestEnv, toml: &str) {
    let dir = env.path("config/rbuild");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("config.toml"), toml).unwrap();
}

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
}

/// What the proxy does with a request.
pub enum Action {
    Forward,
    /// Forward the answer's head and half its body, then drop the connection.
    DropMidBody,
    /// Forward the answer with one body byte changed.
    Corrupt,
    /// Answer this instead of asking the registry.
    Respond {
        status: u16,
        content_type: &'static str,
        body: Vec<u8>,
    },
    /// Answer 401 with a Bearer challenge naming this token realm.
    Challenge {
        realm: String,
    },
    /// Answer `status` with these headers and no body, without asking the registry.
    Headers {
        status: u16,
        headers: Vec<(&'static str, String)>,
    },
}

type Rule = dyn Fn(&Request) -> Action + Send + Sync;

/// A fault-injecting HTTP/1.1 proxy in front of a registry: one request per connection,
/// `rule` decides each request's fate. Stopped on drop.
pub struct FaultProxy {
    pub host: String,
    stop: Arc<AtomicBool>,
    pub seen: Arc<std::sync::Mutex<Vec<Request>>>,
}

impl FaultProxy {
    pub fn start(
        upstream: &str,
        rule: impl Fn(&Request) -> Action + Send + Sync + 'static,
    ) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let rule: Arc<Rule> = Arc::new(rule);
        let upstream = upstream.to_owned();
        {
            let stop = stop.clone();
            let seen = seen.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            let rule = rule.clone();
                            let upstream = upstream.clone();
                            let seen = seen.clone();
                            std::thread::spawn(move || {
                                let _ = serve(client, &upstream, &*rule, &seen);
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            });
        }
        FaultProxy { host, stop, seen }
    }

    pub fn reference(&self, path: &str) -> String {
        format!("{}/{path}", self.host)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn read_head(stream: &mut TcpStream) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut byte = [0u8; 4096];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buffer.split_off(end + 4);
            return Ok((buffer, rest));
        }
        let n = stream.read(&mut byte)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&byte[..n]);
    }
}

fn header_value(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

fn serve(
    mut client: TcpStream,
    upstream: &str,
    rule: &Rule,
    seen: &std::sync::Mutex<Vec<Request>>,
) -> std::io::Result<()> {
    client.set_nonblocking(false)?;
    let (head, mut body) = read_head(&mut client)?;
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut first = head.lines().next().unwrap_or("").split(' ');
    let request = Request {
        method: first.next().unwrap_or("").to_owned(),
        path: first.next().unwrap_or("").to_owned(),
        authorization: header_value(&head, "authorization"),
    };
    let length: usize = header_value(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while body.len() < length {
        let mut chunk = vec![0; length - body.len()];
        let n = client.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    seen.lock().unwrap().push(request.clone());
    let action = rule(&request);
    if let Action::Respond {
        status,
        content_type,
        body,
    } = &action
    {
        let head = format!(
            "HTTP/1.1 {status} Injected\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        client.write_all(head.as_bytes())?;
        client.write_all(body)?;
        return client.shutdown(Shutdown::Both);
    }
    if let Action::Headers { status, headers } = &action {
        let mut head = format!("HTTP/1.1 {status} Injected\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("Content-Length: 0\r\nConnection: close\r\n\r\n");
        client.write_all(head.as_bytes())?;
        return client.shutdown(Shutdown::Both);
    }
    if let Action::Challenge { realm } = &action {
        let head = format!(
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"{realm}\",service=\"rbuild-tests\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        client.write_all(head.as_bytes())?;
        return client.shutdown(Shutdown::Both);
    }
    // Forward with `Connection: close`, so the registry's answer ends at EOF.
    let mut forwarded = String::new();
    for line in head.trim_end().lines() {
        if line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        forwarded.push_str(line);
        forwarded.push_str("\r\n");
    }
    forwarded.push_str("Connection: close\r\n\r\n");
    let mut server = TcpStream::connect(upstream)?;
    server.write_all(forwarded.as_bytes())?;
    server.write_all(&body)?;
    let mut answer = Vec::new();
    server.read_to_end(&mut answer)?;
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(answer.len(), |p| p + 4);
    match action {
        Action::Forward
        | Action::Respond { .. }
        | Action::Challenge { .. }
        | Action::Headers { .. } => client.write_all(&answer)?,
        Action::DropMidBody => {
            let body_len = answer.len() - split;
            client.write_all(&answer[..split + body_len / 2])?;
        }
        Action::Corrupt => {
            let body_len = answer.len() - split;
            if body_len > 0 {
                answer[split + body_len / 2] ^= 0xff;
            }
            client.write_all(&answer)?;
        }
    }
    client.flush()?;
    client.shutdown(Shutdown::Both)
}

/// An action that applies once, then forwards.
pub fn once(
    action: impl Fn() -> Action + Send + Sync + 'static,
    matches: impl Fn(&Request) -> bool + Send + Sync + 'static,
) -> impl Fn(&Request) -> Action + Send + Sync + 'static {
    let done = AtomicBool::new(false);
    move |request| {
        if matches(request) && !done.swap(true, Ordering::SeqCst) {
            action()
        } else {
            Action::Forward
        }
    }
}

pub fn skopeo(args: &[&str]) -> std::process::Output {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn busybox_env() -> TestEnv {
    let env = TestEnv::new();
    let tar = env.path("busybox.tar");
    write_busybox_image(&tar);
    assert_success(&rbuild(&env, &["load", "-i", tar.to_str().unwrap()]));
    env
}

/// Incompressible bytes, the same every run.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A one-file layer tar of `len` incompressible bytes.
pub fn noise_layer(len: usize) -> Vec<u8> {
    let data = noise(len, 42);
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_cksum();
    tar.append_data(&mut header, "noise.bin", data.as_slice())
        .unwrap();
    tar.into_inner().unwrap()
}

pub fn assert_store_clean(env: &TestEnv) {
    let out = rbuild(env, &["store", "verify"]);
    assert_success(&out);
    assert!(
        stdout(&out).contains("no problems found"),
        "{}",
        stdout(&out)
    );
}

pub fn last_line(text: &str) -> String {
    text.lines().last().unwrap_or("").trim().to_owned()
}
