//! The blocking side of a download: chunks from the socket into an ingest, and — for the
//! lowest layer not yet unpacked — into the layer unpacker at the same time, so a layer is
//! unpacked while it downloads.
//!
//! The snapshot being unpacked stays active (uncommitted) until the blob has been
//! committed under its digest and the unpacked tar's diff id is the config's: bytes that
//! fail verification never reach a committed snapshot. Anything unusual (a restarted
//! download, a pipe the unpacker closed, an unpack error) just abandons the streamed
//! snapshot; the layer is then unpacked from the committed blob, which reports any error
//! properly.

use std::io::{self, Write};
use std::thread::JoinHandle;

use bytes::Bytes;
use tokio::sync::mpsc;

use rbuild_store::layer::{self, Unpacked};
use rbuild_store::{ActiveSnapshot, Digest, SnapshotName, Store};

pub(crate) enum Chunk {
    Data(Bytes),
    /// Discard what was written: the download starts over.
    Restart,
    /// Everything was sent: commit.
    Finish,
}

/// Unpack this layer while it downloads: on top of `parent` (which exists), expecting
/// `diff_id`.
#[derive(Debug, Clone)]
pub(crate) struct StreamUnpack {
    pub parent: Option<SnapshotName>,
    pub diff_id: Digest,
}

/// Writes chunks into an ingest and commits it under `digest` when told to; without
/// `Finish` (the download failed) nothing is committed. Returns the committed digest and
/// whether the layer was unpacked on the way.
pub(crate) fn write_chunks(
    store: &Store,
    mut receiver: mpsc::Receiver<Chunk>,
    digest: &Digest,
    unpack: Option<StreamUnpack>,
) -> rbuild_store::Result<(Option<Digest>, bool)> {
    let mut ingest = store.ingest()?;
    let mut streaming = unpack.and_then(|u| Streaming::start(store, digest, u).ok());
    while let Some(chunk) = receiver.blocking_recv() {
        match chunk {
            Chunk::Data(bytes) => {
                ingest
                    .write_all(&bytes)
                    .map_err(rbuild_store::Error::io("write blob", store.root()))?;
                if let Some(streaming) = &mut streaming {
                    streaming.write(&bytes);
                }
            }
            Chunk::Restart => {
                ingest = store.ingest()?;
                if let Some(streaming) = streaming.take() {
                    streaming.abandon(store);
                }
            }
            Chunk::Finish => {
                let committed = match ingest.commit(Some(digest)) {
                    Ok((committed, _)) => committed,
                    Err(err) => {
                        if let Some(streaming) = streaming.take() {
                            streaming.abandon(store);
                        }
                        return Err(err);
                    }
                };
                let unpacked = match streaming.take() {
                    Some(streaming) => streaming.finish(store),
                    None => false,
                };
                return Ok((Some(committed), unpacked));
            }
        }
    }
    if let Some(streaming) = streaming {
        streaming.abandon(store);
    }
    Ok((None, false))
}

/// A layer being unpacked by a thread from a pipe.
struct Streaming {
    active: ActiveSnapshot,
    diff_id: Digest,
    /// `None` once the unpacker stopped reading (it finished, or failed).
    writer: Option<io::PipeWriter>,
    thread: JoinHandle<rbuild_store::Result<Unpacked>>,
}

impl Streaming {
    fn start(
        store: &Store,
        digest: &Digest,
        unpack: StreamUnpack,
    ) -> rbuild_store::Result<Streaming> {
        let active = store.prepare(unpack.parent.as_ref())?;
        let (reader, writer) = match io::pipe() {
            Ok(pipe) => pipe,
            Err(err) => {
                let _ = store.discard(active);
                return Err(rbuild_store::Error::io("create a pipe in", store.root())(
                    err,
                ));
            }
        };
        let upper = active.upper.clone();
        let what = digest.clone();
        let xattrs = store.overlay_xattrs();
        let thread = std::thread::Builder::new()
            .name("layer-unpacker".into())
            .spawn(move || {
                layer::unpack_layer(
                    io::BufReader::with_capacity(1 << 20, reader),
                    &upper,
                    &what,
                    xattrs,
                )
            });
        let thread = match thread {
            Ok(thread) => thread,
            Err(err) => {
                let _ = store.discard(active);
                return Err(rbuild_store::Error::io("start a thread in", store.root())(
                    err,
                ));
            }
        };
        Ok(Streaming {
            active,
            diff_id: unpack.diff_id,
            writer: Some(writer),
            thread,
        })
    }

    fn write(&mut self, bytes: &[u8]) {
        if let Some(writer) = &mut self.writer
            && writer.write_all(bytes).is_err()
        {
            // The unpacker stopped reading; whether it succeeded is known at the end.
            self.writer = None;
        }
    }

    /// Ends the stream and commits the snapshot if the unpacker read a tar with the
    /// expected diff id; returns whether it did.
    fn finish(mut self, store: &Store) -> bool {
        drop(self.writer.take());
        match self.thread.join() {
            Ok(Ok(unpacked)) if unpacked.diff_id == self.diff_id => {
                let committed = store.commit(self.active, &self.diff_id).is_ok();
                if committed {
                    // Without the record, the size is measured from the blob when asked for.
                    let _ = store.record_layer_size(&self.diff_id, unpacked.size);
                }
                committed
            }
            _ => {
                let _ = store.discard(self.active);
                false
            }
        }
    }

    fn abandon(mut self, store: &Store) {
        drop(self.writer.take());
        let _ = self.thread.join();
        let _ = store.discard(self.active);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip_layer() -> (Vec<u8>, Digest) {
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(5);
        header.set_mode(0o644);
        header.set_uid(rustix::process::geteuid().as_raw().into());
        header.set_gid(rustix::process::getegid().as_raw().into());
        header.set_cksum();
        tar.append_data(&mut header, "hello", &b"hello"[..])
            .unwrap();
        let tar = tar.into_inner().unwrap();
        let diff_id = Digest::of(&tar);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        gz.write_all(&tar).unwrap();
        (gz.finish().unwrap(), diff_id)
    }

    fn run(store: &Store, blob: &[u8], diff_id: &Digest, restart: bool) -> (Option<Digest>, bool) {
        let (sender, receiver) = mpsc::channel(4);
        let digest = Digest::of(blob);
        let unpack = StreamUnpack {
            parent: None,
            diff_id: diff_id.clone(),
        };
        let writer = {
            let store = store.clone();
            std::thread::spawn(move || write_chunks(&store, receiver, &digest, Some(unpack)))
        };
        let (head, tail) = blob.split_at(blob.len() / 2);
        sender
            .blocking_send(Chunk::Data(Bytes::copy_from_slice(head)))
            .unwrap();
        if restart {
            sender.blocking_send(Chunk::Restart).unwrap();
            sender
                .blocking_send(Chunk::Data(Bytes::copy_from_slice(head)))
                .unwrap();
        }
        sender
            .blocking_send(Chunk::Data(Bytes::copy_from_slice(tail)))
            .unwrap();
        sender.blocking_send(Chunk::Finish).unwrap();
        writer.join().unwrap().unwrap()
    }

    #[test]
    fn a_layer_is_unpacked_while_it_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (blob, diff_id) = gzip_layer();
        let (committed, unpacked) = run(&store, &blob, &diff_id, false);
        assert_eq!(committed, Some(Digest::of(&blob)));
        assert!(unpacked);
        let name = SnapshotName::chain(None, &diff_id);
        assert!(store.snapshot(&name).unwrap().is_some());
    }

    #[test]
    fn a_wrong_diff_id_or_a_restart_leaves_no_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (blob, diff_id) = gzip_layer();
        let wrong = Digest::of(b"something else");
        let (committed, unpacked) = run(&store, &blob, &wrong, false);
        assert!(committed.is_some() && !unpacked);
        assert!(
            store
                .snapshot(&SnapshotName::chain(None, &wrong))
                .unwrap()
                .is_none()
        );
        let (committed, unpacked) = run(&store, &blob, &diff_id, true);
        assert!(committed.is_some() && !unpacked);
        assert!(
            store
                .snapshot(&SnapshotName::chain(None, &diff_id))
                .unwrap()
                .is_none()
        );
        // Nothing active is left behind.
        let snapshots = std::fs::read_dir(dir.path().join("snapshots"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name() != "empty")
            .count();
        assert_eq!(snapshots, 0);
    }
}
