//! COPY/ADD and WORKDIR: file operations through a privately mounted overlay (or into a
//! copy, see `snapshotter`), committed as a layer.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rbuild_frontend::{CopyKind, CopyOp, CopySource, MkdirOp, Op};
use rbuild_runtime::HostMount;
use rbuild_store::ActiveSnapshot;

use crate::copy::{self, CopyRequest, RemoteFile};
use crate::error::BuildError;
use crate::owner::{self, Owner};
use crate::snapshots::Snapshots;
use crate::solve::SolveContext;
use crate::state::State;

impl SolveContext {
    /// Runs a COPY or ADD: its sources (the context, a named context, a stage or image,
    /// a git checkout, heredocs, downloaded URLs) written into a new snapshot on the
    /// parent (on nothing, for `--link`).
    pub(crate) async fn copy(
        &self,
        op: &Op,
        copy_op: &CopyOp,
        parent: &State,
        source: Option<&State>,
        origin: &str,
        remote: Vec<RemoteFile>,
    ) -> Result<ActiveSnapshot, BuildError> {
        // The build context, or the named context the COPY reads from.
        let context = match &copy_op.source {
            CopySource::Named(name) => self.named_context(name)?.root.clone(),
            _ => self.sources.context.root.clone(),
        };
        // A git source: the commit its key was made with, and how to fetch it.
        let git = match &copy_op.source {
            CopySource::Git(git) => {
                let commit = self
                    .git_commit(op, git)
                    .map_err(|e| step_error(op)(e.into()))?;
                Some((git.clone(), commit, self.git_auth()))
            }
            _ => None,
        };
        let job = CopyJob {
            store: self.builder.store.clone(),
            snapshots: self.builder.snapshots.clone(),
            snapshotter: self.builder.snapshotter.clone(),
            parent_lowers: parent.lowers.clone(),
            source_lowers: source.map(|s| s.lowers.clone()),
            context,
            context_ignore: self.sources.context.ignore.clone(),
            git,
            copy_op: copy_op.clone(),
            origin: origin.to_owned(),
            remote,
            step_err: Box::new(step_error(op)),
        };
        let _permit = self.cpu_permit().await?;
        tokio::task::spawn_blocking(move || job.run()).await?
    }

    pub(crate) async fn mkdir(
        &self,
        op: &Op,
        mkdir: &MkdirOp,
        parent: &State,
    ) -> Result<ActiveSnapshot, BuildError> {
        let store = self.builder.store.clone();
        let snapshots = self.builder.snapshots.clone();
        let snapshotter = self.builder.snapshotter.clone();
        let parent_lowers = parent.lowers.clone();
        let mkdir = mkdir.clone();
        let step_err = step_error(op);
        let active = tokio::task::spawn_blocking(move || -> Result<ActiveSnapshot, BuildError> {
            in_new_snapshot(
                &store,
                &*snapshots,
                parent_lowers,
                "workdir",
                |active, scratch| {
                    let root = snapshotter.writable(&*snapshots, active)?;
                    let (rootfs, mount) = root.on_host(scratch).map_err(|e| step_err(e.into()))?;
                    let mounts: Vec<HostMount> = mount.into_iter().collect();
                    rbuild_runtime::with_mounts(&mounts, || -> Result<(), BuildError> {
                        let owner = match mkdir.owner.as_str() {
                            "" => Owner::ROOT,
                            user => owner::resolve_user(&rootfs, user)
                                .map_err(|e| step_err(e.into()))?,
                        };
                        copy::make_workdir(&rootfs, &mkdir.path, owner)
                            .map_err(|e| step_err(e.into()))
                    })??;
                    root.finish(&*snapshots, active)
                },
            )
        })
        .await??;
        Ok(active)
    }

    pub(crate) async fn discard(&self, active: ActiveSnapshot) {
        let store = self.builder.snapshots.clone();
        let _ = tokio::task::spawn_blocking(move || store.discard(active)).await;
    }
}

/// A COPY/ADD with everything it reads, run on a blocking thread.
struct CopyJob {
    /// For scratch directories.
    store: rbuild_store::Store,
    snapshots: Arc<dyn Snapshots>,
    snapshotter: crate::snapshotter::Snapshotter,
    parent_lowers: Vec<PathBuf>,
    /// The source stage's or image's directories (`COPY --from`).
    source_lowers: Option<Vec<PathBuf>>,
    context: PathBuf,
    context_ignore: crate::ignore::IgnoreMatcher,
    git: Option<(rbuild_frontend::GitSource, String, crate::git::GitAuth)>,
    copy_op: CopyOp,
    origin: String,
    remote: Vec<RemoteFile>,
    step_err: Box<dyn Fn(Box<dyn std::error::Error + Send + Sync>) -> BuildError + Send + Sync>,
}

impl CopyJob {
    fn run(self) -> Result<ActiveSnapshot, BuildError> {
        // `--link`: the layer is made on an empty filesystem (the parent is only read for
        // `--chown` names) and stacked on the parent afterwards.
        let lowers = if self.copy_op.link {
            Vec::new()
        } else {
            self.parent_lowers.clone()
        };
        in_new_snapshot(
            &self.store,
            &*self.snapshots,
            lowers,
            "copy",
            |active, scratch| {
                let root = self.snapshotter.writable(&*self.snapshots, active)?;
                let (rootfs, root_mount) = root.on_host(scratch).map_err(|e| self.err(e))?;
                let mut mounts: Vec<HostMount> = root_mount.into_iter().collect();
                let (source_root, sources) = self.source_files(scratch, &mut mounts)?;
                // Heredocs beside other sources: files of their own, copied after them.
                let inline_dir = scratch.join("inline-beside");
                if !self.copy_op.inline.is_empty() {
                    write_inline_files(&inline_dir, &self.copy_op.inline)
                        .map_err(|e| self.err(e))?;
                }
                let names_root = if self.copy_op.link && !self.parent_lowers.is_empty() {
                    let at = scratch.join("parent");
                    fs::create_dir(&at).map_err(|e| self.err(e))?;
                    mounts.extend(self.snapshotter.read_only(
                        &*self.snapshots,
                        &self.parent_lowers,
                        &at,
                    )?);
                    at
                } else {
                    rootfs.clone()
                };
                rbuild_runtime::with_mounts(&mounts, || {
                    self.write(&source_root, &sources, &inline_dir, &names_root, &rootfs)
                })??;
                root.finish(&*self.snapshots, active)
            },
        )
    }

    /// Where the sources are read from, and their names there: the context, a checkout,
    /// the source's files (mounted or copied under `scratch`), or the heredocs written out.
    fn source_files(
        &self,
        scratch: &Path,
        mounts: &mut Vec<HostMount>,
    ) -> Result<(PathBuf, Vec<String>), BuildError> {
        let named = self.copy_op.sources.clone();
        Ok(match &self.copy_op.source {
            CopySource::Context | CopySource::Named(_) => (self.context.clone(), named),
            CopySource::Git(_) => {
                let (git, commit, auth) = self.git.as_ref().expect("resolved before the job");
                let checkout = crate::git::checkout(git, commit, &scratch.join("git"), auth)
                    .map_err(|e| self.err(e))?;
                (checkout.root, named)
            }
            CopySource::Op(_) => match self.source_lowers.as_ref().filter(|l| !l.is_empty()) {
                Some(lowers) => {
                    let at = scratch.join("source");
                    fs::create_dir(&at).map_err(|e| self.err(e))?;
                    mounts.extend(self.snapshotter.read_only(&*self.snapshots, lowers, &at)?);
                    (at, named)
                }
                None => (self.snapshots.empty_dir()?, named),
            },
            CopySource::Inline(files) => {
                let at = scratch.join("inline");
                write_inline_files(&at, files).map_err(|e| self.err(e))?;
                (at, files.iter().map(|f| f.name.clone()).collect())
            }
        })
    }

    /// Copies the sources into `rootfs`, then the heredocs beside them; `--chown` names
    /// are looked up in `names_root`.
    fn write(
        &self,
        source_root: &Path,
        sources: &[String],
        inline_dir: &Path,
        names_root: &Path,
        rootfs: &Path,
    ) -> Result<(), BuildError> {
        let copy_op = &self.copy_op;
        let owner = copy_op
            .chown
            .as_deref()
            .map(|spec| owner::resolve_owner(names_root, spec))
            .transpose()
            .map_err(|e| self.err(e))?;
        let mode = copy_op
            .chmod
            .as_deref()
            .map(crate::chmod::Chmod::parse)
            .transpose()
            .map_err(|e| self.err(e))?;
        let exclude = (!copy_op.excludes.is_empty())
            .then(|| crate::ignore::IgnoreMatcher::from_excludes(&copy_op.excludes))
            .transpose()
            .map_err(|e| self.err(e))?;
        let from_context = matches!(copy_op.source, CopySource::Context);
        copy::copy(&CopyRequest {
            source_root,
            origin: &self.origin,
            sources,
            dest_root: rootfs,
            destination: &copy_op.destination,
            owner,
            preserve_owner: matches!(copy_op.source, CopySource::Op(_)),
            mode: mode.clone(),
            // Only the context has an ignore file.
            ignore: from_context.then_some(&self.context_ignore),
            exclude: exclude.as_ref(),
            parents: copy_op.parents,
            remote: &self.remote,
            layer: true,
            extract_archives: copy_op.kind == CopyKind::Add
                && from_context
                && copy_op.unpack != Some(false),
            extract_downloads: copy_op.unpack == Some(true),
        })
        .map_err(|e| self.err(e))?;
        if copy_op.inline.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = copy_op.inline.iter().map(|f| f.name.clone()).collect();
        copy::copy(&CopyRequest {
            source_root: inline_dir,
            origin: "the Dockerfile",
            sources: &names,
            dest_root: rootfs,
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
        .map_err(|e| self.err(e))
    }

    /// The step's error for `source`.
    fn err(&self, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> BuildError {
        (self.step_err)(source.into())
    }
}

/// A new snapshot on `lowers`, changed by `change` (given a scratch directory of its own
/// in `store`, removed afterwards); discarded if `change` fails. Blocking.
fn in_new_snapshot(
    store: &rbuild_store::Store,
    snapshots: &dyn Snapshots,
    lowers: Vec<std::path::PathBuf>,
    scratch_name: &str,
    change: impl FnOnce(&ActiveSnapshot, &Path) -> Result<(), BuildError>,
) -> Result<ActiveSnapshot, BuildError> {
    let active = snapshots.prepare_on(lowers)?;
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
            let _ = snapshots.discard(active);
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
