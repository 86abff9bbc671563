//! Op definition digests: sha256 of a canonical JSON serialization of the op's kind,
//! with each input replaced by that input's own digest. Spans, descriptions, stages and
//! op indexes never enter, so equal definitions get equal digests on every run. An exec's
//! `cache_excluded_env` entries (undeclared proxy build arguments) do not enter either,
//! nor does anything of a secret but its id and where it is mounted.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{
    CacheSharing, CopyKind, CopySource, ExecMount, MountSource, NetworkMode, Op, OpDigest, OpId,
    OpKind,
};

use super::Platform;

// The definitions below serialize to JSON objects with their keys in sorted order (the
// fields are declared alphabetically): that text is the canonical form. They borrow from
// the op, so no intermediate JSON values are built.

#[derive(Serialize)]
struct Scratch {
    op: &'static str,
}

#[derive(Serialize)]
struct Image<'a> {
    op: &'static str,
    platform: String,
    reference: &'a str,
}

#[derive(Serialize)]
struct Exec<'a> {
    args: &'a [String],
    cwd: &'a str,
    env: Vec<&'a String>,
    // Absent unless set, so sandboxed RUNs keep the digests they had.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    insecure: bool,
    // Absent when there are none, so RUNs without mounts keep the digests they had.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    mounts: Vec<Mount<'a>>,
    network: &'static str,
    op: &'static str,
    rootfs: &'a str,
    user: &'a str,
}

/// A `RUN --mount`: its definition only. A secret is its id and where it goes, never its
/// content (which the graph does not have).
#[derive(Serialize)]
#[serde(untagged)]
enum Mount<'a> {
    Bind {
        path: &'a str,
        readwrite: bool,
        source: Source<'a>,
        target: &'a str,
        r#type: &'static str,
    },
    Cache {
        from: Option<&'a str>,
        gid: u32,
        id: &'a str,
        mode: u32,
        path: &'a str,
        readonly: bool,
        sharing: &'static str,
        target: &'a str,
        r#type: &'static str,
        uid: u32,
    },
    Secret {
        env: Option<&'a str>,
        gid: u32,
        id: &'a str,
        mode: u32,
        required: bool,
        target: Option<&'a str>,
        r#type: &'static str,
        uid: u32,
    },
    Tmpfs {
        size: Option<u64>,
        target: &'a str,
        r#type: &'static str,
    },
    /// The agent's id and where its socket goes, never what the agent holds.
    Ssh {
        gid: u32,
        id: &'a str,
        mode: u32,
        required: bool,
        target: &'a str,
        r#type: &'static str,
        uid: u32,
    },
}

// Flags added later are left out when unset, so the digests of ops without them stay.
#[derive(Serialize)]
struct Copy<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    checksum: Option<&'a str>,
    chmod: &'a Option<String>,
    chown: &'a Option<String>,
    destination: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    excludes: &'a [String],
    // Absent when there are none, so copies without heredocs keep their digests.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    inline: Vec<File<'a>>,
    kind: &'static str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    link: bool,
    op: &'static str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    parents: bool,
    rootfs: &'a str,
    source: Source<'a>,
    sources: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    unpack: Option<bool>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Source<'a> {
    Context {
        context: Empty,
    },
    Op {
        op: &'a str,
    },
    Inline(Vec<File<'a>>),
    /// A local named context: its name (its files are keyed by the builder, as the
    /// context's are).
    Named {
        named_context: &'a str,
    },
    /// A git source's definition (its commit is keyed by the builder).
    Git {
        git: &'a crate::GitSource,
    },
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct File<'a> {
    content: &'a str,
    name: &'a str,
}

#[derive(Serialize)]
struct Mkdir<'a> {
    op: &'static str,
    owner: &'a str,
    path: &'a str,
    rootfs: &'a str,
}

pub(super) fn op_digest(kind: &OpKind, ops: &[Op], platform: &Platform) -> OpDigest {
    let input = |id: OpId| -> &str {
        ops.get(id.0)
            .map(|op| op.digest.0.as_str())
            .expect("an op's inputs are added to the graph before it")
    };
    // serde_json writes in many small pieces: buffer them, then hash once.
    let mut hasher: Vec<u8> = Vec::with_capacity(512);
    let written = match kind {
        OpKind::Scratch => serde_json::to_writer(&mut hasher, &Scratch { op: "scratch" }),
        OpKind::Image { reference } => serde_json::to_writer(
            &mut hasher,
            &Image {
                op: "image",
                platform: platform.to_string(),
                reference,
            },
        ),
        OpKind::Exec(exec) => serde_json::to_writer(
            &mut hasher,
            &Exec {
                args: &exec.args,
                cwd: &exec.cwd,
                env: exec
                    .env
                    .iter()
                    .filter(|entry| {
                        let key = entry.split_once('=').map_or(entry.as_str(), |(k, _)| k);
                        !exec
                            .cache_excluded_env
                            .iter()
                            .any(|excluded| excluded == key)
                    })
                    .collect(),
                mounts: exec
                    .mounts
                    .iter()
                    .map(|mount| match mount {
                        ExecMount::Bind(bind) => Mount::Bind {
                            path: &bind.path,
                            readwrite: bind.readwrite,
                            source: match &bind.source {
                                MountSource::Context => Source::Context { context: Empty {} },
                                MountSource::Op(id) => Source::Op { op: input(*id) },
                                MountSource::Named(name) => Source::Named {
                                    named_context: name,
                                },
                            },
                            target: &bind.target,
                            r#type: "bind",
                        },
                        ExecMount::Cache(cache) => Mount::Cache {
                            from: cache.from.map(input),
                            gid: cache.gid,
                            id: &cache.id,
                            mode: cache.mode,
                            path: &cache.path,
                            readonly: cache.readonly,
                            sharing: match cache.sharing {
                                CacheSharing::Shared => "shared",
                                CacheSharing::Private => "private",
                                CacheSharing::Locked => "locked",
                            },
                            target: &cache.target,
                            r#type: "cache",
                            uid: cache.uid,
                        },
                        ExecMount::Secret(secret) => Mount::Secret {
                            env: secret.env.as_deref(),
                            gid: secret.gid,
                            id: &secret.id,
                            mode: secret.mode,
                            required: secret.required,
                            target: secret.target.as_deref(),
                            r#type: "secret",
                            uid: secret.uid,
                        },
                        ExecMount::Tmpfs(tmpfs) => Mount::Tmpfs {
                            size: tmpfs.size,
                            target: &tmpfs.target,
                            r#type: "tmpfs",
                        },
                        ExecMount::Ssh(ssh) => Mount::Ssh {
                            gid: ssh.gid,
                            id: &ssh.id,
                            mode: ssh.mode,
                            required: ssh.required,
                            target: &ssh.target,
                            r#type: "ssh",
                            uid: ssh.uid,
                        },
                    })
                    .collect(),
                insecure: exec.insecure,
                network: match exec.network {
                    NetworkMode::Default => "default",
                    NetworkMode::None => "none",
                    NetworkMode::Host => "host",
                },
                op: "exec",
                rootfs: input(exec.rootfs),
                user: &exec.user,
            },
        ),
        OpKind::Copy(copy) => serde_json::to_writer(
            &mut hasher,
            &Copy {
                checksum: copy.checksum.as_deref(),
                chmod: &copy.chmod,
                chown: &copy.chown,
                destination: &copy.destination,
                excludes: &copy.excludes,
                link: copy.link,
                parents: copy.parents,
                kind: match copy.kind {
                    CopyKind::Copy => "copy",
                    CopyKind::Add => "add",
                },
                op: "copy",
                rootfs: input(copy.rootfs),
                source: match &copy.source {
                    CopySource::Context => Source::Context { context: Empty {} },
                    CopySource::Op(id) => Source::Op { op: input(*id) },
                    CopySource::Named(name) => Source::Named {
                        named_context: name,
                    },
                    CopySource::Git(git) => Source::Git { git },
                    CopySource::Inline(files) => Source::Inline(
                        files
                            .iter()
                            .map(|f| File {
                                content: &f.content,
                                name: &f.name,
                            })
                            .collect(),
                    ),
                },
                sources: &copy.sources,
                unpack: copy.unpack,
                inline: copy
                    .inline
                    .iter()
                    .map(|f| File {
                        content: &f.content,
                        name: &f.name,
                    })
                    .collect(),
            },
        ),
        OpKind::Mkdir(mkdir) => serde_json::to_writer(
            &mut hasher,
            &Mkdir {
                op: "mkdir",
                owner: &mkdir.owner,
                path: &mkdir.path,
                rootfs: input(mkdir.rootfs),
            },
        ),
    };
    written.expect("definitions always serialize to memory");
    let hash = Sha256::digest(&hasher);
    let mut digest = String::with_capacity(71);
    digest.push_str("sha256:");
    for byte in hash {
        for nibble in [byte >> 4, byte & 0xf] {
            digest.push(char::from(b"0123456789abcdef"[usize::from(nibble)]));
        }
    }
    OpDigest(digest)
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
            platform: Platform::default(),
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

    /// The field names `value` (an op definition of the graph) serializes with.
    fn fields(value: impl Serialize) -> Vec<String> {
        let serde_json::Value::Object(map) = serde_json::to_value(value).unwrap() else {
            panic!("an op definition serializes to an object");
        };
        let mut keys: Vec<String> = map.keys().cloned().collect();
        keys.sort();
        keys
    }

    /// The digests above mirror the graph's op types by hand. Every field of those types
    /// must be either keyed or left out on purpose, here: a field added to an op without
    /// a decision fails this test instead of silently dropping out of every cache key.
    #[test]
    fn every_field_of_every_op_is_keyed_or_left_out_on_purpose() {
        use crate::{
            BindMount, CacheMount, CopyOp, ExecOp, InlineFile, MkdirOp, SecretMount, TmpfsMount,
        };
        let id = OpId(0);
        let s = String::new;
        // (type, its fields, the fields the digest leaves out and why)
        let cases: Vec<(&str, Vec<String>, &[&str])> = vec![
            (
                "ExecOp",
                fields(ExecOp {
                    rootfs: id,
                    args: vec![],
                    env: vec![],
                    cache_excluded_env: vec![],
                    cwd: s(),
                    user: s(),
                    network: NetworkMode::Default,
                    insecure: false,
                    mounts: vec![],
                }),
                // Filtered out of `env`: undeclared proxy build arguments never key.
                &["cache_excluded_env"],
            ),
            (
                "CopyOp",
                fields(CopyOp {
                    rootfs: id,
                    source: CopySource::Context,
                    kind: CopyKind::Copy,
                    sources: vec![],
                    destination: s(),
                    chown: None,
                    chmod: None,
                    link: true,
                    parents: true,
                    excludes: vec![s()],
                    checksum: Some(s()),
                    unpack: Some(true),
                    inline: vec![InlineFile {
                        name: s(),
                        content: s(),
                    }],
                }),
                &[],
            ),
            (
                "MkdirOp",
                fields(MkdirOp {
                    rootfs: id,
                    path: s(),
                    owner: s(),
                }),
                &[],
            ),
            (
                "BindMount",
                fields(BindMount {
                    target: s(),
                    source: MountSource::Context,
                    path: s(),
                    readwrite: false,
                }),
                &[],
            ),
            (
                "CacheMount",
                fields(CacheMount {
                    target: s(),
                    id: s(),
                    sharing: CacheSharing::Shared,
                    readonly: false,
                    mode: 0,
                    uid: 0,
                    gid: 0,
                    from: Some(id),
                    path: s(),
                }),
                &[],
            ),
            (
                "TmpfsMount",
                fields(TmpfsMount {
                    target: s(),
                    size: Some(1),
                }),
                &[],
            ),
            (
                "SecretMount",
                fields(SecretMount {
                    id: s(),
                    target: Some(s()),
                    env: Some(s()),
                    required: false,
                    mode: 0,
                    uid: 0,
                    gid: 0,
                }),
                &[],
            ),
            (
                "SshMount",
                fields(crate::SshMount {
                    id: s(),
                    target: s(),
                    required: false,
                    mode: 0,
                    uid: 0,
                    gid: 0,
                }),
                &[],
            ),
            (
                "InlineFile",
                fields(InlineFile {
                    name: s(),
                    content: s(),
                }),
                &[],
            ),
        ];
        // What `op_digest` writes for each (its definition structs' fields, less the
        // constant `op`/`type` tags), by the graph's field names.
        let keyed: &[(&str, &[&str])] = &[
            (
                "ExecOp",
                &[
                    "args", "cwd", "env", "insecure", "mounts", "network", "rootfs", "user",
                ],
            ),
            (
                "CopyOp",
                &[
                    "checksum",
                    "chmod",
                    "chown",
                    "destination",
                    "excludes",
                    "inline",
                    "kind",
                    "link",
                    "parents",
                    "rootfs",
                    "source",
                    "sources",
                    "unpack",
                ],
            ),
            ("MkdirOp", &["owner", "path", "rootfs"]),
            ("BindMount", &["path", "readwrite", "source", "target"]),
            (
                "CacheMount",
                &[
                    "from", "gid", "id", "mode", "path", "readonly", "sharing", "target", "uid",
                ],
            ),
            ("TmpfsMount", &["size", "target"]),
            (
                "SecretMount",
                &["env", "gid", "id", "mode", "required", "target", "uid"],
            ),
            (
                "SshMount",
                &["gid", "id", "mode", "required", "target", "uid"],
            ),
            ("InlineFile", &["content", "name"]),
        ];
        for (name, found, left_out) in cases {
            let keyed = keyed.iter().find(|(n, _)| *n == name).unwrap().1;
            let mut expected: Vec<String> = keyed
                .iter()
                .chain(left_out)
                .map(|field| field.to_string())
                .collect();
            expected.sort();
            assert_eq!(
                found, expected,
                "{name}: a field is neither in its cache-key definition in digest.rs nor \
                 left out on purpose; key it (skipped when unset, so existing digests stay) \
                 and list it here"
            );
        }
    }
}
