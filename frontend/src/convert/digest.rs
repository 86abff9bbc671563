//! Op definition digests: sha256 of a canonical JSON serialization of the op's kind,
//! with each input replaced by that input's own digest. Spans, descriptions, stages and
//! op indexes never enter, so equal definitions get equal digests on every run. An exec's
//! `cache_excluded_env` entries (undeclared proxy build arguments) do not enter either.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{CopyKind, CopySource, NetworkMode, Op, OpDigest, OpId, OpKind};

use super::Platform;

pub(super) fn op_digest(kind: &OpKind, ops: &[Op], platform: &Platform) -> OpDigest {
    let input = |id: OpId| -> String {
        ops.get(id.0)
            .map(|op| op.digest.0.clone())
            .expect("an op's inputs are added to the graph before it")
    };
    let definition = match kind {
        OpKind::Scratch => json!({ "op": "scratch" }),
        OpKind::Image { reference } => json!({
            "op": "image",
            "reference": reference,
            "platform": platform.to_string(),
        }),
        OpKind::Exec(exec) => json!({
            "op": "exec",
            "rootfs": input(exec.rootfs),
            "args": exec.args,
            "env": exec
                .env
                .iter()
                .filter(|entry| {
                    let key = entry.split_once('=').map_or(entry.as_str(), |(k, _)| k);
                    !exec.cache_excluded_env.iter().any(|excluded| excluded == key)
                })
                .collect::<Vec<_>>(),
            "cwd": exec.cwd,
            "user": exec.user,
            "network": match exec.network {
                NetworkMode::Default => "default",
                NetworkMode::None => "none",
                NetworkMode::Host => "host",
            },
        }),
        OpKind::Copy(copy) => json!({
            "op": "copy",
            "kind": match copy.kind {
                CopyKind::Copy => "copy",
                CopyKind::Add => "add",
            },
            "rootfs": input(copy.rootfs),
            "source": match &copy.source {
                CopySource::Context => json!({ "context": {} }),
                CopySource::Op(id) => json!({ "op": input(*id) }),
                CopySource::Inline(files) => Value::Array(
                    files
                        .iter()
                        .map(|f| json!({ "name": f.name, "content": f.content }))
                        .collect(),
                ),
            },
            "sources": copy.sources,
            "destination": copy.destination,
            "chown": copy.chown,
            "chmod": copy.chmod,
        }),
        OpKind::Mkdir(mkdir) => json!({
            "op": "mkdir",
            "rootfs": input(mkdir.rootfs),
            "path": mkdir.path,
            "owner": mkdir.owner,
        }),
    };
    // serde_json writes object keys in a fixed order (sorted, or insertion order with
    // `preserve_order`), so the text is canonical either way.
    let text = serde_json::to_string(&definition).expect("JSON values always serialize");
    OpDigest(format!(
        "sha256:{}",
        hex::encode(Sha256::digest(text.as_bytes()))
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Span, StageId};

    #[test]
    fn digest_depends_on_definition_only() {
        let platform = Platform::default();
        let scratch = op_digest(&OpKind::Scratch, &[], &platform);
        assert_eq!(
            scratch.0,
            format!(
                "sha256:{}",
                hex::encode(Sha256::digest(br#"{"op":"scratch"}"#))
            )
        );
        let op = |description: &str, span| Op {
            kind: OpKind::Scratch,
            span,
            stage: StageId {
                index: 0,
                name: None,
            },
            description: description.to_string(),
            digest: scratch.clone(),
        };
        let mkdir = |ops: &[Op]| {
            let kind = OpKind::Mkdir(crate::MkdirOp {
                rootfs: OpId(ops.len() - 1),
                path: "/app".into(),
                owner: String::new(),
            });
            op_digest(&kind, ops, &platform)
        };
        let a = mkdir(&[op("FROM scratch", Span::new(0, 1))]);
        let b = mkdir(&[op("other", Span::new(5, 9)), op("x", Span::new(1, 2))]);
        assert_eq!(a, b);
    }
}
