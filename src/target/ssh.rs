//! The `ssh` transport: runs `~/.blat/blat-receiver` on the target over SSH
//! exec channels (libssh2, through the ssh2 crate), with key authentication
//! and host keys always checked against `known_hosts`.
//!
//! - Sessions: a libssh2 session must not serve channels from several
//!   threads at once in blocking mode, so each concurrent run takes a session
//!   of its own from a pool; sessions are opened lazily, so `parallel` senders
//!   open at most `parallel` connections and a listing opens one.
//! - Streams: the receiver's stdin is written on the calling thread while
//!   `target::pack::stream` tars and compresses on its own threads behind
//!   bounded queues, so compression and network writes overlap.
//! - The receiver: the first connection of a run asks `version` and installs
//!   or replaces `~/.blat/blat-receiver` when its sha256 differs from the
//!   embedded copy, so a target never runs a stale one. With a forced-command
//!   key only the receiver's own `install` can do that.
//! - Timeouts: `connect_timeout` bounds connecting and the handshake;
//!   `io_timeout` bounds every wait for the target afterwards (0: no limit).

mod jump;
mod known_hosts;
mod probe;
mod relay;
mod remote;

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ssh2::{Channel, MethodType, Session};

use super::protocol;
use super::{InputFn, RunOutput, Transport};
use crate::config::SshConfig;
use known_hosts::KnownHosts;
pub use probe::{public_key, PublicKey, ReceiverState, SshProbe, StepResult};
pub use remote::receiver_sha256;
pub(super) use remote::{ensure_receiver, receiver_command};
use remote::{first_line, shell_word, version_sha};

/// The steps of connecting to an SSH target, in order. `blat check` shows
/// each one; a failure names the first that did not pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// The private key file: there, a file, not readable by others.
    Identity,
    /// The known_hosts file can be read.
    KnownHosts,
    /// The host name resolves.
    Dns,
    /// Something answers on the port.
    Tcp,
    /// The SSH handshake completes.
    Handshake,
    /// A jump host: its name resolves, its port answers, and it speaks SSH.
    Reach,
    /// The host key is the one known_hosts holds.
    HostKey,
    /// The server accepts the key for the user.
    Login,
}

impl Step {
    /// The words `blat check` prints.
    pub fn label(self) -> &'static str {
        match self {
            Step::Identity => "identity",
            Step::KnownHosts => "known_hosts",
            Step::Dns => "dns",
            Step::Tcp => "tcp",
            Step::Handshake => "ssh handshake",
            Step::Reach => "reach",
            Step::HostKey => "host key",
            Step::Login => "key accepted",
        }
    }
}

/// Told each connection step that passed: at which jump host (an index
/// into `jump`; `None`: the target), which step, what it found.
type Passed<'a> = &'a mut dyn FnMut(Option<usize>, Step, String);

/// Whom a login is for: the target, or one of its jump hosts.
struct Login<'a> {
    host: &'a str,
    port: u16,
    user: &'a str,
    hop: Option<usize>,
    /// How to record its host key when it is not reachable from here.
    keyscan: Option<String>,
}

impl Login<'_> {
    fn target(c: &SshConfig) -> Login<'_> {
        Login {
            host: &c.host,
            port: c.port,
            user: &c.user,
            hop: None,
            keyscan: None,
        }
    }
}

/// Where the receiver lives on a target, for the login shell (`~`) and for
/// the receiver's forced-command check (`*/blat-receiver`) alike.
pub const RECEIVER_PATH: &str = "~/.blat/blat-receiver";

/// The setup of an SSH target, for `blat sync --help` and its man page.
pub const SETUP_HELP: &str = "\
SSH targets (transport = \"ssh\", the default):
  On the target: a user with write access to the archive, a POSIX sh login shell, GNU tar,
  gzip, find and coreutils, e.g.
    useradd -m pkgadmin
    ln -s /srv/dpkg_archive ~pkgadmin/dpkg_archive    # remote_archive = \"dpkg_archive\"
  On the master: the key (identity, mode 600) and the target's host key (known_hosts; check
  the fingerprint):
    ssh-keygen -t ed25519 -N '' -f /etc/blat/ssh/id_ed25519
    ssh-keyscan -p 22 HOST >> /etc/blat/ssh/known_hosts
  In ~pkgadmin/.ssh/authorized_keys, restricted to the receiver:
    restrict,command=\"/home/pkgadmin/.blat/blat-receiver\" ssh-ed25519 AAAA... blat@master
  blat installs and updates ~/.blat/blat-receiver itself. A restricted key can only update it:
  copy receiver/blat-receiver there once, into a ~pkgadmin/.blat that pkgadmin owns, or no
  update can replace it:
    install -d -o pkgadmin -m 755 ~pkgadmin/.blat
    install -o pkgadmin -m 755 receiver/blat-receiver ~pkgadmin/.blat/
  Host keys are always checked; an unknown or changed key stops the target. connect_timeout
  (15s) and io_timeout (60s) bound every wait.";

/// libssh2 error codes that get their own message.
const LIBSSH2_ERROR_TIMEOUT: i32 = -9;
const LIBSSH2_ERROR_AUTHENTICATION_FAILED: i32 = -18;
const LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED: i32 = -19;

/// Ciphers, best first: AES-GCM runs on AES-NI inside OpenSSL and needs no
/// separate MAC, while libssh2's chacha20-poly1305 is its own portable C
/// code. Only those the linked libssh2 supports are offered.
const CIPHERS: &[&str] = &[
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
    "chacha20-poly1305@openssh.com",
];

/// After a failed write, how long to wait for the receiver's last words.
pub(super) const LAST_WORDS: Duration = Duration::from_secs(5);

pub struct SshTransport {
    config: SshConfig,
    /// Connected, authenticated sessions not in use by a run.
    idle: Mutex<Vec<Session>>,
    /// The receiver on the target was checked (and installed) in this run.
    receiver_ready: Mutex<bool>,
}

impl SshTransport {
    pub fn new(config: SshConfig) -> Result<SshTransport> {
        Ok(SshTransport {
            config,
            idle: Mutex::new(Vec::new()),
            receiver_ready: Mutex::new(false),
        })
    }

    fn endpoint(&self) -> String {
        format!(
            "{}@{}:{}",
            self.config.user, self.config.host, self.config.port
        )
    }

    fn command_line<S: AsRef<str>>(&self, args: &[S]) -> String {
        receiver_command(&self.config.remote_archive, args)
    }

    /// A session for one run and whether it was used before: an idle one,
    /// or a new connection.
    fn take_session(&self) -> Result<(Session, bool)> {
        if let Some(session) = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok((session, true));
        }
        Ok((self.new_session()?, false))
    }

    fn new_session(&self) -> Result<Session> {
        let session = self.connect()?;
        // Held while checking, so that parallel senders wait for one install.
        let mut ready = self
            .receiver_ready
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if !*ready {
            self.ensure_receiver(&session)?;
            *ready = true;
        }
        Ok(session)
    }

    fn give_back(&self, session: Session) {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(session);
    }

    /// Connects, checks the host key, authenticates. Local problems (the
    /// identity, known_hosts) are found before any connection is made.
    fn connect(&self) -> Result<Session> {
        self.connect_steps(&mut |_, _, _| {})
    }

    /// [`SshTransport::connect`], telling `passed` each [`Step`] that
    /// passed (at which jump host, `None`: the target) and what it found;
    /// on an error, the first step of [`SshTransport::steps`] not told of
    /// is the one that failed.
    fn connect_steps(&self, passed: Passed) -> Result<Session> {
        let c = &self.config;
        check_identity(&c.identity)?;
        passed(
            None,
            Step::Identity,
            format!(
                "{} is a private key only its owner reads",
                c.identity.display()
            ),
        );
        let known = KnownHosts::load(&c.known_hosts)?;
        passed(
            None,
            Step::KnownHosts,
            format!("{} is readable", c.known_hosts.display()),
        );
        if !c.jump.is_empty() {
            let (relayed, trouble) = self.through_jumps(&known, passed)?;
            let mut at = Login::target(c);
            at.keyscan = Some(self.keyscan_behind(c.jump.len(), &c.host, c.port));
            return self.login(relayed, &at, &known, passed).map_err(|e| {
                // A hop that failed meanwhile is the cause.
                match trouble.lock().ok().and_then(|t| t.first().cloned()) {
                    Some(t) => e.context(t),
                    None => e,
                }
            });
        }

        let addrs = resolve(&c.host, c.port)?;
        passed(
            None,
            Step::Dns,
            format!(
                "{} is {}",
                c.host,
                addrs
                    .iter()
                    .map(|a| a.ip().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        let tcp = tcp_connect(&c.host, c.port, &addrs, c.connect_timeout)?;
        passed(
            None,
            Step::Tcp,
            format!(
                "{} port {} answers",
                tcp.peer_addr()
                    .map_or(c.host.clone(), |a| a.ip().to_string()),
                c.port
            ),
        );
        // Small commands are one packet each way: don't let Nagle hold them.
        let _ = tcp.set_nodelay(true);
        self.login(tcp, &Login::target(c), &known, passed)
    }

    /// The SSH handshake, host key check and key authentication over
    /// `stream` (a TCP connection, or the socket of a jump host's relay).
    fn login<S: AsRawFd + 'static>(
        &self,
        stream: S,
        at: &Login,
        known: &KnownHosts,
        passed: Passed,
    ) -> Result<Session> {
        let c = &self.config;
        let (host, port, user) = (at.host, at.port, at.user);
        let mut session = Session::new().context("cannot start an SSH session")?;
        session.set_tcp_stream(stream);
        session.set_timeout(millis(c.connect_timeout));

        let mut host_keys = known.for_host(&session, host, port)?;
        if let Some(keyscan) = &at.keyscan {
            host_keys = host_keys.with_keyscan(keyscan.clone());
        }
        prefer_algorithms(&session, &host_keys)?;

        session.handshake().map_err(|e| {
            if e.code() == ssh2::ErrorCode::Session(LIBSSH2_ERROR_TIMEOUT) {
                anyhow!(
                    "SSH handshake with {host}:{port} timed out (connect_timeout {}s)",
                    c.connect_timeout.as_secs()
                )
            } else {
                anyhow!("SSH handshake with {host}:{port} failed: {}", e.message())
            }
        })?;
        // A jump host's reach is one step: its address, port and handshake.
        let (step, what) = match at.hop {
            Some(_) => (Step::Reach, format!("{user}@{host}:{port} answers and")),
            None => (Step::Handshake, format!("{host}:{port}")),
        };
        passed(
            at.hop,
            step,
            format!(
                "{what} speaks SSH ({})",
                session.banner().unwrap_or("no banner")
            ),
        );
        let (offered, _) = session.host_key().context("the server sent no host key")?;
        host_keys.verify(offered)?;
        passed(
            at.hop,
            Step::HostKey,
            format!(
                "{} {} is in {}",
                known_hosts::key_type_of(offered).unwrap_or("unknown-key-type"),
                known_hosts::fingerprint(offered),
                c.known_hosts.display()
            ),
        );

        self.authenticate(&session, at)?;
        passed(
            at.hop,
            Step::Login,
            format!("{host} lets {user} in with {}", c.identity.display()),
        );
        session.set_timeout(millis(c.io_timeout));
        Ok(session)
    }

    /// Key authentication as `at.user`, each refusal said in one line with
    /// what to check: apart from `login` as its last step.
    fn authenticate(&self, session: &Session, at: &Login) -> Result<()> {
        let c = &self.config;
        let (host, port, user) = (at.host, at.port, at.user);
        if let Err(e) = session.userauth_pubkey_file(user, None, &c.identity, None) {
            let code = e.code();
            if code == ssh2::ErrorCode::Session(LIBSSH2_ERROR_AUTHENTICATION_FAILED)
                || code == ssh2::ErrorCode::Session(LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED)
            {
                bail!(
                    "{host} refused the key {} for user {user} (is its public key in ~{user}/.ssh/authorized_keys there?)",
                    c.identity.display(),
                );
            }
            bail!(
                "cannot log in as {user}@{host}:{port} with the key {}: {}",
                c.identity.display(),
                e.message()
            );
        }
        if !session.authenticated() {
            bail!(
                "{host} did not accept the key {} for user {user}",
                c.identity.display(),
            );
        }
        Ok(())
    }

    /// Makes sure the target runs exactly the embedded receiver.
    fn ensure_receiver(&self, session: &Session) -> Result<()> {
        ensure_receiver(
            &self.endpoint(),
            &self.config.remote_archive,
            &mut |line, input| self.exec(session, line, input),
        )
    }

    /// Runs one command on an exec channel. `Err` means the session is no
    /// longer usable (or the input could not be produced).
    fn exec(&self, session: &Session, command: &str, input: Option<InputFn>) -> Result<RunOutput> {
        let channel = self.open(session)?;
        self.finish(session, channel, command, input)
    }

    fn open(&self, session: &Session) -> Result<Channel> {
        session
            .channel_session()
            .map_err(|e| self.lost(session, e.into(), "opening a channel"))
    }

    /// Starts `command` on the channel, feeds it, collects its output.
    fn finish(
        &self,
        session: &Session,
        mut channel: Channel,
        command: &str,
        input: Option<InputFn>,
    ) -> Result<RunOutput> {
        channel
            .exec(command)
            .map_err(|e| self.lost(session, e.into(), "starting the receiver"))?;
        if let Some(input) = input {
            let mut writer = ChannelWriter {
                channel: &mut channel,
                broken: None,
            };
            let fed = input(&mut writer);
            let broken = writer.broken.take();
            if let Err(e) = fed {
                return Err(self.failed_feed(session, &mut channel, e, broken));
            }
        }
        let (stdout, stderr, status) =
            collect(&mut channel).map_err(|e| self.lost(session, e, "reading the reply"))?;
        Ok(RunOutput {
            status,
            stdout,
            stderr,
        })
    }

    /// The error for input that could not be fed: the receiver's own words
    /// when it is still there to say them (it may have exited early, or the
    /// source side failed), else the broken connection.
    fn failed_feed(
        &self,
        session: &Session,
        channel: &mut Channel,
        e: anyhow::Error,
        broken: Option<io::Error>,
    ) -> anyhow::Error {
        // Whatever the reason, the receiver sees the end of its input now, so
        // a half stream is never installed (it checks counts and sizes).
        session.set_timeout(millis(LAST_WORDS.min(self.config.io_timeout)));
        let said = collect(channel);
        session.set_timeout(millis(self.config.io_timeout));
        match (said, broken) {
            (Ok((_, stderr, _)), _) if !stderr.trim().is_empty() => {
                let detail = stderr.trim().lines().last().unwrap_or_default().to_string();
                let detail = protocol::message(&detail).to_string();
                e.context(format!("sending to the receiver failed: {detail}"))
            }
            (_, Some(io)) => self.lost(session, io, "sending"),
            _ => e.context("sending to the receiver failed"),
        }
    }

    /// A broken session's error; behind jump hosts, with what the first
    /// hop that failed said.
    fn lost(&self, session: &Session, e: io::Error, doing: &str) -> anyhow::Error {
        // What a hop said, else at least the way taken.
        let hops = match relay::trouble(session.as_raw_fd()) {
            Some(t) => format!(" ({t})"),
            None if !self.config.jump.is_empty() => format!(" (through {})", self.jump_hosts()),
            None => String::new(),
        };
        if e.kind() == io::ErrorKind::TimedOut {
            anyhow!(
                "{} stopped answering: no reply within io_timeout {}s while {doing}{hops}",
                self.endpoint(),
                self.config.io_timeout.as_secs()
            )
        } else {
            anyhow!(
                "connection to {} lost while {doing}: {e}{hops}",
                self.endpoint()
            )
        }
    }
}

impl Transport for SshTransport {
    fn describe(&self) -> String {
        format!("{}:{}", self.endpoint(), self.config.remote_archive)
    }

    fn run(&self, args: &[String], input: Option<InputFn>) -> Result<RunOutput> {
        let command = self.command_line(args);
        let (mut session, reused) = self.take_session()?;
        let channel = match self.open(&session) {
            Ok(channel) => channel,
            // An idle session the server has dropped meanwhile (a long
            // `fast --watch`, ClientAliveInterval): no command was sent
            // yet, so one new connection may try again.
            Err(_) if reused => {
                session = self.new_session()?;
                self.open(&session)?
            }
            Err(e) => return Err(e),
        };
        let out = self.finish(&session, channel, &command, input)?;
        // Only a session that finished its command cleanly is reused.
        self.give_back(session);
        Ok(out)
    }
}

impl Drop for SshTransport {
    fn drop(&mut self) {
        for session in self
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = session.disconnect(None, "blat done", None);
        }
    }
}

/// Why connecting and logging in to `config`'s target fails, in this
/// client's words (one clear line per cause), or `None` when it succeeds.
pub(super) fn connect_error(config: &SshConfig) -> Option<anyhow::Error> {
    match SshTransport::new(config.clone()) {
        Ok(t) => t.connect().err(),
        Err(e) => Some(e),
    }
}

/// Forwards writes to the channel and remembers a transport failure, so a
/// broken connection can be told from a failure of the input itself.
struct ChannelWriter<'a> {
    channel: &'a mut Channel,
    broken: Option<io::Error>,
}

impl Write for ChannelWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.channel.write(buf).inspect_err(|e| {
            self.broken = Some(io::Error::new(e.kind(), e.to_string()));
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Ends the input, then reads stdout, stderr and the exit status.
fn collect(channel: &mut Channel) -> io::Result<(String, String, i32)> {
    // Fails when the receiver has already closed its side: harmless.
    let _ = channel.send_eof();
    let mut stdout = Vec::new();
    channel.read_to_end(&mut stdout)?;
    let mut stderr = Vec::new();
    channel.stderr().read_to_end(&mut stderr)?;
    channel.wait_close()?;
    let mut stderr = String::from_utf8_lossy(&stderr).into_owned();
    let mut status = channel.exit_status()?;
    if let Ok(signal) = channel.exit_signal() {
        if let Some(sig) = signal.exit_signal {
            stderr.push_str(&format!("blat-receiver: killed by signal {sig}\n"));
            status = 128;
        }
    }
    Ok((
        String::from_utf8_lossy(&stdout).into_owned(),
        stderr,
        status,
    ))
}

/// Refuses a private key that OpenSSH would refuse: one that belongs to the
/// user blat runs as and that group or others may read or write.
pub(super) fn check_identity(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read identity {}", path.display()))?;
    if meta.is_dir() {
        bail!("cannot read identity {}: it is a directory", path.display());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() == me && meta.mode() & 0o077 != 0 {
        bail!(
            "identity {} is accessible by group or others (mode {:04o}): ssh refuses such private keys; \
             chmod 600 {}",
            path.display(),
            meta.mode() & 0o7777,
            path.display()
        );
    }
    File::open(path).with_context(|| format!("cannot read identity {}", path.display()))?;
    Ok(())
}

fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>> {
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve host {host}"))?
        .collect();
    if addrs.is_empty() {
        bail!("cannot resolve host {host}: no addresses");
    }
    Ok(addrs)
}

fn tcp_connect(
    host: &str,
    port: u16,
    addrs: &[SocketAddr],
    timeout: Duration,
) -> Result<TcpStream> {
    let mut last = None;
    for addr in addrs {
        let attempt = if timeout.is_zero() {
            TcpStream::connect(addr)
        } else {
            TcpStream::connect_timeout(addr, timeout)
        };
        match attempt {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) if e.kind() == io::ErrorKind::TimedOut => {
            bail!(
                "cannot connect to {host} port {port}: no answer within connect_timeout {}s",
                timeout.as_secs()
            )
        }
        Some(e) => bail!("cannot connect to {host} port {port}: {e}"),
        None => bail!("cannot resolve host {host}: no addresses"),
    }
}

/// libssh2 timeouts are milliseconds; 0 means none.
fn millis(d: Duration) -> u32 {
    d.as_millis().min(u32::MAX as u128) as u32
}

/// Asks for the host key types known_hosts holds for this host and for the
/// fastest ciphers both sides have: apart from `login` as its own step.
fn prefer_algorithms(session: &Session, host_keys: &known_hosts::HostKeys) -> Result<()> {
    let supported = session
        .supported_algs(MethodType::HostKey)
        .unwrap_or_default();
    if let Some(prefs) = host_keys.algorithm_preference(&supported) {
        session
            .method_pref(MethodType::HostKey, &prefs)
            .with_context(|| format!("cannot ask for host key types {prefs}"))?;
    }
    let ciphers = session
        .supported_algs(MethodType::CryptCs)
        .unwrap_or_default();
    let ciphers: Vec<&str> = CIPHERS
        .iter()
        .copied()
        .filter(|c| ciphers.contains(c))
        .collect();
    if !ciphers.is_empty() {
        let ciphers = ciphers.join(",");
        // Best effort: the defaults work too, only slower.
        let _ = session.method_pref(MethodType::CryptCs, &ciphers);
        let _ = session.method_pref(MethodType::CryptSc, &ciphers);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transport(archive: &str) -> SshTransport {
        SshTransport::new(SshConfig {
            host: "h".into(),
            port: 22,
            user: "u".into(),
            identity: "/k".into(),
            known_hosts: "/kh".into(),
            remote_archive: archive.into(),
            connect_timeout: Duration::from_secs(1),
            io_timeout: Duration::from_secs(1),
            jump: Vec::new(),
            client: crate::config::SshClient::Libssh2,
        })
        .unwrap()
    }

    #[test]
    fn command_lines_survive_forced_command_splitting() {
        let t = transport("dpkg_archive");
        assert_eq!(
            t.command_line(&["stat", "pkg"]),
            "~/.blat/blat-receiver -a dpkg_archive stat pkg"
        );
        assert_eq!(
            transport("~/arch").command_line(&["list"]),
            "~/.blat/blat-receiver -a arch list"
        );
        assert_eq!(
            transport("/srv/a b").command_line(&["list"]),
            "~/.blat/blat-receiver -a '/srv/a b' list"
        );
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word("~root"), "'~root'");
        assert_eq!(shell_word(""), "''");
        assert_eq!(shell_word("1.0+b~rc"), "1.0+b~rc");
    }

    #[test]
    fn receiver_hash_matches_version_output() {
        let sha = receiver_sha256();
        assert_eq!(sha.len(), 64);
        assert_eq!(
            version_sha(&format!(
                "blat-receiver 1\nsha256 {sha}\ndecompressors gzip\n"
            )),
            Some(sha)
        );
        assert_eq!(version_sha("blat-receiver 1\n"), None);
    }

    #[test]
    fn identity_checks_follow_openssh() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("id");
        std::fs::write(&key, "key").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        check_identity(&key).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = check_identity(&key).unwrap_err().to_string();
        assert!(
            err.contains("accessible by group or others (mode 0640)") && err.contains("chmod 600"),
            "{err}"
        );
        let err = check_identity(&dir.path().join("missing")).unwrap_err();
        assert!(
            format!("{err:#}").starts_with("cannot read identity"),
            "{err:#}"
        );
    }
}
