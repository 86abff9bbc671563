//! RUN's `--mount`s given their meaning: options expanded with the stage's variables,
//! targets resolved against WORKDIR, and `from` resolved to an op as for `COPY --from` (a
//! stage, a stage index, or an image).

use crate::instructions::Run;
use crate::instructions::mount::{MountOptions, MountType};
use crate::{
    BindMount, CacheMount, Error, ErrorKind, ExecMount, MountSource, OpKind, SecretMount, Span,
    SshMount, TmpfsMount,
};

use super::dispatch::Expander;
use super::plan::FromSource;
use super::values::{clean_path, resolve_path};
use super::{Converter, StageState};

/// Where a secret is mounted unless its `target` says otherwise.
const SECRETS_DIR: &str = "/run/secrets";

/// Where an ssh mount's socket is unless its `target` says otherwise (BuildKit's path).
const SSH_AGENT_DIR: &str = "/run/buildkit";

impl Converter<'_> {
    pub(super) fn exec_mounts(
        &mut self,
        state: &StageState,
        run: &Run,
        expand: &Expander,
    ) -> Result<Vec<ExecMount>, Error> {
        let mut mounts = Vec::with_capacity(run.mounts.len());
        for mount in &run.mounts {
            let options = mount.options(|word| expand.word(word, &state.vars))?;
            let span = mount.span;
            let invalid = |message: String| Error::new(ErrorKind::InvalidFlag, span, message);
            let workdir = match state.config.working_dir.as_str() {
                "" => "/",
                dir => dir,
            };
            // As BuildKit: a relative target is under WORKDIR, and no target means WORKDIR.
            let target = |options: &MountOptions| -> Result<String, Error> {
                let target = resolve_path(workdir, options.target.as_deref().unwrap_or(""));
                if target == "/" {
                    return Err(invalid("invalid mount target `/`".into())
                        .with_help("mount on a directory below `/`, e.g. `target=/src`"));
                }
                Ok(target)
            };
            let source_path = clean_path(&format!("/{}", options.source.as_deref().unwrap_or("")));
            mounts.push(match options.kind {
                MountType::Bind => ExecMount::Bind(BindMount {
                    target: target(&options)?,
                    source: match &options.from {
                        Some(from) => self.mount_from(state, from, span)?,
                        None => MountSource::Context,
                    },
                    path: source_path,
                    readwrite: !options.readonly,
                }),
                MountType::Cache => {
                    let target = target(&options)?;
                    let from =
                        match &options.from {
                            Some(from) => match self.mount_from(state, from, span)? {
                                MountSource::Op(id) => Some(id),
                                _ => {
                                    return Err(invalid(format!(
                                    "a cache mount cannot be filled from the named context `{from}`"
                                ))
                                .with_help("fill it from a stage that copies the context's files"));
                                }
                            },
                            // Without `from`, `source` is a sub-directory of the cache itself.
                            None => None,
                        };
                    ExecMount::Cache(CacheMount {
                        id: options
                            .id
                            .clone()
                            .filter(|id| !id.is_empty())
                            .unwrap_or_else(|| target.clone()),
                        target,
                        sharing: options.sharing.unwrap_or_default(),
                        readonly: options.readonly,
                        mode: options.mode.unwrap_or(0o755),
                        uid: options.uid.unwrap_or(0),
                        gid: options.gid.unwrap_or(0),
                        from,
                        path: source_path,
                    })
                }
                MountType::Tmpfs => ExecMount::Tmpfs(TmpfsMount {
                    target: target(&options)?,
                    size: options.size,
                }),
                MountType::Secret => ExecMount::Secret(secret(&options)),
                MountType::Ssh => {
                    let index = mounts
                        .iter()
                        .filter(|mount| matches!(mount, ExecMount::Ssh(_)))
                        .count();
                    ExecMount::Ssh(SshMount {
                        id: options
                            .id
                            .clone()
                            .filter(|id| !id.is_empty())
                            .unwrap_or_else(|| "default".to_owned()),
                        target: match options.target.as_deref().filter(|t| !t.is_empty()) {
                            Some(_) => target(&options)?,
                            None => format!("{SSH_AGENT_DIR}/ssh_agent.{index}"),
                        },
                        required: options.required,
                        mode: options.mode.unwrap_or(0o600),
                        uid: options.uid.unwrap_or(0),
                        gid: options.gid.unwrap_or(0),
                    })
                }
            });
        }
        Ok(mounts)
    }

    /// What a mount's `from` names: a stage's last op, a new `Image` op, or a local named
    /// context.
    fn mount_from(
        &mut self,
        state: &StageState,
        from: &str,
        span: Span,
    ) -> Result<MountSource, Error> {
        Ok(
            match self
                .plan
                .copy_source(self.df, state.id.index, from, span, "mount")?
            {
                FromSource::Stage(index) => MountSource::Op(self.stage_root(index)),
                FromSource::Image(reference) => {
                    let image = OpKind::Image { reference };
                    MountSource::Op(self.add_op(
                        image,
                        span,
                        &state.id,
                        format!("RUN --mount=from={from}"),
                    ))
                }
                FromSource::Local(name) => MountSource::Named(name),
            },
        )
    }
}

/// BuildKit's secret rules: the id is `id`, else `source`, else the target's file name;
/// the file is `target`, else `/run/secrets/<id>` unless only `env` was asked for.
fn secret(options: &MountOptions) -> SecretMount {
    let target = options
        .target
        .as_deref()
        .filter(|t| !t.is_empty())
        .map(|t| resolve_path("/", t));
    let id = options
        .id
        .clone()
        .or_else(|| options.source.clone())
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| base_name(target.as_deref().unwrap_or("")).to_string());
    let target = match (target, &options.env) {
        (Some(target), _) => Some(target),
        (None, Some(_)) => None,
        (None, None) => Some(format!("{SECRETS_DIR}/{}", base_name(&id))),
    };
    SecretMount {
        id,
        target,
        env: options.env.clone().filter(|env| !env.is_empty()),
        required: options.required,
        mode: options.mode.unwrap_or(0o400),
        uid: options.uid.unwrap_or(0),
        gid: options.gid.unwrap_or(0),
    }
}

/// Go's `path.Base`.
fn base_name(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return if path.is_empty() { "." } else { "/" };
    }
    trimmed.rsplit('/').next().unwrap_or(trimmed)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{
        BuildGraph, CacheSharing, ConvertOptions, ImageConfig, OpDigest, OpId, convert,
        image_references, parse,
    };

    fn build(text: &str) -> Result<BuildGraph, Error> {
        let df = parse(text)?;
        let opts = ConvertOptions::default();
        let bases: BTreeMap<String, ImageConfig> = image_references(&df, &opts)?
            .into_iter()
            .map(|reference| (reference, ImageConfig::default()))
            .collect();
        convert(&df, &opts, &bases)
    }

    fn last_exec(graph: &BuildGraph) -> (&crate::ExecOp, &OpDigest, Vec<OpId>) {
        let op = graph.op(graph.output.root);
        match &op.kind {
            OpKind::Exec(exec) => (exec, &op.digest, op.kind.inputs()),
            other => panic!("not an exec: {other:?}"),
        }
    }

    #[test]
    fn targets_variables_and_sources() {
        let graph = build(
            "FROM busybox AS deps\nRUN echo > /lock\n\
             FROM busybox\nARG DIR=cache\nWORKDIR /app\n\
             RUN --mount=type=cache,target=$DIR,sharing=private \
                 --mount=from=deps,source=lock,target=/deps/lock \
                 --mount=from=alpine,target=/alpine,rw \
                 --mount=type=secret,id=tok \
                 --mount=type=secret,id=api,env=API \
                 make\n",
        )
        .unwrap();
        let (exec, _, inputs) = last_exec(&graph);
        let [cache, deps, alpine, file, env] = exec.mounts.as_slice() else {
            panic!("{:?}", exec.mounts);
        };
        let ExecMount::Cache(cache) = cache else {
            panic!()
        };
        assert_eq!(
            (cache.target.as_str(), cache.id.as_str()),
            ("/app/cache", "/app/cache")
        );
        assert_eq!(cache.sharing, CacheSharing::Private);
        let ExecMount::Bind(deps) = deps else {
            panic!()
        };
        assert_eq!(deps.path, "/lock");
        assert!(!deps.readwrite);
        let ExecMount::Bind(alpine) = alpine else {
            panic!()
        };
        assert!(alpine.readwrite);
        let MountSource::Op(image) = alpine.source else {
            panic!()
        };
        assert!(
            matches!(&graph.op(image).kind, OpKind::Image { reference } if reference == "alpine:latest")
        );
        // The mounted stage and image are inputs: the solver runs them first.
        assert!(inputs.contains(&image));
        let MountSource::Op(stage) = deps.source else {
            panic!()
        };
        assert!(inputs.contains(&stage));
        assert_eq!(
            stage,
            graph
                .ops
                .iter()
                .position(|op| op.description == "RUN echo > /lock")
                .map(OpId)
                .unwrap()
        );
        assert_eq!(file.target(), Some("/run/secrets/tok"));
        assert_eq!(env.target(), None);
        let ExecMount::Secret(env) = env else {
            panic!()
        };
        assert_eq!(env.env.as_deref(), Some("API"));
    }

    #[test]
    fn mounts_are_part_of_the_digest() {
        let digest = |text: &str| last_exec(&build(text).unwrap()).1.clone();
        let plain = digest("FROM busybox\nRUN make\n");
        let cache = digest("FROM busybox\nRUN --mount=type=cache,target=/c make\n");
        let locked = digest("FROM busybox\nRUN --mount=type=cache,target=/c,sharing=locked make\n");
        let secret = digest("FROM busybox\nRUN --mount=type=secret,id=a make\n");
        let other = digest("FROM busybox\nRUN --mount=type=secret,id=b make\n");
        let all = [&plain, &cache, &locked, &secret, &other];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(
            cache,
            digest("FROM busybox\nRUN --mount=type=cache,dst=/c/ make\n")
        );
    }

    #[test]
    fn invalid_targets_and_stages() {
        let error = build("FROM busybox\nRUN --mount=type=tmpfs make\n").unwrap_err();
        assert_eq!(error.message(), "invalid mount target `/`");
        let error = build("FROM busybox AS a\nRUN --mount=from=a,target=/x make\n").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::StageOrder);
    }

    /// Without `from`, a cache mount's `source` is a directory of the cache: kept as the
    /// mount's path (cleaned), and part of the step's key.
    #[test]
    fn a_cache_source_without_from_is_a_directory_of_the_cache() {
        let digest = |text: &str| last_exec(&build(text).unwrap()).1.clone();
        let graph = build("FROM busybox\nRUN --mount=type=cache,source=a/../sub/,target=/x make\n")
            .unwrap();
        let (exec, _, _) = last_exec(&graph);
        let [ExecMount::Cache(cache)] = exec.mounts.as_slice() else {
            panic!("one cache mount: {:?}", exec.mounts);
        };
        assert_eq!((cache.from, cache.path.as_str()), (None, "/sub"));
        assert_ne!(
            digest("FROM busybox\nRUN --mount=type=cache,source=sub,target=/x make\n"),
            digest("FROM busybox\nRUN --mount=type=cache,target=/x make\n")
        );
    }

    #[test]
    fn base_names() {
        assert_eq!(base_name("/run/secrets/token"), "token");
        assert_eq!(base_name("a/b/"), "b");
        assert_eq!(base_name("token"), "token");
        assert_eq!(base_name("/"), "/");
        assert_eq!(base_name(""), ".");
    }
}
