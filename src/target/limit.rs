//! `bwlimit`: one token bucket per target, shared by every stream to it
//! (all parallel senders, the PackageList), so the target's link sees at
//! most the configured bytes per second on the wire, after compression.

use std::io::{self, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Bytes written in one go: small enough that parallel writers take turns
/// and the rate stays even within a fraction of a second.
const SLICE: usize = 16 << 10;

/// A token bucket: `rate` bytes per second, holding at most `burst`.
#[derive(Debug)]
pub struct RateLimit {
    rate: f64,
    burst: f64,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimit {
    /// A limit of `rate` bytes per second (at least 1). The bucket starts
    /// empty and holds a twentieth of a second's worth (at least one slice),
    /// so a pause does not turn into a burst above the rate.
    pub fn new(rate: u64) -> RateLimit {
        let rate = rate.max(1) as f64;
        RateLimit {
            rate,
            burst: (rate / 20.0).max(SLICE as f64),
            bucket: Mutex::new(Bucket {
                tokens: 0.0,
                updated: Instant::now(),
            }),
        }
    }

    /// Takes `n` bytes' worth of tokens, sleeping until they are there.
    /// Tokens go negative when a writer takes more than the bucket holds;
    /// the debt is slept off by whoever comes next, so the rate holds for
    /// all writers together.
    pub fn take(&self, n: usize) {
        let wait = {
            let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let earned = now.duration_since(b.updated).as_secs_f64() * self.rate;
            b.tokens = (b.tokens + earned).min(self.burst) - n as f64;
            b.updated = now;
            if b.tokens >= 0.0 {
                return;
            }
            Duration::from_secs_f64(-b.tokens / self.rate)
        };
        std::thread::sleep(wait);
    }
}

/// A writer that passes everything through `limit`.
pub struct Limited<'a> {
    pub inner: &'a mut dyn Write,
    pub limit: &'a RateLimit,
}

impl Write for Limited<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(SLICE);
        self.limit.take(n);
        self.inner.write_all(&data[..n])?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_writers_share_the_rate() {
        let limit = RateLimit::new(4 << 20);
        let started = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let mut sink = io::sink();
                    let mut w = Limited {
                        inner: &mut sink,
                        limit: &limit,
                    };
                    w.write_all(&vec![0u8; 1 << 20]).unwrap();
                });
            }
        });
        // 4 MiB at 4 MiB/s, the bucket starting empty: one second at
        // least (less would break the limit); a loaded machine may add.
        let secs = started.elapsed().as_secs_f64();
        assert!((0.99..5.0).contains(&secs), "took {secs}s");
    }
}
