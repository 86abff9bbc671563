//! Solving a build: resolve base images, convert the Dockerfile, run the graph's ops in
//! order, assemble and name the image.
//!
//! Ops run one after the other in the graph's topological order. TODO(#6): run ready ops in
//! parallel and reuse cached results.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Instant;

use rbuild_frontend::{self as frontend, BuildGraph, OpId, OpKind};
use rbuild_runtime::{Limits, Network, Runtime};
use rbuild_store::oci::Descriptor;
use rbuild_store::{Digest, Image, ImageName, SnapshotName, Store};

use crate::error::BuildError;
use crate::progress::{Event, Progress};

/// What to build and how.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The Dockerfile's text.
    pub dockerfile: String,
    /// The build context directory.
    pub context: PathBuf,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    /// Names for the result, set only when the whole build succeeded.
    pub tags: Vec<ImageName>,
    /// The network of RUN steps that do not choose one (`RUN --network`).
    pub network: Option<Network>,
    pub limits: Limits,
    /// `SOURCE_DATE_EPOCH`: the time in the config and history, and the latest mtime in
    /// layers rbuild creates.
    pub source_date_epoch: Option<i64>,
}

/// The image a build produced.
#[derive(Debug, Clone)]
pub struct BuildResult {
    pub manifest: Descriptor,
    /// The config digest: what `docker images` calls the image id.
    pub config: Digest,
    pub tags: Vec<ImageName>,
}

/// One layer of a filesystem state.
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    pub descriptor: Descriptor,
    pub diff_id: Digest,
}

/// The filesystem an op produced: its layers, bottom first, and the snapshot of the top.
#[derive(Debug, Clone, Default)]
pub(crate) struct State {
    pub layers: Vec<Layer>,
    pub top: Option<SnapshotName>,
}

/// Builds images from Dockerfiles, with the store for bytes and the runtime for RUN.
#[derive(Clone)]
pub struct Builder {
    pub(crate) store: Store,
    pub(crate) runtime: Runtime,
}

impl Builder {
    pub fn new(store: Store, runtime: Runtime) -> Builder {
        Builder { store, runtime }
    }

    pub async fn build(
        &self,
        opts: &BuildOptions,
        progress: &dyn Progress,
    ) -> Result<BuildResult, BuildError> {
        let context =
            std::fs::canonicalize(&opts.context).map_err(|source| BuildError::Context {
                path: opts.context.clone(),
                source,
            })?;
        if !context.is_dir() {
            return Err(BuildError::Context {
                path: opts.context.clone(),
                source: std::io::Error::from(std::io::ErrorKind::NotADirectory),
            });
        }
        let dockerfile = frontend::parse(&opts.dockerfile)?;
        let convert_opts = frontend::ConvertOptions {
            build_args: opts.build_args.clone(),
            target: opts.target.clone(),
            ..Default::default()
        };
        let mut bases = HashMap::new();
        let mut base_configs = BTreeMap::new();
        for reference in frontend::image_references(&dockerfile, &convert_opts)? {
            let image = self.base_image(&reference).await?;
            base_configs.insert(
                reference.clone(),
                crate::image::frontend_config(&image.config.config),
            );
            bases.insert(reference, image);
        }
        let graph = frontend::convert(&dockerfile, &convert_opts, &base_configs)?;
        let ctx = SolveContext {
            builder: self,
            opts,
            context,
            bases: &bases,
            progress,
        };
        let states = ctx.solve(&graph).await?;
        progress.event(Event::Exporting);
        let (config, layers) = crate::image::assemble(&graph, &states, &bases, opts)?;
        let store = self.store.clone();
        let tags = opts.tags.clone();
        let result = tokio::task::spawn_blocking(move || -> Result<BuildResult, BuildError> {
            let manifest = store.write_image(&config, layers)?;
            for tag in &tags {
                store.tag(tag, &manifest.digest)?;
            }
            Ok(BuildResult {
                config: manifest_config_digest(&store, &manifest.digest)?,
                manifest,
                tags,
            })
        })
        .await??;
        Ok(result)
    }

    async fn base_image(&self, reference: &str) -> Result<Image, BuildError> {
        let name: ImageName = reference
            .parse()
            .map_err(|source| BuildError::InvalidReference {
                reference: reference.to_owned(),
                source,
            })?;
        let store = self.store.clone();
        let reference = reference.to_owned();
        tokio::task::spawn_blocking(move || match store.image(&name) {
            Ok(image) => {
                // Keep it (and its snapshots) from GC for the whole build, even if its name
                // is removed meanwhile; unpack now so every RUN finds its lower dirs.
                store.protect_image(&image.manifest_digest)?;
                store.unpack(&image)?;
                Ok(image)
            }
            Err(err) if err.is_not_found() => Err(BuildError::BaseImageNotFound { reference }),
            Err(err) => Err(err.into()),
        })
        .await?
    }
}

fn manifest_config_digest(store: &Store, manifest: &Digest) -> Result<Digest, BuildError> {
    Ok(store.image_by_manifest(manifest)?.config_digest)
}

pub(crate) struct SolveContext<'a> {
    pub builder: &'a Builder,
    pub opts: &'a BuildOptions,
    /// The canonical context directory.
    pub context: PathBuf,
    pub bases: &'a HashMap<String, Image>,
    pub progress: &'a dyn Progress,
}

impl SolveContext<'_> {
    async fn solve(&self, graph: &BuildGraph) -> Result<Vec<State>, BuildError> {
        self.progress.event(Event::Started {
            steps: graph.ops.len(),
        });
        let mut states: Vec<State> = Vec::with_capacity(graph.ops.len());
        for (index, op) in graph.ops.iter().enumerate() {
            let step = index + 1;
            self.progress.event(Event::StepStarted {
                step,
                description: &op.description,
            });
            let started = Instant::now();
            let result = self.run_op(graph, OpId(index), &states, step).await;
            match result {
                Ok(state) => {
                    self.progress.event(Event::StepFinished {
                        step,
                        elapsed: started.elapsed(),
                    });
                    states.push(state);
                }
                Err(err) => {
                    self.progress.event(Event::StepFailed {
                        step,
                        elapsed: started.elapsed(),
                    });
                    return Err(err);
                }
            }
        }
        Ok(states)
    }

    async fn run_op(
        &self,
        graph: &BuildGraph,
        id: OpId,
        states: &[State],
        step: usize,
    ) -> Result<State, BuildError> {
        let op = graph.op(id);
        match &op.kind {
            OpKind::Scratch => Ok(State::default()),
            OpKind::Image { reference } => {
                let image =
                    self.bases
                        .get(reference)
                        .ok_or_else(|| BuildError::BaseImageNotFound {
                            reference: reference.clone(),
                        })?;
                Ok(State {
                    layers: image
                        .manifest
                        .layers
                        .iter()
                        .zip(&image.config.rootfs.diff_ids)
                        .map(|(descriptor, diff_id)| Layer {
                            descriptor: descriptor.clone(),
                            diff_id: diff_id.clone(),
                        })
                        .collect(),
                    top: image.top(),
                })
            }
            OpKind::Exec(exec) => self.exec(op, exec, &states[exec.rootfs.0], step).await,
            OpKind::Copy(copy) => {
                let source_state = match copy.source {
                    frontend::CopySource::Op(source) => Some(&states[source.0]),
                    _ => None,
                };
                let origin = match copy.source {
                    frontend::CopySource::Op(source) => {
                        let source_op = graph.op(source);
                        match (&source_op.kind, &source_op.stage.name) {
                            (OpKind::Image { reference }, _) => format!("image `{reference}`"),
                            (_, Some(name)) => format!("stage `{name}`"),
                            (_, None) => format!("stage {}", source_op.stage.index),
                        }
                    }
                    _ => "the build context".to_owned(),
                };
                self.copy(op, copy, &states[copy.rootfs.0], source_state, &origin)
                    .await
            }
            OpKind::Mkdir(mkdir) => self.mkdir(op, mkdir, &states[mkdir.rootfs.0]).await,
        }
    }
}
