//! The cloud's state in an embedded database (redb). One table per service, keys and
//! values as the service encodes them; every change is one transaction, committed (and so
//! durable) before the change is answered.

use redb::{Database, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};

/// Shadows: `thing \0 shadow name` (empty for the classic shadow) → the stored record.
const SHADOWS: TableDefinition<&str, &[u8]> = TableDefinition::new("shadows");

/// The registry's tables, each keyed by text, its values as the registry encodes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// Thing name → the thing's record.
    Things,
    /// Group name → the group's record.
    Groups,
    /// `group \0 thing` → nothing: static membership.
    Members,
    /// Job id → the job's record.
    Jobs,
    /// `thing \0 job id` → the job's execution on that thing.
    Executions,
    /// `thing \0 report id` (20 digits) → an accepted Defender report, normalised.
    Reports,
    /// Security profile name → the profile.
    Profiles,
    /// `thing \0 profile \0 behaviour` → the active alarm.
    Alarms,
    /// Greengrass group id → the group (cores, CAs, members).
    Greengrass,
    /// Certificate SHA-256 → what the audit needs of it.
    Certificates,
    /// Policy name → the policy (its grants and the things it is attached to).
    Policies,
    /// `stream \0 file id` (10 digits) → the file's bytes.
    Streams,
}

impl Table {
    /// Every table.
    const ALL: [Table; 12] = [
        Table::Things,
        Table::Groups,
        Table::Members,
        Table::Jobs,
        Table::Executions,
        Table::Reports,
        Table::Profiles,
        Table::Alarms,
        Table::Greengrass,
        Table::Certificates,
        Table::Policies,
        Table::Streams,
    ];
}

impl Table {
    fn definition(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        match self {
            Table::Things => TableDefinition::new("things"),
            Table::Groups => TableDefinition::new("groups"),
            Table::Members => TableDefinition::new("members"),
            Table::Jobs => TableDefinition::new("jobs"),
            Table::Executions => TableDefinition::new("executions"),
            Table::Reports => TableDefinition::new("reports"),
            Table::Profiles => TableDefinition::new("profiles"),
            Table::Alarms => TableDefinition::new("alarms"),
            Table::Greengrass => TableDefinition::new("greengrass"),
            Table::Certificates => TableDefinition::new("certificates"),
            Table::Policies => TableDefinition::new("policies"),
            Table::Streams => TableDefinition::new("streams"),
        }
    }
}

/// The cloud's database could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
#[error(
    "the cloud's database {}: {why}\n  fix: check the lab directory's disk and permissions; \
     another fqp cloud may hold the database open (one cloud per lab directory)",
    .path.display()
)]
pub struct StoreError {
    path: PathBuf,
    why: String,
}

/// The cloud's state.
#[derive(Debug)]
pub struct Store {
    db: Database,
    path: PathBuf,
}

impl Store {
    /// Opens the database at `path`, creating it (and its tables) if new.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let fail = |why: String| StoreError {
            path: path.to_path_buf(),
            why,
        };
        let db = Database::create(path).map_err(|e| fail(e.to_string()))?;
        let store = Store {
            db,
            path: path.to_path_buf(),
        };
        store.write(|tx| {
            tx.open_table(SHADOWS)?;
            for t in Table::ALL {
                tx.open_table(t.definition())?;
            }
            Ok(())
        })?;
        Ok(store)
    }

    fn error(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError {
            path: self.path.clone(),
            why: e.to_string(),
        }
    }

    /// Runs `f` in one write transaction and commits it.
    fn write<R>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<R, redb::TableError>,
    ) -> Result<R, StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.error(e))?;
        let r = f(&tx).map_err(|e| self.error(e))?;
        tx.commit().map_err(|e| self.error(e))?;
        Ok(r)
    }

    /// The stored shadow record under `key`, if any.
    pub fn shadow(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = tx.open_table(SHADOWS).map_err(|e| self.error(e))?;
        let value = table.get(key).map_err(|e| self.error(e))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// Replaces the shadow record under `key`: `update` sees the record stored now and
    /// returns the new one (or `None` to leave it), and what to answer; all in one
    /// transaction, so two updates of one shadow never interleave.
    pub fn update_shadow<R>(
        &self,
        key: &str,
        update: impl FnOnce(Option<&[u8]>) -> (Option<Vec<u8>>, R),
    ) -> Result<R, StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.error(e))?;
        let answer = {
            let mut table = tx.open_table(SHADOWS).map_err(|e| self.error(e))?;
            let now = table
                .get(key)
                .map_err(|e| self.error(e))?
                .map(|v| v.value().to_vec());
            let (new, answer) = update(now.as_deref());
            if let Some(new) = new {
                table
                    .insert(key, new.as_slice())
                    .map_err(|e| self.error(e))?;
            }
            answer
        };
        tx.commit().map_err(|e| self.error(e))?;
        Ok(answer)
    }

    /// The value under `key` in `table`, if any.
    pub fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.error(e))?;
        let t = tx
            .open_table(table.definition())
            .map_err(|e| self.error(e))?;
        let value = t.get(key).map_err(|e| self.error(e))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// Every (key, value) of `table` whose key starts with `prefix`, in key order.
    pub fn scan(&self, table: Table, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.error(e))?;
        let t = tx
            .open_table(table.definition())
            .map_err(|e| self.error(e))?;
        let mut out = Vec::new();
        for entry in t.range(prefix..).map_err(|e| self.error(e))? {
            let (k, v) = entry.map_err(|e| self.error(e))?;
            if !k.value().starts_with(prefix) {
                break;
            }
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Applies `changes` to the registry's tables in one transaction: `Some(value)` puts,
    /// `None` removes.
    pub fn apply(&self, changes: &[(Table, &str, Option<&[u8]>)]) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.error(e))?;
        for &(table, key, value) in changes {
            let mut t = tx
                .open_table(table.definition())
                .map_err(|e| self.error(e))?;
            match value {
                Some(v) => drop(t.insert(key, v).map_err(|e| self.error(e))?),
                None => drop(t.remove(key).map_err(|e| self.error(e))?),
            }
        }
        tx.commit().map_err(|e| self.error(e))
    }
}

/// A store in a fresh file, for a test; the file goes when this is dropped.
#[cfg(test)]
pub(crate) struct Scratch {
    path: PathBuf,
    store: Option<Store>,
}

#[cfg(test)]
impl Scratch {
    pub(crate) fn new(name: &str) -> Scratch {
        let path =
            std::env::temp_dir().join(format!("fqp-cloud-{name}-{}.redb", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let store = Some(Store::open(&path).unwrap());
        Scratch { path, store }
    }

    /// Closes the database and opens it again, as a restarted cloud does.
    pub(crate) fn reopen(&mut self) {
        self.store = None;
        self.store = Some(Store::open(&self.path).unwrap());
    }
}

#[cfg(test)]
impl std::ops::Deref for Scratch {
    type Target = Store;

    fn deref(&self) -> &Store {
        self.store.as_ref().expect("open")
    }
}

#[cfg(test)]
impl Drop for Scratch {
    fn drop(&mut self) {
        self.store = None;
        let _ = std::fs::remove_file(&self.path);
    }
}
