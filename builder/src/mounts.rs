//! RUN's `--mount`s turned into the sandbox's mounts, for one step.
//!
//! - `bind` from the context: the resolved path, bound read-only; when `.dockerignore`
//!   excludes something below it, a read-only overlay whose top layer holds a whiteout for
//!   each excluded entry, so the step sees the context as COPY does.
//! - `bind` from a stage or image: an overlay of that sub-directory of each of its layers
//!   (looked up as overlayfs would, see `lowers`), or a bind of a single file.
//! - `rw` binds get a throwaway upper dir (files: a throwaway copy), removed with the step.
//! - `cache`: the store's directory for the id, locked as `sharing` says while the step
//!   runs; `from` fills it when it is created.
//! - `tmpfs`: a tmpfs. `secret`: a read-only file from `secrets`, and/or an environment
//!   variable.
//!
//! Everything is released (locks, scratch dirs, secret files) when [`StepMounts`] drops.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rbuild_frontend::{
    BindMount, CacheMount, CacheSharing, ExecMount, MountSource, OpId, SecretMount, SshMount,
};
use rbuild_runtime::{HostMount, Mount};
use rbuild_store::oci::Descriptor;
use rbuild_store::{CacheMountOptions, Digest, Store};

use crate::copy;
use crate::exec::overlay;
use crate::ignore::IgnoreMatcher;
use crate::lowers::{self, Found};
use crate::resolve::resolve_in_root;
use crate::secrets::{SecretError, SecretFiles, SecretSource};
use crate::snapshotter::Snapshotter;
use crate::solve::Cancel;

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("`{path}` not found in {origin}")]
    NotFound { path: String, origin: String },
    #[error("secret `{id}` is required but was not given")]
    SecretRequired { id: String },
    #[error("a cache mount's `from` source `{path}` in {origin} is not a directory")]
    CacheSourceNotDirectory { path: String, origin: String },
    #[error("failed to {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Ssh(#[from] crate::ssh::SshError),
    #[error(transparent)]
    Store(#[from] rbuild_store::Error),
    #[error(transparent)]
    Runtime(#[from] rbuild_runtime::Error),
    #[error("`{path}` of cache mount `{id}` {reason}")]
    CacheSubdir {
        id: String,
        path: String,
        reason: &'static str,
    },
    #[error("cancelled while waiting for cache mount `{id}`")]
    Cancelled { id: String },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> MountError {
    let path = path.to_owned();
    move |source| MountError::Io {
        action,
        path,
        source,
    }
}

/// What one step's mounts need, owned, for a blocking thread.
pub(crate) struct MountRequest {
    /// For scratch directories, cache mounts and imported layers.
    pub store: Store,
    /// For views of snapshots.
    pub snapshots: std::sync::Arc<dyn crate::snapshots::Snapshots>,
    pub context_root: PathBuf,
    pub ignore: IgnoreMatcher,
    /// The directories of local named contexts (`--build-context NAME=DIR`), by name.
    pub named_roots: BTreeMap<String, PathBuf>,
    /// The SSH agents' sockets (`--ssh`), by id.
    pub ssh: BTreeMap<String, PathBuf>,
    pub secrets: BTreeMap<String, SecretSource>,
    /// The directories (top first) of each op a mount reads, and what to call it in
    /// messages.
    pub sources: HashMap<OpId, (Vec<PathBuf>, String)>,
    pub cancel: Cancel,
    /// Cache mount contents from imported caches (`mounts=true`), by id: the layer (in
    /// the store) and its diff id. A new cache directory of such an id starts from it.
    pub imported_caches: HashMap<String, (Descriptor, Digest)>,
    /// Whether layers are seen through overlays or copies.
    pub snapshotter: Snapshotter,
}

/// The sandbox mounts of one step and what they hold on to.
#[derive(Debug, Default)]
pub(crate) struct StepMounts {
    /// Parents before children.
    pub mounts: Vec<Mount>,
    /// `KEY=value` entries of secrets given as environment variables.
    pub env: Vec<String>,
    caches: Vec<rbuild_store::CacheMount>,
    secrets: Option<SecretFiles>,
    ssh: Vec<crate::ssh::AgentProxy>,
    scratch: Option<PathBuf>,
}

impl Drop for StepMounts {
    fn drop(&mut self) {
        if let Some(scratch) = &self.scratch {
            let _ = fs::remove_dir_all(scratch);
        }
    }
}

impl StepMounts {
    /// A fresh scratch directory for mount number `index`.
    fn scratch(&mut self, store: &Store, index: usize) -> Result<PathBuf, MountError> {
        if self.scratch.is_none() {
            self.scratch = Some(store.temp_dir("mounts")?);
        }
        let dir = self
            .scratch
            .as_ref()
            .expect("just made")
            .join(index.to_string());
        fs::create_dir_all(&dir).map_err(io_error("create", &dir))?;
        Ok(dir)
    }
}

/// Prepares `mounts` for one step. Blocking (it may wait for a locked cache mount).
pub(crate) fn prepare(
    request: &MountRequest,
    mounts: &[ExecMount],
) -> Result<StepMounts, MountError> {
    let mut step = StepMounts::default();
    let empty = request.snapshots.empty_dir()?;
    // One lease per cache id and step: a step naming an id twice must not wait for itself.
    let mut cache_dirs: HashMap<String, PathBuf> = HashMap::new();
    // Caches of which a sub-directory is mounted (`source` without `from`): held alone
    // for the step, so that no other step can swap a component of that path for a
    // symlink between rbuild's check and the mount.
    let exclusive: std::collections::HashSet<&str> = mounts
        .iter()
        .filter_map(|mount| match mount {
            ExecMount::Cache(cache) if mounts_a_subdir(cache) => Some(cache.id.as_str()),
            _ => None,
        })
        .collect();
    for (index, mount) in mounts.iter().enumerate() {
        match mount {
            ExecMount::Bind(bind) => {
                let mount = bind_mount(request, &mut step, index, bind, &empty)?;
                step.mounts.push(mount);
            }
            ExecMount::Cache(cache) => {
                let dir = match cache_dirs.get(&cache.id) {
                    Some(dir) => dir.clone(),
                    None => {
                        let exclusive = exclusive.contains(cache.id.as_str());
                        let lease =
                            cache_mount(request, &mut step, index, cache, exclusive, &empty)?;
                        let dir = lease.dir.clone();
                        step.caches.push(lease);
                        cache_dirs.insert(cache.id.clone(), dir.clone());
                        dir
                    }
                };
                let mut options = vec!["nosuid".to_owned(), "nodev".to_owned()];
                if cache.readonly {
                    options.push("ro".to_owned());
                }
                let source = if mounts_a_subdir(cache) {
                    cache_subdir(&dir, cache)?
                } else {
                    dir
                };
                step.mounts.push(Mount {
                    fstype: "bind".into(),
                    source,
                    target: cache.target.clone().into(),
                    options,
                });
            }
            ExecMount::Tmpfs(tmpfs) => {
                let mut options = vec!["nosuid".to_owned(), "nodev".to_owned()];
                if let Some(size) = tmpfs.size {
                    options.push(format!("size={size}"));
                }
                step.mounts.push(Mount {
                    fstype: "tmpfs".into(),
                    source: "tmpfs".into(),
                    target: tmpfs.target.clone().into(),
                    options,
                });
            }
            ExecMount::Secret(secret) => secret_mount(request, &mut step, secret)?,
            ExecMount::Ssh(ssh) => ssh_mount(request, &mut step, index, ssh)?,
        }
    }
    // Parents before children, whatever the order written.
    step.mounts
        .sort_by_key(|mount| mount.target.components().count());
    Ok(step)
}

fn read_only_options(readwrite: bool) -> Vec<String> {
    let mut options = vec!["nosuid".to_owned(), "nodev".to_owned()];
    if !readwrite {
        options.push("ro".to_owned());
    }
    options
}

fn bind_mount(
    request: &MountRequest,
    step: &mut StepMounts,
    index: usize,
    bind: &BindMount,
    empty: &Path,
) -> Result<Mount, MountError> {
    let target = PathBuf::from(&bind.target);
    let (found, origin) = match bind_source(request, step, index, bind)? {
        BindFrom::Plain(dir) => {
            return Ok(Mount {
                fstype: "bind".into(),
                source: dir,
                target,
                options: read_only_options(false),
            });
        }
        BindFrom::Found(found, origin) => (found, origin),
    };
    match found {
        Found::Dir(dirs) => dir_mount(request, step, index, bind, empty, &dirs, target),
        Found::Other(file) => {
            let source = if bind.readwrite {
                let copy = step.scratch(&request.store, index)?.join("file");
                fs::copy(&file, &copy).map_err(io_error("copy", &file))?;
                copy
            } else {
                file
            };
            Ok(Mount {
                fstype: "bind".into(),
                source,
                target,
                options: read_only_options(bind.readwrite),
            })
        }
        Found::Missing => Err(MountError::NotFound {
            path: bind.path.clone(),
            origin,
        }),
    }
}

/// What a bind mount's `source` is.
enum BindFrom {
    /// A directory of the build context with nothing excluded below it, mounted read-only:
    /// bound as it is.
    Plain(PathBuf),
    /// What the path is in the layers (or the context's directory with a layer of
    /// whiteouts for what is excluded), and what to call where it was looked up.
    Found(Found, String),
}

/// Looks up a bind mount's `source` in the build context, a named context, or the layers
/// of the stage or image it is `from`.
fn bind_source(
    request: &MountRequest,
    step: &mut StepMounts,
    index: usize,
    bind: &BindMount,
) -> Result<BindFrom, MountError> {
    Ok(match &bind.source {
        MountSource::Named(name) => {
            let root = request.named_roots.get(name).ok_or_else(|| {
                io_error("find", Path::new(name))(io::Error::from(io::ErrorKind::NotFound))
            })?;
            let whiteouts = step.scratch(&request.store, index)?.join("ignored");
            let found = context_source(root, &IgnoreMatcher::default(), &bind.path, &whiteouts)?;
            BindFrom::Found(found, format!("the build context `{name}`"))
        }
        MountSource::Context => {
            let whiteouts = step.scratch(&request.store, index)?.join("ignored");
            let found = context_source(
                &request.context_root,
                &request.ignore,
                &bind.path,
                &whiteouts,
            )?;
            match found {
                Found::Dir(mut dirs) if dirs.len() == 1 && !bind.readwrite => {
                    BindFrom::Plain(dirs.remove(0))
                }
                found => BindFrom::Found(found, "the build context".to_owned()),
            }
        }
        MountSource::Op(id) => {
            let (layers, origin) = &request.sources[id];
            let found = lowers::lookup(layers, &bind.path)
                .map_err(io_error("look up", Path::new(&bind.path)))?;
            BindFrom::Found(found, origin.clone())
        }
    })
}

/// A bind mount of a directory made of the layers `dirs` (top first): an empty directory
/// for none, a merged copy without overlayfs, else an overlay (with an upper dir of the
/// step's own for `rw`, whose writes are thrown away).
fn dir_mount(
    request: &MountRequest,
    step: &mut StepMounts,
    index: usize,
    bind: &BindMount,
    empty: &Path,
    dirs: &[PathBuf],
    target: PathBuf,
) -> Result<Mount, MountError> {
    // The root of an empty filesystem (`FROM scratch`): an empty directory.
    if dirs.is_empty() && !bind.readwrite {
        return Ok(Mount {
            fstype: "bind".into(),
            source: empty.to_owned(),
            target,
            options: read_only_options(false),
        });
    }
    // Without overlayfs: the layers' sub-directories merged into a copy of the step's
    // own, which a `rw` mount may write to as it pleases.
    if let Snapshotter::Copy { .. } = request.snapshotter {
        let copy = step.scratch(&request.store, index)?.join("copy");
        fs::create_dir(&copy).map_err(io_error("create", &copy))?;
        request.snapshots.merge_into(dirs, &copy)?;
        return Ok(Mount {
            fstype: "bind".into(),
            source: copy,
            target,
            options: read_only_options(bind.readwrite),
        });
    }
    let upper = if bind.readwrite {
        let scratch = step.scratch(&request.store, index)?;
        let (upper, work) = (scratch.join("upper"), scratch.join("work"));
        for dir in [&upper, &work] {
            fs::create_dir(dir).map_err(io_error("create", dir))?;
        }
        Some((upper, work))
    } else {
        None
    };
    // Always an overlay for layers, even of one directory: it hides their whiteouts,
    // which a bind would show as character devices.
    let mut mount = overlay(
        dirs,
        upper,
        empty.to_owned(),
        request.snapshots.overlay_xattrs(),
    );
    mount.target = target;
    mount.options.extend(["nosuid", "nodev"].map(String::from));
    if !bind.readwrite {
        mount.options.push("ro".to_owned());
    }
    Ok(mount)
}

/// A path of the context as the step may see it: the directories that make it up (a
/// layer of whiteouts at `whiteouts` for what `.dockerignore` excludes below it, then the
/// directory), or a file.
fn context_source(
    root: &Path,
    ignore: &IgnoreMatcher,
    path: &str,
    whiteouts: &Path,
) -> Result<Found, MountError> {
    let host = resolve_in_root(root, path, true).map_err(io_error("resolve", Path::new(path)))?;
    let rel = host
        .strip_prefix(root)
        .map(|rel| rel.to_string_lossy().into_owned())
        .unwrap_or_default();
    if ignore.is_excluded(&rel) {
        return Ok(Found::Missing);
    }
    let meta = match fs::metadata(&host) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Found::Missing),
        Err(err) => return Err(io_error("stat", &host)(err)),
    };
    if !meta.is_dir() {
        return Ok(Found::Other(host));
    }
    if ignore.is_empty() {
        return Ok(Found::Dir(vec![host]));
    }
    fs::create_dir(whiteouts).map_err(io_error("create", whiteouts))?;
    // The whiteout layer goes with the step's other scratch dirs.
    if whiteout_excluded(ignore, &host, &rel, whiteouts)? {
        Ok(Found::Dir(vec![whiteouts.to_owned(), host]))
    } else {
        Ok(Found::Dir(vec![host]))
    }
}

/// Puts a whiteout in `layer` for every entry below `dir` (the context's `rel`) that the
/// ignore rules exclude; returns whether there was any. Directories holding one get the
/// mode and owner of the context's directory, since the top layer's win in an overlay.
fn whiteout_excluded(
    ignore: &IgnoreMatcher,
    dir: &Path,
    rel: &str,
    layer: &Path,
) -> Result<bool, MountError> {
    let mut any = false;
    let entries = fs::read_dir(dir).map_err(io_error("read", dir))?;
    for entry in entries {
        let entry = entry.map_err(io_error("read", dir))?;
        let name = entry.file_name();
        let child_rel = if rel.is_empty() {
            name.to_string_lossy().into_owned()
        } else {
            format!("{rel}/{}", name.to_string_lossy())
        };
        let file_type = entry.file_type().map_err(io_error("stat", &entry.path()))?;
        let excluded = ignore.is_excluded(&child_rel);
        // An excluded directory may still hold what a `!` pattern re-includes.
        if file_type.is_dir() && (!excluded || ignore.has_exceptions()) {
            let sub_layer = layer.join(&name);
            fs::create_dir(&sub_layer).map_err(io_error("create", &sub_layer))?;
            if whiteout_excluded(ignore, &entry.path(), &child_rel, &sub_layer)? {
                any = true;
                let meta = fs::metadata(entry.path()).map_err(io_error("stat", &entry.path()))?;
                fs::set_permissions(&sub_layer, fs::Permissions::from_mode(meta.mode() & 0o7777))
                    .map_err(io_error("chmod", &sub_layer))?;
                std::os::unix::fs::chown(&sub_layer, Some(meta.uid()), Some(meta.gid()))
                    .map_err(io_error("chown", &sub_layer))?;
            } else {
                let _ = fs::remove_dir(&sub_layer);
            }
            // Excluded with exceptions: what was not re-included below is hidden entry
            // by entry already.
            continue;
        }
        if excluded {
            let whiteout = layer.join(&name);
            rbuild_store::overlay::make_whiteout(&whiteout)
                .map_err(io_error("make a whiteout at", &whiteout))?;
            any = true;
        }
    }
    Ok(any)
}

/// Whether a cache mount mounts a directory of the cache rather than all of it: a
/// `source` without `from` (with `from`, `source` is what fills a new cache).
fn mounts_a_subdir(cache: &CacheMount) -> bool {
    cache.from.is_none() && cache.path != "/"
}

/// The directory `cache.path` of the cache directory `dir` (held alone by this step), for
/// a cache mount's `source` without `from`: every component a directory, none a symlink
/// (a step may have planted one pointing out of the cache, BuildKit's
/// testCacheMountSourceEscape).
fn cache_subdir(dir: &Path, cache: &CacheMount) -> Result<PathBuf, MountError> {
    let fail = |reason| MountError::CacheSubdir {
        id: cache.id.clone(),
        path: cache.path.trim_start_matches('/').to_owned(),
        reason,
    };
    let mut path = dir.to_owned();
    for part in cache.path.split('/').filter(|part| !part.is_empty()) {
        path.push(part);
        let kind = match fs::symlink_metadata(&path) {
            Ok(meta) => meta.file_type(),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(fail("does not exist (make it in an earlier step)"));
            }
            Err(err) => return Err(io_error("look up", &path)(err)),
        };
        if kind.is_symlink() {
            return Err(fail(
                "is a symbolic link, which a cache mount's `source` may not follow",
            ));
        }
        if !kind.is_dir() {
            return Err(fail("is not a directory"));
        }
    }
    Ok(path)
}

fn cache_mount(
    request: &MountRequest,
    step: &mut StepMounts,
    index: usize,
    cache: &CacheMount,
    exclusive: bool,
    empty: &Path,
) -> Result<rbuild_store::CacheMount, MountError> {
    let opts = CacheMountOptions {
        sharing: match cache.sharing {
            CacheSharing::Shared if exclusive => rbuild_store::CacheSharing::Locked,
            CacheSharing::Shared => rbuild_store::CacheSharing::Shared,
            CacheSharing::Private => rbuild_store::CacheSharing::Private,
            CacheSharing::Locked => rbuild_store::CacheSharing::Locked,
        },
        mode: cache.mode,
        uid: cache.uid,
        gid: cache.gid,
    };
    let seed = cache_seed(request, cache)?;
    let seed_at = match &seed {
        Some(_) => Some(step.scratch(&request.store, index)?),
        None => None,
    };
    // What a new cache directory starts with: the contents an imported cache carried,
    // else the `from` path, else nothing.
    let init = |data: &Path| -> io::Result<()> {
        if let Some((descriptor, diff_id)) = request.imported_caches.get(&cache.id) {
            return unpack_imported(request, &cache.id, descriptor, diff_id, data);
        }
        match (&seed, &seed_at) {
            (Some((dirs, origin)), Some(at)) if !dirs.is_empty() => {
                copy_seed(request, dirs, origin, at, empty, data)
            }
            _ => Ok(()),
        }
    };
    let cancel = &request.cancel;
    request
        .store
        .cache_mount(&cache.id, &opts, &init, &|| !cancel.is_cancelled())?
        .ok_or_else(|| MountError::Cancelled {
            id: cache.id.clone(),
        })
}

/// With `from`, the layers (top first) of that path of the source, which a new cache
/// directory starts as a copy of, and what to call the source.
fn cache_seed(
    request: &MountRequest,
    cache: &CacheMount,
) -> Result<Option<(Vec<PathBuf>, String)>, MountError> {
    let Some(id) = cache.from else {
        return Ok(None);
    };
    let (layers, origin) = &request.sources[&id];
    match lowers::lookup(layers, &cache.path)
        .map_err(io_error("look up", Path::new(&cache.path)))?
    {
        Found::Dir(dirs) => Ok(Some((dirs, origin.clone()))),
        Found::Other(_) => Err(MountError::CacheSourceNotDirectory {
            path: cache.path.clone(),
            origin: origin.clone(),
        }),
        Found::Missing => Err(MountError::NotFound {
            path: cache.path.clone(),
            origin: origin.clone(),
        }),
    }
}

/// The contents of cache `id` an imported registry cache carried (`mounts=true`), unpacked
/// into `data` and checked against the diff id the cache names.
fn unpack_imported(
    request: &MountRequest,
    id: &str,
    descriptor: &Descriptor,
    diff_id: &Digest,
    data: &Path,
) -> io::Result<()> {
    let blob = request
        .store
        .open_content(&descriptor.digest, Some(descriptor.size))
        .map_err(io::Error::other)?;
    let unpacked = rbuild_store::layer::unpack_layer(
        blob,
        data,
        &descriptor.digest,
        request.snapshots.overlay_xattrs(),
    )
    .map_err(io::Error::other)?;
    if &unpacked.diff_id != diff_id {
        return Err(io::Error::other(format!(
            "the imported contents of cache `{id}` are not what the cache names: \
             diff id {}, expected {diff_id}",
            unpacked.diff_id
        )));
    }
    Ok(())
}

/// The merged view of the layers `dirs` copied into `data`, seen at the scratch directory
/// `at`: a merged copy without overlayfs, else a read-only overlay.
fn copy_seed(
    request: &MountRequest,
    dirs: &[PathBuf],
    origin: &str,
    at: &Path,
    empty: &Path,
    data: &Path,
) -> io::Result<()> {
    if let Snapshotter::Copy { .. } = request.snapshotter {
        request
            .snapshots
            .merge_into(dirs, at)
            .map_err(io::Error::other)?;
        return copy::copy_tree(at, origin, data).map_err(io::Error::other);
    }
    let source = HostMount {
        mount: overlay(
            dirs,
            None,
            empty.to_owned(),
            request.snapshots.overlay_xattrs(),
        ),
        at: at.to_owned(),
    };
    rbuild_runtime::with_mounts(&[source], || copy::copy_tree(at, origin, data))
        .map_err(io::Error::other)?
        .map_err(io::Error::other)
}

/// A socket of the step's own relaying to the agent of `--ssh ID`, bound at the target;
/// the first one of a step is its `SSH_AUTH_SOCK`, as with BuildKit.
fn ssh_mount(
    request: &MountRequest,
    step: &mut StepMounts,
    index: usize,
    ssh: &SshMount,
) -> Result<(), MountError> {
    let Some(agent) = request.ssh.get(&ssh.id) else {
        if ssh.required {
            return Err(crate::ssh::SshError::Required { id: ssh.id.clone() }.into());
        }
        return Ok(());
    };
    let socket = step.scratch(&request.store, index)?.join("agent.sock");
    let proxy = crate::ssh::AgentProxy::start(&socket, agent, ssh.mode, ssh.uid, ssh.gid)?;
    step.ssh.push(proxy);
    if !step
        .env
        .iter()
        .any(|entry| entry.starts_with("SSH_AUTH_SOCK="))
    {
        step.env.push(format!("SSH_AUTH_SOCK={}", ssh.target));
    }
    step.mounts.push(Mount {
        fstype: "bind".into(),
        source: socket,
        target: ssh.target.clone().into(),
        options: ["nosuid", "nodev", "noexec"].map(String::from).to_vec(),
    });
    Ok(())
}

fn secret_mount(
    request: &MountRequest,
    step: &mut StepMounts,
    secret: &SecretMount,
) -> Result<(), MountError> {
    let value = match request.secrets.get(&secret.id) {
        // Given but its variable unset: a required secret says which variable.
        Some(source) if secret.required => Some(source.read_given(&secret.id)?),
        Some(source) => source.read(&secret.id)?,
        None => None,
    };
    let Some(value) = value else {
        // As BuildKit: an optional secret that was not given is simply not there.
        if secret.required {
            return Err(MountError::SecretRequired {
                id: secret.id.clone(),
            });
        }
        return Ok(());
    };
    if let Some(target) = &secret.target {
        if step.secrets.is_none() {
            step.secrets = Some(SecretFiles::create(&request.store)?);
        }
        let files = step.secrets.as_mut().expect("just made");
        let file = files.write(&secret.id, &value, secret.mode, secret.uid, secret.gid)?;
        step.mounts.push(Mount {
            fstype: "bind".into(),
            source: file,
            target: target.into(),
            options: ["ro", "nosuid", "nodev", "noexec"]
                .map(String::from)
                .to_vec(),
        });
    }
    if let Some(env) = &secret.env {
        let value = String::from_utf8(value).map_err(|_| SecretError::NotUtf8 {
            id: secret.id.clone(),
            env: env.clone(),
        })?;
        step.env.push(format!("{env}={value}"));
    }
    Ok(())
}
