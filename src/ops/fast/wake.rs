//! `blat fast --watch`'s wait between polls: woken by inotify on the tag
//! directory on Linux, a plain sleep elsewhere.

use std::path::Path;
use std::time::Duration;

/// Sleeps until a tag may have arrived: an entry created, moved into or
/// written in the tag directory, or the timeout. Without inotify (another
/// OS, a directory that vanished) it is a plain sleep, so polling still
/// finds every tag, only later.
pub(super) struct Wake {
    #[cfg(target_os = "linux")]
    fd: Option<std::os::fd::OwnedFd>,
}

impl Wake {
    #[cfg(target_os = "linux")]
    pub(super) fn new(dir: &Path) -> Wake {
        use std::os::fd::{FromRawFd, OwnedFd};
        use std::os::unix::ffi::OsStrExt;
        let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
            return Wake { fd: None };
        };
        // SAFETY: inotify_init1 takes flags only; a non-negative result is a
        // new descriptor that nothing else owns.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return Wake { fd: None };
        }
        // SAFETY: `raw` is a fresh descriptor owned by no one else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // A tag directory that is a symlink is refused, not watched.
        let mask = libc::IN_CREATE
            | libc::IN_MOVED_TO
            | libc::IN_CLOSE_WRITE
            | libc::IN_ATTRIB
            | libc::IN_DONT_FOLLOW
            | libc::IN_ONLYDIR;
        // SAFETY: `fd` is a valid inotify descriptor, `path` a NUL-terminated string.
        let watch = unsafe {
            libc::inotify_add_watch(std::os::fd::AsRawFd::as_raw_fd(&fd), path.as_ptr(), mask)
        };
        Wake {
            fd: (watch >= 0).then_some(fd),
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn new(_dir: &Path) -> Wake {
        Wake {}
    }

    #[cfg(target_os = "linux")]
    pub(super) fn wait(&self, timeout: Duration) {
        use std::os::fd::AsRawFd;
        let Some(fd) = &self.fd else {
            return std::thread::sleep(timeout);
        };
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd, count 1.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            // Interrupted or worse: do not spin, fall back to sleeping.
            return std::thread::sleep(timeout);
        }
        let mut buf = [0u8; 4096];
        // SAFETY: reads into a buffer we own, of the length we pass; the
        // descriptor is non-blocking, so this ends when the queue is empty.
        while unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn wait(&self, timeout: Duration) {
        std::thread::sleep(timeout)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn wake_returns_when_a_tag_arrives() {
        let dir = tempfile::tempdir().unwrap();
        let wake = Wake::new(dir.path());
        assert!(wake.fd.is_some());
        let path = dir.path().join("p::1");
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            std::fs::write(path, "").unwrap();
        });
        let started = Instant::now();
        wake.wait(Duration::from_secs(20));
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "woke after {:?}",
            started.elapsed()
        );
        writer.join().unwrap();
    }
}
