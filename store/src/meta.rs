//! Metadata in redb: image names, committed snapshots and counters.
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
use crate::{Digest, ImageName};

const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images");
const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshots");
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
}

pub(crate) struct Meta {
    db: Database,
    path: PathBuf,
}

impl Meta {
    pub(crate) fn open(path: &Path) -> Result<Meta> {
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
        // Tables must exist before a read transaction can open them.
        meta.write(|tx| {
            tx.open_table(IMAGES)?;
            tx.open_table(SNAPSHOTS)?;
            tx.open_table(COUNTERS)?;
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

    fn write<T>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, redb::Error>,
    ) -> Result<T> {
        let tx = self.db.begin_write().map_err(|e| self.error()(e.into()))?;
        let value = f(&tx).map_err(self.error())?;
        tx.commit().map_err(|e| self.error()(e.into()))?;
        Ok(value)
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, redb::Error>,
    ) -> Result<T> {
        let tx = self.db.begin_read().map_err(|e| self.error()(e.into()))?;
        f(&tx).map_err(self.error())
    }

    pub(crate) fn next_id(&self, counter: &str) -> Result<u64> {
        self.write(|tx| {
            let mut table = tx.open_table(COUNTERS)?;
            let next = table.get(counter)?.map_or(1, |v| v.value() + 1);
            table.insert(counter, next)?;
            Ok(next)
        })
    }

    pub(crate) fn put_image(&self, record: &ImageRecord) -> Result<()> {
        let key = record.name.to_string();
        let value = serde_json::to_vec(record).expect("records always serialize");
        self.write(|tx| {
            tx.open_table(IMAGES)?
                .insert(key.as_str(), value.as_slice())?;
            Ok(())
        })
    }

    pub(crate) fn remove_image(&self, name: &ImageName) -> Result<bool> {
        let key = name.to_string();
        self.write(|tx| Ok(tx.open_table(IMAGES)?.remove(key.as_str())?.is_some()))
    }

    pub(crate) fn image(&self, name: &ImageName) -> Result<Option<ImageRecord>> {
        let key = name.to_string();
        let bytes = self.read(|tx| {
            Ok(tx
                .open_table(IMAGES)?
                .get(key.as_str())?
                .map(|v| v.value().to_vec()))
        })?;
        bytes.map(|b| decode(&key, &b)).transpose()
    }

    pub(crate) fn images(&self) -> Result<Vec<ImageRecord>> {
        let rows = self.read(|tx| {
            let table = tx.open_table(IMAGES)?;
            let mut rows = Vec::new();
            for row in table.iter()? {
                let (key, value) = row?;
                rows.push((key.value().to_owned(), value.value().to_vec()));
            }
            Ok(rows)
        })?;
        rows.iter().map(|(key, bytes)| decode(key, bytes)).collect()
    }

    pub(crate) fn snapshot(&self, name: &Digest) -> Result<Option<SnapshotRecord>> {
        let key = name.to_string();
        let bytes = self.read(|tx| {
            Ok(tx
                .open_table(SNAPSHOTS)?
                .get(key.as_str())?
                .map(|v| v.value().to_vec()))
        })?;
        bytes.map(|b| decode(&key, &b)).transpose()
    }

    /// Records a snapshot unless one with the same name exists; returns the record that is
    /// in the store afterwards (the existing one when another writer was first).
    pub(crate) fn insert_snapshot(
        &self,
        name: &Digest,
        record: &SnapshotRecord,
    ) -> Result<SnapshotRecord> {
        let key = name.to_string();
        let value = serde_json::to_vec(record).expect("records always serialize");
        let existing = self.write(|tx| {
            let mut table = tx.open_table(SNAPSHOTS)?;
            let existing = table.get(key.as_str())?.map(|v| v.value().to_vec());
            if existing.is_none() {
                table.insert(key.as_str(), value.as_slice())?;
            }
            Ok(existing)
        })?;
        match existing {
            Some(bytes) => decode(&key, &bytes),
            None => Ok(record.clone()),
        }
    }
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| Error::CorruptRecord {
        key: key.to_owned(),
        source,
    })
}
