//! SLSA v1 provenance in an in-toto v1 statement: what the image was made from and how,
//! enough to build it again (`rbuild verify-build`) and compare digests.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Invocation, Material, ProvenanceMode};
use crate::solve::BuildOptions;

pub use rbuild_store::attestations::PREDICATE_SLSA_PROVENANCE_V1;
const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";
/// What rbuild's `buildDefinition` means: a Dockerfile built by rbuild (docs/provenance.md).
const BUILD_TYPE: &str = "urn:rbuild:build-type:dockerfile:v1";
/// The builder: rbuild on the machine that ran it (no hosted service vouches for it).
const BUILDER_ID: &str = "urn:rbuild:builder:local";

/// What one image's provenance is made from.
pub(crate) struct ProvenanceInput<'a> {
    pub mode: ProvenanceMode,
    pub opts: &'a BuildOptions,
    pub invocation: &'a Invocation,
    pub platform: &'a rbuild_frontend::Platform,
    /// The image manifest the statement is about.
    pub subject: &'a rbuild_store::Digest,
    pub materials: Vec<Material>,
    /// When the build started and finished (Unix seconds), recorded in `mode=max` only.
    pub started: i64,
    pub finished: i64,
}

/// The statement's JSON bytes (canonical: keys sorted, no spaces).
pub(crate) fn statement(input: &ProvenanceInput) -> Vec<u8> {
    let opts = input.opts;
    let mut config_source = json!({
        "path": input.invocation.dockerfile_path,
        "digest": {"sha256": rbuild_store::Digest::of(opts.dockerfile.as_bytes()).hex()},
    });
    if let Some(git) = &input.invocation.git {
        config_source["uri"] = json!(format!("{}@{}", git.remote, git.commit));
        if let Some(subdir) = &git.subdir {
            config_source["subdir"] = json!(subdir);
        }
    }
    let request = request(input);
    let mut internal = json!({
        "builderPlatform": rbuild_registry::platform_string(&rbuild_registry::host_platform()),
        "reproducible": opts.source_date_epoch.is_some(),
    });
    if let Some(epoch) = opts.source_date_epoch {
        internal["sourceDateEpoch"] = json!(epoch);
    }
    let mut metadata = json!({});
    if input.mode == ProvenanceMode::Max {
        internal["dockerfile"] = json!(opts.dockerfile);
        metadata["startedOn"] = json!(rbuild_store::time::rfc3339(input.started));
        metadata["finishedOn"] = json!(rbuild_store::time::rfc3339(input.finished));
    }
    let statement = json!({
        "_type": STATEMENT_V1,
        "subject": subjects(opts, input.platform, input.subject),
        "predicateType": PREDICATE_SLSA_PROVENANCE_V1,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "configSource": config_source,
                    "request": request,
                },
                "internalParameters": internal,
                "resolvedDependencies": input.materials,
            },
            "runDetails": {
                "builder": {
                    "id": BUILDER_ID,
                    "version": {"rbuild": input.invocation.builder_version},
                },
                "metadata": metadata,
            },
        },
    });
    rbuild_store::oci::canonical_json(&statement)
}

/// How the build was asked for: its arguments as BuildKit's frontend records them (build
/// arguments' values in `mode=max` only, their names in `mode=min`), and in `mode=max` the
/// ids of its secrets and SSH agents (never a value).
fn request(input: &ProvenanceInput) -> Value {
    let opts = input.opts;
    let mut args = BTreeMap::new();
    if let Some(target) = &opts.target {
        args.insert("target".to_owned(), json!(target));
    }
    args.insert("platform".to_owned(), json!(input.platform.to_string()));
    for (key, value) in &opts.labels {
        args.insert(format!("label:{key}"), json!(value));
    }
    for annotation in &opts.annotations {
        args.insert(
            format!("annotation:{}", annotation_prefix(annotation)),
            json!(annotation.value),
        );
    }
    let mut names = Vec::new();
    for (key, value) in &opts.build_args {
        if key == "SOURCE_DATE_EPOCH" {
            continue;
        }
        match input.mode {
            ProvenanceMode::Max => {
                args.insert(format!("build-arg:{key}"), json!(value));
            }
            ProvenanceMode::Min => names.push(key.clone()),
        }
    }
    for name in opts.named_contexts.keys() {
        args.insert(format!("context:{name}"), json!("local"));
    }
    let mut request = json!({"frontend": "dockerfile.v0", "args": args});
    if !names.is_empty() {
        request["buildArgNames"] = json!(names);
    }
    if input.mode == ProvenanceMode::Max {
        let secrets: Vec<&String> = opts.secrets.keys().collect();
        let ssh: Vec<&String> = opts.ssh.keys().collect();
        if !secrets.is_empty() {
            request["secrets"] = json!(secrets);
        }
        if !ssh.is_empty() {
            request["ssh"] = json!(ssh);
        }
    }
    request
}

/// The statement's subjects: the image under each of its names, as BuildKit names them
/// (`pkg:docker/NAME@TAG?platform=…`), or `_` for an image without a name.
fn subjects(
    opts: &BuildOptions,
    platform: &rbuild_frontend::Platform,
    digest: &rbuild_store::Digest,
) -> Value {
    let digest = json!({"sha256": digest.hex()});
    let names: Vec<String> = if opts.tags.is_empty() {
        vec!["_".to_owned()]
    } else {
        opts.tags
            .iter()
            .map(|tag| super::materials::docker_purl(&tag.to_string(), platform))
            .collect()
    };
    Value::Array(
        names
            .into_iter()
            .map(|name| json!({"name": name, "digest": digest}))
            .collect(),
    )
}

/// An annotation's `--annotation` prefix, so that the record reads as the flag did.
fn annotation_prefix(annotation: &super::Annotation) -> String {
    use super::AnnotationLevel::*;
    let levels: Vec<&str> = annotation
        .levels
        .iter()
        .map(|level| match level {
            Manifest => "manifest",
            Index => "index",
            ManifestDescriptor => "manifest-descriptor",
        })
        .collect();
    let platform = annotation
        .platform
        .as_ref()
        .map(|p| format!("[{p}]"))
        .unwrap_or_default();
    format!("{}{platform}:{}", levels.join(","), annotation.key)
}

/// A provenance statement as rbuild reads it back: what a rebuild needs.
#[derive(Debug, Clone)]
pub struct Provenance {
    /// The image manifest it is about (`sha256:…`).
    pub subject: String,
    pub dockerfile_path: String,
    /// The Dockerfile's sha256, hex.
    pub dockerfile_sha256: String,
    /// The Dockerfile's text (`mode=max`).
    pub dockerfile: Option<String>,
    pub target: Option<String>,
    pub platform: String,
    /// Build arguments with their values (`mode=max`).
    pub build_args: BTreeMap<String, String>,
    /// Build arguments given whose values were not recorded (`mode=min`).
    pub build_arg_names: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// `--annotation`s as given.
    pub annotations: Vec<String>,
    pub named_contexts: Vec<String>,
    pub source_date_epoch: Option<i64>,
    /// The git context, `remote@commit`, and its sub-directory.
    pub git_context: Option<(String, Option<String>)>,
    pub materials: Vec<(String, BTreeMap<String, String>)>,
    pub builder_version: Option<String>,
}

#[derive(Deserialize, Serialize)]
struct Statement {
    #[serde(rename = "predicateType")]
    predicate_type: String,
    subject: Vec<Subject>,
    predicate: Value,
}

#[derive(Deserialize, Serialize)]
struct Subject {
    #[serde(default)]
    digest: BTreeMap<String, String>,
}

impl Provenance {
    /// Reads a statement rbuild wrote; the error says what is missing.
    // Long: a flat list of fields read, each with its own message.
    pub fn parse(bytes: &[u8]) -> Result<Provenance, String> {
        let statement: Statement = serde_json::from_slice(bytes)
            .map_err(|err| format!("not an in-toto statement: {err}"))?;
        if statement.predicate_type != PREDICATE_SLSA_PROVENANCE_V1 {
            return Err(format!(
                "its predicate is `{}`, not SLSA provenance v1",
                statement.predicate_type
            ));
        }
        let subject = statement
            .subject
            .first()
            .and_then(|s| s.digest.iter().next())
            .map(|(algorithm, hex)| format!("{algorithm}:{hex}"))
            .ok_or("it names no subject")?;
        let definition = &statement.predicate["buildDefinition"];
        if definition["buildType"] != BUILD_TYPE {
            return Err(format!(
                "its build type is {}, not rbuild's",
                definition["buildType"]
            ));
        }
        let external = &definition["externalParameters"];
        let internal = &definition["internalParameters"];
        let source = &external["configSource"];
        let text = |value: &Value| value.as_str().map(str::to_owned);
        let args = external["request"]["args"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let mut provenance = Provenance {
            subject,
            dockerfile_path: text(&source["path"]).ok_or("it names no Dockerfile")?,
            dockerfile_sha256: text(&source["digest"]["sha256"])
                .ok_or("it has no digest of the Dockerfile")?,
            dockerfile: text(&internal["dockerfile"]),
            target: None,
            platform: String::new(),
            build_args: BTreeMap::new(),
            build_arg_names: external["request"]["buildArgNames"]
                .as_array()
                .map(|names| names.iter().filter_map(text).collect())
                .unwrap_or_default(),
            labels: BTreeMap::new(),
            annotations: Vec::new(),
            named_contexts: Vec::new(),
            source_date_epoch: internal["sourceDateEpoch"].as_i64(),
            git_context: text(&source["uri"]).map(|uri| (uri, text(&source["subdir"]))),
            materials: definition["resolvedDependencies"]
                .as_array()
                .map(|list| {
                    list.iter()
                        .filter_map(|m| {
                            let digest = serde_json::from_value(m["digest"].clone()).ok()?;
                            Some((text(&m["uri"])?, digest))
                        })
                        .collect()
                })
                .unwrap_or_default(),
            builder_version: text(
                &statement.predicate["runDetails"]["builder"]["version"]["rbuild"],
            ),
        };
        for (key, value) in args {
            let Some(value) = text(&value) else { continue };
            if key == "target" {
                provenance.target = Some(value);
            } else if key == "platform" {
                provenance.platform = value;
            } else if let Some(name) = key.strip_prefix("build-arg:") {
                provenance.build_args.insert(name.to_owned(), value);
            } else if let Some(name) = key.strip_prefix("label:") {
                provenance.labels.insert(name.to_owned(), value);
            } else if let Some(flag) = key.strip_prefix("annotation:") {
                provenance.annotations.push(format!("{flag}={value}"));
            } else if let Some(name) = key.strip_prefix("context:") {
                provenance.named_contexts.push(name.to_owned());
            }
        }
        Ok(provenance)
    }
}
