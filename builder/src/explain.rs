//! Why a step missed the cache, in words: each build keeps what went into every step's
//! cache key (its trace), and a step that runs again is compared with its trace from the
//! previous build of the same context and target: "`src/app.py` changed", "build arg
//! `VERSION` changed (1 → 2)", "the base image `busybox:latest` moved", "the step before it
//! ran again".
//!
//! Steps are matched between builds by stage and position in the stage, so editing an
//! instruction is reported as such rather than as a new step.

use std::collections::{BTreeMap, HashMap};

use rbuild_store::Store;
use serde::{Deserialize, Serialize};

/// What went into one step's cache key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Trace {
    pub description: String,
    /// The op's definition digest.
    pub digest: String,
    /// Each input: its description and its cache key.
    pub inputs: Vec<(String, String)>,
    /// RUN: the environment (`KEY=value`) the step sees.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// COPY from the context: each file read, with its mode, size and hash.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
    /// FROM: the manifest the name resolved to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// FROM: that image's config digest, its IMAGE ID in `rbuild images`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_id: Option<String>,
    /// Anything else in the key (network, SOURCE_DATE_EPOCH).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other: Vec<String>,
    /// ADD of a git source: the ref, and the commit it pointed at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<(String, String)>,
    /// The resulting key.
    pub key: String,
    /// Each local context the step read, by name (`""` for the build context), with the
    /// checksum of what it read: for the provenance, not the explanation.
    #[serde(skip)]
    pub contexts: BTreeMap<String, String>,
}

impl Trace {
    /// The trace with each environment value replaced by a short hash of it: what leaves
    /// the machine in a registry cache. Build arguments are often (wrongly) secrets; a
    /// hash still tells that a value changed, never what it is.
    pub(crate) fn redacted(&self) -> Trace {
        let mut trace = self.clone();
        for entry in &mut trace.env {
            if let Some((name, value)) = entry.split_once('=') {
                let hash = rbuild_store::Digest::of(value.as_bytes());
                *entry = format!("{name}=#{}", &hash.hex()[..12]);
            }
        }
        trace
    }
}

/// The traces of one build, by step identity (`stage#position`).
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Traces {
    pub steps: HashMap<String, Trace>,
}

impl Traces {
    /// Every trace [`Trace::redacted`].
    pub(crate) fn redacted(&self) -> Traces {
        Traces {
            steps: self
                .steps
                .iter()
                .map(|(identity, trace)| (identity.clone(), trace.redacted()))
                .collect(),
        }
    }

    fn state_name(scope: &str) -> String {
        format!("explain:{scope}")
    }

    pub(crate) fn load(store: &Store, scope: &str) -> Traces {
        store
            .get_state(&Traces::state_name(scope))
            .ok()
            .flatten()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Keeps these traces for the next build, unless they are those of the previous one
    /// (a fully cached rebuild writes nothing).
    pub(crate) fn save(&self, store: &Store, scope: &str, previous: &Traces) {
        let unchanged = self.steps.len() == previous.steps.len()
            && self.steps.iter().all(|(identity, trace)| {
                previous
                    .steps
                    .get(identity)
                    .is_some_and(|old| old.key == trace.key && old.description == trace.description)
            });
        if unchanged {
            return;
        }
        if let Ok(bytes) = serde_json::to_vec(self) {
            let _ = store.put_state(&Traces::state_name(scope), &bytes);
        }
    }
}

/// The first change behind a miss: the step where it happened and what changed there.
/// Steps after it that missed only because they build on it share its cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cause {
    pub step: usize,
    pub description: String,
    pub reason: String,
}

impl Cause {
    /// How a miss reads at `step`: the change itself, or the earlier step it comes from.
    pub(crate) fn message(&self, step: usize) -> String {
        if self.step == step {
            self.reason.clone()
        } else {
            format!(
                "it builds on step {} (`{}`), which changed: {}",
                self.step,
                shorten(&self.description),
                self.reason
            )
        }
    }
}

/// Why step `step` (`new`) missed, given its trace from the previous build. `causes` maps
/// the keys of this build's changed steps to their causes, so a change further up is
/// named once, where it happened.
///
/// `ancestors` gives this build's keys of the steps it builds on, directly or not, nearest
/// first: a step whose inputs kept their keys can still have missed for a change further
/// up (a `COPY --link` keeps its key when the steps under it change, the steps after it
/// do not), which is found among them.
pub(crate) fn explain(
    step: usize,
    old: &Trace,
    new: &Trace,
    causes: &HashMap<String, Cause>,
    ancestors: impl FnOnce() -> Vec<String>,
) -> Cause {
    let upstream = old
        .inputs
        .iter()
        .zip(&new.inputs)
        .find_map(|((_, old_key), (_, new_key))| {
            (old_key != new_key).then(|| causes.get(new_key)).flatten()
        });
    // Its own changes (instruction, environment, files), apart from what it builds on
    // (the definition digest covers the inputs' definitions too, so it is left out) and
    // from what a trace read from disk never has (the contexts' checksums, which the
    // files already cover).
    let own = Trace {
        inputs: old.inputs.clone(),
        digest: old.digest.clone(),
        key: String::new(),
        contexts: BTreeMap::new(),
        ..new.clone()
    };
    let own_changed = Trace {
        key: String::new(),
        contexts: BTreeMap::new(),
        ..old.clone()
    } != own;
    match upstream {
        Some(cause) if !own_changed => cause.clone(),
        Some(cause) => Cause {
            step,
            description: new.description.clone(),
            reason: format!("{}; and {}", reason(old, &own), cause.message(usize::MAX)),
        },
        None => {
            let reason = reason(old, new);
            if reason == DEFINITION_CHANGED
                // Walked only here: a graph of thousands of steps has as many ancestors.
                && let Some(cause) = ancestors().iter().find_map(|key| causes.get(key))
            {
                return cause.clone();
            }
            Cause {
                step,
                description: new.description.clone(),
                reason,
            }
        }
    }
}

/// The reason when only the definition digest tells a change.
const DEFINITION_CHANGED: &str = "its definition changed";

/// What differs between two traces of one step, first difference first.
fn reason(old: &Trace, new: &Trace) -> String {
    if old.description != new.description {
        return instruction_changed(&old.description, &new.description);
    }
    if old.base != new.base
        && let (Some(old_base), Some(new_base)) = (&old.base, &new.base)
    {
        return base_moved(old_base, new_base, old, new);
    }
    for ((description, old_key), (_, new_key)) in old.inputs.iter().zip(&new.inputs) {
        if old_key != new_key {
            return format!("the step it builds on (`{}`) changed", shorten(description));
        }
    }
    if old.inputs.len() != new.inputs.len() {
        return "its inputs changed".to_owned();
    }
    if old.env != new.env {
        return describe_env(&old.env, &new.env);
    }
    if let (Some((old_ref, old_commit)), Some((new_ref, new_commit))) = (&old.git, &new.git)
        && old_ref == new_ref
        && old_commit != new_commit
    {
        return format!(
            "`{new_ref}` moved from {} to {}",
            &old_commit[..old_commit.len().min(12)],
            &new_commit[..new_commit.len().min(12)]
        );
    }
    if old.files != new.files {
        return describe_files(&old.files, &new.files);
    }
    if old.other != new.other {
        // What is no longer there, and what is new: a setting dropped (a build without
        // the `SOURCE_DATE_EPOCH` of the last) is named as such.
        let gone: Vec<&str> = old
            .other
            .iter()
            .filter(|o| !new.other.contains(o))
            .map(String::as_str)
            .collect();
        let added: Vec<&str> = new
            .other
            .iter()
            .filter(|n| !old.other.contains(n))
            .map(String::as_str)
            .collect();
        return match (gone.as_slice(), added.as_slice()) {
            ([], []) => format!("its settings changed ({})", new.other.join(", ")),
            (gone, []) => format!("its settings changed (no longer {})", gone.join(", ")),
            ([], added) => format!("its settings changed (now {})", added.join(", ")),
            (gone, added) => format!(
                "its settings changed ({} → {})",
                gone.join(", "),
                added.join(", ")
            ),
        };
    }
    if old.digest != new.digest {
        return DEFINITION_CHANGED.to_owned();
    }
    "its cache record is gone (pruned, or its layer was removed)".to_owned()
}

/// How long an instruction may be to be quoted whole.
const QUOTE_WIDTH: usize = 60;
/// How much unchanged text is kept on each side of a change, to tell where it is.
const CONTEXT: usize = 16;
/// How much further the context reaches to keep a word whole.
const WORD: usize = 8;

/// A long instruction is quoted around what changed, old and new: cut at a fixed width,
/// an edit near its end (a package added to a long `apt-get install`) would not show.
fn instruction_changed(old: &str, new: &str) -> String {
    if old.chars().count() <= QUOTE_WIDTH && new.chars().count() <= QUOTE_WIDTH {
        return format!("the instruction changed (it was `{old}`)");
    }
    let (old, new) = around_change(old, new);
    format!("the instruction changed (it was `{old}`, now `{new}`)")
}

/// The part of each text that differs from the other, with [`CONTEXT`] unchanged
/// characters on each side and `…` where text is left out; each at most [`QUOTE_WIDTH`]
/// characters (a long change shows its start).
fn around_change(old: &str, new: &str) -> (String, String) {
    let old: Vec<char> = old.chars().collect();
    let new: Vec<char> = new.chars().collect();
    let prefix = old.iter().zip(&new).take_while(|(a, b)| a == b).count();
    let suffix = old
        .iter()
        .rev()
        .zip(new.iter().rev())
        .take(old.len().min(new.len()) - prefix)
        .take_while(|(a, b)| a == b)
        .count();
    let part = |text: &[char]| {
        let changed = prefix..text.len() - suffix;
        let is_space = |c: &char| *c == ' ';
        // The context is whole words: a word it cuts is taken whole when short, else
        // left out when another word is left.
        let mut start = changed.start.saturating_sub(CONTEXT);
        if start > 0 && text[start - 1] != ' ' {
            let word = text[..start]
                .iter()
                .rposition(is_space)
                .map_or(0, |s| s + 1);
            if start - word <= WORD {
                start = word;
            } else if let Some(space) = text[start..changed.start].iter().position(is_space)
                && start + space + 1 < changed.start
            {
                start += space + 1;
            }
        }
        let mut end = (changed.end + CONTEXT).min(text.len());
        if end < text.len() && text[end] != ' ' {
            let word = text[end..]
                .iter()
                .position(is_space)
                .map_or(text.len(), |s| end + s);
            if word - end <= WORD {
                end = word;
            } else if let Some(space) = text[changed.end..end].iter().rposition(is_space)
                && space > 0
            {
                end = changed.end + space;
            }
        }
        let room = QUOTE_WIDTH - 2;
        let mut out = String::new();
        if start > 0 {
            out.push('…');
        }
        if end - start > room {
            out.extend(&text[start..start + room]);
            out.push('…');
        } else {
            out.extend(&text[start..end]);
            if end < text.len() {
                out.push('…');
            }
        }
        out
    };
    (part(&old), part(&new))
}

fn describe_env(old: &[String], new: &[String]) -> String {
    let parse = |env: &[String]| -> BTreeMap<String, String> {
        env.iter()
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (e.clone(), String::new()),
            })
            .collect()
    };
    let (old, new) = (parse(old), parse(new));
    let mut changes = Vec::new();
    for (key, value) in &new {
        match old.get(key) {
            Some(previous) if previous != value => {
                changes.push(format!(
                    "`{key}` changed ({} → {})",
                    shorten(previous),
                    shorten(value)
                ));
            }
            None => changes.push(format!("`{key}` was added ({})", shorten(value))),
            _ => {}
        }
    }
    for key in old.keys().filter(|k| !new.contains_key(*k)) {
        changes.push(format!("`{key}` was removed"));
    }
    if changes.is_empty() {
        return "its environment changed order".to_owned();
    }
    format!("build arg or env {}", list(changes))
}

fn describe_files(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> String {
    let mut changes = Vec::new();
    for (path, value) in new {
        match old.get(path) {
            Some(previous) if previous != value => changes.push(format!("`{path}` changed")),
            None => changes.push(format!("`{path}` was added")),
            _ => {}
        }
    }
    for path in old.keys().filter(|p| !new.contains_key(*p)) {
        changes.push(format!("`{path}` was removed"));
    }
    if changes.is_empty() {
        return "the files it reads changed".to_owned();
    }
    list(changes)
}

/// "a", "a and b", "a, b and 3 more".
fn list(mut items: Vec<String>) -> String {
    match items.len() {
        0 => String::new(),
        1 => items.remove(0),
        2 => format!("{} and {}", items[0], items[1]),
        n if n <= 4 => {
            let last = items.pop().unwrap_or_default();
            format!("{} and {last}", items.join(", "))
        }
        n => format!("{}, {} and {} more", items[0], items[1], n - 2),
    }
}

fn shorten(text: &str) -> String {
    if text.chars().count() > 60 {
        format!("{}…", text.chars().take(59).collect::<String>())
    } else {
        text.to_owned()
    }
}

/// The base image is named by IMAGE ID, as `rbuild images` shows it and `inspect` takes
/// it, not by manifest: one image can be stored under several manifests (its layers
/// compressed or not), and the manifest digest is nowhere the user looks.
fn base_moved(old_base: &str, new_base: &str, old: &Trace, new: &Trace) -> String {
    let id = |id: &Option<String>| {
        id.as_deref()
            .and_then(|id| id.parse::<rbuild_store::Digest>().ok())
            .map(|id| id.short().to_owned())
    };
    match (id(&old.base_id), id(&new.base_id)) {
        (Some(old_id), Some(new_id)) if old_id == new_id => {
            format!("the base image is the same (IMAGE ID {new_id}) under another manifest")
        }
        (Some(old_id), Some(new_id)) => {
            format!("the base image moved (IMAGE ID {old_id} → {new_id})")
        }
        // The previous build was recorded by an rbuild that kept only the manifest.
        (None, Some(new_id)) => format!("the base image moved (now IMAGE ID {new_id})"),
        _ => format!(
            "the base image moved (manifest {} → {})",
            short_digest(old_base),
            short_digest(new_base)
        ),
    }
}

fn short_digest(digest: &str) -> String {
    match digest.strip_prefix("sha256:") {
        Some(hex) if hex.len() > 12 => format!("sha256:{}", &hex[..12]),
        _ => digest.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace() -> Trace {
        Trace {
            description: "RUN make".into(),
            digest: "d".into(),
            inputs: vec![("COPY . /src".into(), "k1".into())],
            env: vec!["PATH=/bin".into(), "VERSION=1".into()],
            ..Default::default()
        }
    }

    fn why(old: &Trace, new: &Trace, causes: &HashMap<String, Cause>) -> String {
        explain(5, old, new, causes, Vec::new).message(5)
    }

    #[test]
    fn names_the_first_difference() {
        let old = trace();
        let mut new = trace();
        new.env = vec!["PATH=/bin".into(), "VERSION=2".into(), "DEBUG=1".into()];
        assert_eq!(
            why(&old, &new, &HashMap::new()),
            "build arg or env `DEBUG` was added (1) and `VERSION` changed (1 → 2)"
        );
        let mut new = trace();
        new.inputs[0].1 = "k2".into();
        let cause = Cause {
            step: 2,
            description: "COPY . /src".into(),
            reason: "`src/main.c` changed".into(),
        };
        let causes = HashMap::from([("k2".to_owned(), cause)]);
        assert_eq!(
            why(&old, &new, &causes),
            "it builds on step 2 (`COPY . /src`), which changed: `src/main.c` changed"
        );
        assert_eq!(
            why(&old, &new, &HashMap::new()),
            "the step it builds on (`COPY . /src`) changed"
        );
        let mut new = trace();
        new.description = "RUN make -j".into();
        assert_eq!(
            why(&old, &new, &HashMap::new()),
            "the instruction changed (it was `RUN make`)"
        );
        assert_eq!(
            why(&old, &trace(), &HashMap::new()),
            "its cache record is gone (pruned, or its layer was removed)"
        );
    }

    /// A step that read the context, under a changed step: the previous build's trace comes
    /// from disk, without the contexts' checksums this build's has; the step names only the
    /// change it builds on (it said its cache record was gone, and its users repeated it).
    #[test]
    fn a_copy_under_a_changed_step_names_only_that_change() {
        let files = BTreeMap::from([("a.txt".to_owned(), "644 2 abc".to_owned())]);
        let old = Trace {
            description: "COPY a.txt /a".into(),
            files: files.clone(),
            ..trace()
        };
        let mut new = Trace {
            contexts: BTreeMap::from([(String::new(), "sha256:ctx".to_owned())]),
            ..old.clone()
        };
        new.inputs[0].1 = "k2".into();
        let cause = Cause {
            step: 2,
            description: "RUN echo v2 > /v".into(),
            reason: "the instruction changed (it was `RUN echo v1 > /v`)".into(),
        };
        let causes = HashMap::from([("k2".to_owned(), cause)]);
        assert_eq!(
            why(&old, &new, &causes),
            "it builds on step 2 (`RUN echo v2 > /v`), which changed: the instruction changed (it was `RUN echo v1 > /v`)"
        );
    }

    /// A step after a reused `COPY --link` whose base changed: its input kept its key, its
    /// definition did not; the change is the one under the `--link` copy.
    #[test]
    fn a_step_after_a_reused_link_copy_names_the_change_under_it() {
        let cause = Cause {
            step: 2,
            description: "RUN echo v2 > /v".into(),
            reason: "the instruction changed (it was `RUN echo v1 > /v`)".into(),
        };
        let causes = HashMap::from([("k2".to_owned(), cause)]);
        // The keys under step 5: the `--link` copy's (kept), then the changed step's.
        let ancestors = ["k4".to_owned(), "k2".to_owned()];
        let old = Trace {
            description: "RUN echo x > /x".into(),
            digest: "d1".into(),
            inputs: vec![("COPY --link docs /docs".into(), "k4".into())],
            ..Default::default()
        };
        let new = Trace {
            digest: "d2".into(),
            ..old.clone()
        };
        assert_eq!(
            explain(5, &old, &new, &causes, || ancestors.to_vec()).message(5),
            "it builds on step 2 (`RUN echo v2 > /v`), which changed: the instruction changed (it was `RUN echo v1 > /v`)"
        );
        // With nothing changed further up, the definition is all there is to say.
        assert_eq!(
            explain(5, &old, &new, &HashMap::new(), || ancestors.to_vec()).message(5),
            "its definition changed"
        );
    }

    #[test]
    fn changed_settings_say_what_went_and_what_came() {
        let with = |other: &[&str]| Trace {
            other: other.iter().map(|o| o.to_string()).collect(),
            ..trace()
        };
        let epoch = with(&["network host", "SOURCE_DATE_EPOCH=1700000000"]);
        let plain = with(&["network host"]);
        assert_eq!(
            why(&epoch, &plain, &HashMap::new()),
            "its settings changed (no longer SOURCE_DATE_EPOCH=1700000000)"
        );
        assert_eq!(
            why(&plain, &epoch, &HashMap::new()),
            "its settings changed (now SOURCE_DATE_EPOCH=1700000000)"
        );
        assert_eq!(
            why(
                &with(&["network host"]),
                &with(&["network none"]),
                &HashMap::new()
            ),
            "its settings changed (network host → network none)"
        );
    }

    #[test]
    fn a_long_instruction_is_quoted_around_its_change() {
        let install = |packages: &str| Trace {
            description: format!(
                "RUN apt-get update && apt-get install -y --no-install-recommends {packages} && rm -rf /var/lib/apt/lists/*"
            ),
            ..trace()
        };
        let old = install("ca-certificates curl python3");
        let new = install("ca-certificates curl python3-pip");
        assert_eq!(
            why(&old, &new, &HashMap::new()),
            "the instruction changed (it was `…curl python3 && rm -rf…`, now \
             `…curl python3-pip && rm -rf…`)"
        );
        // A change at the start shows no `…` before it.
        let new = Trace {
            description: old
                .description
                .replacen("RUN apt-get update", "RUN apt update", 1),
            ..trace()
        };
        assert_eq!(
            why(&old, &new, &HashMap::new()),
            "the instruction changed (it was `RUN apt-get update && apt-get…`, now \
             `RUN apt update && apt-get…`)"
        );
        // A long change shows its start, within the width.
        let new = install(&"libfoo-dev ".repeat(12));
        let message = why(&old, &new, &HashMap::new());
        let quoted: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
        assert_eq!(
            quoted,
            [
                "…--no-install-recommends ca-certificates curl python3 && rm…",
                "…--no-install-recommends libfoo-dev libfoo-dev libfoo-dev l…"
            ]
        );
        assert!(quoted.iter().all(|q| q.chars().count() <= QUOTE_WIDTH));
    }

    #[test]
    fn a_moved_base_is_named_by_image_id() {
        let manifest = |n: u8| format!("sha256:{}", format!("{n:x}").repeat(64));
        let id = |n: u8| Some(format!("sha256:{}", format!("{:x}", n + 10).repeat(64)));
        let old = Trace {
            description: "FROM base".into(),
            base: Some(manifest(1)),
            base_id: id(1),
            ..Default::default()
        };
        let new = Trace {
            base: Some(manifest(2)),
            base_id: id(2),
            ..old.clone()
        };
        assert_eq!(
            why(&old, &new, &HashMap::new()),
            "the base image moved (IMAGE ID bbbbbbbbbbbb → cccccccccccc)"
        );
        let copy = Trace {
            base: Some(manifest(2)),
            ..old.clone()
        };
        assert_eq!(
            why(&old, &copy, &HashMap::new()),
            "the base image is the same (IMAGE ID bbbbbbbbbbbb) under another manifest"
        );
        let recorded_without_id = Trace {
            base_id: None,
            ..old.clone()
        };
        assert_eq!(
            why(&recorded_without_id, &new, &HashMap::new()),
            "the base image moved (now IMAGE ID cccccccccccc)"
        );
    }

    #[test]
    fn file_changes_are_listed() {
        let old = BTreeMap::from([
            ("a".to_owned(), "644 1 x".to_owned()),
            ("b".to_owned(), "644 1 y".to_owned()),
        ]);
        let new = BTreeMap::from([
            ("a".to_owned(), "644 1 z".to_owned()),
            ("c".to_owned(), "644 1 y".to_owned()),
        ]);
        assert_eq!(
            describe_files(&old, &new),
            "`a` changed, `c` was added and `b` was removed"
        );
    }
}
