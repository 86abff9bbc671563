//! The command line: the subcommands and the options they share. Each command's own
//! arguments live beside its code in `commands/`.

use clap::{Parser, Subcommand, ValueEnum};

use crate::commands::{build, images, run};

/// rbuild: a Dockerfile image builder with a daemonless store and sandbox.
///
/// `rbuild -t NAME CONTEXT` is short for `rbuild build -t NAME CONTEXT`.
#[derive(Debug, Parser)]
#[command(
    name = "rbuild",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub build: Option<build::BuildArgs>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a Dockerfile
    Build(build::BuildArgs),
    /// Run a command in a new sandbox from an image; changes are discarded
    Run(run::RunArgs),
    /// List images
    Images(images::ImagesArgs),
    /// Show an image's OCI config (or its manifest)
    Inspect(images::InspectArgs),
    /// Write images to an OCI image layout tar
    Save(images::SaveArgs),
    /// Load images from an OCI image layout tar
    Load(images::LoadArgs),
    /// Make an image from a filesystem tarball
    Import(images::ImportArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetworkArg {
    /// Only a loopback interface
    None,
    /// The host's network
    Host,
    /// A private address on rbuild's bridge (`rbuild0`)
    Bridge,
}
