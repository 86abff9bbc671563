//! Image assembly: the target stage's layers, config and history, by Docker's conventions.

use std::collections::HashMap;

use rbuild_frontend::{BuildGraph, ImageConfig, OpId};
use rbuild_store::oci::{Descriptor, History, ImageConfiguration, RootFs};
use rbuild_store::{CacheRecord, Digest, Image, time};

use crate::bases::Bases;

use crate::error::BuildError;
use crate::solve::{BuildOptions, SolveContext};
use crate::state::{Layer, State};

/// The frontend's view of an image config: the `config` object of an OCI image config.
/// Docker writes `null` for empty lists and maps; those are dropped first.
pub fn frontend_config(config: &serde_json::Value) -> ImageConfig {
    let mut config = config.clone();
    if let serde_json::Value::Object(map) = &mut config {
        map.retain(|_, value| !value.is_null());
    } else {
        return ImageConfig::default();
    }
    serde_json::from_value(config).unwrap_or_default()
}

/// The config and layers of the image `graph` produces. `times` says when each
/// layer-producing op's result was made (now, or when the cache recorded it): the history
/// shows those times and the config the latest, so a build whose steps all come from the
/// cache makes the same image again. `SOURCE_DATE_EPOCH` sets every time instead.
pub(crate) fn assemble(
    graph: &BuildGraph,
    states: &[State],
    layers: Vec<Layer>,
    times: &HashMap<OpId, i64>,
    bases: &Bases,
    opts: &BuildOptions,
) -> Result<(ImageConfiguration, Vec<Descriptor>), BuildError> {
    let output = &graph.output;
    let chain = own_steps(graph, states);
    let platform = &graph.op(output.root).platform;
    let base = output.base.as_ref().and_then(|r| bases.get(r, platform));
    let (history, created) = dated_history(graph, chain, base, times, opts.source_date_epoch);

    let mut runtime_config = output.config.clone();
    runtime_config.labels.extend(opts.labels.clone());
    let mut config_value =
        serde_json::to_value(&runtime_config).expect("image configs always serialize");
    if config_value.as_object().is_some_and(|m| m.is_empty()) {
        config_value = serde_json::Value::Null;
    }
    let (architecture, os, variant) = match base {
        Some(base) => (
            base.config.architecture.clone(),
            base.config.os.clone(),
            base.config.variant.clone(),
        ),
        // No base image: the platform the stage is for.
        None => (
            platform.architecture.clone(),
            platform.os.clone(),
            platform.variant.clone(),
        ),
    };
    let config = ImageConfiguration {
        created: Some(created),
        // `MAINTAINER` sets it; otherwise the base image's stays, as with Docker.
        author: output
            .author
            .clone()
            .or_else(|| base.and_then(|b| b.config.author.clone())),
        architecture,
        os,
        variant,
        config: config_value,
        rootfs: RootFs::layers(layers.iter().map(|l| l.diff_id.clone()).collect()),
        history,
    };
    let layers = layers.into_iter().map(|l| l.descriptor).collect();
    Ok((config, layers))
}

/// The image's history (the base's, then an entry per instruction of the output stage)
/// and its `created` time: each entry dated when its step's result was made (`times`),
/// or `SOURCE_DATE_EPOCH`; `created` is the latest.
fn dated_history(
    graph: &BuildGraph,
    chain: Vec<(OpId, bool)>,
    base: Option<&Image>,
    times: &HashMap<OpId, i64>,
    source_date_epoch: Option<i64>,
) -> (Vec<History>, String) {
    let output = &graph.output;
    let time_of = |id: &OpId| times.get(id).copied().unwrap_or_else(time::now_unix);
    // Instructions before the first step of this stage that makes a layer take that step's
    // time; with no such step, the base image's (a build that only changes metadata is
    // still reproducible), else the time `times` gives the root (see `undated_key`).
    let mut current_time = match chain.first() {
        Some((id, _)) => time::rfc3339(time_of(id)),
        None => base
            .and_then(|b| b.config.created.clone())
            .unwrap_or_else(|| time::rfc3339(time_of(&output.root))),
    };
    let mut latest = current_time.clone();
    let mut history: Vec<History> = base.map(|b| b.config.history.clone()).unwrap_or_default();
    let mut added = chain.into_iter();
    for entry in &output.history {
        let mut empty_layer = entry.empty_layer;
        if !empty_layer {
            // An entry whose op added no layer (WORKDIR of an existing directory) becomes
            // metadata-only.
            let op = added.next();
            if let Some((id, _)) = &op {
                current_time = time::rfc3339(time_of(id));
            }
            empty_layer = !op.is_some_and(|(_, added)| added);
        }
        // RFC 3339 times in UTC with the same precision order as text.
        if current_time > latest {
            latest = current_time.clone();
        }
        history.push(History {
            created: Some(match source_date_epoch {
                Some(epoch) => time::rfc3339(epoch),
                None => current_time.clone(),
            }),
            created_by: Some(entry.created_by.clone()),
            comment: entry.comment.clone(),
            empty_layer,
            ..Default::default()
        });
    }
    let created = match source_date_epoch {
        Some(epoch) => time::rfc3339(epoch),
        None => latest,
    };
    (history, created)
}

/// The layer-producing ops of the output's FROM chain, bottom first, and whether each
/// added a layer.
fn own_steps(graph: &BuildGraph, states: &[State]) -> Vec<(OpId, bool)> {
    let mut chain = Vec::new();
    let mut current = Some(graph.output.root);
    while let Some(id) = current {
        match graph.op(id).kind.rootfs() {
            Some(parent) => {
                chain.push((
                    id,
                    states[id.0].layers.len() > states[parent.0].layers.len(),
                ));
                current = Some(parent);
            }
            None => current = None,
        }
    }
    chain.reverse();
    chain
}

impl SolveContext {
    /// Dates an image that nothing else dates (see [`undated_key`]): puts the time it was
    /// first made (or now, with `--no-cache` or on the first build) into `times` for the
    /// output's root, and returns the cache record to write once the image exists.
    pub(crate) async fn date_undated(
        &self,
        graph: &BuildGraph,
        states: &[State],
        layers: &[Layer],
        times: &mut HashMap<OpId, i64>,
    ) -> Result<Option<(String, CacheRecord)>, BuildError> {
        let Some(key) = undated_key(graph, states, layers, &self.sources.bases, &self.opts)? else {
            return Ok(None);
        };
        let recorded = if self.cache_allowed(graph.op(graph.output.root)) {
            let store = self.builder.snapshots.clone();
            let key = key.clone();
            tokio::task::spawn_blocking(move || store.cache_get(&key)).await??
        } else {
            None
        };
        let now = time::now_unix();
        let created = recorded.map_or(now, |record| record.created);
        times.insert(graph.output.root, created);
        let record = CacheRecord {
            layer: None,
            snapshot: None,
            description: "the time of an image with no layer of its own".to_owned(),
            created,
            last_used: now,
            size: 0,
            remote: None,
            // Set once the image is written.
            image: None,
        };
        Ok(Some((key, record)))
    }
}

/// For an image that nothing dates: no step of its own makes a layer (so no cache record
/// has its time), the base has no `created` (`FROM scratch`), and `SOURCE_DATE_EPOCH` is
/// unset. Such an image would be made again with a new time on every build, so the time
/// it was first made is kept in the build cache under this key: the image assembled
/// without times (config, history, base layers, `--label`s), so any change makes another
/// key. `None` for every other image.
pub(crate) fn undated_key(
    graph: &BuildGraph,
    states: &[State],
    layers: &[Layer],
    bases: &Bases,
    opts: &BuildOptions,
) -> Result<Option<String>, BuildError> {
    let platform = &graph.op(graph.output.root).platform;
    let base = graph
        .output
        .base
        .as_ref()
        .and_then(|r| bases.get(r, platform));
    if opts.source_date_epoch.is_some()
        || !own_steps(graph, states).is_empty()
        || base.is_some_and(|b| b.config.created.is_some())
    {
        return Ok(None);
    }
    let timeless = HashMap::from([(graph.output.root, 0)]);
    let (config, _) = assemble(graph, states, layers.to_vec(), &timeless, bases, opts)?;
    let digest = Digest::of(&rbuild_store::oci::canonical_json(&config));
    Ok(Some(format!("image-created/{digest}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_nulls_are_ignored() {
        let config = frontend_config(&serde_json::json!({
            "Env": ["PATH=/bin"], "Cmd": null, "Volumes": null, "OnBuild": null, "WorkingDir": "/w"
        }));
        assert_eq!(config.env, ["PATH=/bin"]);
        assert_eq!(config.cmd, None);
        assert_eq!(config.working_dir, "/w");
    }
}
