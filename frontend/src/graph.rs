//! The build graph: the frontend's output and the builder's input.
//!
//! A `BuildGraph` is a DAG of ops in topological order. Every filesystem-producing op
//! (`Exec`, `Copy`, `Mkdir`) takes one rootfs input and yields that rootfs plus exactly one
//! new layer; `Image` and `Scratch` are the roots a stage starts from. The final image is
//! the chain of layers from `output.root` down to its `Image`/`Scratch` op, with
//! `output.config` and `output.history`.

use serde::Serialize;

use crate::{HistoryEntry, ImageConfig, Span};

/// Index of an op in [`BuildGraph::ops`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct OpId(pub usize);

/// The definition digest of an op: `sha256:<hex>` of its canonical definition, with its
/// inputs represented by their own definition digests. Stable across runs and machines;
/// it never depends on spans, descriptions or op indexes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct OpDigest(pub String);

impl std::fmt::Display for OpDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A solved Dockerfile: ops in topological order (inputs always before the ops using them)
/// and the image the build produces.
#[derive(Debug, Clone, Serialize)]
pub struct BuildGraph {
    pub ops: Vec<Op>,
    pub output: ImageOutput,
}

impl BuildGraph {
    pub fn op(&self, id: OpId) -> &Op {
        &self.ops[id.0]
    }

    /// One graph of several (a build's, one per platform): their ops one after the other,
    /// inputs renumbered, and each graph's output, in order. The result's `output` is the
    /// first's. Identical ops stay separate ops with the same digest (the solver runs such
    /// ops once).
    pub fn merge(graphs: Vec<BuildGraph>) -> (BuildGraph, Vec<ImageOutput>) {
        let mut ops = Vec::new();
        let mut outputs = Vec::new();
        for graph in graphs {
            let offset = ops.len();
            ops.extend(graph.ops.into_iter().map(|mut op| {
                op.kind.shift(offset);
                op
            }));
            let mut output = graph.output;
            output.root = OpId(output.root.0 + offset);
            outputs.push(output);
        }
        let output = outputs
            .first()
            .cloned()
            .expect("at least one graph to merge");
        (BuildGraph { ops, output }, outputs)
    }
}

/// The image the target stage produces.
#[derive(Debug, Clone, Serialize)]
pub struct ImageOutput {
    /// The last op of the target stage's FROM chain.
    pub root: OpId,
    /// The complete runtime config of the result, base image fields included.
    pub config: ImageConfig,
    /// History entries added by the Dockerfile along the FROM chain, in order. The builder
    /// prepends the base image's own history. Entries with `empty_layer: false` correspond
    /// one to one, in order, to the layer-producing ops on the chain from the bottom up.
    pub history: Vec<HistoryEntry>,
    /// The image config's `author`, set by the last `MAINTAINER` along the FROM chain;
    /// `None` keeps the base image's.
    pub author: Option<String>,
    /// The external image at the bottom of the FROM chain, `None` for `scratch`.
    pub base: Option<String>,
}

/// The stage an op belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageId {
    /// 0-based position of the stage in the Dockerfile.
    pub index: usize,
    /// The `AS name`, lower-cased.
    pub name: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Op {
    pub kind: OpKind,
    /// The instruction the op comes from (for `Image`/`Scratch`: the FROM line).
    pub span: Span,
    pub stage: StageId,
    /// What progress output shows, e.g. `RUN echo hi` (variables as written).
    pub description: String,
    pub digest: OpDigest,
    /// The platform the op is for: its stage's (`FROM --platform`, else the target's). A
    /// RUN for another architecture than the machine's runs emulated; an image op is
    /// that platform's image. (In the digest, not serialized with the op.)
    #[serde(skip)]
    pub platform: crate::Platform,
}

#[derive(Debug, Clone, Serialize)]
pub enum OpKind {
    /// An empty filesystem (`FROM scratch`).
    Scratch,
    /// The layers of an external image, by normalized reference (e.g. `busybox:latest`).
    Image {
        reference: String,
    },
    Exec(ExecOp),
    Copy(CopyOp),
    Mkdir(MkdirOp),
}

impl OpKind {
    /// The ops this op reads from.
    pub fn inputs(&self) -> Vec<OpId> {
        match self {
            OpKind::Scratch | OpKind::Image { .. } => vec![],
            OpKind::Exec(exec) => std::iter::once(exec.rootfs)
                .chain(exec.mounts.iter().filter_map(ExecMount::input))
                .collect(),
            OpKind::Copy(copy) => match copy.source {
                CopySource::Op(source) => vec![copy.rootfs, source],
                CopySource::Context
                | CopySource::Inline(_)
                | CopySource::Named(_)
                | CopySource::Git(_) => vec![copy.rootfs],
            },
            OpKind::Mkdir(mkdir) => vec![mkdir.rootfs],
        }
    }

    /// Adds `offset` to every op this op reads (see [`BuildGraph::merge`]).
    fn shift(&mut self, offset: usize) {
        let shift = |id: &mut OpId| id.0 += offset;
        match self {
            OpKind::Scratch | OpKind::Image { .. } => {}
            OpKind::Exec(exec) => {
                shift(&mut exec.rootfs);
                for mount in &mut exec.mounts {
                    match mount {
                        ExecMount::Bind(BindMount {
                            source: MountSource::Op(id),
                            ..
                        }) => shift(id),
                        ExecMount::Cache(CacheMount { from: Some(id), .. }) => shift(id),
                        _ => {}
                    }
                }
            }
            OpKind::Copy(copy) => {
                shift(&mut copy.rootfs);
                if let CopySource::Op(id) = &mut copy.source {
                    shift(id);
                }
            }
            OpKind::Mkdir(mkdir) => shift(&mut mkdir.rootfs),
        }
    }

    /// The op whose filesystem this op builds on, for layer-producing ops.
    pub fn rootfs(&self) -> Option<OpId> {
        match self {
            OpKind::Scratch | OpKind::Image { .. } => None,
            OpKind::Exec(exec) => Some(exec.rootfs),
            OpKind::Copy(copy) => Some(copy.rootfs),
            OpKind::Mkdir(mkdir) => Some(mkdir.rootfs),
        }
    }
}

/// RUN: one process in a sandbox over the rootfs; its changes become the layer.
#[derive(Debug, Clone, Serialize)]
pub struct ExecOp {
    pub rootfs: OpId,
    /// The complete argv: shell form is already wrapped in the stage's SHELL.
    pub args: Vec<String>,
    /// `KEY=value` entries the process sees: the config's Env, then ARGs in scope not
    /// overridden by ENV, then proxy build arguments (see `cache_excluded_env`).
    pub env: Vec<String>,
    /// Keys of `env` entries that are not part of the op's definition digest, so not of
    /// its cache key either: the predefined proxy ARGs (`HTTP_PROXY`, `https_proxy`, ...)
    /// given with `--build-arg` and not declared with `ARG`. A cache must not key on them;
    /// they are not in the image's history either (BuildKit does the same).
    pub cache_excluded_env: Vec<String>,
    /// Absolute working directory.
    pub cwd: String,
    /// The USER in effect (`name`, `uid`, `name:group`, `uid:gid`), empty for root.
    pub user: String,
    pub network: NetworkMode,
    /// `RUN --security=insecure`: the step runs privileged (every capability, no seccomp
    /// profile, no masked paths, the host's devices). The build must allow it
    /// (`--allow security.insecure`); the builder refuses the step otherwise.
    pub insecure: bool,
    /// `RUN --mount`s, in the order written. What the process writes through them never
    /// reaches the layer, and the mount points the runtime had to create are removed.
    pub mounts: Vec<ExecMount>,
}

/// One `RUN --mount`. Targets are absolute paths inside the sandbox (a relative `target`
/// is resolved against WORKDIR); the definition is part of the op's digest, a secret's
/// content never is (the graph holds only its id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ExecMount {
    Bind(BindMount),
    Cache(CacheMount),
    Tmpfs(TmpfsMount),
    Secret(SecretMount),
    Ssh(SshMount),
}

impl ExecMount {
    /// The op whose filesystem the mount reads, if any.
    pub fn input(&self) -> Option<OpId> {
        match self {
            ExecMount::Bind(BindMount {
                source: MountSource::Op(id),
                ..
            }) => Some(*id),
            ExecMount::Cache(cache) => cache.from,
            _ => None,
        }
    }

    /// Where the process sees it; `None` for a secret given only as an environment variable.
    pub fn target(&self) -> Option<&str> {
        match self {
            ExecMount::Bind(bind) => Some(&bind.target),
            ExecMount::Cache(cache) => Some(&cache.target),
            ExecMount::Tmpfs(tmpfs) => Some(&tmpfs.target),
            ExecMount::Secret(secret) => secret.target.as_deref(),
            ExecMount::Ssh(ssh) => Some(&ssh.target),
        }
    }
}

/// Where a bind mount's files come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum MountSource {
    /// The build context (after `.dockerignore`).
    Context,
    /// The filesystem of another op: a stage's last op or an `Image` op.
    Op(OpId),
    /// A local directory given as a named build context (`--build-context NAME=DIR`).
    Named(String),
}

/// `type=bind`: a file or directory of the context, a stage or an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BindMount {
    pub target: String,
    pub source: MountSource,
    /// Absolute path inside the source (`/` for all of it).
    pub path: String,
    /// `rw`: writes are allowed, and thrown away when the step ends.
    pub readwrite: bool,
}

/// `type=cache`: a directory kept between steps and builds, shared by every mount of the
/// same `id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheMount {
    pub target: String,
    /// `id`, the target when not given.
    pub id: String,
    pub sharing: CacheSharing,
    pub readonly: bool,
    /// Mode and owner of the directory when it is created.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// `from`: the op whose files at `path` fill the directory when it is created.
    pub from: Option<OpId>,
    pub path: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum CacheSharing {
    /// Any number of steps use it at once.
    #[default]
    Shared,
    /// A step finding it in use gets another directory of its own.
    Private,
    /// One step at a time; others wait.
    Locked,
}

/// `type=tmpfs`: an empty, memory-backed directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TmpfsMount {
    pub target: String,
    /// `size` in bytes.
    pub size: Option<u64>,
}

/// `type=secret`: a `--secret` of the build as a read-only file, an environment variable,
/// or both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretMount {
    pub id: String,
    /// The file, `/run/secrets/<id>` unless `target` is given; `None` when only `env` is.
    pub target: Option<String>,
    /// `env`: the variable that holds the secret.
    pub env: Option<String>,
    /// A missing secret fails the step; otherwise the mount is skipped.
    pub required: bool,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// `type=ssh`: a socket in the step that forwards to the SSH agent `--ssh ID` names. The
/// agent's keys never enter the step's files, its cache key or the image; the first ssh
/// mount of a step is its `SSH_AUTH_SOCK`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SshMount {
    /// `default` unless given.
    pub id: String,
    /// `/run/buildkit/ssh_agent.<n>` unless given (`n` counts the step's ssh mounts).
    pub target: String,
    /// A build without that `--ssh` fails the step; otherwise the mount is skipped.
    pub required: bool,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum NetworkMode {
    /// The build's default (a builder option).
    #[default]
    Default,
    None,
    Host,
}

/// COPY or ADD: files from a source into the rootfs; the changes become the layer.
#[derive(Debug, Clone, Serialize)]
pub struct CopyOp {
    pub rootfs: OpId,
    pub source: CopySource,
    pub kind: CopyKind,
    /// Source paths or patterns after variable expansion, as written (relative to the root
    /// of the source: the context, or the source op's filesystem root).
    pub sources: Vec<String>,
    /// Absolute destination after WORKDIR resolution; a trailing `/` is kept because it
    /// means "into this directory".
    pub destination: String,
    /// `--chown` after expansion, unresolved (`user`, `uid`, `user:group`, ...).
    pub chown: Option<String>,
    /// `--chmod` after expansion.
    pub chmod: Option<String>,
    /// `--link`: made on an empty filesystem, independent of the layers below, then
    /// stacked on them; destination symlinks in the parent are not followed.
    #[serde(default)]
    pub link: bool,
    /// `--parents`: each source keeps its path (below a `/./` pivot) under the destination.
    #[serde(default)]
    pub parents: bool,
    /// `--exclude` patterns after expansion, matched like `.dockerignore` against paths
    /// relative to the source root.
    #[serde(default)]
    pub excludes: Vec<String>,
    /// ADD `--checksum`: `sha256:<64 hex>`, validated; the op then has exactly one source,
    /// a URL, whose content must hash to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// ADD `--unpack`: `Some(true)` unpacks a downloaded archive, `Some(false)` copies a
    /// local archive as it is; `None` does what ADD always did (local archives unpacked,
    /// downloads not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unpack: Option<bool>,
    /// Heredoc files copied along with `sources` (`COPY <<EOF a.txt /dst/`): written into
    /// the destination directory after the other sources. Empty when the heredocs are the
    /// only sources (then they are the op's [`CopySource::Inline`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inline: Vec<InlineFile>,
}

impl CopyOp {
    /// Whether an ADD source is an HTTP(S) URL to download (rather than a path of the
    /// context). URL sources and context paths may be mixed in one op, in any order.
    pub fn is_url(source: &str) -> bool {
        source.starts_with("http://") || source.starts_with("https://")
    }
}

/// The scheme of `text` written as a URL (`scheme://…`: a letter, then letters, digits,
/// `+`, `-` or `.`), whether rbuild fetches such URLs or not; `None` for a path.
pub fn url_scheme(text: &str) -> Option<&str> {
    let (scheme, _) = text.split_once("://")?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some(scheme)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CopyKind {
    Copy,
    Add,
}

#[derive(Debug, Clone, Serialize)]
pub enum CopySource {
    /// The build context.
    Context,
    /// The filesystem of another op: a stage's last op or an `Image` op (`--from=image`).
    Op(OpId),
    /// Files written in the Dockerfile (`COPY <<EOF dest`).
    Inline(Vec<InlineFile>),
    /// A local directory given as a named build context (`--build-context NAME=DIR`).
    Named(String),
    /// ADD of a git repository: the checkout (or its sub-directory) at the ref's commit.
    Git(crate::GitSource),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InlineFile {
    pub name: String,
    pub content: String,
}

/// WORKDIR (other than `/`): creates the directory and its missing parents, owned by `owner`.
/// When the directory already exists the diff is empty, and the builder then adds no layer
/// and marks the op's history entry `empty_layer`, as Docker does.
#[derive(Debug, Clone, Serialize)]
pub struct MkdirOp {
    pub rootfs: OpId,
    pub path: String,
    /// The USER in effect, as for [`ExecOp::user`]; the new directories belong to it.
    pub owner: String,
}
