//! The `openssh` SSH client: runs `~/.blat/blat-receiver` on the target
//! through the system's OpenSSH client, `ssh`, over one connection per run
//! (a ControlMaster), so bulk data moves at OpenSSH's speed and the user's
//! `~/.ssh/config` (ProxyJump, agents, certificates) applies.
//!
//! - Options: the target's user, port, identity and known_hosts are passed
//!   as options, host keys are checked strictly against that known_hosts
//!   only, and BatchMode is on: a run never asks anyone anything. They are
//!   the options of `blat ssh` ([`command`]).
//! - The master: started on first use, with its control socket in a private
//!   (0700) directory that is removed when the transport is dropped. A
//!   keeper thread owns it and ends it then; should blat die, the kernel
//!   ends it too (`PR_SET_PDEATHSIG` on the keeper, which outlives it).
//!   A master that has died (a dropped connection) is replaced on next use.
//! - Runs: one `ssh -S SOCKET ... HOST COMMAND` per receiver call, its
//!   stdin written on the calling thread, stdout and stderr read on two
//!   more, so the stream goes through the kernel's pipes to OpenSSH's own
//!   event loop and cipher code.
//! - Timeouts: `connect_timeout` is ssh's ConnectTimeout; `io_timeout`
//!   bounds every wait for the target: a watchdog ends a run whose input
//!   and output have not moved for that long, and the master's keepalives
//!   (ServerAliveInterval) end a connection that stopped answering.

use std::ffi::{OsStr, OsString};
use std::fs::{self, DirBuilder, File};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

mod watch;

use super::ssh::{check_identity, connect_error, ensure_receiver, receiver_command, LAST_WORDS};
use super::{InputFn, RunOutput, Transport};
use crate::config::SshConfig;
use watch::{enlarge_pipe, PipeWriter, Watch};

/// ssh's exit status for its own errors (the receiver never uses it).
const SSH_ERROR: i32 = 255;

/// How long a master may take to end after a lost connection failed a run.
const MASTER_GRACE: Duration = Duration::from_millis(300);

/// The ssh command line to the target (host keys only from `known_hosts`,
/// only the configured identity, never a question), with `options` before
/// the host and `remote` after it; `blat ssh` and the transport share it.
/// Behind jump hosts, a `ProxyCommand` (not `-J`: options given on the
/// command line do not reach the jump hosts' connections) runs an ssh to
/// the last jump host with the very same options, itself behind the one
/// before, so that every hop is checked as the target is.
pub fn command(ssh: &SshConfig, options: &[OsString], remote: &[String]) -> Command {
    let mut cmd = Command::new("ssh");
    cmd.args(connection_options(ssh, &ssh.host, ssh.port, &ssh.user));
    if let Some(proxy) = proxy_command(ssh, ssh.jump.len()) {
        cmd.arg("-o").arg(format!("ProxyCommand={proxy}"));
    }
    cmd.args(options);
    // `--`: nothing after the host is taken as an ssh option.
    cmd.arg("--").arg(&ssh.host).args(remote);
    cmd
}

/// The options for one connection (the target's or a jump host's): port,
/// user, the target's identity and known_hosts, strict host key checking
/// under the exact `[HOST]:PORT` name, connect_timeout.
fn connection_options(ssh: &SshConfig, host: &str, port: u16, user: &str) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "-p".into(),
        port.to_string().into(),
        "-l".into(),
        user.into(),
        "-i".into(),
        ssh.identity.clone().into(),
        "-o".into(),
        "IdentitiesOnly=yes".into(),
        "-o".into(),
        option("UserKnownHostsFile", ssh.known_hosts.as_os_str()),
        "-o".into(),
        "GlobalKnownHostsFile=/dev/null".into(),
        "-o".into(),
        "StrictHostKeyChecking=yes".into(),
        "-o".into(),
        option("HostKeyAlias", OsStr::new(&host_key_name(host, port))),
    ];
    if !ssh.connect_timeout.is_zero() {
        args.push("-o".into());
        args.push(format!("ConnectTimeout={}", ssh.connect_timeout.as_secs().max(1)).into());
    }
    args
}

/// The ProxyCommand reaching what comes after the first `hops` jump hosts:
/// `ssh OPTIONS [-o ProxyCommand=<the one before>] -W NEXT -- JUMP_HOST`,
/// as one shell line (ssh runs it with `sh -c`) in which `%` is doubled
/// (ssh expands `%h`-style tokens in it, once per level).
fn proxy_command(ssh: &SshConfig, hops: usize) -> Option<String> {
    let hop = ssh.jump.get(hops.checked_sub(1)?)?;
    let (next_host, next_port) = match ssh.jump.get(hops) {
        Some(next) => (next.host.as_str(), next.port),
        None => (ssh.host.as_str(), ssh.port),
    };
    let next = if next_host.contains(':') {
        format!("[{next_host}]:{next_port}")
    } else {
        format!("{next_host}:{next_port}")
    };
    let mut words: Vec<String> = vec!["ssh".into()];
    words.extend(
        connection_options(ssh, &hop.host, hop.port, &hop.user)
            .iter()
            .map(|w| w.to_string_lossy().into_owned()),
    );
    if let Some(before) = proxy_command(ssh, hops - 1) {
        words.push("-o".into());
        words.push(format!("ProxyCommand={before}"));
    }
    words.extend(["-W".into(), next, "--".into(), hop.host.clone()]);
    let line = words
        .iter()
        .map(|w| sh_quote(w))
        .collect::<Vec<_>>()
        .join(" ");
    Some(line.replace('%', "%%"))
}

/// A word for `sh -c`: as is when nothing in it is special to a shell,
/// else single-quoted.
fn sh_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./,:=@+%".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The name a host's key is looked up under in known_hosts: `[HOST]:PORT`,
/// or `HOST` on port 22, exactly (OpenSSH would also accept a key recorded
/// for HOST alone on another port; the libssh2 client does not).
fn host_key_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// `NAME=VALUE` for `-o`, the value quoted when ssh would split it.
pub fn option(name: &str, value: &OsStr) -> OsString {
    let mut out = OsString::from(format!("{name}="));
    let text = value.to_string_lossy();
    if text.contains(char::is_whitespace) || text.contains('"') {
        out.push(format!("\"{}\"", text.replace('"', "\\\"")));
    } else {
        out.push(value);
    }
    out
}

pub struct OpensshTransport {
    config: SshConfig,
    master: Mutex<Option<Master>>,
    /// The receiver on the target was checked (and installed) in this run.
    receiver_ready: Mutex<bool>,
}

impl OpensshTransport {
    pub fn new(config: SshConfig) -> OpensshTransport {
        OpensshTransport {
            config,
            master: Mutex::new(None),
            receiver_ready: Mutex::new(false),
        }
    }

    fn endpoint(&self) -> String {
        format!(
            "{}@{}:{}",
            self.config.user, self.config.host, self.config.port
        )
    }

    /// The control socket of a live master, started (and the receiver
    /// checked) when there is none.
    fn socket(&self) -> Result<PathBuf> {
        let mut master = self.master.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = master.as_ref().filter(|m| m.alive()) {
            return Ok(m.socket.clone());
        }
        // Dropping a dead master removes its directory.
        *master = None;
        check_identity(&self.config.identity)?;
        let started = Master::start(&self.config, &self.endpoint())?;
        let socket = started.socket.clone();
        *master = Some(started);
        drop(master);
        // Held while checking, so that parallel senders wait for one install.
        let mut ready = self
            .receiver_ready
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if !*ready {
            ensure_receiver(
                &self.endpoint(),
                &self.config.remote_archive,
                &mut |line, input| self.exec(&socket, line, input),
            )?;
            *ready = true;
        }
        Ok(socket)
    }

    /// Runs one remote command line over the master. `Err` means the
    /// connection failed or timed out (or the input could not be produced).
    fn exec(&self, socket: &Path, line: &str, input: Option<InputFn>) -> Result<RunOutput> {
        let options = [
            "-T".into(),
            "-o".into(),
            "ControlMaster=no".into(),
            "-o".into(),
            option("ControlPath", socket.as_os_str()),
            "-o".into(),
            "LogLevel=ERROR".into(),
        ];
        let mut cmd = command(&self.config, &options, &[line.to_string()]);
        crate::malloc::for_child(&mut cmd);
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .context("cannot run ssh (the openssh client needs OpenSSH's ssh: apt-get install openssh-client)")?;
        let watch = Watch::new(self.config.io_timeout);
        let (fed, broken, stdout, stderr) = self.drive(&mut child, &watch, input);
        let status = child.wait().context("cannot wait for ssh")?;
        let (stdout, stderr) = (lossy(stdout), lossy(stderr));
        if watch.fired.load(Ordering::Relaxed) {
            return Err(self.lost(io::ErrorKind::TimedOut.into(), "waiting for the receiver"));
        }
        if let Err(e) = fed {
            return Err(self.failed_feed(e, broken, &stderr));
        }
        match status.code() {
            // What ssh's mux client says when sshd refuses another session.
            Some(SSH_ERROR) if stderr.contains("Session open refused by peer") => {
                Err(anyhow!(
                    "{} refused one more session on blat's connection: its sshd allows fewer at once \
                     (MaxSessions, 10 by default) than blat opens (parallel); raise MaxSessions there, \
                     lower parallel, or set ssh_client = \"libssh2\" (a connection per session)",
                    self.endpoint()
                ))
            }
            Some(SSH_ERROR) if self.master_survives() => {
                // The connection is up, so the remote command ended without
                // an exit status: killed by a signal (ssh does not say which).
                Ok(RunOutput {
                    status: 128,
                    stdout,
                    stderr: format!("{stderr}blat-receiver: killed by a signal\n"),
                })
            }
            Some(SSH_ERROR) => {
                Err(self.lost(io::Error::other(last_line(&stderr)), "running the receiver"))
            }
            Some(code) => Ok(RunOutput {
                status: code,
                stdout,
                stderr,
            }),
            None => Err(anyhow!(
                "ssh to {} ended by signal {}",
                self.endpoint(),
                status.signal().unwrap_or(0)
            )),
        }
    }

    /// Feeds the child's stdin while two threads read its output and a
    /// watchdog ends it when nothing moves for io_timeout. Returns the
    /// feed's result, the pipe error that broke it, stdout and stderr.
    fn drive(
        &self,
        child: &mut Child,
        watch: &Watch,
        input: Option<InputFn>,
    ) -> (Result<()>, Option<io::Error>, Vec<u8>, Vec<u8>) {
        let pid = child.id() as libc::pid_t;
        let mut out = child.stdout.take().expect("stdout is piped");
        let mut err = child.stderr.take().expect("stderr is piped");
        let stdin = child.stdin.take();
        std::thread::scope(|scope| {
            let dog = scope.spawn(|| watch.guard(pid));
            let reader_out = scope.spawn(|| watch.read_all(&mut out));
            let reader_err = scope.spawn(|| watch.read_all(&mut err));
            let mut fed = Ok(());
            let mut broken = None;
            if let (Some(input), Some(stdin)) = (input, stdin) {
                let mut writer = PipeWriter {
                    stdin,
                    watch,
                    broken: None,
                };
                enlarge_pipe(&writer.stdin);
                fed = input(&mut writer);
                broken = writer.broken.take();
                if fed.is_err() {
                    // The receiver sees the end of its input now and fails
                    // the half stream; wait only briefly for its words.
                    watch.shorten(LAST_WORDS);
                }
                // Dropping the writer closes stdin: the receiver's EOF.
            }
            let stdout = reader_out.join().expect("stdout reader panicked");
            let stderr = reader_err.join().expect("stderr reader panicked");
            watch.stop();
            dog.join().expect("watchdog panicked");
            (fed, broken, stdout, stderr)
        })
    }

    /// Whether the master is still up a moment after a run's ssh failed: a
    /// lost connection ends the master right after its sessions.
    fn master_survives(&self) -> bool {
        let until = Instant::now() + MASTER_GRACE;
        loop {
            let alive = self
                .master
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .is_some_and(|m| m.alive());
            if !alive {
                return false;
            }
            if Instant::now() > until {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The error for input that could not be fed: the receiver's own words
    /// when it said any, else the broken pipe to ssh.
    fn failed_feed(
        &self,
        e: anyhow::Error,
        broken: Option<io::Error>,
        stderr: &str,
    ) -> anyhow::Error {
        let detail = last_line(stderr);
        if !detail.is_empty() {
            let detail = super::protocol::message(&detail);
            return e.context(format!("sending to the receiver failed: {detail}"));
        }
        match broken {
            Some(io) => self.lost(io, "sending"),
            None => e.context("sending to the receiver failed"),
        }
    }

    fn lost(&self, e: io::Error, doing: &str) -> anyhow::Error {
        if e.kind() == io::ErrorKind::TimedOut {
            anyhow!(
                "{} stopped answering: no reply within io_timeout {}s while {doing}",
                self.endpoint(),
                self.config.io_timeout.as_secs()
            )
        } else {
            anyhow!("connection to {} lost while {doing}: {e}", self.endpoint())
        }
    }
}

impl Transport for OpensshTransport {
    fn describe(&self) -> String {
        format!("{}:{}", self.endpoint(), self.config.remote_archive)
    }

    fn run(&self, args: &[String], input: Option<InputFn>) -> Result<RunOutput> {
        let line = receiver_command(&self.config.remote_archive, args);
        let socket = self.socket()?;
        self.exec(&socket, &line, input)
    }
}

/// One ControlMaster: its private directory and the keeper thread that
/// owns the `ssh -M` process.
struct Master {
    dir: PathBuf,
    socket: PathBuf,
    /// Set by the keeper when the master process has ended.
    ended: Arc<AtomicBool>,
    /// Dropping it tells the keeper to end the master.
    stop: Option<mpsc::Sender<()>>,
    keeper: Option<JoinHandle<()>>,
}

impl Master {
    /// Starts `ssh -M -N` and waits until its control socket is there (the
    /// connection is up and logged in) or it has ended.
    fn start(config: &SshConfig, endpoint: &str) -> Result<Master> {
        let dir = private_dir()?;
        let socket = dir.join("master");
        let log = dir.join("master.err");
        let mut options: Vec<OsString> = [
            "-M",
            "-N",
            "-o",
            "ControlMaster=yes",
            "-o",
            "ControlPersist=no",
            "-o",
            "BatchMode=yes",
        ]
        .map(OsString::from)
        .into();
        options.extend(["-o".into(), option("ControlPath", socket.as_os_str())]);
        if !config.io_timeout.is_zero() {
            // Three unanswered keepalives, io_timeout apart in all.
            let every = config.io_timeout.as_secs().div_ceil(3).max(1);
            options.extend([
                "-o".into(),
                format!("ServerAliveInterval={every}").into(),
                "-o".into(),
                "ServerAliveCountMax=3".into(),
            ]);
        }
        let mut cmd = command(config, &options, &[]);
        crate::malloc::for_child(&mut cmd);
        let err = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(err);
        // SAFETY: prctl is async-signal-safe; nothing else runs in the child.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let ended = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = mpsc::channel::<()>();
        let (spawned_tx, spawned) = mpsc::channel::<io::Result<()>>();
        let keeper_ended = ended.clone();
        let keeper = std::thread::spawn(move || keep(cmd, spawned_tx, stopped, keeper_ended));
        let mut master = Master {
            dir,
            socket,
            ended,
            stop: Some(stop),
            keeper: Some(keeper),
        };
        match spawned.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => bail!("cannot run ssh (the openssh client needs OpenSSH's ssh: apt-get install openssh-client): {e}"),
            Err(_) => bail!("cannot run ssh: its keeper thread ended"),
        }
        master.wait_ready(config, endpoint, &log)?;
        Ok(master)
    }

    fn wait_ready(&mut self, config: &SshConfig, endpoint: &str, log: &Path) -> Result<()> {
        // ConnectTimeout bounds connecting; the login after it is quick.
        let limit = if config.connect_timeout.is_zero() {
            None
        } else {
            Some(Instant::now() + config.connect_timeout * 2 + Duration::from_secs(5))
        };
        loop {
            if self.socket.exists() {
                return Ok(());
            }
            if !self.alive() {
                let said = fs::read_to_string(log).unwrap_or_default();
                let said = last_line(&said);
                let said = if said.is_empty() {
                    "ssh ended without a word"
                } else {
                    &said
                };
                // The libssh2 client names the failing step and the fix;
                // ssh's own words follow (it may know more: ~/.ssh/config).
                match connect_error(config) {
                    Some(e) => bail!("{e:#} (ssh said: {said})"),
                    None => bail!("cannot connect to {endpoint} with ssh: {said}"),
                }
            }
            if limit.is_some_and(|l| Instant::now() > l) {
                bail!(
                    "cannot connect to {endpoint} with ssh: not logged in within connect_timeout {}s",
                    config.connect_timeout.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn alive(&self) -> bool {
        !self.ended.load(Ordering::Acquire)
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(keeper) = self.keeper.take() {
            let _ = keeper.join();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The keeper thread: spawns the master, reports whether that worked, then
/// watches it until told to stop (or the transport is gone), and ends it.
fn keep(
    mut cmd: Command,
    spawned: mpsc::Sender<io::Result<()>>,
    stop: mpsc::Receiver<()>,
    ended: Arc<AtomicBool>,
) {
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            ended.store(true, Ordering::Release);
            let _ = spawned.send(Err(e));
            return;
        }
    };
    let _ = spawned.send(Ok(()));
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(Duration::from_millis(50)) {
        if !matches!(child.try_wait(), Ok(None)) {
            ended.store(true, Ordering::Release);
        }
    }
    if matches!(child.try_wait(), Ok(None)) {
        // SIGTERM: the master closes the connection in good order.
        // SAFETY: the child is ours and not yet reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    }
    let _ = child.wait();
    ended.store(true, Ordering::Release);
}

/// A new private directory for a control socket: `$XDG_RUNTIME_DIR` when
/// set (a tmpfs of the user's own), else the temporary directory; its name
/// unpredictable, created exclusively, mode 0700.
fn private_dir() -> Result<PathBuf> {
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute() && p.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("blat-ssh-{}", crate::atomic::token(12)));
    DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .with_context(|| {
            format!(
                "cannot create a directory for ssh's control socket: {}",
                dir.display()
            )
        })?;
    Ok(dir)
}

fn lossy(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn last_line(text: &str) -> String {
    text.trim()
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_keys_are_looked_up_as_libssh2_does() {
        assert_eq!(host_key_name("site", 22), "site");
        assert_eq!(host_key_name("10.1.2.3", 2222), "[10.1.2.3]:2222");
    }

    #[test]
    fn the_control_directory_is_private_and_fresh() {
        let a = private_dir().unwrap();
        let b = private_dir().unwrap();
        assert_ne!(a, b);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&a).unwrap().permissions().mode() & 0o777,
            0o700
        );
        fs::remove_dir(&a).unwrap();
        fs::remove_dir(&b).unwrap();
    }
}
