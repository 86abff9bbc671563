//! What an image was made from, for its provenance: the base images, the context files,
//! the URLs and git commits that the ops behind the image read, each by digest. Taken
//! from what the cache keys were computed from, so they are exactly what decided the
//! image.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rbuild_frontend::{BuildGraph, CopySource, OpId, OpKind};
use serde::Serialize;

use crate::explain::Trace;

/// One input of the build, as SLSA's `ResourceDescriptor`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub(crate) struct Material {
    pub uri: String,
    pub digest: BTreeMap<String, String>,
}

/// What one op read, kept from its trace (small: a checksum per context, not its files).
#[derive(Debug, Clone, Default)]
pub(crate) struct OpInputs {
    /// An image op: the manifest it resolved to.
    base: Option<String>,
    /// ADD of a git source: the commit.
    git_commit: Option<String>,
    /// ADD of URLs: each with its content's digest.
    urls: Vec<(String, String)>,
    /// Each local context read (`""` for the build context), with its checksum.
    contexts: BTreeMap<String, String>,
}

impl OpInputs {
    pub(crate) fn of(trace: &Trace) -> OpInputs {
        OpInputs {
            base: trace.base.clone(),
            git_commit: trace.git.as_ref().map(|(_, commit)| commit.clone()),
            urls: trace
                .files
                .iter()
                .filter(|(path, _)| rbuild_frontend::CopyOp::is_url(path))
                .map(|(url, digest)| (url.clone(), digest.clone()))
                .collect(),
            contexts: trace.contexts.clone(),
        }
    }
}

/// The materials of the image whose root is `root`: each op it depends on, followed
/// through every input. A local context is one material whose digest covers the checksums
/// of what each op read from it (paths, modes, sizes, contents; see `context`).
pub(crate) fn materials(
    graph: &BuildGraph,
    root: OpId,
    inputs: &HashMap<OpId, OpInputs>,
    git_context: Option<&super::GitOrigin>,
) -> Vec<Material> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![root];
    // What each local context gave the ops, by context name ("" for the main one).
    let mut contexts: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut found = BTreeSet::new();
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        let op = graph.op(id);
        stack.extend(op.kind.inputs());
        let Some(read) = inputs.get(&id) else {
            continue;
        };
        match &op.kind {
            OpKind::Image { reference } => {
                if let Some(digest) = read.base.as_deref().and_then(split_digest) {
                    found.insert(Material {
                        uri: docker_purl(reference, &op.platform),
                        digest: digest_set(digest),
                    });
                }
            }
            OpKind::Copy(copy) => {
                if let (CopySource::Git(git), Some(commit)) = (&copy.source, &read.git_commit) {
                    found.insert(Material {
                        uri: git.display(),
                        digest: BTreeMap::from([("gitCommit".to_owned(), commit.clone())]),
                    });
                }
            }
            _ => {}
        }
        for (url, digest) in &read.urls {
            if let Some(digest) = split_digest(digest) {
                found.insert(Material {
                    uri: url.clone(),
                    digest: digest_set(digest),
                });
            }
        }
        for (name, checksum) in &read.contexts {
            contexts
                .entry(name.clone())
                .or_default()
                .insert(checksum.clone());
        }
    }
    for (name, checksums) in contexts {
        let text: String = checksums.iter().map(|c| format!("{c}\n")).collect();
        let uri = match (name.as_str(), git_context) {
            ("", Some(git)) => format!("{}@{}", git.remote, git.commit),
            ("", None) => "context".to_owned(),
            (name, _) => format!("context:{name}"),
        };
        found.insert(Material {
            uri,
            digest: BTreeMap::from([(
                "sha256".to_owned(),
                rbuild_store::Digest::of(text.as_bytes()).hex().to_owned(),
            )]),
        });
    }
    found.into_iter().collect()
}

/// `busybox:1.36` for linux/amd64 as `pkg:docker/busybox@1.36?platform=linux%2Famd64`.
pub(super) fn docker_purl(reference: &str, platform: &rbuild_frontend::Platform) -> String {
    let (name, version) = match reference.split_once('@') {
        Some((name, digest)) => (name.to_owned(), digest.to_owned()),
        None => match reference
            .rsplit_once(':')
            .filter(|(_, tag)| !tag.contains('/'))
        {
            Some((name, tag)) => (name.to_owned(), tag.to_owned()),
            None => (reference.to_owned(), "latest".to_owned()),
        },
    };
    let platform = platform.to_string().replace('/', "%2F");
    format!("pkg:docker/{name}@{version}?platform={platform}")
}

/// `sha256:abc…` as (`sha256`, `abc…`).
fn split_digest(text: &str) -> Option<(&str, &str)> {
    text.split_once(':')
        .filter(|(algorithm, hex)| !algorithm.is_empty() && !hex.is_empty())
}

fn digest_set((algorithm, hex): (&str, &str)) -> BTreeMap<String, String> {
    BTreeMap::from([(algorithm.to_owned(), hex.to_owned())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_purls_name_the_tag_or_digest_and_platform() {
        let amd64 = rbuild_frontend::Platform::parse("linux/amd64").unwrap();
        assert_eq!(
            docker_purl("busybox:1.36", &amd64),
            "pkg:docker/busybox@1.36?platform=linux%2Famd64"
        );
        assert_eq!(
            docker_purl("127.0.0.1:5000/base", &amd64),
            "pkg:docker/127.0.0.1:5000/base@latest?platform=linux%2Famd64"
        );
        assert_eq!(
            docker_purl("alpine@sha256:abc", &amd64),
            "pkg:docker/alpine@sha256:abc?platform=linux%2Famd64"
        );
    }
}
