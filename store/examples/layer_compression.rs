//! Measures what making a layer costs with each compression, to decide whether rbuild
//! compresses at build time or only when an image leaves the store.
//!
//! Usage: `cargo run --release -p rbuild-store --example layer_compression -- DIR [OUT_DIR]`
//! where DIR is a directory to make a layer of (e.g. a big-file bench context) and OUT_DIR
//! is where layer files are written (default: DIR.layers). CPU seconds are reported beside
//! wall time: they are what a mode costs whatever else the machine is doing.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rbuild_store::HashingWriter;
use rbuild_store::layer::{LayerOptions, write_layer};

fn main() -> io::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let dir = PathBuf::from(args.next().expect("usage: layer_compression DIR [OUT_DIR]"));
    let out_dir = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.with_extension("layers"));
    std::fs::create_dir_all(&out_dir)?;
    println!(
        "{:<26} {:>8} {:>8} {:>12} {:>10}",
        "mode", "wall s", "cpu s", "bytes", "MiB/cpu-s"
    );
    let started = Instant::now();
    let cpu = cpu_seconds();
    let hashing = write_layer(
        &dir,
        HashingWriter::new(io::sink()),
        LayerOptions::default(),
    )?;
    let input = hashing.finish().2;
    report("tar + sha256, no output", started, cpu, input, input);

    run(&dir, &out_dir, input, "tar, written + fsync", |f| {
        Ok(Box::new(f))
    })?;
    for level in [2, 6] {
        run(
            &dir,
            &out_dir,
            input,
            &format!("gzip -{level} (zlib-rs)"),
            |f| {
                Ok(Box::new(flate2::write::GzEncoder::new(
                    f,
                    flate2::Compression::new(level),
                )))
            },
        )?;
    }
    for level in [1, 3] {
        run(&dir, &out_dir, input, &format!("zstd -{level}"), |f| {
            Ok(Box::new(zstd::Encoder::new(f, level)?))
        })?;
    }
    Ok(())
}

fn run(
    dir: &Path,
    out_dir: &Path,
    input: u64,
    name: &str,
    make: impl Fn(File) -> io::Result<Box<dyn FinishWrite>>,
) -> io::Result<()> {
    let path = out_dir.join(name.replace([' ', '+', ',', '(', ')'], "_"));
    let started = Instant::now();
    let cpu = cpu_seconds();
    let writer = make(File::create(&path)?)?;
    let hashing = write_layer(dir, HashingWriter::new(writer), LayerOptions::default())?;
    let (writer, _, _) = hashing.finish();
    writer.finish_write()?.sync_all()?;
    let size = std::fs::metadata(&path)?.len();
    report(name, started, cpu, input, size);
    std::fs::remove_file(&path)
}

fn report(name: &str, started: Instant, cpu: f64, input: u64, output: u64) {
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    println!(
        "{name:<26} {wall:>8.2} {cpu:>8.2} {output:>12} {:>10.0}",
        input as f64 / cpu / 1048576.0
    );
}

fn cpu_seconds() -> f64 {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        .expect("getrusage of this process");
    let time = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    time(usage.user_time()) + time(usage.system_time())
}

/// A writer that can be finished into the file beneath it.
trait FinishWrite: Write {
    fn finish_write(self: Box<Self>) -> io::Result<File>;
}

impl FinishWrite for File {
    fn finish_write(self: Box<Self>) -> io::Result<File> {
        Ok(*self)
    }
}

impl FinishWrite for flate2::write::GzEncoder<File> {
    fn finish_write(self: Box<Self>) -> io::Result<File> {
        (*self).finish()
    }
}

impl FinishWrite for zstd::Encoder<'static, File> {
    fn finish_write(self: Box<Self>) -> io::Result<File> {
        (*self).finish()
    }
}
