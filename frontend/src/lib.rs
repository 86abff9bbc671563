//! rbuild's Dockerfile frontend: Dockerfile text → `BuildGraph`, pure and without I/O.

mod config;
mod graph;
mod span;

pub use config::{Empty, HealthConfig, HistoryEntry, ImageConfig};
pub use graph::{
    BuildGraph, CopyKind, CopyOp, CopySource, ExecOp, ImageOutput, InlineFile, MkdirOp,
    NetworkMode, Op, OpDigest, OpId, OpKind, StageId,
};
pub use span::Span;
