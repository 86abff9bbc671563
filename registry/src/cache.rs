//! The build cache in a registry (`--cache-to type=registry,ref=R`, `--cache-from …`).
//!
//! Format: an OCI image manifest whose config is rbuild's cache config
//! (`application/vnd.rbuild.cache.config.v1+json`) and whose layers are the layer blobs
//! the records name, compressed as for a push:
//!
//! ```json
//! {"records":[{"key":"<cache key>","parent":"<key of the step it ran on>",
//!              "layer":"sha256:<compressed blob>","diffId":"sha256:<uncompressed>",
//!              "description":"RUN make"}],
//!  "mounts":[{"id":"go-build","layer":"sha256:<compressed blob>","diffId":"sha256:…"}],
//!  "version":1}
//! ```
//!
//! `mounts` (with `--cache-to …,mounts=true`) carries the contents of `RUN
//! --mount=type=cache` directories, one layer each: a second machine starts those caches
//! warm instead of empty. The field is optional, so caches without it read as before.
//!
//! A record maps a builder cache key to the layer the step added (or none: a step that
//! only changed metadata). The parent key is informative (what the step ran on); lookups
//! need only the key, since a key already hashes its inputs' keys. Registries store the
//! manifest like any image, garbage-collect nothing it names, and let another machine
//! fetch only the layers it needs, one at a time, when a step hits.

use std::collections::BTreeMap;

use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::client::{Registry, Repo, check_status, read_limited};
use super::error::{RegistryError, Result};
use super::push::Compression;
use rbuild_store::Reference;
use rbuild_store::oci::{self, Descriptor, Manifest};
use rbuild_store::{CachedLayer, Digest, Store};

pub const MEDIA_TYPE_CACHE_CONFIG: &str = "application/vnd.rbuild.cache.config.v1+json";
const CACHE_VERSION: u32 = 1;
/// Cache configs can be much larger than image manifests (one record per step of every
/// stage); BuildKit lost caches silently at 1 MiB. 64 MiB is ~250,000 records.
const MAX_CACHE_CONFIG: u64 = 64 << 20;

/// One step's record, as the builder hands it over for export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheExportRecord {
    pub key: String,
    pub parent: Option<String>,
    pub layer: Option<CachedLayer>,
    pub description: String,
    /// When the step's result was made (Unix seconds).
    pub created: Option<i64>,
}

/// What to export.
#[derive(Debug, Clone, Default)]
pub struct CacheExport {
    pub records: Vec<CacheExportRecord>,
    pub compression: Compression,
    /// Ids of cache mounts whose contents go with the cache (`mounts=true`); ids the
    /// store has no directory for are left out.
    pub mounts: Vec<String>,
    /// What went into each step's cache key (the builder's traces), so a build on another
    /// machine can say why a step missed.
    pub traces: Option<serde_json::Value>,
}

/// A cache mount's contents in a cache: one layer, unpacked into a new cache directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheMountRecord {
    pub id: String,
    /// The (compressed) layer blob, listed in the cache manifest's layers.
    pub layer: Digest,
    pub diff_id: Digest,
}

/// One record of an imported cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheImportRecord {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// The (compressed) layer blob, listed in the cache manifest's layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff_id: Option<Digest>,
    #[serde(default)]
    pub description: String,
    /// When the step's result was made (Unix seconds): the time its image history shows,
    /// so an image rebuilt from the cache on another machine is the same image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct CacheConfig {
    version: u32,
    records: Vec<CacheImportRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    mounts: Vec<CacheMountRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    traces: Option<serde_json::Value>,
}

/// A cache read from a registry: its records by key, and where to fetch their layers.
#[derive(Debug, Clone)]
pub struct CacheImport {
    /// Where the cache came from (its layers are fetched from the same repository).
    pub source: Reference,
    pub records: BTreeMap<String, CacheImportRecord>,
    /// The layer descriptors, by blob digest.
    pub layers: BTreeMap<Digest, Descriptor>,
    /// Cache mount contents by id: the layer and its diff id.
    pub mounts: BTreeMap<String, (Descriptor, Digest)>,
    /// The exporting build's traces, if it sent them.
    pub traces: Option<serde_json::Value>,
}

impl CacheImport {
    /// The record for `key` and its layer's descriptor, if it has a layer.
    pub fn get(&self, key: &str) -> Option<(&CacheImportRecord, Option<CachedLayer>)> {
        let record = self.records.get(key)?;
        let layer = match (&record.layer, &record.diff_id) {
            (Some(blob), Some(diff_id)) => Some(CachedLayer {
                descriptor: self.layers.get(blob)?.clone(),
                diff_id: diff_id.clone(),
            }),
            (None, _) => None,
            (Some(_), None) => return None,
        };
        Some((record, layer))
    }
}

impl Registry {
    /// Pushes `export` as the cache manifest `target`; returns its digest.
    pub async fn push_cache(
        &self,
        store: &Store,
        target: &Reference,
        export: &CacheExport,
    ) -> Result<Digest> {
        // Before any layer is compressed: a registry that is not there costs one request.
        let repo = self.push_endpoint(target).await?;
        let mut layers: Vec<Descriptor> = Vec::new();
        let mut records = Vec::new();
        for record in &export.records {
            let layer = match &record.layer {
                Some(layer) => {
                    let descriptor = if is_uncompressed(&layer.descriptor.media_type) {
                        let store = store.clone();
                        let descriptor = layer.descriptor.clone();
                        let compression = export.compression;
                        tokio::task::spawn_blocking(move || {
                            store.compressed_layer(&descriptor, compression)
                        })
                        .await??
                    } else {
                        layer.descriptor.clone()
                    };
                    if !layers.iter().any(|l| l.digest == descriptor.digest) {
                        layers.push(descriptor.clone());
                    }
                    Some((descriptor.digest, layer.diff_id.clone()))
                }
                None => None,
            };
            records.push(CacheImportRecord {
                key: record.key.clone(),
                parent: record.parent.clone(),
                diff_id: layer.as_ref().map(|(_, d)| d.clone()),
                layer: layer.map(|(l, _)| l),
                description: record.description.clone(),
                created: record.created,
            });
        }
        records.sort_by(|a, b| a.key.cmp(&b.key));
        records.dedup_by(|a, b| a.key == b.key);
        let mut mounts = Vec::new();
        let mut ids = export.mounts.clone();
        ids.sort();
        ids.dedup();
        for id in ids {
            let store = store.clone();
            let compression = export.compression;
            let packed = {
                let id = id.clone();
                tokio::task::spawn_blocking(move || store.cache_mount_layer(&id, compression))
                    .await??
            };
            let Some((descriptor, diff_id)) = packed else {
                continue;
            };
            if !layers.iter().any(|l| l.digest == descriptor.digest) {
                layers.push(descriptor.clone());
            }
            mounts.push(CacheMountRecord {
                id,
                layer: descriptor.digest,
                diff_id,
            });
        }
        let config = oci::canonical_json(&CacheConfig {
            version: CACHE_VERSION,
            records,
            mounts,
            traces: export.traces.clone(),
        });
        let config_digest = {
            let store = store.clone();
            let config = config.clone();
            tokio::task::spawn_blocking(move || store.write_blob(&config)).await??
        };
        let mut manifest = Manifest::new(
            Descriptor::new(MEDIA_TYPE_CACHE_CONFIG, config_digest, config.len() as u64),
            layers.clone(),
        );
        manifest.annotations.insert(
            "dev.rbuild.cache.version".to_owned(),
            CACHE_VERSION.to_string(),
        );
        let bytes = oci::canonical_json(&manifest);
        let mut blobs = vec![manifest.config.clone()];
        blobs.extend(layers);
        let pushed = self
            .push_manifest(
                store,
                &repo,
                target,
                &blobs,
                &bytes,
                oci::MEDIA_TYPE_MANIFEST,
            )
            .await?;
        Ok(pushed.digest)
    }

    /// Reads the cache manifest `source` and its records (no layers: those are fetched by
    /// [`Registry::pull_cache_layer`] when a step hits).
    pub async fn pull_cache(&self, store: &Store, source: &Reference) -> Result<CacheImport> {
        self.on_endpoints(source, |repo| async move {
            self.pull_cache_from(store, &repo, source).await
        })
        .await
    }

    async fn pull_cache_from(
        &self,
        store: &Store,
        repo: &Repo,
        source: &Reference,
    ) -> Result<CacheImport> {
        let fetched = self
            .fetch_manifest(repo, &source.manifest_reference(), source.digest())
            .await?;
        let url = repo.url(&format!("manifests/{}", fetched.digest));
        let manifest: Manifest = serde_json::from_slice(&fetched.bytes).map_err(|err| {
            RegistryError::InvalidManifest {
                url: url.clone(),
                reason: format!("not a cache manifest: {err}"),
            }
        })?;
        if manifest.config.media_type != MEDIA_TYPE_CACHE_CONFIG {
            return Err(RegistryError::InvalidManifest {
                url,
                reason: format!(
                    "not an rbuild cache: its config is `{}`, expected `{MEDIA_TYPE_CACHE_CONFIG}`",
                    manifest.config.media_type
                ),
            });
        }
        if manifest.config.size > MAX_CACHE_CONFIG {
            return Err(RegistryError::TooLarge {
                what: "cache config",
                url,
                size: manifest.config.size,
                limit: MAX_CACHE_CONFIG,
            });
        }
        let config_url = repo.url(&format!("blobs/{}", manifest.config.digest));
        let response = self
            .send(repo, &config_url, true, || {
                (Method::GET, Default::default(), None)
            })
            .await?;
        let response = check_status(response, "GET", &config_url).await?;
        let bytes = read_limited(response, MAX_CACHE_CONFIG, "cache config", &config_url).await?;
        let actual = Digest::of(&bytes);
        if actual != manifest.config.digest {
            return Err(RegistryError::DigestMismatch {
                what: "cache config",
                url: config_url,
                expected: manifest.config.digest,
                actual,
            });
        }
        let config: CacheConfig =
            serde_json::from_slice(&bytes).map_err(|err| RegistryError::InvalidManifest {
                url: config_url.clone(),
                reason: format!("not an rbuild cache config: {err}"),
            })?;
        if config.version != CACHE_VERSION {
            return Err(RegistryError::InvalidManifest {
                url: config_url,
                reason: format!(
                    "cache format version {} (this rbuild reads version {CACHE_VERSION})",
                    config.version
                ),
            });
        }
        // Its layers are in this repository: a push of them elsewhere on this registry
        // mounts them, and one to another registry fetches them from here.
        self.remember_sources(store, repo, &manifest).await;
        let mut source = source.clone();
        if source.digest().is_none() {
            source = source.with_digest(fetched.digest);
        }
        let layers: BTreeMap<Digest, Descriptor> = manifest
            .layers
            .into_iter()
            .map(|l| (l.digest.clone(), l))
            .collect();
        let mounts = config
            .mounts
            .into_iter()
            .filter_map(|m| Some((m.id, (layers.get(&m.layer)?.clone(), m.diff_id))))
            .collect();
        Ok(CacheImport {
            source,
            records: config
                .records
                .into_iter()
                .map(|r| (r.key.clone(), r))
                .collect(),
            layers,
            mounts,
            traces: config.traces,
        })
    }

    /// Fetches one layer of an imported cache into the store (nothing when it is there).
    pub async fn pull_cache_layer(
        &self,
        store: &Store,
        source: &Reference,
        layer: &Descriptor,
    ) -> Result<()> {
        self.on_endpoints(source, |repo| async move {
            self.fetch_blob(store, &repo, layer).await
        })
        .await
    }
}

fn is_uncompressed(media_type: &str) -> bool {
    media_type == oci::MEDIA_TYPE_LAYER
        || media_type == "application/vnd.docker.image.rootfs.diff.tar"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_resolve_their_layers() {
        let blob = Digest::of(b"gz");
        let diff_id = Digest::of(b"tar");
        let import = CacheImport {
            source: "127.0.0.1:1/cache:main".parse().unwrap(),
            records: [
                CacheImportRecord {
                    key: "a".into(),
                    parent: None,
                    layer: Some(blob.clone()),
                    diff_id: Some(diff_id.clone()),
                    description: "RUN x".into(),
                    created: None,
                },
                CacheImportRecord {
                    key: "b".into(),
                    parent: Some("a".into()),
                    layer: None,
                    diff_id: None,
                    description: "WORKDIR /".into(),
                    created: None,
                },
                CacheImportRecord {
                    key: "c".into(),
                    parent: None,
                    layer: Some(Digest::of(b"missing")),
                    diff_id: Some(diff_id.clone()),
                    description: String::new(),
                    created: None,
                },
            ]
            .into_iter()
            .map(|r| (r.key.clone(), r))
            .collect(),
            layers: [(
                blob.clone(),
                Descriptor::new(oci::MEDIA_TYPE_LAYER_GZIP, blob.clone(), 2),
            )]
            .into_iter()
            .collect(),
            mounts: BTreeMap::new(),
            traces: None,
        };
        let (_, layer) = import.get("a").unwrap();
        assert_eq!(layer.unwrap().diff_id, diff_id);
        assert!(import.get("b").unwrap().1.is_none());
        // A record naming a layer the manifest lacks is no hit.
        assert!(import.get("c").is_none());
        assert!(import.get("z").is_none());
    }

    #[test]
    fn config_format_is_stable() {
        let config = CacheConfig {
            version: 1,
            records: vec![CacheImportRecord {
                key: "k".into(),
                parent: Some("p".into()),
                layer: None,
                diff_id: None,
                description: "RUN true".into(),
                created: None,
            }],
            mounts: Vec::new(),
            traces: None,
        };
        assert_eq!(
            String::from_utf8(oci::canonical_json(&config)).unwrap(),
            r#"{"records":[{"description":"RUN true","key":"k","parent":"p"}],"version":1}"#
        );
        let with_mount = CacheConfig {
            mounts: vec![CacheMountRecord {
                id: "go".into(),
                layer: Digest::of(b"gz"),
                diff_id: Digest::of(b"tar"),
            }],
            ..config
        };
        let json = String::from_utf8(oci::canonical_json(&with_mount)).unwrap();
        assert!(
            json.contains(&format!(
                r#""mounts":[{{"diffId":"{}","id":"go","layer":"{}"}}]"#,
                Digest::of(b"tar"),
                Digest::of(b"gz")
            )),
            "{json}"
        );
        // A config written before mounts existed still reads.
        let old: CacheConfig = serde_json::from_str(r#"{"records":[],"version":1}"#).unwrap();
        assert!(old.mounts.is_empty());
    }
}
