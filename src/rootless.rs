//! rbuild as an ordinary user: the user namespace `main` enters before anything else, the
//! store path chosen before it (as the user, not as the namespace's root), and the help an
//! error gets when it comes from running without root.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use miette::Result;
use rbuild_runtime::userns::{self, Mode, SingleIdReason, UserNamespace};
use rbuild_store::Store;

static NAMESPACE: OnceLock<UserNamespace> = OnceLock::new();
static STORE_ROOT: OnceLock<PathBuf> = OnceLock::new();

/// Chooses the store, checks that it is this user's, and enters rbuild's user namespace
/// when rbuild is not root. Call it from `main` while the process is single-threaded.
pub fn enter() -> Result<()> {
    // Chosen as the user: inside the namespace rbuild is root, and root's default store
    // is not the user's.
    let root = Store::default_root();
    check_store_owner(&root)?;
    let namespace = userns::enter().map_err(|err| {
        let uid = nix::unistd::getuid();
        match err.help() {
            Some(help) => miette::miette!(help = help, "cannot run rbuild as uid {uid}: {err}"),
            None => miette::miette!("cannot run rbuild as uid {uid}: {err}"),
        }
    })?;
    let _ = STORE_ROOT.set(root);
    let _ = NAMESPACE.set(namespace);
    Ok(())
}

/// The store root chosen by [`enter`] (or the default, when it was not called).
pub fn store_root() -> PathBuf {
    STORE_ROOT
        .get()
        .cloned()
        .unwrap_or_else(Store::default_root)
}

/// The namespace rbuild runs in, once [`enter`] returned.
pub fn namespace() -> Option<&'static UserNamespace> {
    NAMESPACE.get()
}

pub fn is_rootless() -> bool {
    namespace().is_some_and(|namespace| namespace.mode.is_rootless())
}

/// A store belongs to the user who made it: someone else's (root's, most often, through
/// `RBUILD_ROOT`) is refused before anything is created or changed.
fn check_store_owner(root: &std::path::Path) -> Result<()> {
    let Ok(meta) = std::fs::metadata(root) else {
        return Ok(());
    };
    let me = nix::unistd::geteuid();
    if meta.uid() == me.as_raw() {
        return Ok(());
    }
    let name = |uid: u32| {
        nix::unistd::User::from_uid(uid.into())
            .ok()
            .flatten()
            .map_or_else(
                || format!("uid {uid}"),
                |user| format!("`{}` (uid {uid})", user.name),
            )
    };
    let owner = name(meta.uid());
    let help = if std::env::var_os("RBUILD_ROOT").is_some() {
        format!(
            "a store is one user's: unset `RBUILD_ROOT` to use your own, or run rbuild as {owner}"
        )
    } else {
        format!("run rbuild as {owner}, or set `RBUILD_ROOT` to a directory of your own")
    };
    Err(miette::miette!(
        help = help,
        "the store at {} belongs to {owner}, not to {}",
        root.display(),
        name(me.as_raw())
    ))
}

/// What to do about an error found in `chain`, when it comes from rootless limits (an id
/// the namespace does not map, a device node) or from a store that is not this user's.
pub fn help_for<'a>(
    mut chain: impl Iterator<Item = &'a (dyn std::error::Error + 'static)>,
) -> Option<String> {
    chain.find_map(|err| {
        let err = err.downcast_ref::<rbuild_store::Error>()?;
        match err {
            rbuild_store::Error::UnmappedOwner { uid, gid, .. } => Some(unmapped_help(*uid, *gid)),
            rbuild_store::Error::DeviceNode { .. } => Some(
                "device nodes need root: build this image as root, or without the device node"
                    .to_owned(),
            ),
            rbuild_store::Error::IdMappingChanged { recorded, .. } if recorded.is_host() => Some(
                "root's store is root's alone: unset `RBUILD_ROOT` to use your own store, or run rbuild as root"
                    .to_owned(),
            ),
            rbuild_store::Error::IdMappingChanged { .. } => Some(
                "its files belong to other ids now: put the old range back in /etc/subuid and /etc/subgid, or remove the store as root and start again"
                    .to_owned(),
            ),
            _ => None,
        }
    })
}

/// The help for a file whose owner has no id in rbuild's namespace.
pub fn unmapped_help(uid: u32, gid: u32) -> String {
    let user = namespace().map_or_else(|| "$USER".to_owned(), |ns| ns.user.clone());
    let add_range =
        format!("`sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}`");
    match namespace().map(|ns| &ns.mode) {
        Some(Mode::SingleId(SingleIdReason::NoRanges { .. })) | None => format!(
            "rbuild maps only your own id (as container root) because you have no subordinate ids; give yourself a range for ids such as {uid}:{gid} with {add_range}"
        ),
        Some(Mode::SingleId(reason @ SingleIdReason::NoHelper { .. })) => format!(
            "rbuild maps only your own id (as container root) because {reason}: `sudo apt-get install uidmap`"
        ),
        Some(Mode::SingleId(reason)) => format!(
            "rbuild maps only your own id (as container root) because {reason}; with working `newuidmap`/`newgidmap` and a range ({add_range}) ids such as {uid}:{gid} exist"
        ),
        Some(Mode::Subordinate) => {
            let count = namespace().map_or(0, |ns| ns.map.uid_count());
            format!(
                "your subordinate ids give container ids 0–{}; add a range that reaches {uid}:{gid} with `sudo usermod --add-subuids START-END --add-subgids START-END {user}`",
                count.saturating_sub(1)
            )
        }
        Some(Mode::Host | Mode::Inherited) => {
            "the user namespace rbuild runs in does not map this id; give the container more ids"
                .to_owned()
        }
    }
}
