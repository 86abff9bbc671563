//! Gzip on every core, deterministically (as pigz does): the input is cut into blocks of
//! [`BLOCK`] bytes, each block is deflated on its own with the 32 KiB before it as its
//! dictionary (so matches reach back as far as in one stream) and ended with a sync flush
//! (a byte boundary), and the blocks are joined in order into one gzip member. The bytes
//! depend on the input and the level only, never on the number of threads, so every
//! machine makes the same blob of the same layer.
//!
//! Why: deflate at level 6 runs at ~14–30 MB/s per core here; a push of a freshly built
//! 1 GiB layer spent over a minute in one thread while the other cores idled.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// Input bytes per block: large enough that the per-block flush costs nothing measurable
/// (5 bytes per block), small enough to keep every core busy on layers of a few MiB.
pub const BLOCK: usize = 256 * 1024;
/// Deflate's window: the dictionary each block gets from the one before it.
const WINDOW: usize = 32 * 1024;

/// A gzip header with no name, no mtime and an unknown OS: the same bytes everywhere.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

struct Job {
    index: usize,
    dictionary: Vec<u8>,
    data: Vec<u8>,
    last: bool,
}

struct Done {
    index: usize,
    deflated: Vec<u8>,
    crc: Crc,
}

/// Gzips `input` into `out` with `threads` threads at `level` (0–9); returns `out`.
pub fn gzip<R: Read, W: Write>(
    mut input: R,
    mut out: W,
    level: u32,
    threads: usize,
) -> io::Result<W> {
    let threads = threads.max(1);
    out.write_all(&HEADER)?;
    let (job_sender, jobs) = mpsc::sync_channel::<Job>(threads);
    let jobs = Arc::new(Mutex::new(jobs));
    let (done_sender, done) = mpsc::channel::<io::Result<Done>>();
    std::thread::scope(|scope| -> io::Result<W> {
        for _ in 0..threads {
            let jobs = jobs.clone();
            let done_sender = done_sender.clone();
            scope.spawn(move || {
                loop {
                    let job = match jobs.lock().unwrap_or_else(|e| e.into_inner()).recv() {
                        Ok(job) => job,
                        Err(_) => return,
                    };
                    if done_sender.send(deflate_block(job, level)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_sender);

        let mut crc = Crc::new();
        let mut pending: BTreeMap<usize, Done> = BTreeMap::new();
        let mut next_to_write = 0;
        let mut in_flight = 0;
        let mut index = 0;
        let mut previous_tail: Vec<u8> = Vec::new();
        let mut block = read_block(&mut input)?;
        let mut write_ready = |pending: &mut BTreeMap<usize, Done>,
                               next: &mut usize,
                               out: &mut W|
         -> io::Result<usize> {
            let mut written = 0;
            while let Some(done) = pending.remove(next) {
                out.write_all(&done.deflated)?;
                crc.combine(&done.crc);
                *next += 1;
                written += 1;
            }
            Ok(written)
        };
        loop {
            // Read one block ahead to know whether this one is the last.
            let following = if block.len() == BLOCK {
                read_block(&mut input)?
            } else {
                Vec::new()
            };
            let last = following.is_empty();
            let tail_start = block.len().saturating_sub(WINDOW);
            let dictionary = std::mem::replace(&mut previous_tail, block[tail_start..].to_vec());
            // Keep at most two blocks per thread in memory.
            while in_flight >= 2 * threads {
                let finished = done
                    .recv()
                    .map_err(|_| io::Error::other("a gzip thread died"))??;
                pending.insert(finished.index, finished);
                in_flight -= write_ready(&mut pending, &mut next_to_write, &mut out)?;
            }
            job_sender
                .send(Job {
                    index,
                    dictionary,
                    data: block,
                    last,
                })
                .map_err(|_| io::Error::other("a gzip thread died"))?;
            in_flight += 1;
            index += 1;
            if last {
                break;
            }
            block = following;
        }
        drop(job_sender);
        while in_flight > 0 {
            let finished = done
                .recv()
                .map_err(|_| io::Error::other("a gzip thread died"))??;
            pending.insert(finished.index, finished);
            in_flight -= write_ready(&mut pending, &mut next_to_write, &mut out)?;
        }
        out.write_all(&crc.sum().to_le_bytes())?;
        out.write_all(&crc.amount().to_le_bytes())?;
        Ok(out)
    })
}

/// Up to [`BLOCK`] bytes; fewer only at the end of the input.
fn read_block(input: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut block = Vec::with_capacity(BLOCK);
    input.take(BLOCK as u64).read_to_end(&mut block)?;
    Ok(block)
}

fn deflate_block(job: Job, level: u32) -> io::Result<Done> {
    let mut compress = Compress::new(Compression::new(level), false);
    if !job.dictionary.is_empty() {
        compress
            .set_dictionary(&job.dictionary)
            .map_err(io::Error::other)?;
    }
    let flush = if job.last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut deflated = Vec::with_capacity(job.data.len() + job.data.len() / 8 + 64);
    loop {
        if deflated.capacity() - deflated.len() < 1024 {
            deflated.reserve(64 * 1024);
        }
        let consumed = compress.total_in() as usize;
        let status = compress
            .compress_vec(&job.data[consumed..], &mut deflated, flush)
            .map_err(io::Error::other)?;
        let all_in = compress.total_in() as usize == job.data.len();
        match status {
            Status::StreamEnd => break,
            // A sync flush is complete when it stopped with room to spare.
            _ if !job.last && all_in && deflated.len() < deflated.capacity() => break,
            _ => {}
        }
    }
    let mut crc = Crc::new();
    crc.update(&job.data);
    Ok(Done {
        index: job.index,
        deflated,
        crc,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    fn sample(len: usize) -> Vec<u8> {
        // Half text-like (compressible), half pseudo-random.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        (0..len)
            .map(|i| {
                if (i / 10_000) % 2 == 0 {
                    b"layer of text "[i % 14]
                } else {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                }
            })
            .collect()
    }

    #[test]
    fn round_trips_and_does_not_depend_on_threads() {
        for len in [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 12_345] {
            let input = sample(len);
            let one = gzip(&input[..], Vec::new(), 6, 1).unwrap();
            let four = gzip(&input[..], Vec::new(), 6, 4).unwrap();
            assert_eq!(one, four, "len {len}");
            assert_eq!(gunzip(&one), input, "len {len}");
        }
    }

    #[test]
    fn gzip_itself_reads_it() {
        let input = sample(3 * BLOCK + 777);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layer.gz");
        std::fs::write(&path, gzip(&input[..], Vec::new(), 6, 2).unwrap()).unwrap();
        let out = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(&path)
            .output()
            .expect("gzip is installed");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout == input, "gzip -d gave other bytes");
    }

    #[test]
    fn compresses_about_as_well_as_one_stream() {
        let input = sample(4 * BLOCK);
        let parallel = gzip(&input[..], Vec::new(), 6, 2).unwrap();
        let mut single = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        single.write_all(&input).unwrap();
        let single = single.finish().unwrap();
        assert!(
            parallel.len() as f64 <= single.len() as f64 * 1.01 + 64.0,
            "parallel {} vs one stream {}",
            parallel.len(),
            single.len()
        );
    }
}
