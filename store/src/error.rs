//! The store's error type: every variant says which object and which operation failed.

use std::io;
use std::path::PathBuf;

use crate::{Digest, IdMapping, ImageName};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the image has no manifest for {platform} (it has {available})")]
    PlatformNotFound { platform: String, available: String },
    #[error("failed to {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("blob {digest} is {actual} bytes, expected {expected}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("blob content has digest {actual}, expected {expected}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {digest} is not in the store")]
    BlobNotFound { digest: Digest },
    #[error("blob {digest} is corrupt")]
    CorruptBlob {
        digest: Digest,
        #[source]
        source: io::Error,
    },
    #[error("{what} {digest} is not valid JSON")]
    InvalidJson {
        what: &'static str,
        digest: Digest,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what} is {size} bytes, more than the limit of {limit}")]
    TooLarge {
        what: &'static str,
        size: u64,
        limit: u64,
    },
    #[error("image `{name}` not found")]
    ImageNotFound { name: ImageName },
    #[error("invalid image name `{input}`: {reason}")]
    InvalidImageName { input: String, reason: &'static str },
    #[error("metadata database {path}")]
    Metadata {
        path: PathBuf,
        #[source]
        source: Box<redb::Error>,
    },
    #[error("metadata record {key} is corrupt")]
    CorruptRecord {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("snapshot {name} is not in the store")]
    SnapshotNotFound { name: String },
    #[error("layer {digest}: {reason}")]
    InvalidLayer { digest: Digest, reason: String },
    #[error("layer entry `{path}`: {reason}")]
    UnsafeEntry { path: String, reason: String },
    #[error("failed to unpack layer entry `{path}`")]
    Unpack {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("layer {diff_id} of the image config does not match the layer's content {actual}")]
    DiffIdMismatch { diff_id: Digest, actual: Digest },
    #[error("archive {path}: {reason}")]
    InvalidArchive { path: PathBuf, reason: String },
    #[error("`{path}` is owned by uid {uid} and gid {gid}, which this user namespace does not map")]
    UnmappedOwner { path: String, uid: u32, gid: u32 },
    #[error("`{path}` is a device node, and a user namespace cannot create device nodes")]
    DeviceNode { path: String },
    #[error("the store at {path} belongs to uid {owner}, not to this user (uid {user})")]
    ForeignStore {
        path: PathBuf,
        owner: u32,
        user: u32,
    },
    #[error(
        "the store at {path} holds files with {recorded} ids, and this rbuild runs with {current} ids"
    )]
    IdMappingChanged {
        path: PathBuf,
        recorded: Box<IdMapping>,
        current: Box<IdMapping>,
    },
    #[error("image {name} has {layers} layers but its config lists {diff_ids} diff ids")]
    LayerCountMismatch {
        name: String,
        layers: usize,
        diff_ids: usize,
    },
}

impl Error {
    /// An I/O failure of `action` on `path`, for `map_err`.
    pub fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }

    /// For a failed chown of `path` to `uid:gid`: [`Error::UnmappedOwner`] when the kernel
    /// refused it because this process's user namespace does not map the id (`EINVAL`).
    pub fn unmapped_owner(path: &str, uid: u32, gid: u32, err: &io::Error) -> Option<Error> {
        if err.raw_os_error() != Some(libc::EINVAL) {
            return None;
        }
        let mapping = IdMapping::of_current_process().ok()?;
        (!mapping.maps_uid(uid) || !mapping.maps_gid(gid)).then(|| Error::UnmappedOwner {
            path: path.to_owned(),
            uid,
            gid,
        })
    }

    /// For a failed mknod of a device node at `path`: [`Error::DeviceNode`] when the kernel
    /// refused it because this process is in a user namespace (`EPERM`).
    pub fn device_node(path: &str, err: &io::Error) -> Option<Error> {
        (err.raw_os_error() == Some(libc::EPERM) && IdMapping::in_user_namespace()).then(|| {
            Error::DeviceNode {
                path: path.to_owned(),
            }
        })
    }

    /// Whether the error means "the thing asked for does not exist".
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Error::BlobNotFound { .. }
                | Error::ImageNotFound { .. }
                | Error::SnapshotNotFound { .. }
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
