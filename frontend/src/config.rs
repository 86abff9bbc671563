//! The image configuration the frontend reads from base images and writes for the result.
//!
//! Field names serialize as in the OCI image config's `config` object (and Docker's
//! extensions to it), so the builder can move them in and out of the store's OCI types.
//! Maps are `BTreeMap`s so serialization is deterministic.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The runtime configuration of an image (`config` in an OCI image config).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// Keys like `80/tcp`; values are always empty objects.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub exposed_ports: BTreeMap<String, Empty>,
    /// `KEY=value` entries, in order; a later ENV of the same key replaces the entry in place.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, Empty>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Docker extension: the SHELL instruction's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    /// Docker extension: the HEALTHCHECK instruction's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    /// Docker extension: ONBUILD triggers, as the instruction text after `ONBUILD`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_build: Vec<String>,
}

/// The `{}` value of `ExposedPorts` and `Volumes` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Empty {}

/// Docker's health check configuration; durations in nanoseconds as Docker stores them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    /// `["NONE"]`, `["CMD", args...]` or `["CMD-SHELL", command]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_interval: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u64,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

impl ImageConfig {
    /// The value of `key` in `Env`, if set.
    pub fn env_value(&self, key: &str) -> Option<&str> {
        self.env.iter().find_map(|entry| {
            let (k, v) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
            (k == key).then_some(v)
        })
    }

    /// Sets `key=value` in `Env`, replacing an existing entry in place (Docker keeps the order).
    pub fn set_env(&mut self, key: &str, value: &str) {
        let entry = format!("{key}={value}");
        match self
            .env
            .iter_mut()
            .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
        {
            Some(existing) => *existing = entry,
            None => self.env.push(entry),
        }
    }
}

/// One entry of an image's history, as in the OCI image config's `history` array
/// (without `created`, which the builder fills in).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Docker's conventions: `RUN /bin/sh -c echo hi # buildkit`, `ENV A=b`, `COPY x /y # buildkit`.
    pub created_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// True for instructions that change only the config (ENV, LABEL, CMD, ...).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_env_replaces_in_place() {
        let mut config = ImageConfig {
            env: vec!["PATH=/bin".into(), "A=1".into()],
            ..Default::default()
        };
        config.set_env("PATH", "/usr/bin");
        config.set_env("B", "2");
        assert_eq!(config.env, ["PATH=/usr/bin", "A=1", "B=2"]);
        assert_eq!(config.env_value("A"), Some("1"));
        assert_eq!(config.env_value("C"), None);
    }

    #[test]
    fn serializes_with_oci_field_names() {
        let mut config = ImageConfig {
            working_dir: "/app".into(),
            ..Default::default()
        };
        config.exposed_ports.insert("80/tcp".into(), Empty {});
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(
            json,
            r#"{"ExposedPorts":{"80/tcp":{}},"WorkingDir":"/app"}"#
        );
    }
}
