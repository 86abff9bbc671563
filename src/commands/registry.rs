//! `rbuild pull`, `push`, `login`, `logout`, and the registry client the build shares.

use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, ValueEnum};
use miette::{IntoDiagnostic, Result, WrapErr};
use rbuild_registry::{
    BlobOutcome, Compression, Credentials, DockerConfig, PullOptions, PushOptions, Registry,
    RegistryConfig, RegistryError, TransferEvent, TransportFailure, parse_platform,
};
use rbuild_store::{Digest, Reference, Store};

use super::{open_store, parse_name};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    Gzip,
    Zstd,
}

impl From<CompressionArg> for Compression {
    fn from(arg: CompressionArg) -> Compression {
        match arg {
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Zstd => Compression::Zstd,
        }
    }
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// The platform to pull from a multi-platform image (`os/arch[/variant]`), or `all`
    /// to keep every platform under the name [default: this machine's]
    #[arg(long)]
    pub platform: Option<String>,
    /// Print only the digest
    #[arg(short, long)]
    pub quiet: bool,
    /// `name[:tag][@digest]`; `busybox` means `docker.io/library/busybox:latest`
    #[arg(value_name = "REF")]
    pub reference: String,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// How to compress layers the store holds uncompressed
    #[arg(long, value_enum, default_value_t = CompressionArg::Gzip)]
    pub compression: CompressionArg,
    /// Print only the digest
    #[arg(short, long)]
    pub quiet: bool,
    /// The local image
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Where to push it [default: NAME]
    #[arg(value_name = "REF")]
    pub reference: Option<String>,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The user name
    #[arg(short, long)]
    pub username: String,
    /// Read the password (or token) from stdin; the only way to give it, so it never
    /// shows in the process list
    #[arg(long = "password-stdin", required = true)]
    pub password_stdin: bool,
    /// The registry host (`docker.io`, `host:port`)
    #[arg(value_name = "HOST")]
    pub host: String,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The registry host
    #[arg(value_name = "HOST")]
    pub host: String,
}

/// The registry client, with progress on stderr unless `quiet`.
pub fn open_registry(quiet: bool) -> Result<Arc<Registry>> {
    let config = RegistryConfig::load().map_err(report)?;
    let registry = Registry::new(config);
    let registry = if quiet {
        registry
    } else {
        registry.with_events(Arc::new(print_event))
    };
    Ok(Arc::new(registry))
}

fn print_event(event: TransferEvent) {
    match event {
        TransferEvent::Resolved { reference, digest } => {
            eprintln!("resolved {reference} to {digest}")
        }
        TransferEvent::BlobStarted { .. } => {}
        TransferEvent::BlobDone {
            digest,
            size,
            outcome,
        } => {
            let what = match outcome {
                BlobOutcome::Downloaded => "downloaded",
                BlobOutcome::Existed => "already in the store",
                BlobOutcome::Uploaded => "uploaded",
                BlobOutcome::Skipped => "already in the registry",
                BlobOutcome::Mounted => "mounted from another repository",
            };
            eprintln!("{} {} ({})", short(&digest), what, human(size));
        }
        TransferEvent::Retrying {
            what,
            attempt,
            reason,
        } => eprintln!(
            "retrying {} (attempt {attempt}): {reason}",
            what.split('?').next().unwrap_or(&what)
        ),
        TransferEvent::Compressing { digest, size } => {
            eprintln!("{} compressing ({})", short(&digest), human(size))
        }
    }
}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

fn human(size: u64) -> String {
    super::images::human_size(size)
}

/// A registry error with the next step, where there is an obvious one.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{error}")]
struct RegistryReport {
    error: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
    #[help]
    help: Option<String>,
}

/// A registry error as a report, with a `help:` line where there is an obvious next step.
pub fn report(err: RegistryError) -> miette::Report {
    let help = help_for(&err);
    let error = err.to_string();
    let source = std::error::Error::source(&err)
        .map(|s| Box::<dyn std::error::Error + Send + Sync>::from(crate::report::message_chain(s)));
    miette::Report::new(RegistryReport {
        error,
        source,
        help,
    })
}

/// What to do about `err`, where there is an obvious next step; each says what this
/// error points to and nothing else (no TLS advice for a refused connection).
fn help_for(err: &RegistryError) -> Option<String> {
    const CONFIG: &str = "in config.toml (README: Registries)";
    match err {
        RegistryError::Unauthorized { registry, .. } => Some(format!(
            "log in with `rbuild login {registry} -u USER --password-stdin`"
        )),
        RegistryError::Transport {
            failure, address, ..
        } => match failure {
            TransportFailure::Refused => Some(format!("is a registry running at {address}?")),
            TransportFailure::Unreachable => Some(format!(
                "check the address, and that this machine can reach {address}"
            )),
            TransportFailure::NameNotResolved => Some(
                "check the registry's name in the reference, and this machine's DNS settings"
                    .to_owned(),
            ),
            TransportFailure::Certificate => Some(format!(
                "trust the registry's CA with `ca = [\"/path/ca.pem\"]`, or skip verification with `insecure = true`, {CONFIG}"
            )),
            TransportFailure::NotTls => Some(format!(
                "if it is a plain-HTTP registry, set `http = true` for it {CONFIG}"
            )),
            TransportFailure::Tls => Some(format!(
                "for a registry with its own CA or without TLS, see `ca`, `insecure` and `http` {CONFIG}"
            )),
            TransportFailure::Broken | TransportFailure::Request => None,
        },
        // What a TLS server answers a plain HTTP request (loopback registries are spoken
        // to in plain HTTP unless configured).
        RegistryError::Status {
            url, status: 400, ..
        } if url.starts_with("http://") => Some(format!(
            "the registry may speak HTTPS: give it its CA (`ca = [\"/path/ca.pem\"]`) or `insecure = true` {CONFIG}"
        )),
        // The check before a push: every registry serves `/v2/`.
        RegistryError::Status {
            method,
            url,
            status: 404,
            ..
        } if method == "GET" && url.ends_with("/v2/") => Some(
            "the server does not serve the registry API (`/v2/`): check the address".to_owned(),
        ),
        _ => None,
    }
}

/// `message`, caused by `err`, with `help` unless `err` has its own.
pub fn report_with(err: RegistryError, message: String, help: String) -> miette::Report {
    miette::Report::new(RegistryReport {
        help: Some(help_for(&err).unwrap_or(help)),
        error: message,
        source: Some(Box::<dyn std::error::Error + Send + Sync>::from(
            crate::report::message_chain(&err),
        )),
    })
}

pub fn parse_reference(text: &str) -> Result<Reference> {
    text.parse::<Reference>().into_diagnostic()
}

pub async fn pull(args: PullArgs) -> Result<ExitCode> {
    let reference = parse_reference(&args.reference)?;
    let all = args.platform.as_deref() == Some("all");
    let platform = args
        .platform
        .as_deref()
        .filter(|_| !all)
        .map(parse_platform)
        .transpose()
        .map_err(report)?;
    let store = open_store()?;
    let registry = open_registry(args.quiet)?;
    let pulled = registry
        .pull(
            &store,
            &reference,
            &PullOptions {
                platform,
                unpack: true,
                attestations: !all,
                ..Default::default()
            },
        )
        .await
        .map_err(report)
        .wrap_err_with(|| format!("cannot pull {reference}"))?;
    let name = rbuild_store::Reference::image_name(&args.reference);
    let image = pulled.image.clone();
    let mut manifest = pulled.manifest.clone();
    // The image with its attestations: an index of the two, named instead of the image.
    if let (Some(entry), false) = (&pulled.entry, pulled.attestations.is_empty()) {
        let manifests: Vec<_> = std::iter::once(entry.clone())
            .chain(pulled.attestations.iter().cloned())
            .collect();
        let writer = store.clone();
        manifest = tokio::task::spawn_blocking(move || writer.write_index(manifests))
            .await
            .into_diagnostic()?
            .into_diagnostic()?
            .digest;
    }
    if all && let Some(index) = &pulled.index {
        manifest = pull_every_platform(&registry, &store, &reference, index, &manifest, args.quiet)
            .await?;
    }
    let tag_name = name.clone();
    let named = manifest.clone();
    let unpack_store = store.clone();
    tokio::task::spawn_blocking(move || -> rbuild_store::Result<()> {
        // Unpacking checks every layer against the config's diff ids before the name is set.
        unpack_store.unpack(&image)?;
        if let Some(name) = &tag_name {
            unpack_store.tag(name, &named)?;
        }
        Ok(())
    })
    .await
    .into_diagnostic()?
    .map_err(crate::rootless::report)
    .wrap_err_with(|| format!("cannot unpack {reference}"))?;
    let digest = match (all, &pulled.index) {
        (true, Some(_)) => &manifest,
        (_, index) => index.as_ref().unwrap_or(&pulled.manifest),
    };
    if !args.quiet {
        match &name {
            Some(name) => eprintln!("pulled {reference} as {name}"),
            None => eprintln!("pulled {reference}"),
        }
    }
    outln!("{digest}");
    Ok(ExitCode::SUCCESS)
}

/// `pull --platform all`: every platform's image of the index `index_digest` (which the
/// first pull wrote to the store, with the image `pulled_already`), the others pulled by
/// their digests and unpacked, and the attestation manifests about them; returns the index
/// to name: the registry's own when every entry came, else one written again with the
/// entries that did (an entry for no platform and no attestation is left out).
async fn pull_every_platform(
    registry: &Registry,
    store: &Store,
    reference: &Reference,
    index_digest: &Digest,
    pulled_already: &Digest,
    quiet: bool,
) -> Result<Digest> {
    let (read, digest) = (store.clone(), index_digest.clone());
    let index = tokio::task::spawn_blocking(move || read.read_index(&digest))
        .await
        .into_diagnostic()?
        .ok_or_else(|| miette::miette!("{reference}: its index is not in the store"))?;
    let mut kept = Vec::new();
    for child in &index.manifests {
        if rbuild_store::attestations::is_attestation(child) {
            continue;
        }
        let Some(platform) = child.platform.clone().filter(|p| p.os != "unknown") else {
            continue;
        };
        // The platform the first pull chose is in the store already.
        if &child.digest == pulled_already {
            kept.push(child.clone());
            continue;
        }
        let pulled = registry
            .pull(
                store,
                &reference.with_digest(child.digest.clone()),
                &PullOptions {
                    platform: Some(platform.clone()),
                    unpack: true,
                    ..Default::default()
                },
            )
            .await
            .map_err(report)
            .wrap_err_with(|| {
                format!(
                    "cannot pull {reference} for {}",
                    rbuild_registry::platform_string(&platform)
                )
            })?;
        if !quiet {
            eprintln!(
                "pulled {} for {}",
                pulled.manifest.short(),
                rbuild_registry::platform_string(&platform)
            );
        }
        kept.push(child.clone());
    }
    // The attestations about the images kept, in the index's order after them.
    let images: Vec<Digest> = kept.iter().map(|k| k.digest.clone()).collect();
    for child in index
        .manifests
        .iter()
        .filter(|c| rbuild_store::attestations::is_attestation(c))
    {
        let about = child
            .annotations
            .get(rbuild_store::attestations::ANNOTATION_REFERENCE_DIGEST)
            .and_then(|d| d.parse::<Digest>().ok());
        if !about.is_some_and(|d| images.contains(&d)) {
            continue;
        }
        registry
            .pull_attestation(store, reference, child)
            .await
            .map_err(report)
            .wrap_err_with(|| format!("cannot pull the attestations of {reference}"))?;
        kept.push(child.clone());
    }
    // Everything came: the registry's index, as it is (the same digest).
    let order = |list: &[rbuild_store::oci::Descriptor]| {
        let mut digests: Vec<Digest> = list.iter().map(|d| d.digest.clone()).collect();
        digests.sort();
        digests
    };
    if order(&kept) == order(&index.manifests) {
        return Ok(index_digest.clone());
    }
    let write = store.clone();
    let descriptor = tokio::task::spawn_blocking(move || write.write_index(kept))
        .await
        .into_diagnostic()?
        .into_diagnostic()?;
    Ok(descriptor.digest)
}

pub async fn push(args: PushArgs) -> Result<ExitCode> {
    let name = parse_name(&args.name)?;
    let target = match &args.reference {
        Some(text) => parse_reference(text)?,
        None => name.to_reference(),
    };
    let store = open_store()?;
    // The name's manifest, or its index (every platform) for a multi-platform image;
    // read first, so a broken image fails before anything is sent.
    let record = store
        .image_record(&name)
        .into_diagnostic()?
        .ok_or_else(|| rbuild_store::Error::ImageNotFound { name: name.clone() })
        .and_then(|record| store.image(&name).map(|_| record))
        .map_err(super::images::not_found(&store))
        .wrap_err_with(|| format!("cannot push `{name}`"))?;
    let manifest = record.manifest;
    let registry = open_registry(args.quiet)?;
    let digest = push_image(
        &registry,
        &store,
        &manifest,
        &target,
        args.compression.into(),
        args.quiet,
    )
    .await?;
    outln!("{digest}");
    Ok(ExitCode::SUCCESS)
}

/// Pushes one image; shared with `rbuild build --push`.
pub async fn push_image(
    registry: &Registry,
    store: &Store,
    manifest: &Digest,
    target: &Reference,
    compression: Compression,
    quiet: bool,
) -> Result<Digest> {
    let pushed = registry
        .push(store, manifest, target, &PushOptions { compression })
        .await
        .map_err(report)
        .wrap_err_with(|| format!("cannot push to {target}"))?;
    if !quiet {
        eprintln!("pushed {target}@{}", pushed.digest);
    }
    Ok(pushed.digest)
}

/// `docker.io`, `https://index.docker.io/v1/`, `host:5000/` → the host as in references.
fn registry_host(input: &str) -> Result<String> {
    let host = input.split_once("://").map_or(input, |(_, rest)| rest);
    let host = host.split('/').next().unwrap_or(host);
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
    {
        return Err(miette::miette!("`{input}` is not a registry host"));
    }
    Ok(match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_owned(),
        other => other.to_owned(),
    })
}

pub async fn login(args: LoginArgs) -> Result<ExitCode> {
    let host = registry_host(&args.host)?;
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .into_diagnostic()
        .wrap_err("cannot read the password from stdin")?;
    let password = password.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        return Err(miette::miette!("the password on stdin is empty"));
    }
    let credentials = Credentials {
        username: args.username.clone(),
        secret: password,
    };
    let registry = open_registry(true)?;
    registry
        .login(&host, &credentials)
        .await
        .map_err(miette::Report::from_err)
        .wrap_err_with(|| format!("cannot log in to {host} as {}", args.username))?;
    let mut config = DockerConfig::load().map_err(report)?;
    config.store(&host, &credentials).map_err(report)?;
    eprintln!(
        "login succeeded; credentials stored for {host} in {}",
        config.path().display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn logout(args: LogoutArgs) -> Result<ExitCode> {
    let host = registry_host(&args.host)?;
    let mut config = DockerConfig::load().map_err(report)?;
    if config.erase(&host).map_err(report)? {
        eprintln!("removed the credentials for {host}");
    } else {
        eprintln!("not logged in to {host}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_hosts() {
        assert_eq!(
            registry_host("https://index.docker.io/v1/").unwrap(),
            "docker.io"
        );
        assert_eq!(registry_host("127.0.0.1:5000").unwrap(), "127.0.0.1:5000");
        assert_eq!(registry_host("http://r.lan:5000/").unwrap(), "r.lan:5000");
        assert!(registry_host("bad host").is_err());
    }
}
