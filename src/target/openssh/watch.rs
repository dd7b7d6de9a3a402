//! The OpenSSH transport's watch over one run: progress of its input and
//! output, the watchdog that ends a run that stands still for `io_timeout`,
//! and the writer into ssh's stdin that marks progress.

use std::io::{self, Read, Write};
use std::process::ChildStdin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Progress of one run: when its input or output last moved, and the
/// watchdog that ends it (SIGKILL to its ssh) when that is too long ago.
pub(super) struct Watch {
    start: Instant,
    /// Milliseconds since `start` of the last progress.
    moved: AtomicU64,
    /// Allowed stillness in milliseconds (0: no limit).
    limit: AtomicU64,
    done: Mutex<bool>,
    wake: std::sync::Condvar,
    pub(super) fired: AtomicBool,
}

impl Watch {
    pub(super) fn new(io_timeout: Duration) -> Watch {
        Watch {
            start: Instant::now(),
            moved: AtomicU64::new(0),
            limit: AtomicU64::new(io_timeout.as_millis() as u64),
            done: Mutex::new(false),
            wake: std::sync::Condvar::new(),
            fired: AtomicBool::new(false),
        }
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    pub(super) fn moved(&self) {
        self.moved.store(self.now(), Ordering::Relaxed);
    }

    /// From now on, allow at most `d` more of stillness.
    pub(super) fn shorten(&self, d: Duration) {
        self.moved();
        let d = d.as_millis() as u64;
        let _ = self
            .limit
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| {
                Some(if l == 0 { d } else { l.min(d) })
            });
    }

    pub(super) fn stop(&self) {
        *self.done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.wake.notify_all();
    }

    /// Runs until [`Watch::stop`]; kills `pid` (not yet reaped: the caller
    /// waits for it only after this returns) when nothing moved for too long.
    pub(super) fn guard(&self, pid: libc::pid_t) {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        while !*done {
            let limit = self.limit.load(Ordering::Relaxed);
            if limit > 0
                && self
                    .now()
                    .saturating_sub(self.moved.load(Ordering::Relaxed))
                    > limit
            {
                self.fired.store(true, Ordering::Relaxed);
                // SAFETY: the child is ours and not yet reaped.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                return;
            }
            done = self
                .wake
                .wait_timeout(done, Duration::from_millis(250))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    pub(super) fn read_all(&self, from: &mut dyn Read) -> Vec<u8> {
        let mut all = Vec::new();
        let mut buf = [0u8; 64 << 10];
        loop {
            match from.read(&mut buf) {
                Ok(0) => return all,
                Ok(n) => {
                    all.extend_from_slice(&buf[..n]);
                    self.moved();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return all,
            }
        }
    }
}

/// Writes into ssh's stdin, marking progress, and remembers a broken pipe,
/// so a failed connection can be told from a failure of the input itself.
pub(super) struct PipeWriter<'a> {
    pub(super) stdin: ChildStdin,
    pub(super) watch: &'a Watch,
    pub(super) broken: Option<io::Error>,
}

impl Write for PipeWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.stdin.write(buf) {
            Ok(n) => {
                self.watch.moved();
                Ok(n)
            }
            Err(e) => {
                self.broken = Some(io::Error::new(e.kind(), e.to_string()));
                Err(e)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A 1 MiB pipe to ssh instead of 64 KiB: fewer wake-ups of both sides per
/// megabyte. Best effort (the limit is /proc/sys/fs/pipe-max-size).
pub(super) fn enlarge_pipe(stdin: &ChildStdin) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid fd we own; F_SETPIPE_SZ only resizes its buffer.
    unsafe { libc::fcntl(stdin.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
}
