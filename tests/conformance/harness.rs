//! What every conformance case does: write a context, build it with the `rbuild` binary,
//! and read back what a user of the image would see (its files with their owners and
//! modes, its config and history) without starting a sandbox.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};

pub use crate::support::{TestEnv, assert_failure, assert_success, flat, stderr, stdout};

/// One test's store and its contexts.
pub struct Case {
    pub env: TestEnv,
}

/// Numbers the contexts and outputs of one test, so that several builds in a test never
/// share a directory by accident.
static NEXT: AtomicUsize = AtomicUsize::new(0);

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

impl Case {
    /// A store with `busybox:latest` loaded: for cases with RUN or a busybox base.
    pub fn busybox() -> Case {
        Case {
            env: TestEnv::with_busybox(),
        }
    }

    /// An empty store: for `FROM scratch` cases, which need no base image (cheaper).
    pub fn scratch() -> Case {
        Case {
            env: TestEnv::new(),
        }
    }

    /// A new context directory holding `Dockerfile` and `files` (path → content).
    pub fn context(&self, dockerfile: &str, files: &[(&str, &str)]) -> PathBuf {
        let mut all = vec![("Dockerfile", dockerfile)];
        all.extend_from_slice(files);
        self.env.context(&unique("ctx"), &all)
    }

    /// `rbuild build --progress plain -t tag [args] ctx`.
    pub fn build(&self, ctx: &Path, tag: &str, args: &[&str]) -> Output {
        let mut all = vec!["build", "--progress", "plain", "-t", tag];
        all.extend_from_slice(args);
        all.push(ctx.to_str().expect("utf-8 temp path"));
        self.env.rbuild(&all)
    }

    /// Builds `ctx` (it must succeed) and returns the image's filesystem.
    #[track_caller]
    pub fn tree(&self, ctx: &Path, args: &[&str]) -> Tree {
        let tar = self.env.path(&format!("{}.tar", unique("rootfs")));
        let output = format!("type=tar,dest={}", tar.display());
        let mut all = vec!["-o", output.as_str()];
        all.extend_from_slice(args);
        let out = self.build(ctx, "conformance:latest", &all);
        assert_success(&out);
        Tree::read(&tar)
    }

    /// Builds a context of `dockerfile` and `files` and returns the image's filesystem.
    #[track_caller]
    pub fn tree_of(&self, dockerfile: &str, files: &[(&str, &str)], args: &[&str]) -> Tree {
        let ctx = self.context(dockerfile, files);
        self.tree(&ctx, args)
    }

    /// Builds a context of `dockerfile` and `files`, which must fail; returns the error
    /// text as words separated by single spaces (line wrapping removed).
    #[track_caller]
    pub fn failure(&self, dockerfile: &str, files: &[(&str, &str)], args: &[&str]) -> String {
        let ctx = self.context(dockerfile, files);
        let out = self.build(&ctx, "conformance:failed", args);
        assert_failure(&out);
        flat(&stderr(&out))
    }

    /// Builds a context of `dockerfile` and `files` as `tag`; it must succeed.
    #[track_caller]
    pub fn image(&self, tag: &str, dockerfile: &str, files: &[(&str, &str)], args: &[&str]) {
        let ctx = self.context(dockerfile, files);
        assert_success(&self.build(&ctx, tag, args));
    }

    /// The OCI config of `image` (`rbuild inspect`).
    #[track_caller]
    pub fn config(&self, image: &str) -> serde_json::Value {
        let out = self.env.rbuild(&["inspect", image]);
        assert_success(&out);
        serde_json::from_slice(&out.stdout).expect("inspect prints JSON")
    }
}

/// One entry of an image's filesystem.
#[derive(Debug, Clone)]
pub struct Node {
    /// `f` file, `d` directory, `l` symlink, `h` hardlink, `o` other.
    pub kind: char,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub data: Vec<u8>,
    pub link: String,
}

/// An image's filesystem as `-o type=tar` writes it, by path without a leading `/`.
pub struct Tree {
    pub nodes: BTreeMap<String, Node>,
}

impl Tree {
    fn read(tar: &Path) -> Tree {
        let file = std::fs::File::open(tar).expect("the build wrote its tar output");
        let mut archive = tar::Archive::new(file);
        let mut nodes = BTreeMap::new();
        for entry in archive.entries().expect("tar") {
            let mut entry = entry.expect("tar entry");
            let header = entry.header().clone();
            let path = entry.path().expect("path").to_string_lossy().into_owned();
            let path = path
                .trim_start_matches("./")
                .trim_start_matches('/')
                .trim_end_matches('/')
                .to_owned();
            let kind = match header.entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => 'f',
                tar::EntryType::Directory => 'd',
                tar::EntryType::Symlink => 'l',
                tar::EntryType::Link => 'h',
                _ => 'o',
            };
            let link = entry
                .link_name()
                .ok()
                .flatten()
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).expect("tar data");
            nodes.insert(
                path,
                Node {
                    kind,
                    mode: header.mode().expect("mode") & 0o7777,
                    uid: header.uid().expect("uid"),
                    gid: header.gid().expect("gid"),
                    data,
                    link,
                },
            );
        }
        Tree { nodes }
    }

    /// The entry at `path` (leading `/` optional); fails listing what is there.
    #[track_caller]
    pub fn node(&self, path: &str) -> &Node {
        let key = path.trim_start_matches('/').trim_end_matches('/');
        self.nodes.get(key).unwrap_or_else(|| {
            panic!(
                "`{path}` is not in the image; it has: {:?}",
                self.nodes
                    .keys()
                    .filter(|k| !k.starts_with("bin/"))
                    .collect::<Vec<_>>()
            )
        })
    }

    pub fn has(&self, path: &str) -> bool {
        self.nodes
            .contains_key(path.trim_start_matches('/').trim_end_matches('/'))
    }

    /// The content of the file at `path`, following a hardlink to its target.
    #[track_caller]
    pub fn text(&self, path: &str) -> String {
        let mut node = self.node(path);
        if node.kind == 'h' {
            node = self.node(&node.link.clone());
        }
        assert!(
            node.kind == 'f',
            "`{path}` is a `{}`, not a file",
            node.kind
        );
        String::from_utf8_lossy(&node.data).into_owned()
    }

    /// `uid:gid` of `path`.
    #[track_caller]
    pub fn owner(&self, path: &str) -> String {
        let node = self.node(path);
        format!("{}:{}", node.uid, node.gid)
    }

    /// The permission bits of `path` as four octal digits, as `stat -c %04a` prints them.
    #[track_caller]
    pub fn mode(&self, path: &str) -> String {
        format!("{:04o}", self.node(path).mode)
    }

    /// The paths under `dir` (one level), sorted.
    pub fn children(&self, dir: &str) -> Vec<String> {
        let dir = dir.trim_start_matches('/').trim_end_matches('/');
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        self.nodes
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix))
            .filter(|rest| !rest.is_empty() && !rest.contains('/'))
            .map(str::to_owned)
            .collect()
    }
}

pub use crate::support::tar_header;

/// A tar of `entries` (a path ending in `/` is a directory, mode 0755; files are 0644), for
/// contexts that hold archives.
pub fn tar_of(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, content) in entries {
        if let Some(dir) = path.strip_suffix('/') {
            let mut header = tar_header(tar::EntryType::Directory, 0o755, 0);
            builder
                .append_data(&mut header, dir, std::io::empty())
                .expect("tar dir");
        } else {
            let mut header = tar_header(tar::EntryType::Regular, 0o644, content.len() as u64);
            builder
                .append_data(&mut header, path, content.as_bytes())
                .expect("tar file");
        }
    }
    builder.into_inner().expect("tar")
}
