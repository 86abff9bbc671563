//! Image assembly: the target stage's layers, config and history, by Docker's conventions.

use std::collections::HashMap;

use rbuild_frontend::{BuildGraph, ImageConfig};
use rbuild_store::oci::{Descriptor, History, ImageConfiguration, RootFs};
use rbuild_store::{Image, host_architecture, time};

use crate::error::BuildError;
use crate::solve::BuildOptions;
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

/// The config and layers of the image `graph` produces.
pub(crate) fn assemble(
    graph: &BuildGraph,
    states: &[State],
    layers: Vec<Layer>,
    bases: &HashMap<String, Image>,
    opts: &BuildOptions,
) -> Result<(ImageConfiguration, Vec<Descriptor>), BuildError> {
    let output = &graph.output;

    // The layer-producing ops of the FROM chain, bottom first, and whether each added a layer.
    let mut chain = Vec::new();
    let mut current = Some(output.root);
    while let Some(id) = current {
        let op = graph.op(id);
        match op.kind.rootfs() {
            Some(parent) => {
                chain.push(states[id.0].layers.len() > states[parent.0].layers.len());
                current = Some(parent);
            }
            None => current = None,
        }
    }
    chain.reverse();

    let base = output
        .base
        .as_ref()
        .and_then(|reference| bases.get(reference));
    let created = time::rfc3339(opts.source_date_epoch.unwrap_or_else(time::now_unix));
    let mut history: Vec<History> = base.map(|b| b.config.history.clone()).unwrap_or_default();
    let mut added = chain.into_iter();
    for entry in &output.history {
        let mut empty_layer = entry.empty_layer;
        if !empty_layer {
            // An entry whose op added no layer (WORKDIR of an existing directory) becomes
            // metadata-only.
            empty_layer = !added.next().unwrap_or(false);
        }
        history.push(History {
            created: Some(created.clone()),
            created_by: Some(entry.created_by.clone()),
            comment: entry.comment.clone(),
            empty_layer,
            ..Default::default()
        });
    }

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
        None => (host_architecture().to_owned(), "linux".to_owned(), None),
    };
    let config = ImageConfiguration {
        created: Some(created),
        author: None,
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
