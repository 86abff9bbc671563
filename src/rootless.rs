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

/// For a RUN step that failed in a namespace with the user's id alone: a chown to another
/// id fails there with `EINVAL` ("Invalid argument"), which deserves the way out.
pub fn run_failed_help(output_tail: &[String]) -> Option<String> {
    let Some(Mode::SingleId(_)) = namespace().map(|ns| &ns.mode) else {
        return None;
    };
    output_tail
        .iter()
        .any(|line| line.contains("Invalid argument"))
        .then(|| {
            format!(
                "a chown to any owner but root fails with \"Invalid argument\" here: {}",
                unmapped_help(None)
            )
        })
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

/// `err` as a report, with the help [`help_for`] finds in its chain. (A plain
/// `Report::from_err` hides the error's type from later downcasts.)
pub fn report<E: std::error::Error + Send + Sync + 'static>(err: E) -> miette::Report {
    let help = help_for(std::iter::successors(
        Some(&err as &(dyn std::error::Error + 'static)),
        |err| err.source(),
    ));
    match help {
        Some(help) => miette::Report::new(Helped {
            error: Box::new(err),
            help,
        }),
        None => miette::Report::from_err(err),
    }
}

/// An error shown as itself, with a `help:` line.
#[derive(Debug)]
struct Helped {
    error: Box<dyn std::error::Error + Send + Sync>,
    help: String,
}

impl std::fmt::Display for Helped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for Helped {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

impl miette::Diagnostic for Helped {
    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        Some(Box::new(&self.help))
    }
}

/// What to do about an error found in `chain`, when it comes from rootless limits (an id
/// the namespace does not map, a device node) or from a store that is not this user's.
pub fn help_for<'a>(
    mut chain: impl Iterator<Item = &'a (dyn std::error::Error + 'static)>,
) -> Option<String> {
    chain.find_map(|err| {
        // The builder's store errors are transparent: their own source is skipped.
        let err = match err.downcast_ref::<rbuild_builder::BuildError>() {
            Some(rbuild_builder::BuildError::Store(inner)) => inner,
            _ => err.downcast_ref::<rbuild_store::Error>()?,
        };
        match err {
            rbuild_store::Error::UnmappedOwner { uid, gid, .. } => {
                Some(unmapped_help(Some((*uid, *gid))))
            }
            rbuild_store::Error::DeviceNode { .. } => Some(
                "device nodes need root: build this image as root, or without the device node"
                    .to_owned(),
            ),
            rbuild_store::Error::IdMappingChanged { recorded, .. } if recorded.is_host() => Some(
                "root's store is root's alone: unset `RBUILD_ROOT` to use your own store, or run rbuild as root"
                    .to_owned(),
            ),
            rbuild_store::Error::IdMappingChanged { current, .. } if current.is_host() => Some(
                "it is a store of rootless rbuild (an ordinary user's, or a container's): use it from there; root has a store of its own (unset `RBUILD_ROOT`)"
                    .to_owned(),
            ),
            rbuild_store::Error::IdMappingChanged { .. } => Some(match namespace().map(|ns| &ns.mode) {
                Some(Mode::SingleId(reason)) => format!(
                    "the store was made with your subordinate ids, and rbuild maps only your own id now because {reason}"
                ),
                _ => "its files belong to other ids now: put the old range back in /etc/subuid and /etc/subgid, or remove the store as root and start again".to_owned(),
            }),
            _ => None,
        }
    })
}

/// The help for an owner (`uid:gid`, when known) that has no id in rbuild's namespace.
pub fn unmapped_help(owner: Option<(u32, u32)>) -> String {
    let user = namespace().map_or_else(|| "$USER".to_owned(), |ns| ns.user.clone());
    let ids = owner.map_or_else(String::new, |(uid, gid)| format!(" (such as {uid}:{gid})"));
    let add_range =
        format!("`sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}`");
    match namespace().map(|ns| &ns.mode) {
        Some(Mode::SingleId(SingleIdReason::NoRanges { .. })) | None => format!(
            "rbuild maps only your own id (as container root) because you have no subordinate ids; other owners{ids} need a range: {add_range}"
        ),
        Some(Mode::SingleId(reason @ SingleIdReason::NoHelper { .. })) => format!(
            "rbuild maps only your own id (as container root) because {reason}; other owners{ids} need it: `sudo apt-get install uidmap`"
        ),
        Some(Mode::SingleId(reason)) => format!(
            "rbuild maps only your own id (as container root) because {reason}; other owners{ids} need working `newuidmap`/`newgidmap` and a range ({add_range})"
        ),
        Some(Mode::Subordinate) => {
            let count = namespace().map_or(0, |ns| ns.map.uid_count());
            format!(
                "your subordinate ids give container ids 0–{}; other owners{ids} need a larger range: `sudo usermod --add-subuids START-END --add-subgids START-END {user}`",
                count.saturating_sub(1)
            )
        }
        Some(Mode::Host | Mode::Inherited) => format!(
            "the user namespace rbuild runs in does not map other owners{ids}: give the container more ids"
        ),
    }
}
