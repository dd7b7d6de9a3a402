//! Replacing a file atomically, the one way blat does it: a temporary of an
//! unpredictable name in the same directory, created exclusively and never
//! through a symlink (`O_CREAT | O_EXCL | O_NOFOLLOW`), written, synced, then
//! renamed over the destination. A planted symlink at the destination is
//! replaced, never followed. Temporaries are named `.blat-tmp-<PID>-<token>`,
//! like the receiver's, so a target's `gc` can tell a live writer's from a
//! dead one's (`docs/protocol.md`). Also the one random token of the crate.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// A random token of `len` characters from `[a-z0-9]`: temporary names and
/// transfer tokens.
pub fn token(len: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// A file being written in place of `dest`; `commit` renames it over `dest`,
/// dropping it uncommitted removes it.
pub struct AtomicFile {
    tmp: PathBuf,
    dest: PathBuf,
    file: Option<File>,
}

impl AtomicFile {
    /// Creates the temporary beside `dest` (mode 0644 before the umask).
    pub fn create(dest: &Path) -> Result<AtomicFile> {
        let dir = match dest.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let tmp = dir.join(format!(".blat-tmp-{}-{}", std::process::id(), token(12)));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
        Ok(AtomicFile {
            tmp,
            dest: dest.to_path_buf(),
            file: Some(file),
        })
    }

    /// The temporary's path, for a writer that opens it by name (SQLite).
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("an uncommitted file")
    }

    /// Syncs the data and renames it over the destination.
    pub fn commit(mut self) -> Result<()> {
        let file = self.file.take().expect("committed once");
        file.sync_all()
            .with_context(|| format!("cannot write {}", self.dest.display()))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.dest)
            .with_context(|| format!("cannot replace {}", self.dest.display()))?;
        self.tmp = PathBuf::new();
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file().flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Replaces `dest` with `data`, atomically.
pub fn write(dest: &Path, data: &[u8]) -> Result<()> {
    let mut f = AtomicFile::create(dest)?;
    f.write_all(data)
        .with_context(|| format!("cannot write {}", dest.display()))?;
    f.commit()
}

/// Makes sure `dir` is a real directory (created when missing, its parent
/// must exist), never a symlink: blat's own directories in an archive
/// (`.dpkg_archive/`) may have been planted on a target by someone else.
pub fn own_dir(dir: &Path) -> Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => {
            bail!(
                "{} is a symlink: refused (blat never writes through one)",
                dir.display()
            )
        }
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => bail!("{} is not a directory", dir.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir(dir)
            .or_else(|e| {
                // A concurrent writer made it meanwhile: check it again.
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .with_context(|| format!("cannot create {}", dir.display()))
            .and_then(|()| {
                if std::fs::symlink_metadata(dir)?.is_dir() {
                    Ok(())
                } else {
                    bail!("{} is not a directory", dir.display())
                }
            }),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_a_planted_symlink_instead_of_following_it() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let dest = dir.path().join("list.txt");
        std::os::unix::fs::symlink(&victim, &dest).unwrap();
        write(&dest, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "new");
        assert!(!std::fs::symlink_metadata(&dest)
            .unwrap()
            .file_type()
            .is_symlink());
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 2, "no temporary left");
    }

    #[test]
    fn an_uncommitted_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("x");
        let mut f = AtomicFile::create(&dest).unwrap();
        f.write_all(b"half").unwrap();
        drop(f);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn own_dir_refuses_symlinks_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        own_dir(&real).unwrap();
        own_dir(&real).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = own_dir(&link).unwrap_err().to_string();
        assert!(e.contains("is a symlink: refused"), "{e}");
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(own_dir(&file)
            .unwrap_err()
            .to_string()
            .contains("not a directory"));
    }
}
