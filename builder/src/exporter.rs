//! Exporters: where a built image goes besides the store, in BuildKit's sense. The image
//! pushed to a registry, an OCI or docker archive, its filesystem as a tar or a directory,
//! and the build cache pushed to a registry (`--cache-to`) are all [`Exporter`]s; the CLI
//! only chooses and configures them, and [`Builder::export`] runs them in order.
//! Importing a registry cache (`--cache-from`) is [`Builder::import_cache`].

use std::io::Write;
use std::path::PathBuf;

use rbuild_registry::{
    CacheExport, CacheImport, Compression, PushOptions, Registry, RegistryConfig, RegistryError,
};
use rbuild_store::{ArchiveFormat, Digest, Reference};

use crate::error::BuildError;
use crate::export::{RootfsOutput, export_rootfs};
use crate::solve::{BuildResult, Builder, PlatformImage};

/// Where a build's result goes.
pub enum Exporter {
    /// The image as an OCI layout or `docker load` archive (`-o type=oci|docker`).
    Archive(ArchiveFormat, Destination),
    /// The image's filesystem, every layer applied, as one tar (`-o type=tar`).
    Tar(Destination),
    /// The image's filesystem as files in a directory (`-o type=local`).
    Local(PathBuf),
    /// The image pushed to a registry (`--push`, `-o type=registry`).
    Registry(Reference),
    /// The build cache pushed to a registry (`--cache-to`).
    Cache(CacheTarget),
}

/// Where an archive or a tar goes: a file (written whole, or not at all for archives), or
/// a writer such as standard output.
pub enum Destination {
    File(PathBuf),
    Writer(Box<dyn Write + Send>),
}

/// A `--cache-from`/`--cache-to` target.
#[derive(Debug, Clone)]
pub struct CacheTarget {
    pub reference: Reference,
    /// `mode=max`: every step, not just those whose result is in the image.
    pub max: bool,
    /// `mounts=true`: the contents of the build's cache mounts go with the cache.
    pub mounts: bool,
    /// `ignore-error=true`: an export that fails is reported, not an error.
    pub ignore_error: bool,
}

/// How exporters write.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExportOptions {
    /// The compression of layers pushed (image and cache).
    pub compression: Compression,
    /// `SOURCE_DATE_EPOCH`: file times in a `tar` or `local` output are clamped to it, as
    /// in the image's layers.
    pub source_date_epoch: Option<i64>,
}

/// What an exporter did, reported as each finishes.
#[derive(Debug)]
pub enum Exported {
    /// The image is in the registry as `target@digest` (the registry's manifest digest:
    /// its layers compressed, so not the store's).
    Pushed { target: Reference, digest: Digest },
    /// The build cache is in the registry.
    Cache {
        target: Reference,
        digest: Digest,
        records: usize,
        mounts: usize,
    },
    /// A cache export with `ignore-error=true` failed; the build goes on.
    CacheFailed {
        target: Reference,
        error: ExportError,
    },
    /// An archive, tar or directory was written.
    Written,
}

/// Why an exporter failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot push to {target}")]
    Push {
        target: Reference,
        #[source]
        source: Box<RegistryError>,
    },
    #[error("cannot export the build cache to {target}")]
    Cache {
        target: Reference,
        #[source]
        source: Box<RegistryError>,
    },
    #[error("cannot write {}", path.display())]
    Archive {
        path: PathBuf,
        #[source]
        source: rbuild_store::Error,
    },
    #[error("cannot create {}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the image archive to standard output")]
    Stream {
        #[source]
        source: std::io::Error,
    },
    #[error(
        "`-o type={what}` holds one platform, and this build made several (`-o type=oci` \
         writes the index of all, `-o type=local` a directory per platform)"
    )]
    SeveralPlatforms { what: &'static str },
    #[error(transparent)]
    Build(#[from] BuildError),
}

impl From<rbuild_store::Error> for ExportError {
    fn from(source: rbuild_store::Error) -> Self {
        ExportError::Build(source.into())
    }
}

impl Builder {
    /// The registry client pushes and cache exports go through: the builder's, else a
    /// default one.
    fn registry_client(&self) -> std::sync::Arc<Registry> {
        self.registry
            .clone()
            .unwrap_or_else(|| std::sync::Arc::new(Registry::new(RegistryConfig::default())))
    }

    /// The build cache at `source` (`--cache-from`), for [`crate::BuildOptions::cache_from`].
    pub async fn import_cache(&self, source: &Reference) -> Result<CacheImport, RegistryError> {
        self.registry_client().pull_cache(&self.store, source).await
    }

    /// Runs `exporters` on `result`, in order; `reported` hears of each as it finishes.
    /// Stops at the first that fails (a cache export with `ignore_error` does not fail).
    pub async fn export(
        &self,
        result: &BuildResult,
        exporters: Vec<Exporter>,
        opts: ExportOptions,
        reported: &mut (dyn FnMut(Exported) + Send),
    ) -> Result<(), ExportError> {
        for exporter in exporters {
            let exported = match exporter {
                Exporter::Registry(target) => self.push(result, target, opts).await?,
                Exporter::Cache(target) => match self.export_cache(result, &target, opts).await {
                    Ok(exported) => exported,
                    Err(error) if target.ignore_error => Exported::CacheFailed {
                        target: target.reference,
                        error,
                    },
                    Err(error) => return Err(error),
                },
                local => {
                    let (builder, manifest) = (self.clone(), result.manifest.digest.clone());
                    let (tags, platforms) = (result.tags.clone(), result.platforms.clone());
                    tokio::task::spawn_blocking(move || {
                        let epoch = opts.source_date_epoch;
                        builder.write_local(&manifest, &platforms, tags, local, epoch)
                    })
                    .await
                    .map_err(BuildError::Join)??;
                    Exported::Written
                }
            };
            reported(exported);
        }
        Ok(())
    }

    async fn push(
        &self,
        result: &BuildResult,
        target: Reference,
        opts: ExportOptions,
    ) -> Result<Exported, ExportError> {
        let push = PushOptions {
            compression: opts.compression,
        };
        let registry = self.registry_client();
        match registry
            .push(&self.store, &result.manifest.digest, &target, &push)
            .await
        {
            Ok(pushed) => Ok(Exported::Pushed {
                target,
                digest: pushed.digest,
            }),
            Err(source) => Err(ExportError::Push {
                target,
                source: Box::new(source),
            }),
        }
    }

    /// The build's cache records (all with `max`, else those of the image's own steps),
    /// with its cache mounts' contents when asked, and the traces that explain misses.
    async fn export_cache(
        &self,
        result: &BuildResult,
        target: &CacheTarget,
        opts: ExportOptions,
    ) -> Result<Exported, ExportError> {
        let records = result
            .cache_records
            .iter()
            .filter(|(_, in_result)| target.max || *in_result)
            .map(|(record, _)| record.clone())
            .collect();
        let mounts = if target.mounts {
            let known = |id: &&String| self.store.has_cache_mount(id);
            result.cache_mounts.iter().filter(known).cloned().collect()
        } else {
            Vec::new()
        };
        let export = CacheExport {
            records,
            compression: opts.compression,
            mounts,
            traces: result.traces.clone(),
        };
        let registry = self.registry_client();
        let reference = &target.reference;
        match registry.push_cache(&self.store, reference, &export).await {
            Ok(digest) => Ok(Exported::Cache {
                target: reference.clone(),
                digest,
                records: export.records.len(),
                mounts: export.mounts.len(),
            }),
            Err(source) => Err(ExportError::Cache {
                target: reference.clone(),
                source: Box::new(source),
            }),
        }
    }

    /// An exporter that writes files here (archives, tars, directories). Blocking.
    /// `manifest` is the image's (or the index's); `platforms` its platforms' images.
    fn write_local(
        &self,
        manifest: &Digest,
        platforms: &[PlatformImage],
        tags: Vec<rbuild_store::ImageName>,
        exporter: Exporter,
        source_date_epoch: Option<i64>,
    ) -> Result<(), ExportError> {
        let store = &self.store;
        let export = |manifest: &Digest, output| -> Result<(), ExportError> {
            let image = store.image_by_manifest(manifest)?;
            export_rootfs(store, &self.snapshotter, &image, output, source_date_epoch)?;
            Ok(())
        };
        // One platform's filesystem: its image, also when an index holds it with its
        // attestations.
        let single = platforms.first().map_or(manifest, |p| &p.manifest.digest);
        let rootfs = |output| export(single, output);
        if platforms.len() > 1 {
            match exporter {
                // A directory per platform, named as BuildKit names them (`linux_arm64`).
                Exporter::Local(dir) => {
                    for image in platforms {
                        let name = image.platform.to_string().replace('/', "_");
                        export(&image.manifest.digest, RootfsOutput::Dir(dir.join(name)))?;
                    }
                    return Ok(());
                }
                Exporter::Tar(_) => return Err(ExportError::SeveralPlatforms { what: "tar" }),
                // `docker load` reads one image per name.
                Exporter::Archive(ArchiveFormat::Docker, _) => {
                    return Err(ExportError::SeveralPlatforms { what: "docker" });
                }
                _ => {}
            }
        }
        match exporter {
            Exporter::Archive(format, Destination::File(path)) => store
                .save_manifests(&[(manifest.clone(), tags)], &path, format)
                .map_err(|source| ExportError::Archive { path, source }),
            Exporter::Archive(format, Destination::Writer(out)) => {
                let path = std::path::PathBuf::from("-");
                store
                    .write_archive(&[(manifest.clone(), tags)], out, format, &path)
                    .map_err(|source| match source {
                        rbuild_store::Error::Io {
                            action: "write",
                            source,
                            ..
                        } => ExportError::Stream { source },
                        source => ExportError::Archive { path, source },
                    })
            }
            Exporter::Tar(Destination::File(path)) => {
                let file = std::fs::File::create(&path).map_err(|source| ExportError::Create {
                    path: path.clone(),
                    source,
                })?;
                rootfs(RootfsOutput::Tar(Box::new(std::io::BufWriter::new(file))))
            }
            Exporter::Tar(Destination::Writer(out)) => {
                rootfs(RootfsOutput::Tar(Box::new(std::io::BufWriter::new(out))))
            }
            Exporter::Local(dir) => rootfs(RootfsOutput::Dir(dir)),
            Exporter::Registry(_) | Exporter::Cache(_) => unreachable!("pushed, not written"),
        }
    }
}
