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
        let dir = state_dir.join("locks");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create lock directory {}", dir.display()))?;
        let path = dir.join(format!("{target}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .with_context(|| format!("cannot open lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(TargetLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(LockHeld(target.to_string()).into()),
            Err(TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }

    /// The watcher lock of `blat fast` (`locks/<target>.watch`, never a
    /// `.lock` name, so no target's lock can collide with it): one tag
    /// watcher per target for a whole `--watch`, while the target lock is
    /// taken only around transfers, so `sync` is not shut out for minutes.
    pub fn acquire_watch(state_dir: &Path, target: &str) -> Result<TargetLock> {
        let dir = state_dir.join("locks");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create lock directory {}", dir.display()))?;
        let path = dir.join(format!("{target}.watch"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .with_context(|| format!("cannot open lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(TargetLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(LockHeld(target.to_string()).into()),
            Err(TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }
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
