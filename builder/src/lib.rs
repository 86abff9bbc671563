//! rbuild's builder: solves a `BuildGraph` through the store (bytes, snapshots, images) and
//! the runtime (RUN steps), and assembles the image.

mod copy;
mod error;
mod exec;
mod fileops;
mod glob;
mod image;
mod owner;
mod progress;
mod resolve;
mod solve;

pub use error::BuildError;
pub use exec::DEFAULT_NETWORK;
pub use image::frontend_config;
pub use progress::{Event, Progress, Silent, Stream};
pub use solve::{BuildOptions, BuildResult, Builder};
