//! Measures gzip -6 of a file in one stream (flate2 with zlib-rs) against rbuild's block-
//! parallel gzip (`layer::pgzip`) with 1 and all threads: what a push of a built layer
//! spends compressing it.
//!
//! Usage: `cargo run --release -p rbuild-store --example pgzip -- FILE [ROUNDS]`

use std::fs::File;
use std::io::{self, BufReader, Write};
use std::time::Instant;

use rbuild_store::layer::pgzip;

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: pgzip FILE [ROUNDS]");
    let rounds: usize = args
        .next()
        .map_or(3, |r| r.parse().expect("ROUNDS is a number"));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let size = std::fs::metadata(&path)?.len() as f64 / (1 << 20) as f64;
    println!("{path}: {size:.0} MiB, {threads} threads, {rounds} rounds (interleaved)");
    let mut times: Vec<(String, Vec<f64>, u64)> = vec![
        ("one stream (GzEncoder)".into(), Vec::new(), 0),
        ("pgzip, 1 thread".into(), Vec::new(), 0),
        (format!("pgzip, {threads} threads"), Vec::new(), 0),
    ];
    for _ in 0..rounds {
        for (i, (_, samples, bytes)) in times.iter_mut().enumerate() {
            let input = BufReader::with_capacity(1 << 20, File::open(&path)?);
            let started = Instant::now();
            let out = match i {
                0 => {
                    let mut encoder =
                        flate2::write::GzEncoder::new(Counter(0), flate2::Compression::new(6));
                    io::copy(&mut { input }, &mut encoder)?;
                    encoder.finish()?
                }
                1 => pgzip::gzip(input, Counter(0), 6, 1)?,
                _ => pgzip::gzip(input, Counter(0), 6, threads)?,
            };
            samples.push(started.elapsed().as_secs_f64());
            *bytes = out.0;
        }
    }
    for (name, mut samples, bytes) in times {
        samples.sort_by(f64::total_cmp);
        let median = samples[samples.len() / 2];
        println!(
            "{name:<24} median {median:>7.2} s  {:>7.1} MiB/s  {:>12} bytes",
            size / median,
            bytes
        );
    }
    Ok(())
}

/// Counts what is written.
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
