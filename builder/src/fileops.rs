//! COPY/ADD and WORKDIR: file operations through a privately mounted overlay, committed as
//! a layer.

use std::fs;
use std::path::{Path, PathBuf};

use rbuild_frontend::{CopyKind, CopyOp, CopySource, MkdirOp, Op};
use rbuild_runtime::HostMount;
use rbuild_store::ActiveSnapshot;
use rbuild_store::layer::LayerOptions;

use crate::copy::{self, CopyRequest};
use crate::error::BuildError;
use crate::exec::overlay;
use crate::owner::{self, Owner};
use crate::solve::{Layer, SolveContext, State};

impl SolveContext {
    pub(crate) async fn copy(
        &self,
        op: &Op,
        copy_op: &CopyOp,
        parent: &State,
        source: Option<&State>,
        origin: &str,
    ) -> Result<State, BuildError> {
        let store = self.builder.store.clone();
        let parent_top = parent.top.clone();
        let source_top = source.and_then(|s| s.top.clone());
        let context = self.context.root.clone();
        let context_ignore = self.context.ignore.clone();
        let copy_op = copy_op.clone();
        let origin = origin.to_owned();
        let step_err = step_error(op);
        let active = tokio::task::spawn_blocking(move || -> Result<ActiveSnapshot, BuildError> {
            let active = store.prepare(parent_top.as_ref())?;
            let scratch = store.temp_dir("copy")?;
            let result = (|| -> Result<(), BuildError> {
                let empty = store.empty_dir()?;
                let rootfs = scratch.join("rootfs");
                fs::create_dir(&rootfs).map_err(|e| step_err(e.into()))?;
                let mut mounts = vec![HostMount {
                    mount: overlay(
                        &active.lowers,
                        Some((active.upper.clone(), active.work.clone())),
                        empty.clone(),
                    ),
                    at: rootfs.clone(),
                }];
                let (source_root, sources) = match &copy_op.source {
                    CopySource::Context => (context.clone(), copy_op.sources.clone()),
                    CopySource::Op(_) => match &source_top {
                        Some(top) => {
                            let at = scratch.join("source");
                            fs::create_dir(&at).map_err(|e| step_err(e.into()))?;
                            mounts.push(HostMount {
                                mount: overlay(&store.lowers(top)?, None, empty.clone()),
                                at: at.clone(),
                            });
                            (at, copy_op.sources.clone())
                        }
                        None => (empty.clone(), copy_op.sources.clone()),
                    },
                    CopySource::Inline(files) => {
                        let at = scratch.join("inline");
                        fs::create_dir(&at).map_err(|e| step_err(e.into()))?;
                        for file in files {
                            let name = Path::new(&file.name).file_name().unwrap_or_default();
                            fs::write(at.join(name), &file.content)
                                .map_err(|e| step_err(e.into()))?;
                        }
                        let names = files.iter().map(|f| f.name.clone()).collect();
                        (at, names)
                    }
                };
                let preserve_owner = matches!(copy_op.source, CopySource::Op(_));
                rbuild_runtime::with_mounts(&mounts, || -> Result<(), BuildError> {
                    let owner = copy_op
                        .chown
                        .as_deref()
                        .map(|spec| owner::resolve_owner(&rootfs, spec))
                        .transpose()
                        .map_err(|e| step_err(e.into()))?;
                    let mode = copy_op
                        .chmod
                        .as_deref()
                        .map(copy::parse_chmod)
                        .transpose()
                        .map_err(|e| step_err(e.into()))?;
                    copy::copy(&CopyRequest {
                        source_root: &source_root,
                        origin: &origin,
                        sources: &sources,
                        dest_root: &rootfs,
                        destination: &copy_op.destination,
                        owner,
                        preserve_owner,
                        mode,
                        // Only the context has an ignore file.
                        ignore: matches!(copy_op.source, CopySource::Context)
                            .then_some(&context_ignore),
                        extract_archives: copy_op.kind == CopyKind::Add
                            && matches!(copy_op.source, CopySource::Context),
                    })
                    .map_err(|e| step_err(e.into()))
                })?
            })();
            let _ = fs::remove_dir_all(&scratch);
            match result {
                Ok(()) => Ok(active),
                Err(err) => {
                    let _ = store.discard(active);
                    Err(err)
                }
            }
        })
        .await??;
        self.commit_layer(active, parent, true).await
    }

    pub(crate) async fn mkdir(
        &self,
        op: &Op,
        mkdir: &MkdirOp,
        parent: &State,
    ) -> Result<State, BuildError> {
        let store = self.builder.store.clone();
        let parent_top = parent.top.clone();
        let mkdir = mkdir.clone();
        let step_err = step_error(op);
        let active = tokio::task::spawn_blocking(move || -> Result<ActiveSnapshot, BuildError> {
            let active = store.prepare(parent_top.as_ref())?;
            let scratch = store.temp_dir("workdir")?;
            let result = (|| -> Result<(), BuildError> {
                let rootfs = scratch.join("rootfs");
                fs::create_dir(&rootfs).map_err(|e| step_err(e.into()))?;
                let mount = HostMount {
                    mount: overlay(
                        &active.lowers,
                        Some((active.upper.clone(), active.work.clone())),
                        store.empty_dir()?,
                    ),
                    at: rootfs.clone(),
                };
                rbuild_runtime::with_mounts(&[mount], || -> Result<(), BuildError> {
                    let owner = match mkdir.owner.as_str() {
                        "" => Owner::ROOT,
                        user => {
                            owner::resolve_user(&rootfs, user).map_err(|e| step_err(e.into()))?
                        }
                    };
                    copy::make_workdir(&rootfs, &mkdir.path, owner).map_err(|e| step_err(e.into()))
                })?
            })();
            let _ = fs::remove_dir_all(&scratch);
            match result {
                Ok(()) => Ok(active),
                Err(err) => {
                    let _ = store.discard(active);
                    Err(err)
                }
            }
        })
        .await??;
        // A WORKDIR that already existed changes nothing: no layer, as with Docker.
        self.commit_layer(active, parent, false).await
    }

    /// Makes the layer of `active`'s upper dir and commits the snapshot. With
    /// `keep_empty` unset, an unchanged filesystem adds no layer.
    pub(crate) async fn commit_layer(
        &self,
        active: ActiveSnapshot,
        parent: &State,
        keep_empty: bool,
    ) -> Result<State, BuildError> {
        let store = self.builder.store.clone();
        let opts = LayerOptions {
            clamp_mtime: self
                .opts
                .source_date_epoch
                .and_then(|e| u64::try_from(e).ok()),
        };
        let mut state = parent.clone();
        let layer = tokio::task::spawn_blocking(
            move || -> Result<Option<(Layer, rbuild_store::SnapshotName)>, BuildError> {
                if !keep_empty && is_empty_dir(&active.upper) {
                    store.discard(active)?;
                    return Ok(None);
                }
                let layer = store.create_layer(&active.upper, opts)?;
                let name = store.commit_layer(active, &layer)?;
                Ok(Some((
                    Layer {
                        descriptor: layer.descriptor,
                        diff_id: layer.diff_id,
                    },
                    name,
                )))
            },
        )
        .await??;
        if let Some((layer, name)) = layer {
            state.layers.push(layer);
            state.top = Some(name);
        }
        Ok(state)
    }

    pub(crate) async fn discard(&self, active: ActiveSnapshot) {
        let store = self.builder.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.discard(active)).await;
    }
}

fn is_empty_dir(path: &PathBuf) -> bool {
    fs::read_dir(path)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false)
}

fn step_error(
    op: &Op,
) -> impl Fn(Box<dyn std::error::Error + Send + Sync>) -> BuildError + Send + Clone + 'static {
    let span = op.span;
    let description = op.description.clone();
    move |source| BuildError::StepFailed {
        span,
        description: description.clone(),
        source,
    }
}
