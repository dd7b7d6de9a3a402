//! Directory operations relative to an open directory that never follow a
//! symlink, for the tag directory: whoever may write a tag there can swap any
//! entry for a symlink at any moment, so nothing is looked up by path twice.
//! Every name here is one component read from (or meant for) that directory.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read as _};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

/// What a directory entry is, as `lstat` sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    Device,
    Other,
}

impl Kind {
    fn of(mode: libc::mode_t) -> Kind {
        match mode & libc::S_IFMT {
            libc::S_IFREG => Kind::File,
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFSOCK => Kind::Socket,
            libc::S_IFCHR | libc::S_IFBLK => Kind::Device,
            _ => Kind::Other,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Kind::File => "a regular file",
            Kind::Dir => "a directory",
            Kind::Symlink => "a symlink",
            Kind::Fifo => "a FIFO",
            Kind::Socket => "a socket",
            Kind::Device => "a device node",
            Kind::Other => "a special file",
        }
    }
}

fn c_name(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name holds a NUL byte"))
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// An open directory; every operation is relative to it.
pub struct Dir {
    fd: OwnedFd,
}

const DIR_FLAGS: libc::c_int =
    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;

impl Dir {
    /// Opens the directory `path`, whose last component must not be a
    /// symlink (`ELOOP` or `ENOTDIR` then).
    pub fn open(path: &Path) -> io::Result<Dir> {
        let p = c_name(path.as_os_str())?;
        // SAFETY: a NUL-terminated path and plain flags.
        let fd = cvt(unsafe { libc::open(p.as_ptr(), DIR_FLAGS) })?;
        // SAFETY: a fresh descriptor that nothing else owns.
        Ok(Dir {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Opens the subdirectory `name`, refusing a symlink.
    pub fn open_dir(&self, name: &OsStr) -> io::Result<Dir> {
        let n = c_name(name)?;
        // SAFETY: a valid directory descriptor and a NUL-terminated name.
        let fd = cvt(unsafe { libc::openat(self.fd.as_raw_fd(), n.as_ptr(), DIR_FLAGS) })?;
        // SAFETY: a fresh descriptor that nothing else owns.
        Ok(Dir {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// What `name` is, without following it.
    pub fn kind(&self, name: &OsStr) -> io::Result<Kind> {
        let n = c_name(name)?;
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: a valid descriptor, a NUL-terminated name and room for a stat.
        cvt(unsafe {
            libc::fstatat(
                self.fd.as_raw_fd(),
                n.as_ptr(),
                st.as_mut_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })?;
        // SAFETY: fstatat succeeded, so it filled the stat.
        Ok(Kind::of(unsafe { st.assume_init() }.st_mode))
    }

    /// The names in the directory (`.` and `..` left out), unsorted.
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        // fdopendir owns the descriptor it is given: hand it a duplicate.
        // SAFETY: duplicating a valid descriptor.
        let dup = cvt(unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) })?;
        // SAFETY: `dup` is a directory descriptor we own; on success the
        // stream owns it and closedir closes it.
        let stream = unsafe { libc::fdopendir(dup) };
        if stream.is_null() {
            let e = io::Error::last_os_error();
            // SAFETY: fdopendir failed, so `dup` is still ours to close.
            unsafe { libc::close(dup) };
            return Err(e);
        }
        // The duplicate shares the file offset: start from the beginning.
        // SAFETY: a valid stream.
        unsafe { libc::rewinddir(stream) };
        let mut out = Vec::new();
        let result = loop {
            set_errno(0);
            // SAFETY: a valid stream; the entry is read before the next call.
            let entry = unsafe { libc::readdir(stream) };
            if entry.is_null() {
                let e = io::Error::last_os_error();
                break match e.raw_os_error() {
                    Some(0) | None => Ok(()),
                    Some(_) => Err(e),
                };
            }
            // SAFETY: readdir returned an entry whose d_name is NUL-terminated.
            let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) }.to_bytes();
            if name != b"." && name != b".." {
                out.push(OsString::from_vec(name.to_vec()));
            }
        };
        // SAFETY: the stream is valid and closed once.
        unsafe { libc::closedir(stream) };
        result.map(|()| out)
    }

    /// Creates the subdirectory `name`.
    pub fn mkdir(&self, name: &OsStr, mode: libc::mode_t) -> io::Result<()> {
        let n = c_name(name)?;
        // SAFETY: a valid descriptor and a NUL-terminated name.
        cvt(unsafe { libc::mkdirat(self.fd.as_raw_fd(), n.as_ptr(), mode) }).map(drop)
    }

    /// Renames the entry `from` (itself, whatever it is) to `to` in `into`.
    pub fn rename(&self, from: &OsStr, into: &Dir, to: &OsStr) -> io::Result<()> {
        let (f, t) = (c_name(from)?, c_name(to)?);
        // SAFETY: valid descriptors and NUL-terminated names.
        cvt(unsafe {
            libc::renameat(
                self.fd.as_raw_fd(),
                f.as_ptr(),
                into.fd.as_raw_fd(),
                t.as_ptr(),
            )
        })
        .map(drop)
    }

    /// Removes the entry `name` (not a directory), never what it points to.
    pub fn unlink(&self, name: &OsStr) -> io::Result<()> {
        let n = c_name(name)?;
        // SAFETY: a valid descriptor and a NUL-terminated name.
        cvt(unsafe { libc::unlinkat(self.fd.as_raw_fd(), n.as_ptr(), 0) }).map(drop)
    }

    /// Creates the new regular file `name`: fails if anything, a symlink
    /// included, already has that name (`O_EXCL|O_NOFOLLOW`).
    pub fn create_new(&self, name: &OsStr, mode: libc::mode_t) -> io::Result<File> {
        let n = c_name(name)?;
        let flags =
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: a valid descriptor, a NUL-terminated name, plain flags.
        let fd = cvt(unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                n.as_ptr(),
                flags,
                libc::c_uint::from(mode),
            )
        })?;
        // SAFETY: a fresh descriptor that nothing else owns.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// Reads at most `limit` bytes of `name`, which must be a regular file:
    /// a symlink is not followed, and a FIFO or device is opened without
    /// blocking and then refused, never read.
    pub fn read_regular(&self, name: &OsStr, limit: u64) -> io::Result<Vec<u8>> {
        let n = c_name(name)?;
        let flags =
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
        // SAFETY: a valid descriptor, a NUL-terminated name, plain flags.
        let fd = cvt(unsafe { libc::openat(self.fd.as_raw_fd(), n.as_ptr(), flags) })?;
        // SAFETY: a fresh descriptor that nothing else owns.
        let file = unsafe { File::from_raw_fd(fd) };
        if !file.metadata()?.file_type().is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        let mut data = Vec::new();
        file.take(limit).read_to_end(&mut data)?;
        Ok(data)
    }
}

fn set_errno(value: libc::c_int) {
    // SAFETY: the calling thread's errno location.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    unsafe {
        *libc::__errno_location() = value
    };
    // SAFETY: the calling thread's errno location.
    #[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
    unsafe {
        *libc::__error() = value
    };
    let _ = value;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "secret").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("linkdir")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("link")).unwrap();
        std::fs::write(dir.path().join("file"), "data").unwrap();
        let fifo = c_name(dir.path().join("fifo").as_os_str()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);

        assert!(Dir::open(&dir.path().join("linkdir")).is_err());
        let d = Dir::open(dir.path()).unwrap();
        let mut names = d.names().unwrap();
        names.sort();
        assert_eq!(names, ["fifo", "file", "link", "linkdir"]);
        assert_eq!(d.names().unwrap().len(), 4, "a second listing sees all");
        assert_eq!(d.kind(OsStr::new("link")).unwrap(), Kind::Symlink);
        assert_eq!(d.kind(OsStr::new("linkdir")).unwrap(), Kind::Symlink);
        assert_eq!(d.kind(OsStr::new("fifo")).unwrap(), Kind::Fifo);
        assert_eq!(d.kind(OsStr::new("file")).unwrap(), Kind::File);
        assert!(d.open_dir(OsStr::new("linkdir")).is_err());
        assert!(d.read_regular(OsStr::new("link"), 10).is_err());
        assert!(d.read_regular(OsStr::new("fifo"), 10).is_err());
        assert_eq!(d.read_regular(OsStr::new("file"), 2).unwrap(), b"da");
        assert!(d.create_new(OsStr::new("link"), 0o600).is_err());
        assert!(d.create_new(OsStr::new("file"), 0o600).is_err());
        d.unlink(OsStr::new("link")).unwrap();
        assert_eq!(
            std::fs::read_to_string(outside.path().join("secret")).unwrap(),
            "secret"
        );
    }
}
