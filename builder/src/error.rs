//! Why a build failed, with the Dockerfile span to point at when there is one.

use rbuild_frontend::Span;

use crate::debug::FailedStep;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{description}: cannot run binaries of {platform} here")]
    Emulation {
        span: Span,
        description: String,
        platform: String,
        #[source]
        source: Box<crate::emulation::EmulationError>,
    },
    #[error("the base image {reference} is for {}, not {wanted}", found.join(", "))]
    BasePlatform {
        reference: String,
        /// The platform the stage is built for.
        wanted: String,
        /// The platforms the image has.
        found: Vec<String>,
    },
    #[error(transparent)]
    Dockerfile(#[from] rbuild_frontend::Error),
    /// The image was built, and its SBOM could not be made.
    #[error("cannot make the image's SBOM")]
    Sbom {
        #[source]
        source: rbuild_sbom::ScanError,
    },
    #[error("base image `{reference}` is not in the store")]
    BaseImageNotFound { reference: String },
    #[error("{}base image `{reference}`", if *.missing { "cannot pull the missing " } else { "cannot pull " })]
    Pull {
        reference: String,
        /// Whether the store lacks the image (else `--pull` asked for it).
        missing: bool,
        #[source]
        source: Box<rbuild_registry::RegistryError>,
    },
    #[error("cannot fetch layer {digest} of `{description}` from the cache {source_ref}")]
    CacheLayer {
        digest: rbuild_store::Digest,
        description: String,
        source_ref: String,
        #[source]
        source: Box<rbuild_registry::RegistryError>,
    },
    #[error("invalid image reference `{reference}`")]
    InvalidReference {
        reference: String,
        #[source]
        source: rbuild_store::Error,
    },
    #[error("`{description}` did not complete successfully: exit code {code}")]
    RunFailed {
        span: Span,
        description: String,
        code: i32,
        /// The last lines of the step's output.
        tail: Vec<String>,
        /// The step's state, kept with `BuildOptions::keep_failed_step`.
        kept: Option<Box<FailedStep>>,
    },
    #[error("`{description}` was killed: out of memory (limit {limit} bytes)")]
    OutOfMemory {
        span: Span,
        description: String,
        limit: u64,
        tail: Vec<String>,
        kept: Option<Box<FailedStep>>,
    },
    #[error("secret `{id}` is required but was not given")]
    SecretRequired {
        span: Span,
        description: String,
        id: String,
    },
    /// A `RUN --security=insecure` step in a build that did not allow it.
    #[error("`{description}` asks to run without the sandbox, and the build does not allow it")]
    InsecureNotAllowed { span: Span, description: String },
    #[error("`{description}` failed")]
    StepFailed {
        span: Span,
        description: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The CLI names the file; this is for callers that pass text it did not check.
    #[error("invalid ignore file")]
    IgnoreFile {
        #[source]
        source: crate::ignore::IgnoreError,
    },
    #[error(transparent)]
    Ssh {
        #[from]
        source: crate::ssh::SshError,
    },
    #[error("the build context `{name}` ({path}) is not a readable directory")]
    NamedContext {
        name: String,
        path: std::path::PathBuf,
    },
    #[error("failed to load the build context `{name}` (oci-layout://{path})")]
    OciLayoutLoad {
        name: String,
        path: std::path::PathBuf,
        #[source]
        source: rbuild_store::Error,
    },
    #[error("the build context `{name}` (oci-layout://{path}): {reason}")]
    OciLayout {
        name: String,
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("the build context {path} is not a readable directory")]
    Context {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] rbuild_store::Error),
    #[error(transparent)]
    Runtime(#[from] rbuild_runtime::Error),
    #[error("build task failed")]
    Join(#[from] tokio::task::JoinError),
    #[error("the build was cancelled")]
    Cancelled,
    #[error("a layer could not be made: {message}")]
    LayerFailed { message: String },
    #[error("failed to export the image's filesystem")]
    Export {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl BuildError {
    /// The step of `op` failed because of `source`.
    pub(crate) fn step_failed(
        op: &rbuild_frontend::Op,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> BuildError {
        BuildError::StepFailed {
            span: op.span,
            description: op.description.clone(),
            source: source.into(),
        }
    }

    /// A failure of the store (a full disk) while the step `description` at `span` ran or
    /// was committed, as that step's: the error names its line. Others are left as they are.
    pub(crate) fn in_step(self, span: Span, description: &str) -> BuildError {
        match self {
            BuildError::Store(err) => BuildError::StepFailed {
                span,
                description: description.to_owned(),
                source: err.into(),
            },
            other => other,
        }
    }

    /// Where in the Dockerfile the problem is, if it is tied to an instruction.
    pub fn span(&self) -> Option<Span> {
        match self {
            BuildError::Dockerfile(err) => Some(err.span()),
            BuildError::RunFailed { span, .. }
            | BuildError::OutOfMemory { span, .. }
            | BuildError::StepFailed { span, .. }
            | BuildError::SecretRequired { span, .. }
            | BuildError::InsecureNotAllowed { span, .. }
            | BuildError::Emulation { span, .. } => Some(*span),
            _ => None,
        }
    }

    /// The failed RUN step's state, when the build kept it
    /// (`BuildOptions::keep_failed_step`); the error keeps the rest.
    pub fn take_failed_step(&mut self) -> Option<FailedStep> {
        match self {
            BuildError::RunFailed { kept, .. } | BuildError::OutOfMemory { kept, .. } => {
                kept.take().map(|kept| *kept)
            }
            _ => None,
        }
    }

    /// Output lines worth showing with the error.
    pub fn output_tail(&self) -> &[String] {
        match self {
            BuildError::RunFailed { tail, .. } | BuildError::OutOfMemory { tail, .. } => tail,
            _ => &[],
        }
    }
}

/// `err` and each of its causes after it, `: `-separated: the whole of an error on one line.
pub(crate) fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}
