//! What an image was made from, for its provenance: the base images, the context files,
//! the URLs and git commits that the ops behind the image read, each by digest. Taken
//! from the traces the cache keys were computed from, so they are exactly what decided
//! the image.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rbuild_frontend::{BuildGraph, CopySource, ExecMount, MountSource, OpId, OpKind};
use serde::Serialize;

use crate::explain::Trace;

/// One input of the build, as SLSA's `ResourceDescriptor`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub(crate) struct Material {
    pub uri: String,
    pub digest: BTreeMap<String, String>,
}

/// The materials of the image whose root is `root`: each op it depends on, followed
/// through every input.
pub(crate) fn materials(
    graph: &BuildGraph,
    root: OpId,
    traces: &HashMap<OpId, Trace>,
    git_context: Option<&super::GitOrigin>,
) -> Vec<Material> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![root];
    // Files read from each local context, by context name ("" for the main one).
    let mut contexts: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut found = BTreeSet::new();
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        let op = graph.op(id);
        stack.extend(op.kind.inputs());
        let Some(trace) = traces.get(&id) else {
            continue;
        };
        match &op.kind {
            OpKind::Image { reference } => {
                if let Some(digest) = trace.base.as_deref().and_then(split_digest) {
                    found.insert(Material {
                        uri: docker_purl(reference, &op.platform),
                        digest: digest_set(digest),
                    });
                }
            }
            OpKind::Copy(copy) => {
                if let (CopySource::Git(git), Some((_, commit))) = (&copy.source, &trace.git) {
                    found.insert(Material {
                        uri: git.display(),
                        digest: BTreeMap::from([("gitCommit".to_owned(), commit.clone())]),
                    });
                }
                let context = match &copy.source {
                    CopySource::Named(name) => name.clone(),
                    _ => String::new(),
                };
                for (path, value) in &trace.files {
                    if rbuild_frontend::CopyOp::is_url(path) {
                        if let Some(digest) = split_digest(value) {
                            found.insert(Material {
                                uri: path.clone(),
                                digest: digest_set(digest),
                            });
                        }
                    } else {
                        contexts
                            .entry(context.clone())
                            .or_default()
                            .insert(path.clone(), value.clone());
                    }
                }
            }
            OpKind::Exec(exec) if !trace.files.is_empty() => {
                // Bind mounts of a context: named by the first such mount's context.
                let context = exec
                    .mounts
                    .iter()
                    .find_map(|mount| match mount {
                        ExecMount::Bind(bind) => match &bind.source {
                            MountSource::Context => Some(String::new()),
                            MountSource::Named(name) => Some(name.clone()),
                            MountSource::Op(_) => None,
                        },
                        _ => None,
                    })
                    .unwrap_or_default();
                contexts
                    .entry(context)
                    .or_default()
                    .extend(trace.files.clone());
            }
            _ => {}
        }
    }
    for (name, files) in contexts {
        let mut text = String::new();
        for (path, value) in &files {
            text.push_str(&format!("{path}\t{value}\n"));
        }
        let uri = match (name.as_str(), git_context) {
            ("", Some(git)) => format!("{}@{}", git.remote, git.commit),
            ("", None) => "context".to_owned(),
            (name, _) => format!("context:{name}"),
        };
        found.insert(Material {
            uri,
            digest: BTreeMap::from([("sha256".to_owned(), super::sha256_hex(text.as_bytes()))]),
        });
    }
    found.into_iter().collect()
}

/// `busybox:1.36` for linux/amd64 as `pkg:docker/busybox@1.36?platform=linux%2Famd64`.
fn docker_purl(reference: &str, platform: &rbuild_frontend::Platform) -> String {
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
