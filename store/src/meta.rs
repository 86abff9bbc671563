//! Metadata in redb: image names, committed and active snapshots, leases, counters.
//!
//! The database is opened in redb's multi-writer mode, so several rbuild processes can
//! share a store: each write is one short transaction. Records are JSON values keyed by
//! strings, which keeps them readable and lets fields be added without migrations.
//! Metadata is written only after the blobs and snapshot files it names are durable.

use std::path::{Path, PathBuf};

use redb::{ConcurrencyMode, Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::owner::Owner;
use crate::{Digest, ImageName};

pub(crate) type Table = TableDefinition<'static, &'static str, &'static [u8]>;

pub(crate) const IMAGES: Table = TableDefinition::new("images");
pub(crate) const SNAPSHOTS: Table = TableDefinition::new("snapshots");
/// Snapshot dir number → the process writing it.
pub(crate) const ACTIVE: Table = TableDefinition::new("active");
pub(crate) const LEASES: Table = TableDefinition::new("leases");
/// Build cache records, keyed by the builder's cache key.
pub(crate) const CACHE: Table = TableDefinition::new("cache");
/// Small documents other crates keep in the store (e.g. context file hashes), by name.
pub(crate) const STATE: Table = TableDefinition::new("state");
/// Layer diff id → its uncompressed size (see `sizes`), for layers kept compressed.
pub(crate) const LAYER_SIZES: Table = TableDefinition::new("layer_sizes");
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");

/// What a name points to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub name: ImageName,
    pub manifest: Digest,
    /// When the name was last set (RFC 3339).
    pub tagged: String,
}

/// A committed snapshot: one layer's diff, unpacked in overlay format, on top of `parent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    /// Directory number under `snapshots/`.
    pub id: u64,
    pub parent: Option<Digest>,
    pub diff_id: Digest,
    /// Disk usage of the directory in bytes (allocated blocks), measured at commit.
    #[serde(default)]
    pub size: u64,
    /// Set when rbuild made this layer (a build step): its tar is not kept as a blob but
    /// written again from the directory, with these options, whenever it is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub built: Option<crate::layer::LayerOptions>,
}

/// An active snapshot: who is writing it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ActiveRecord {
    pub owner: Owner,
}

/// What a lease keeps from GC while its owner runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LeaseRecord {
    pub owner: Option<Owner>,
    pub created: i64,
    #[serde(default)]
    pub blobs: Vec<Digest>,
    #[serde(default)]
    pub snapshots: Vec<Digest>,
    /// Manifests kept with everything they reference.
    #[serde(default)]
    pub manifests: Vec<Digest>,
}

/// Whether the file at `path` starts with no magic number: shorter than one, or zeros.
fn never_written(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 9];
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let mut read = 0;
    while read < head.len() {
        match file.read(&mut head[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(_) => return false,
        }
    }
    head[..read].iter().all(|&b| b == 0)
}

pub(crate) struct Meta {
    db: Database,
    path: PathBuf,
}

impl Meta {
    /// Opens the database at `path`. A missing one is made in `scratch` (a directory on the
    /// same filesystem, cleaned of dead processes' files) with its tables and renamed into
    /// place, so a process killed while making it leaves no half-written database behind.
    pub(crate) fn open(path: &Path, scratch: &Path) -> Result<Meta> {
        if !path.exists() || never_written(path) {
            // An older rbuild made the database in place: one killed then left a file that
            // never got redb's magic number, so nothing was ever committed to it.
            let _ = std::fs::remove_file(path);
            Meta::create(path, scratch)?;
        }
        Meta::open_at(path)
    }

    fn create(path: &Path, scratch: &Path) -> Result<()> {
        let temp = scratch.join(crate::blobs::unique_name());
        let made = Meta::open_at(&temp).and_then(|meta| {
            drop(meta);
            // Another rbuild that made one meanwhile wins; this one is thrown away.
            match rustix::fs::renameat_with(
                rustix::fs::CWD,
                &temp,
                rustix::fs::CWD,
                path,
                rustix::fs::RenameFlags::NOREPLACE,
            ) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
                Err(err) => Err(Error::io("create", path)(err.into())),
            }
        });
        let _ = std::fs::remove_file(&temp);
        made?;
        if let Some(dir) = path.parent() {
            crate::blobs::sync_dir(dir)?;
        }
        Ok(())
    }

    fn open_at(path: &Path) -> Result<Meta> {
        let db = Database::builder()
            .set_concurrency_mode(ConcurrencyMode::MultiWriter)
            .create(path)
            .map_err(|source| Error::Metadata {
                path: path.to_owned(),
                source: Box::new(source.into()),
            })?;
        let meta = Meta {
            db,
            path: path.to_owned(),
        };
        // Tables must exist before a read transaction can open them. Creating
        // them takes a write transaction (an fsync); a store that has them
        // already is opened read-only, which keeps `rbuild run` and friends
        // from paying a disk flush per command.
        let present = meta.read_raw(|tx| {
            for table in [IMAGES, SNAPSHOTS, ACTIVE, LEASES, CACHE, STATE, LAYER_SIZES] {
                match tx.open_table(table) {
                    Ok(_) => {}
                    Err(redb::TableError::TableDoesNotExist(_)) => return Ok(false),
                    Err(e) => return Err(e.into()),
                }
            }
            match tx.open_table(COUNTERS) {
                Ok(_) => Ok(true),
                Err(redb::TableError::TableDoesNotExist(_)) => Ok(false),
                Err(e) => Err(e.into()),
            }
        })?;
        if present {
            return Ok(meta);
        }
        meta.write(|tx| {
            for table in [IMAGES, SNAPSHOTS, ACTIVE, LEASES, CACHE, STATE, LAYER_SIZES] {
                tx.tx.open_table(table)?;
            }
            tx.tx.open_table(COUNTERS)?;
            Ok(())
        })?;
        Ok(meta)
    }

    fn error(&self) -> impl Fn(redb::Error) -> Error + '_ {
        |source| Error::Metadata {
            path: self.path.clone(),
            source: Box::new(source),
        }
    }

    /// Runs `f` in one write transaction and commits it.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&Tx<'_>) -> Result<T, redb::Error>) -> Result<T> {
        let tx = self.db.begin_write().map_err(|e| self.error()(e.into()))?;
        let value = f(&Tx { tx: &tx }).map_err(self.error())?;
        tx.commit().map_err(|e| self.error()(e.into()))?;
        Ok(value)
    }

    fn read_raw<T>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, redb::Error>,
    ) -> Result<T> {
        let tx = self.db.begin_read().map_err(|e| self.error()(e.into()))?;
        f(&tx).map_err(self.error())
    }

    pub(crate) fn get<T: DeserializeOwned>(&self, table: Table, key: &str) -> Result<Option<T>> {
        let bytes =
            self.read_raw(|tx| Ok(tx.open_table(table)?.get(key)?.map(|v| v.value().to_vec())))?;
        bytes.map(|b| decode(key, &b)).transpose()
    }

    /// Every record of `table`, in key order.
    pub(crate) fn list<T: DeserializeOwned>(&self, table: Table) -> Result<Vec<(String, T)>> {
        let rows = self.read_raw(|tx| {
            let table = tx.open_table(table)?;
            let mut rows = Vec::new();
            for row in table.iter()? {
                let (key, value) = row?;
                rows.push((key.value().to_owned(), value.value().to_vec()));
            }
            Ok(rows)
        })?;
        rows.into_iter()
            .map(|(key, bytes)| Ok((key.clone(), decode(&key, &bytes)?)))
            .collect()
    }

    pub(crate) fn get_raw(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>> {
        self.read_raw(|tx| Ok(tx.open_table(table)?.get(key)?.map(|v| v.value().to_vec())))
    }

    pub(crate) fn put_raw(&self, table: Table, key: &str, value: &[u8]) -> Result<()> {
        self.write(|tx| {
            tx.tx.open_table(table)?.insert(key, value)?;
            Ok(())
        })
    }

    pub(crate) fn put<T: Serialize>(&self, table: Table, key: &str, value: &T) -> Result<()> {
        self.write(|tx| tx.put(table, key, value))
    }

    pub(crate) fn remove(&self, table: Table, key: &str) -> Result<bool> {
        self.write(|tx| tx.remove(table, key))
    }

    /// Allocates a snapshot dir number and records this process as its writer, in one
    /// transaction: a directory is never without an owner or a record.
    pub(crate) fn begin_snapshot(&self, owner: Owner) -> Result<u64> {
        self.write(|tx| {
            let mut table = tx.tx.open_table(COUNTERS)?;
            let id = table.get("snapshot")?.map_or(1, |v| v.value() + 1);
            table.insert("snapshot", id)?;
            drop(table);
            tx.put(ACTIVE, &id.to_string(), &ActiveRecord { owner })?;
            Ok(id)
        })
    }

    /// Records a committed snapshot and drops its active record, unless one with the same
    /// name exists (the active record then stays: its directory is still the caller's); returns the record in the store afterwards (the existing one when
    /// another writer was first).
    pub(crate) fn commit_snapshot(
        &self,
        name: &Digest,
        record: &SnapshotRecord,
    ) -> Result<SnapshotRecord> {
        let key = name.to_string();
        let existing = self.write(|tx| {
            let existing: Option<Vec<u8>> = tx.get_raw(SNAPSHOTS, &key)?;
            if existing.is_none() {
                tx.remove(ACTIVE, &record.id.to_string())?;
                tx.put(SNAPSHOTS, &key, record)?;
            }
            Ok(existing)
        })?;
        match existing {
            Some(bytes) => decode(&key, &bytes),
            None => Ok(record.clone()),
        }
    }
}

/// A write transaction with JSON-record helpers.
pub(crate) struct Tx<'a> {
    tx: &'a redb::WriteTransaction,
}

impl Tx<'_> {
    pub(crate) fn get_raw(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, redb::Error> {
        Ok(self
            .tx
            .open_table(table)?
            .get(key)?
            .map(|v| v.value().to_vec()))
    }

    pub(crate) fn put<T: Serialize>(
        &self,
        table: Table,
        key: &str,
        value: &T,
    ) -> Result<(), redb::Error> {
        let bytes = serde_json::to_vec(value).expect("records always serialize");
        self.tx.open_table(table)?.insert(key, bytes.as_slice())?;
        Ok(())
    }

    pub(crate) fn remove(&self, table: Table, key: &str) -> Result<bool, redb::Error> {
        Ok(self.tx.open_table(table)?.remove(key)?.is_some())
    }
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| Error::CorruptRecord {
        key: key.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_database_is_made_aside_and_renamed_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = dir.path().join("tmp");
        std::fs::create_dir(&scratch).unwrap();
        let path = dir.path().join("meta.redb");
        let meta = Meta::open(&path, &scratch).unwrap();
        meta.write(|tx| {
            tx.tx.open_table(STATE)?.insert("k", b"v".as_slice())?;
            Ok(())
        })
        .unwrap();
        drop(meta);
        assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);
        let meta = Meta::open(&path, &scratch).unwrap();
        let value = meta
            .read_raw(|tx| Ok(tx.open_table(STATE)?.get("k")?.map(|v| v.value().to_vec())))
            .unwrap();
        assert_eq!(value.as_deref(), Some(b"v".as_slice()));
    }

    #[test]
    fn a_database_killed_before_its_magic_number_is_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        for left in [&[][..], &[0u8; 4096][..]] {
            std::fs::write(&path, left).unwrap();
            Meta::open(&path, dir.path()).unwrap();
            assert!(!never_written(&path));
        }
        // A real database that cannot be read is an error, never replaced.
        std::fs::write(&path, b"not a database at all").unwrap();
        assert!(Meta::open(&path, dir.path()).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"not a database at all");
    }
}
