//! Measures what making a layer costs with each compression, to decide whether rbuild
//! compresses at build time or only when an image leaves the store.
//!
//! Usage: `cargo run --release -p rbuild-store --example layer_compression -- DIR [OUT_DIR]`
//! where DIR is a directory to make a layer of (e.g. a big-file bench context) and OUT_DIR
//! is where layer files are written (default: a temp dir next to DIR).

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
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
        "{:<28} {:>9} {:>12} {:>10}",
        "mode", "seconds", "bytes", "MiB/s in"
    );
    let input = measure("tar + sha256, no output", || {
        let hashing = write_layer(
            &dir,
            HashingWriter::new(io::sink()),
            LayerOptions::default(),
        )?;
        Ok(hashing.finish().2)
    })?;
    let run =
        |name: &str, make: &dyn Fn(File) -> io::Result<Box<dyn FinishWrite>>| -> io::Result<()> {
            let path = out_dir.join(name.replace([' ', '+', ','], "_"));
            let started = Instant::now();
            let file = File::create(&path)?;
            let writer = make(file)?;
            let hashing = write_layer(&dir, HashingWriter::new(writer), LayerOptions::default())?;
            let (writer, _, _) = hashing.finish();
            let file = writer.finish_write()?;
            file.sync_all()?;
            let seconds = started.elapsed().as_secs_f64();
            let size = std::fs::metadata(&path)?.len();
            println!(
                "{name:<28} {seconds:>9.2} {size:>12} {:>10.0}",
                input as f64 / seconds / 1048576.0
            );
            std::fs::remove_file(&path)
        };
    run("tar, written + fsync", &|f| Ok(Box::new(f)))?;
    for level in [2, 6] {
        run(&format!("gzip -{level} (zlib-rs)"), &|f| {
            Ok(Box::new(flate2::write::GzEncoder::new(
                f,
                flate2::Compression::new(level),
            )))
        })?;
    }
    for level in [1, 3] {
        run(&format!("zstd -{level}"), &|f| {
            Ok(Box::new(zstd::Encoder::new(f, level)?))
        })?;
    }
    Ok(())
}

fn measure(name: &str, f: impl FnOnce() -> io::Result<u64>) -> io::Result<u64> {
    let started = Instant::now();
    let bytes = f()?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{name:<28} {seconds:>9.2} {bytes:>12} {:>10.0}",
        bytes as f64 / seconds / 1048576.0
    );
    Ok(bytes)
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
