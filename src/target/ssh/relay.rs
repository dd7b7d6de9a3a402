//! The byte relay behind a jump host. libssh2 runs a session over a file
//! descriptor, so the session to the next hop (or the target) gets one end
//! of a socket pair, and a thread pumps bytes between the other end and
//! the jump host's forwarding channel (direct-tcpip).
//!
//! - The thread owns the jump host's session and channel and drives them
//!   non-blocking with `poll`: a libssh2 session must not be used from two
//!   threads, and one thread serves both directions.
//! - End of stream travels both ways: the socket's EOF (the session above
//!   was dropped) becomes the channel's EOF and close; the channel's EOF
//!   (the far end closed) shuts the socket, and the session above reads EOF.
//! - The thread ends when either side is gone, or when the jump host stops
//!   taking data for `io_timeout`; closing politely is bounded too. What
//!   went wrong is kept in the chain's [`Trouble`], so that a failing
//!   session above can name the hop ([`trouble`]).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ssh2::{BlockDirections, Channel, Session};

/// What went wrong at the hops of one chain, in the order it happened
/// (the first is the cause, the rest its consequences further up).
pub type Trouble = Arc<Mutex<Vec<String>>>;

/// Bytes moved per step in each direction.
const CHUNK: usize = 64 * 1024;

/// How long one `poll` waits before the loop looks at its clocks again.
const TICK: Duration = Duration::from_millis(500);

/// How long closing a channel politely may take, and how long bytes the
/// session above sent before it closed may wait for the jump host.
const LAST_WORDS: Duration = Duration::from_secs(5);

/// The next session's end of a socket pair. While it is open, [`trouble`]
/// finds its chain's troubles by its descriptor.
pub struct RelayedSocket {
    socket: UnixStream,
}

impl AsRawFd for RelayedSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl Drop for RelayedSocket {
    fn drop(&mut self) {
        // Before the descriptor is closed (after this), so its number is
        // never reused while the entry exists.
        lock(registry()).remove(&self.socket.as_raw_fd());
    }
}

fn registry() -> &'static Mutex<HashMap<RawFd, Trouble>> {
    static REGISTRY: OnceLock<Mutex<HashMap<RawFd, Trouble>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the jump hosts under the session on descriptor `fd` reported, the
/// first cause first; `None` when it runs over no relay or nothing failed.
pub fn trouble(fd: RawFd) -> Option<String> {
    let trouble = lock(registry()).get(&fd).cloned()?;
    let said = lock(&trouble);
    said.first().cloned()
}

/// Starts relaying between `channel` (of `session`, a jump host logged in
/// and forwarding to the next hop) and a new socket, returned for the next
/// session. `name` names the jump host in troubles.
pub fn start(
    session: Session,
    channel: Channel,
    name: String,
    io_timeout: Duration,
    trouble: Trouble,
) -> io::Result<RelayedSocket> {
    let (near, far) = UnixStream::pair()?;
    far.set_nonblocking(true)?;
    session.set_blocking(false);
    lock(registry()).insert(near.as_raw_fd(), trouble.clone());
    let near = RelayedSocket { socket: near };
    let pump = Pump {
        session,
        channel,
        far,
        name,
        io_timeout,
        trouble,
        up: Vec::with_capacity(CHUNK),
        down: Vec::with_capacity(CHUNK),
        down_at: 0,
        far_eof: false,
        channel_eof: false,
    };
    std::thread::Builder::new()
        .name("blat-jump".into())
        .spawn(move || pump.run())?;
    Ok(near)
}

struct Pump {
    session: Session,
    channel: Channel,
    /// The relay's end of the socket pair (non-blocking).
    far: UnixStream,
    name: String,
    io_timeout: Duration,
    trouble: Trouble,
    /// Read from the socket, not yet written to the channel.
    up: Vec<u8>,
    /// Read from the channel; `down[down_at..]` not yet written to the socket.
    down: Vec<u8>,
    down_at: usize,
    /// The session above closed its socket (or can no longer be written).
    far_eof: bool,
    /// The far end closed the forwarded connection.
    channel_eof: bool,
}

impl Pump {
    fn run(mut self) {
        match self.pump() {
            Ok(()) => self.close(),
            Err(why) => {
                lock(&self.trouble).push(format!("{}: {why}", self.name));
                // Both ways at once: the session above reads EOF now.
                let _ = self.far.shutdown(Shutdown::Both);
            }
        }
    }

    /// Moves bytes until the session above is gone (`Ok`) or the jump
    /// host's side ends or fails (`Err`: why).
    fn pump(&mut self) -> Result<(), String> {
        let mut last_progress = Instant::now();
        loop {
            let progress = self.move_up()? | self.move_down()?;
            if self.far_eof && self.up.is_empty() {
                return Ok(());
            }
            if self.channel_eof && self.down_at == self.down.len() {
                let _ = self.far.shutdown(Shutdown::Write);
                return Err("closed the forwarded connection".into());
            }
            if progress {
                last_progress = Instant::now();
                continue;
            }
            // Bytes for the jump host that it does not take: a frozen hop.
            let limit = match (self.far_eof, self.io_timeout.is_zero()) {
                (true, _) => LAST_WORDS,
                (false, false) => self.io_timeout,
                (false, true) => Duration::MAX,
            };
            if !self.up.is_empty() && last_progress.elapsed() >= limit {
                return Err(format!(
                    "stopped answering (nothing sent for {}s)",
                    limit.as_secs()
                ));
            }
            self.wait(TICK);
        }
    }

    /// Socket → `up` → channel. `Ok(true)`: something moved.
    fn move_up(&mut self) -> Result<bool, String> {
        let mut progress = false;
        if !self.far_eof && self.up.is_empty() {
            self.up.resize(CHUNK, 0);
            match self.far.read(&mut self.up) {
                Ok(n) => {
                    self.up.truncate(n);
                    self.far_eof = n == 0;
                    progress = true;
                }
                Err(e) => {
                    self.up.clear();
                    if !is_retry(&e) {
                        self.far_eof = true;
                        progress = true;
                    }
                }
            }
        }
        if !self.up.is_empty() {
            match self.channel.write(&self.up) {
                Ok(n) => {
                    self.up.drain(..n);
                    progress |= n > 0;
                }
                Err(e) if is_retry(&e) => {}
                Err(e) => return Err(format!("connection lost: {e}")),
            }
        }
        Ok(progress)
    }

    /// Channel → `down` → socket. `Ok(true)`: something moved.
    fn move_down(&mut self) -> Result<bool, String> {
        let mut progress = false;
        if !self.channel_eof && self.down_at == self.down.len() {
            self.down.resize(CHUNK, 0);
            self.down_at = 0;
            match self.channel.read(&mut self.down) {
                Ok(n) => {
                    self.down.truncate(n);
                    // libssh2 may return 0 for an empty packet without EOF.
                    if n == 0 && self.channel.eof() {
                        self.channel_eof = true;
                    }
                    progress = n > 0 || self.channel_eof;
                }
                Err(e) => {
                    self.down.clear();
                    if !is_retry(&e) {
                        return Err(format!("connection lost: {e}"));
                    }
                }
            }
        }
        if self.down_at < self.down.len() {
            match self.far.write(&self.down[self.down_at..]) {
                Ok(n) => {
                    self.down_at += n;
                    progress |= n > 0;
                }
                Err(e) if is_retry(&e) => {}
                Err(_) => {
                    // The session above is gone: nobody wants these bytes.
                    self.down.clear();
                    self.down_at = 0;
                    self.far_eof = true;
                    progress = true;
                }
            }
        }
        Ok(progress)
    }

    /// Sleeps until the socket or the jump host's connection can move what
    /// is pending, or `limit` passes.
    fn wait(&self, limit: Duration) {
        let mut far_events = 0;
        if !self.far_eof && self.up.is_empty() {
            far_events |= libc::POLLIN;
        }
        if self.down_at < self.down.len() {
            far_events |= libc::POLLOUT;
        }
        // A socket that hung up reports it even when not asked: leave it
        // out when nothing is wanted of it, or the loop would spin.
        let far_fd = if far_events == 0 {
            -1
        } else {
            self.far.as_raw_fd()
        };
        // Input from the jump host that nothing will read now (the socket
        // above is full and there is nothing to send, whose write would
        // take it in) would wake the loop again and again: not asked for.
        let mut hop_events = session_events(&self.session);
        if self.down_at < self.down.len() && self.up.is_empty() {
            hop_events &= !libc::POLLIN;
        }
        let hop_fd = if hop_events == 0 {
            -1
        } else {
            self.session.as_raw_fd()
        };
        let mut fds = [
            libc::pollfd {
                fd: far_fd,
                events: far_events,
                revents: 0,
            },
            libc::pollfd {
                fd: hop_fd,
                events: hop_events,
                revents: 0,
            },
        ];
        let ms = limit.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: `fds` is a valid array of two pollfd for the whole call.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    }

    /// The session above is gone: the channel's EOF and close, and the
    /// jump host's session ended, each as far as `LAST_WORDS` allows.
    fn close(mut self) {
        let deadline = Instant::now() + LAST_WORDS;
        let channel = &mut self.channel;
        let session = &self.session;
        let _ = retry(session, deadline, || channel.send_eof());
        let _ = retry(session, deadline, || channel.close());
        let _ = retry(session, deadline, || {
            session.disconnect(None, "blat done", None)
        });
    }
}

/// The events libssh2 waits for on its connection (always input: data,
/// window adjustments, EOF).
fn session_events(session: &Session) -> libc::c_short {
    match session.block_directions() {
        BlockDirections::Outbound | BlockDirections::Both => libc::POLLIN | libc::POLLOUT,
        _ => libc::POLLIN,
    }
}

/// Calls `f` until it no longer says "would block" or `deadline` passes.
fn retry(
    session: &Session,
    deadline: Instant,
    mut f: impl FnMut() -> Result<(), ssh2::Error>,
) -> Result<(), ()> {
    loop {
        match f() {
            Ok(()) => return Ok(()),
            Err(e) if e.code() == ssh2::ErrorCode::Session(-37) => {}
            Err(_) => return Err(()),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(());
        }
        let mut fd = libc::pollfd {
            fd: session.as_raw_fd(),
            events: session_events(session),
            revents: 0,
        };
        let ms = left.min(TICK).as_millis() as i32;
        // SAFETY: one valid pollfd for the whole call.
        unsafe { libc::poll(&mut fd, 1, ms) };
    }
}

fn is_retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}
