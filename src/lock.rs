//! Per-target locks (`<state_dir>/locks/<target>.lock`), so that overlapping
//! runs from cron, timers and people never work on one target at once.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result};

use crate::error::LockHeld;

/// Held for as long as it lives; the OS releases it when the process dies.
#[derive(Debug)]
pub struct TargetLock {
    _file: File,
}

impl TargetLock {
    /// Takes the lock of `target` without waiting; [`LockHeld`] when busy.
    pub fn acquire(state_dir: &Path, target: &str) -> Result<TargetLock> {
        take(state_dir, target, "lock")
    }

    /// The lock of `target` for a pass that changes nothing (`--dry-run`):
    /// it creates no directory and no file. The lock file is opened
    /// read-only (enough for `flock`) and taken, so a dry run still says
    /// so when a real run holds it ([`LockHeld`]); no lock file means no
    /// run ever held it ([`Probe::Free`]); one we may not open cannot be
    /// checked ([`Probe::Unknown`]), which the caller reports and goes on.
    pub fn probe(state_dir: &Path, target: &str) -> Result<Probe> {
        probe(
            &state_dir.join("locks").join(format!("{target}.lock")),
            target,
        )
    }

    /// [`TargetLock::probe`] for the watcher lock of `blat fast`.
    pub fn probe_watch(state_dir: &Path, target: &str) -> Result<Probe> {
        probe(
            &state_dir.join("locks").join(format!("{target}.watch")),
            target,
        )
    }

    /// The watcher lock of `blat fast` (`locks/<target>.watch`, never a
    /// `.lock` name, so no target's lock can collide with it): one tag
    /// watcher per target for a whole `--watch`, while the target lock is
    /// taken only around transfers, so `sync` is not shut out for minutes.
    pub fn acquire_watch(state_dir: &Path, target: &str) -> Result<TargetLock> {
        take(state_dir, target, "watch")
    }
}

/// Takes `<state_dir>/locks/<target>.<suffix>` without waiting (created when
/// missing, never through a symlink); [`LockHeld`] when another run holds it.
fn take(state_dir: &Path, target: &str, suffix: &str) -> Result<TargetLock> {
    let (path, file) = open_lock_file(state_dir, &format!("{target}.{suffix}"))?;
    match file.try_lock() {
        Ok(()) => Ok(TargetLock { _file: file }),
        Err(TryLockError::WouldBlock) => Err(LockHeld(target.to_string()).into()),
        Err(TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// Waits for and takes `<state_dir>/locks/<name>`: for short work that
/// runs must do one at a time whatever their targets (splitting the state
/// file of an earlier version). `name` never ends in `.lock` or `.watch`
/// unless it starts with `.`, so no target's lock is ever taken here.
pub fn wait_for(state_dir: &Path, name: &str) -> Result<TargetLock> {
    let (path, file) = open_lock_file(state_dir, name)?;
    file.lock()
        .with_context(|| format!("cannot lock {}", path.display()))?;
    Ok(TargetLock { _file: file })
}

/// Opens `<state_dir>/locks/<name>` for locking, created when missing
/// (with its directory), never through a symlink: the one way `take` and
/// `wait_for` open their lock files.
fn open_lock_file(state_dir: &Path, name: &str) -> Result<(std::path::PathBuf, File)> {
    let dir = state_dir.join("locks");
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create lock directory {}", dir.display()))?;
    let path = dir.join(name);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .with_context(|| format!("cannot open lock file {}", path.display()))?;
    Ok((path, file))
}

/// What [`TargetLock::probe`] found.
#[derive(Debug)]
pub enum Probe {
    /// The lock, held for as long as this lives.
    Held(TargetLock),
    /// No lock file: no run holds the lock.
    Free,
    /// The lock file could not be opened (why, for a warning).
    Unknown(String),
}

fn probe(path: &Path, target: &str) -> Result<Probe> {
    let file = match OpenOptions::new().read(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Probe::Free),
        Err(e) => {
            return Ok(Probe::Unknown(format!(
                "cannot open lock file {}: {e}",
                path.display()
            )))
        }
    };
    match file.try_lock() {
        Ok(()) => Ok(Probe::Held(TargetLock { _file: file })),
        Err(TryLockError::WouldBlock) => Err(LockHeld(target.to_string()).into()),
        Err(TryLockError::Error(e)) => Ok(Probe::Unknown(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

/// The lock of a target-side job on `archive`: `.dpkg_archive/locks/<job>.lock`.
/// When it is held, the message names the archive and the job.
pub fn archive_lock(archive: &Path, job: &str, place: &str) -> Result<TargetLock> {
    // The archive may be a target's, where anyone could have planted a
    // symlink as .dpkg_archive or its locks/: never written through.
    let dpkg = archive.join(".dpkg_archive");
    crate::atomic::own_dir(&dpkg)?;
    crate::atomic::own_dir(&dpkg.join("locks"))?;
    TargetLock::acquire(&dpkg, job).map_err(|e| {
        if e.is::<LockHeld>() {
            LockHeld(format!("{place} (blat {job})")).into()
        } else {
            e
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let first = TargetLock::acquire(dir.path(), "a").unwrap();
        let err = TargetLock::acquire(dir.path(), "a").unwrap_err();
        assert!(err.downcast_ref::<LockHeld>().is_some());
        assert!(TargetLock::acquire(dir.path(), "b").is_ok());
        drop(first);
        assert!(TargetLock::acquire(dir.path(), "a").is_ok());
    }

    #[test]
    fn probe_creates_nothing_and_sees_a_held_lock() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        assert!(matches!(
            TargetLock::probe(&state, "a").unwrap(),
            Probe::Free
        ));
        assert!(!state.exists(), "a probe creates nothing");
        let real = TargetLock::acquire(&state, "a").unwrap();
        assert!(TargetLock::probe(&state, "a")
            .unwrap_err()
            .downcast_ref::<LockHeld>()
            .is_some());
        drop(real);
        let held = TargetLock::probe(&state, "a").unwrap();
        assert!(matches!(held, Probe::Held(_)));
        // A real run started meanwhile finds it busy, as with any holder.
        assert!(TargetLock::acquire(&state, "a").is_err());
        drop(held);
        assert!(matches!(
            TargetLock::probe_watch(&state, "a").unwrap(),
            Probe::Free
        ));
    }

    #[test]
    fn watch_lock_is_apart_from_the_target_lock() {
        let dir = tempfile::tempdir().unwrap();
        let watch = TargetLock::acquire_watch(dir.path(), "a").unwrap();
        assert!(TargetLock::acquire_watch(dir.path(), "a")
            .unwrap_err()
            .downcast_ref::<LockHeld>()
            .is_some());
        let target = TargetLock::acquire(dir.path(), "a").unwrap();
        drop((watch, target));
        assert!(TargetLock::acquire_watch(dir.path(), "a").is_ok());
    }
}
