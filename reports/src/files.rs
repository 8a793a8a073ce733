//! Files a lab keeps private, and locks for what runs started together share: private keys
//! readable by their owner only (in directories only their owner may enter), written whole or
//! not at all; one process at a time making what a lab directory or a build directory holds.

use std::path::{Path, PathBuf};

/// A private file or a lock could not be made.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot lock {}: {source}", .path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl FileError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
        move |source| FileError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Creates `dir` (and its parents) for private keys: only its owner may enter a directory
/// it creates.
pub fn create_private_dir(dir: &Path) -> Result<(), FileError> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir).map_err(FileError::io(dir))
}

/// Writes `text` to `path`, readable and writable by this user only: made aside under a name
/// no other writer uses, then moved over `path` (a reader never sees half a key, and two
/// writers never collide).
pub fn write_private(path: &Path, text: &str) -> Result<(), FileError> {
    write_aside(path, text, true)
}

/// Writes `text` to `path` whole or not at all, as [`write_private`] does, for a file anyone
/// may read (a certificate).
pub fn write_whole(path: &Path, text: &str) -> Result<(), FileError> {
    write_aside(path, text, false)
}

fn write_aside(path: &Path, text: &str, private: bool) -> Result<(), FileError> {
    use std::io::Write;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("part-{}-{n}", std::process::id()));
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    o.open(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| {
            let _ = std::fs::remove_file(&tmp);
            FileError::Io {
                path: path.to_path_buf(),
                source,
            }
        })
}

/// Takes the lock file `path` (made if missing), waiting for whoever holds it; held until the
/// returned file is dropped.
pub fn lock(path: &Path) -> Result<std::fs::File, FileError> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(FileError::io(path))?;
    file.lock().map_err(|source| FileError::Lock {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(file)
}

/// Runs `f` holding the lab directory `dir`'s lock (made private first, if new): what is
/// made there once (the results key, the lab's root CA) is made by one process of those that
/// start together.
pub fn with_lab_lock<T, E: From<FileError>>(
    dir: &Path,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    create_private_dir(dir)?;
    let _held = lock(&dir.join(".lock"))?;
    f()
}
