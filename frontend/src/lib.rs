//! rbuild's Dockerfile frontend: Dockerfile text → `BuildGraph`, pure and without I/O.
//!
//! Three steps, each usable alone:
//! 1. [`parse`]: text → [`Dockerfile`] (directives, global ARGs, stages of typed
//!    [`Instruction`]s with spans). Syntax follows BuildKit's parser exactly
//!    ([`dump_syntax`] prints its parse-tree notation).
//! 2. [`image_references`]: the external images the chosen target needs.
//! 3. [`convert`]: with those images' configs → [`BuildGraph`].
//!
//! ```
//! use std::collections::BTreeMap;
//! use rbuild_frontend::{ConvertOptions, ImageConfig, convert, image_references, parse};
//!
//! let df = parse("FROM busybox\nRUN echo hi\n")?;
//! let opts = ConvertOptions::default();
//! let bases: BTreeMap<String, ImageConfig> = image_references(&df, &opts)?
//!     .into_iter()
//!     .map(|reference| (reference, ImageConfig::default()))
//!     .collect();
//! let graph = convert(&df, &opts, &bases)?;
//! assert_eq!(graph.ops.len(), 2);
//! # Ok::<(), rbuild_frontend::Error>(())
//! ```

mod config;
mod convert;
mod error;
mod git;
mod graph;
mod instructions;
mod lint;
mod shell;
mod span;
mod syntax;

#[cfg(test)]
mod conformance;

pub use config::{Empty, HealthConfig, HistoryEntry, ImageConfig};
pub use convert::{
    BaseConfigs, ConvertOptions, DEFAULT_PATH, NamedContext, Platform, convert, dump_graph,
    image_references, image_uses, normalize_reference,
};
pub use error::{Error, ErrorKind};
pub use git::GitSource;
pub use graph::{
    BindMount, BuildGraph, CacheMount, CacheSharing, CopyKind, CopyOp, CopySource, ExecMount,
    ExecOp, ImageOutput, InlineFile, MkdirOp, MountSource, NetworkMode, Op, OpDigest, OpId, OpKind,
    SecretMount, SshMount, StageId, TmpfsMount, url_scheme,
};
pub use instructions::{
    ArgDecl, Command, Copy, Dockerfile, InlineSource, Instruction, InstructionKind, Onbuild, Pair,
    Run, RunMount, Stage, parse,
};
pub use lint::{BaseImageUse, CheckConfig, Checks, LintScope, Rule, Warning, check, lint};
pub use span::Span;
pub use syntax::{Directives, Heredoc, Keyword, dump_syntax};
