//! End-to-end tests of the `rbuild` binary, on real parts: a real store on disk, real
//! sandboxes, images checked by real tools.

#[macro_use]
mod support;

mod add_url;
mod build;
mod build_cli;
mod build_context;
mod cache;
mod check;
mod context;
mod copy;
mod debug;
mod docs;
mod errors;
mod escapes;
mod git;
mod images;
mod mounts;
mod platform;
mod registry;
mod registry_cache;
mod registry_errors;
mod registry_faults;
mod registry_support;
#[macro_use]
mod rootless_support;
mod rootless;
mod run;
mod sandbox;
mod snapshotter;
mod ssh;
mod store;
mod supply_chain;
mod verify_build;
