//! COPY/ADD and WORKDIR: file operations through a privately mounted overlay (or into a
//! copy, see `snapshotter`), committed as a layer.

use std::fs;
use std::path::Path;

use rbuild_frontend::{CopyKind, CopyOp, CopySource, MkdirOp, Op};
use rbuild_runtime::HostMount;
use rbuild_store::ActiveSnapshot;

use crate::copy::{self, CopyRequest, RemoteFile};
use crate::error::BuildError;
use crate::owner::{self, Owner};
use crate::solve::SolveContext;
use crate::state::State;

impl SolveContext {
    pub(crate) async fn copy(
        &self,
        op: &Op,
        copy_op: &CopyOp,
        parent: &State,
        source: Option<&State>,
        origin: &str,
        remote: Vec<RemoteFile>,
    ) -> Result<ActiveSnapshot, BuildError> {
        let store = self.builder.store.clone();
        let snapshotter = self.builder.snapshotter.clone();
        let parent_lowers = parent.lowers.clone();
        let source_lowers = source.map(|s| s.lowers.clone());
        // The build context, or the named context the COPY reads from.
        let context = match &copy_op.source {
            CopySource::Named(name) => self.named_context(name)?.root.clone(),
            _ => self.sources.context.root.clone(),
        };
        let context_ignore = self.sources.context.ignore.clone();
        // A git source: the commit its key was made with, and how to fetch it.
        let git = match &copy_op.source {
            CopySource::Git(git) => Some((
                git.clone(),
                self.git_commit(op, git)
                    .map_err(|e| step_error(op)(e.into()))?,
                self.git_auth(),
            )),
            _ => None,
        };
        let copy_op = copy_op.clone();
        let origin = origin.to_owned();
        let step_err = step_error(op);
        let _permit = self
            .work
            .cpu
            .acquire()
            .await
            .map_err(|_| BuildError::Cancelled)?;
        let active = tokio::task::spawn_blocking(move || -> Result<ActiveSnapshot, BuildError> {
            // `--link`: the layer is made on an empty filesystem (the parent is only read for
            // `--chown` names) and stacked on the parent afterwards.
            let lowers = if copy_op.link {
                Vec::new()
            } else {
                parent_lowers.clone()
            };
            in_new_snapshot(&store, lowers, "copy", |active, scratch| {
                let empty = store.empty_dir()?;
                let root = snapshotter.writable(&store, active)?;
                let (rootfs, root_mount) = root.on_host(scratch).map_err(|e| step_err(e.into()))?;
                let mut mounts: Vec<HostMount> = root_mount.into_iter().collect();
                let (source_root, sources) = match &copy_op.source {
                    CopySource::Context | CopySource::Named(_) => {
                        (context.clone(), copy_op.sources.clone())
                    }
                    CopySource::Git(_) => {
                        let (git, commit, auth) = git.as_ref().expect("resolved above");
                        let root = crate::git::checkout(git, commit, &scratch.join("git"), auth)
                            .map_err(|e| step_err(e.into()))?
                            .root;
                        (root, copy_op.sources.clone())
                    }
                    CopySource::Op(_) => match source_lowers.as_ref().filter(|l| !l.is_empty()) {
                        Some(lowers) => {
                            let at = scratch.join("source");
                            fs::create_dir(&at).map_err(|e| step_err(e.into()))?;
                            mounts.extend(snapshotter.read_only(&store, lowers, &at)?);
                            (at, copy_op.sources.clone())
                        }
                        None => (empty.clone(), copy_op.sources.clone()),
                    },
                    CopySource::Inline(files) => {
                        let at = scratch.join("inline");
                        write_inline_files(&at, files).map_err(|e| step_err(e.into()))?;
                        let names = files.iter().map(|f| f.name.clone()).collect();
                        (at, names)
                    }
                };
                // Heredocs beside other sources: files of their own, copied after them.
                let inline_dir = scratch.join("inline-beside");
                if !copy_op.inline.is_empty() {
                    write_inline_files(&inline_dir, &copy_op.inline)
                        .map_err(|e| step_err(e.into()))?;
                }
                let preserve_owner = matches!(copy_op.source, CopySource::Op(_));
                let exclude = (!copy_op.excludes.is_empty())
                    .then(|| crate::ignore::IgnoreMatcher::from_excludes(&copy_op.excludes))
                    .transpose()
                    .map_err(|e| step_err(e.into()))?;
                let names_root = if copy_op.link && !parent_lowers.is_empty() {
                    let at = scratch.join("parent");
                    fs::create_dir(&at).map_err(|e| step_err(e.into()))?;
                    mounts.extend(snapshotter.read_only(&store, &parent_lowers, &at)?);
                    at
                } else {
                    rootfs.clone()
                };
                rbuild_runtime::with_mounts(&mounts, || -> Result<(), BuildError> {
                    let owner = copy_op
                        .chown
                        .as_deref()
                        .map(|spec| owner::resolve_owner(&names_root, spec))
                        .transpose()
                        .map_err(|e| step_err(e.into()))?;
                    let mode = copy_op
                        .chmod
                        .as_deref()
                        .map(crate::chmod::Chmod::parse)
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
                        mode: mode.clone(),
                        // Only the context has an ignore file.
                        ignore: matches!(copy_op.source, CopySource::Context)
                            .then_some(&context_ignore),
                        exclude: exclude.as_ref(),
                        parents: copy_op.parents,
                        remote: &remote,
                        layer: true,
                        extract_archives: copy_op.kind == CopyKind::Add
                            && matches!(copy_op.source, CopySource::Context)
                            && copy_op.unpack != Some(false),
                        extract_downloads: copy_op.unpack == Some(true),
                    })
                    .map_err(|e| step_err(e.into()))?;
                    if copy_op.inline.is_empty() {
                        return Ok(());
                    }
                    let names: Vec<String> =
                        copy_op.inline.iter().map(|f| f.name.clone()).collect();
                    copy::copy(&CopyRequest {
                        source_root: &inline_dir,
                        origin: "the Dockerfile",
                        sources: &names,
                        dest_root: &rootfs,
                        destination: &copy_op.destination,
                        owner,
                        preserve_owner: false,
                        mode,
                        ignore: None,
                        exclude: None,
                        parents: false,
                        remote: &[],
                        layer: true,
                        extract_archives: false,
                        extract_downloads: false,
                    })
                    .map_err(|e| step_err(e.into()))
                })??;
                root.finish(&store, active)
            })
        })
        .await??;
        Ok(active)
    }

    pub(crate) async fn mkdir(
        &self,
        op: &Op,
        mkdir: &MkdirOp,
        parent: &State,
    ) -> Result<ActiveSnapshot, BuildError> {
        let store = self.builder.store.clone();
        let snapshotter = self.builder.snapshotter.clone();
        let parent_lowers = parent.lowers.clone();
        let mkdir = mkdir.clone();
        let step_err = step_error(op);
        let active = tokio::task::spawn_blocking(move || -> Result<ActiveSnapshot, BuildError> {
            in_new_snapshot(&store, parent_lowers, "workdir", |active, scratch| {
                let root = snapshotter.writable(&store, active)?;
                let (rootfs, mount) = root.on_host(scratch).map_err(|e| step_err(e.into()))?;
                let mounts: Vec<HostMount> = mount.into_iter().collect();
                rbuild_runtime::with_mounts(&mounts, || -> Result<(), BuildError> {
                    let owner = match mkdir.owner.as_str() {
                        "" => Owner::ROOT,
                        user => {
                            owner::resolve_user(&rootfs, user).map_err(|e| step_err(e.into()))?
                        }
                    };
                    copy::make_workdir(&rootfs, &mkdir.path, owner).map_err(|e| step_err(e.into()))
                })??;
                root.finish(&store, active)
            })
        })
        .await??;
        Ok(active)
    }

    pub(crate) async fn discard(&self, active: ActiveSnapshot) {
        let store = self.builder.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.discard(active)).await;
    }
}

/// A new snapshot on `lowers`, changed by `change` (given a scratch directory of its own,
/// removed afterwards); discarded if `change` fails. Blocking.
fn in_new_snapshot(
    store: &rbuild_store::Store,
    lowers: Vec<std::path::PathBuf>,
    scratch_name: &str,
    change: impl FnOnce(&ActiveSnapshot, &Path) -> Result<(), BuildError>,
) -> Result<ActiveSnapshot, BuildError> {
    let active = store.prepare_on(lowers)?;
    let changed = store
        .temp_dir(scratch_name)
        .map_err(BuildError::from)
        .and_then(|scratch| {
            let changed = change(&active, &scratch);
            let _ = fs::remove_dir_all(&scratch);
            changed
        });
    match changed {
        Ok(()) => Ok(active),
        Err(err) => {
            let _ = store.discard(active);
            Err(err)
        }
    }
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

/// Writes a COPY's heredoc files into `dir` (new), each under the last component of its
/// name, for a copy from there.
fn write_inline_files(dir: &Path, files: &[rbuild_frontend::InlineFile]) -> std::io::Result<()> {
    fs::create_dir(dir)?;
    for file in files {
        let name = Path::new(&file.name).file_name().unwrap_or_default();
        fs::write(dir.join(name), &file.content)?;
    }
    Ok(())
}
