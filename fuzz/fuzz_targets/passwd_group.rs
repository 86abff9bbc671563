//! A RUN step's user resolved from the image's `/etc/passwd` and `/etc/group` (the runtime
//! reads them from the root it was given, which the image's layers made): the input is
//! `user NUL passwd NUL group`, read as rbuild reads those files (lossy UTF-8). Errors are
//! fine; panics are not.
//!
//! Consistency, with Docker's (runc's) rules: `""` is uid 0; a numeric user is that uid; a
//! numeric group is that gid and drops the supplementary groups, as any explicit group
//! does; the home is never empty; no supplementary group is listed twice.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild_runtime::fuzzing::resolve_user;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == 0);
    let user = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let passwd = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let group = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let Ok((uid, gid, groups, home)) = resolve_user(&user, &passwd, &group) else {
        return;
    };
    let (user_part, group_part) = user.split_once(':').unwrap_or((&user, ""));
    if user_part.is_empty() {
        assert_eq!(uid, 0, "{user:?}");
    }
    if let Ok(numeric) = user_part.parse::<u32>() {
        assert_eq!(uid, numeric, "{user:?}");
    }
    if let Ok(numeric) = group_part.parse::<u32>() {
        assert_eq!(gid, numeric, "{user:?}");
    }
    if !group_part.is_empty() {
        assert!(groups.is_empty(), "{user:?}: {groups:?}");
    }
    assert!(!home.is_empty());
    let mut unique = groups.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), groups.len(), "{groups:?}");
});
