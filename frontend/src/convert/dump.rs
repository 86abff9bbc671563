//! A readable, deterministic text form of a build graph for debugging and golden tests.

use std::fmt::Write;

use crate::{
    BuildGraph, CacheSharing, CopyKind, CopySource, ExecMount, MountSource, NetworkMode, OpId,
    OpKind,
};

/// One line per op — id, digest prefix, stage, description, inputs, and the op's
/// definition — then the output image: root, base, config and history.
pub fn dump_graph(graph: &BuildGraph) -> String {
    let mut out = String::new();
    for (index, op) in graph.ops.iter().enumerate() {
        let digest = op.digest.0.strip_prefix("sha256:").unwrap_or(&op.digest.0);
        let stage = match &op.stage.name {
            Some(name) => format!("{} {name}", op.stage.index),
            None => op.stage.index.to_string(),
        };
        let inputs: Vec<String> = op
            .kind
            .inputs()
            .iter()
            .map(|id| format!("#{}", id.0))
            .collect();
        let _ = write!(
            out,
            "#{index} {} [{stage}] {}",
            digest.get(..12).unwrap_or(digest),
            op.description
        );
        if !inputs.is_empty() {
            let _ = write!(out, " <- {}", inputs.join(", "));
        }
        let _ = writeln!(out, " :: {}", definition(&op.kind));
    }
    let output = &graph.output;
    let _ = writeln!(
        out,
        "output: root=#{} base={}",
        output.root.0,
        output.base.as_deref().unwrap_or("scratch")
    );
    let config = serde_json::to_string(&output.config).unwrap_or_default();
    let _ = writeln!(out, "config: {config}");
    if let Some(author) = &output.author {
        let _ = writeln!(out, "author: {author}");
    }
    for entry in &output.history {
        let layer = if entry.empty_layer { "empty" } else { "layer" };
        let _ = writeln!(out, "history: [{layer}] {}", entry.created_by);
    }
    out
}

fn definition(kind: &OpKind) -> String {
    match kind {
        OpKind::Scratch => "scratch".to_string(),
        OpKind::Image { reference } => format!("image {reference}"),
        OpKind::Exec(exec) => {
            let mut text = format!(
                "exec {} env={} cwd={} user={} network={}",
                json(&exec.args),
                json(&exec.env),
                exec.cwd,
                exec.user,
                match exec.network {
                    NetworkMode::Default => "default",
                    NetworkMode::None => "none",
                    NetworkMode::Host => "host",
                }
            );
            if exec.insecure {
                text.push_str(" security=insecure");
            }
            if !exec.cache_excluded_env.is_empty() {
                let _ = write!(text, " uncached_env={}", json(&exec.cache_excluded_env));
            }
            for mount in &exec.mounts {
                let _ = write!(text, " mount=[{}]", mount_definition(mount));
            }
            text
        }
        OpKind::Copy(copy) => {
            let source = match &copy.source {
                CopySource::Context => "context".to_string(),
                CopySource::Op(OpId(id)) => format!("#{id}"),
                CopySource::Named(name) => format!("context {name}"),
                CopySource::Git(git) => format!("git {}", git.display()),
                CopySource::Inline(files) => {
                    let files: Vec<String> = files
                        .iter()
                        .map(|f| format!("{}={}", f.name, json(&f.content)))
                        .collect();
                    format!("inline[{}]", files.join(", "))
                }
            };
            let kind = match copy.kind {
                CopyKind::Copy => "copy",
                CopyKind::Add => "add",
            };
            let mut text = format!(
                "{kind} from={source} {} -> {}",
                json(&copy.sources),
                copy.destination
            );
            if let Some(chown) = &copy.chown {
                let _ = write!(text, " chown={chown}");
            }
            if let Some(chmod) = &copy.chmod {
                let _ = write!(text, " chmod={chmod}");
            }
            if let Some(checksum) = &copy.checksum {
                let _ = write!(text, " checksum={checksum}");
            }
            for file in &copy.inline {
                let _ = write!(text, " inline={}={}", file.name, json(&file.content));
            }
            text
        }
        OpKind::Mkdir(mkdir) => format!("mkdir {} owner={}", mkdir.path, mkdir.owner),
    }
}

fn mount_definition(mount: &ExecMount) -> String {
    let source = |source: &MountSource| match source {
        MountSource::Context => "context".to_string(),
        MountSource::Op(OpId(id)) => format!("#{id}"),
        MountSource::Named(name) => format!("context {name}"),
    };
    match mount {
        ExecMount::Bind(bind) => format!(
            "bind {}:{} -> {}{}",
            source(&bind.source),
            bind.path,
            bind.target,
            if bind.readwrite { " rw" } else { "" }
        ),
        ExecMount::Cache(cache) => {
            let mut text = format!(
                "cache id={} -> {} sharing={} mode={:o} uid={} gid={}",
                json(&cache.id),
                cache.target,
                match cache.sharing {
                    CacheSharing::Shared => "shared",
                    CacheSharing::Private => "private",
                    CacheSharing::Locked => "locked",
                },
                cache.mode,
                cache.uid,
                cache.gid
            );
            if let Some(from) = cache.from {
                let _ = write!(
                    text,
                    " from={}:{}",
                    source(&MountSource::Op(from)),
                    cache.path
                );
            }
            if cache.readonly {
                text.push_str(" ro");
            }
            text
        }
        ExecMount::Tmpfs(tmpfs) => match tmpfs.size {
            Some(size) => format!("tmpfs -> {} size={size}", tmpfs.target),
            None => format!("tmpfs -> {}", tmpfs.target),
        },
        ExecMount::Secret(secret) => {
            let mut text = format!("secret id={}", json(&secret.id));
            if let Some(target) = &secret.target {
                let _ = write!(text, " -> {target}");
            }
            if let Some(env) = &secret.env {
                let _ = write!(text, " env={env}");
            }
            let _ = write!(
                text,
                " mode={:o} uid={} gid={}{}",
                secret.mode,
                secret.uid,
                secret.gid,
                if secret.required { " required" } else { "" }
            );
            text
        }
        ExecMount::Ssh(ssh) => format!(
            "ssh id={} -> {} mode={:o} uid={} gid={}{}",
            json(&ssh.id),
            ssh.target,
            ssh.mode,
            ssh.uid,
            ssh.gid,
            if ssh.required { " required" } else { "" }
        ),
    }
}

/// Compact JSON of a value.
fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
