//! A readable, deterministic text form of a build graph for debugging and golden tests.

use std::fmt::Write;

use crate::{BuildGraph, CopyKind, CopySource, NetworkMode, OpId, OpKind};

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
            if !exec.cache_excluded_env.is_empty() {
                let _ = write!(text, " uncached_env={}", json(&exec.cache_excluded_env));
            }
            text
        }
        OpKind::Copy(copy) => {
            let source = match &copy.source {
                CopySource::Context => "context".to_string(),
                CopySource::Op(OpId(id)) => format!("#{id}"),
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
            text
        }
        OpKind::Mkdir(mkdir) => format!("mkdir {} owner={}", mkdir.path, mkdir.owner),
    }
}

/// Compact JSON of a value.
fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
