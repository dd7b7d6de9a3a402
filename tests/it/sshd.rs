//! A real OpenSSH server for the SSH tests: `/usr/sbin/sshd` on 127.0.0.1
//! at a free high port, with temporary host keys (ed25519 and ecdsa), a
//! temporary authorized_keys and a home of its own (`SetEnv HOME`), so that
//! tests running at once never share a receiver or an archive. The target
//! user is never root: `$BLAT_TEST_SSH_USER` (default `blattest`, created
//! when missing and we are root), or ourselves when we are not root.
//!
//! [`Sshd::start_in`] runs one inside a network namespace (`netns.rs`) at
//! a given address, as a jump host (TCP forwarding allowed) or a target
//! the test process cannot reach.
//!
//! Also [`Proxy`], a TCP relay that cuts or freezes the connection after a
//! number of bytes, for the failure tests.

#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use crate::common::World;

const SSHD: &str = "/usr/sbin/sshd";

pub struct Sshd {
    pub dir: tempfile::TempDir,
    /// The address it listens on (`127.0.0.1`, or one in a namespace).
    pub host: String,
    pub port: u16,
    pub user: String,
    /// `$HOME` of the target user's sessions on this server.
    pub home: PathBuf,
    /// A key in authorized_keys (mode 600, ours).
    pub identity: PathBuf,
    /// `[HOST]:PORT` (`HOST` for port 22) with the ed25519 host key.
    pub known_hosts: PathBuf,
    child: Child,
    /// The namespace it runs in (`ip netns exec`), if any.
    netns: Option<String>,
    /// Connections made to see it start.
    probes: usize,
}

/// Where and how an sshd listens.
pub struct Listen<'a> {
    /// Run inside this network namespace.
    pub netns: Option<&'a str>,
    pub host: &'a str,
    /// `None`: a free port (only outside a namespace).
    pub port: Option<u16>,
    /// `AllowTcpForwarding`: a jump host's sshd needs it.
    pub forwarding: bool,
}

/// `host` for port 22, else `[host]:port`, as known_hosts names a host.
pub fn known_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Run a command that must succeed; returns its stdout.
#[track_caller]
pub fn sh(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn is_root() -> bool {
    sh(Command::new("id").arg("-u")).trim() == "0"
}

/// The target user, prepared once per test process.
fn target_user() -> String {
    static PREPARE: Once = Once::new();
    if !is_root() {
        return sh(Command::new("id").arg("-un")).trim().to_string();
    }
    let user = std::env::var("BLAT_TEST_SSH_USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or("blattest".into());
    PREPARE.call_once(|| {
        let _ = fs::create_dir_all("/run/sshd");
        let _ = fs::set_permissions("/run/sshd", fs::Permissions::from_mode(0o755));
        let known = Command::new("id")
            .arg(&user)
            .output()
            .is_ok_and(|o| o.status.success());
        if !known {
            sh(Command::new("useradd").args(["-m", "-s", "/bin/sh", &user]));
        }
        // A locked account ('!') is refused even with a key; '*' is not locked.
        sh(Command::new("usermod").args(["-p", "*", &user]));
    });
    user
}

/// Gives `path` (and everything below) to the target user.
pub fn give_to(user: &str, path: &Path) {
    if is_root() {
        sh(Command::new("chown")
            .arg("-R")
            .arg(format!("{user}:"))
            .arg(path));
    }
}

/// A new key pair without passphrase; returns the private key's path.
pub fn keygen(path: &Path, kind: &str) -> PathBuf {
    let _ = fs::remove_file(path);
    sh(Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", "", "-C", "blat-test", "-f"])
        .arg(path));
    path.to_path_buf()
}

pub fn public_key(private: &Path) -> String {
    fs::read_to_string(private.with_extension("pub"))
        .unwrap()
        .trim()
        .to_string()
}

impl Sshd {
    /// A running sshd, or `None` (skip) when there is none to run outside CI.
    pub fn start() -> Option<Sshd> {
        Sshd::start_in(&Listen {
            netns: None,
            host: "127.0.0.1",
            port: None,
            forwarding: false,
        })
    }

    /// A running sshd as `listen` says, or `None` (skip) when there is
    /// none to run outside CI.
    pub fn start_in(listen: &Listen) -> Option<Sshd> {
        if !Path::new(SSHD).exists() {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{SSHD} is required under CI=true (scripts/test-env start installs openssh-server)");
            }
            eprintln!("skipped: {SSHD} not installed (scripts/test-env start installs it)");
            return None;
        }
        let user = target_user();
        let dir = tempfile::Builder::new()
            .prefix("blat-sshd-")
            .tempdir()
            .unwrap();
        // sshd reads authorized_keys as the target user: it must get in.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let d = dir.path();
        keygen(&d.join("host_ed25519"), "ed25519");
        keygen(&d.join("host_ecdsa"), "ecdsa");
        let identity = keygen(&d.join("id_ed25519"), "ed25519");
        let home = d.join("home");
        fs::create_dir_all(home.join("dpkg_archive")).unwrap();
        fs::set_permissions(&home, fs::Permissions::from_mode(0o755)).unwrap();
        give_to(&user, &home);
        fs::write(
            d.join("authorized_keys"),
            format!("{}\n", public_key(&identity)),
        )
        .unwrap();
        fs::set_permissions(d.join("authorized_keys"), fs::Permissions::from_mode(0o644)).unwrap();

        let mut last_log = String::new();
        for _ in 0..5 {
            let port = listen.port.unwrap_or_else(free_port);
            let config = format!(
                "Port {port}\nListenAddress {host}\nHostKey {d}/host_ed25519\nHostKey {d}/host_ecdsa\n\
                 PidFile none\nAuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                 AllowUsers {user}\nSetEnv HOME={home}\nMaxStartups 100\nMaxSessions 100\nLogLevel VERBOSE\n\
                 X11Forwarding no\nAllowTcpForwarding {forwarding}\nPrintMotd no\n",
                host = listen.host,
                d = d.display(),
                home = home.display(),
                forwarding = if listen.forwarding { "yes" } else { "no" },
            );
            fs::write(d.join("sshd_config"), config).unwrap();
            let mut child = spawn(listen.netns, d);
            let up = match listen.netns {
                None => wait_for_banner(listen.host, port, &mut child),
                Some(_) => wait_for_log(d, 0, &mut child),
            };
            if up {
                let known_hosts = d.join("known_hosts");
                let host_key = public_key(&d.join("host_ed25519"));
                fs::write(
                    &known_hosts,
                    format!("{} {host_key}\n", known_name(listen.host, port)),
                )
                .unwrap();
                return Some(Sshd {
                    host: listen.host.to_string(),
                    port,
                    user,
                    home,
                    identity,
                    known_hosts,
                    child,
                    netns: listen.netns.map(String::from),
                    probes: usize::from(listen.netns.is_none()),
                    dir,
                });
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = fs::read_to_string(d.join("sshd.log")).unwrap_or_default();
            if listen.port.is_some() {
                break;
            }
        }
        panic!("sshd did not start:\n{last_log}");
    }

    /// Starts sshd again after it was killed (its keys, home and port kept).
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let before = self.log().matches("Server listening on").count();
        self.child = spawn(self.netns.as_deref(), self.dir.path());
        let up = match &self.netns {
            None => {
                self.probes += 1;
                wait_for_banner(&self.host, self.port, &mut self.child)
            }
            Some(_) => wait_for_log(self.dir.path(), before, &mut self.child),
        };
        assert!(up, "sshd did not restart:\n{}", self.log());
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The target archive in the server's home (`remote_archive` default).
    pub fn archive(&self) -> PathBuf {
        self.home.join("dpkg_archive")
    }

    /// The receiver blat installs on this server.
    pub fn receiver(&self) -> PathBuf {
        self.home.join(".blat/blat-receiver")
    }

    /// Adds a line to authorized_keys.
    pub fn authorize(&self, line: &str) {
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(self.path().join("authorized_keys"))
            .unwrap();
        writeln!(f, "{line}").unwrap();
    }

    /// The public part of a host key (`ed25519` or `ecdsa`).
    pub fn host_key(&self, kind: &str) -> String {
        public_key(&self.path().join(format!("host_{kind}")))
    }

    /// Records the host key for `port` too (a proxy's), as ssh-keyscan would.
    pub fn trust_port(&self, port: u16) {
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(&self.known_hosts)
            .unwrap();
        writeln!(f, "[127.0.0.1]:{port} {}", self.host_key("ed25519")).unwrap();
    }

    /// Connections made to the server, besides those that saw it start.
    pub fn connections(&self) -> usize {
        self.log()
            .matches("Connection from")
            .count()
            .saturating_sub(self.probes)
    }

    /// What sshd logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.path().join("sshd.log")).unwrap_or_default()
    }

    /// The SSH target lines of a `targets/*.conf`, reaching this server at
    /// `port` (the server's own, or a proxy's).
    /// A target conf for this server. `$BLAT_TEST_SSH_CLIENT` (`openssh`
    /// or `libssh2`), when set, picks the SSH client of every test that
    /// runs blat, so the suite can run against each (the default else).
    pub fn target_conf(&self, port: u16, extra: &str) -> String {
        let client = match std::env::var("BLAT_TEST_SSH_CLIENT") {
            Ok(c) if !c.is_empty() && !extra.contains("ssh_client") => {
                format!("ssh_client = \"{c}\"\n")
            }
            _ => String::new(),
        };
        format!(
            "kind = \"archive\"\ntransport = \"ssh\"\nhost = \"{}\"\nport = {port}\nuser = \"{}\"\n\
             identity = \"{}\"\nknown_hosts = \"{}\"\n{client}{extra}\n",
            self.host,
            self.user,
            self.identity.display(),
            self.known_hosts.display()
        )
    }

    /// Writes `targets/<name>.conf` for this server into the world.
    /// Writes target `site` (`projects = ["P"]` and `extra`) logging in
    /// with `identity` instead of the fixture's own key.
    pub fn write_site_with_identity(&self, world: &World, identity: &Path, extra: &str) {
        let conf = self
            .target_conf(self.port, &format!("projects = [\"P\"]\n{extra}"))
            .replace(
                &format!("identity = \"{}\"", self.identity.display()),
                &format!("identity = \"{}\"", identity.display()),
            );
        world.write_target("site", &conf);
    }

    /// A new key that may only run the receiver (the README's
    /// authorized_keys line; `options` follow the program, as
    /// ` --allow-install`), and the target `site` of `world` logging in with it.
    pub fn forced_key(&self, world: &World, options: &str) -> PathBuf {
        let key = keygen(&self.path().join("id_forced"), "ed25519");
        self.authorize(&format!(
            "restrict,command=\"{}{options}\" {}",
            self.receiver().display(),
            public_key(&key)
        ));
        self.write_site_with_identity(world, &key, "");
        key
    }

    /// Puts `content` where blat installs the receiver, as the target user.
    pub fn plant_receiver(&self, content: &str) {
        let dir = self.receiver().parent().unwrap().to_path_buf();
        fs::create_dir_all(&dir).unwrap();
        fs::write(self.receiver(), content).unwrap();
        fs::set_permissions(self.receiver(), fs::Permissions::from_mode(0o755)).unwrap();
        give_to(&self.user, &dir);
    }

    /// Nothing on the target: no package, no receiver installed.
    #[track_caller]
    pub fn assert_untouched(&self) {
        let entries: Vec<_> = fs::read_dir(self.archive())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(entries.is_empty(), "target archive changed: {entries:?}");
        assert!(!self.receiver().exists(), "the receiver was installed");
    }

    pub fn write_target(&self, world: &World, name: &str, extra: &str) {
        world.write_target(name, &self.target_conf(self.port, extra));
    }

    /// The system ssh client against this server, for what blat must not do.
    pub fn ssh(&self, identity: &Path, command: &str) -> std::process::Output {
        self.ssh_with_input(identity, command, b"")
    }

    /// `ssh` with `input` on its standard input.
    pub fn ssh_with_input(
        &self,
        identity: &Path,
        command: &str,
        input: &[u8],
    ) -> std::process::Output {
        use std::io::Write;
        let mut child = Command::new("ssh")
            .args(["-p", &self.port.to_string(), "-i"])
            .arg(identity)
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
            ])
            .arg(format!("{}@{}", self.user, self.host))
            .arg(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        // The far end may refuse before reading: a broken pipe is fine.
        let _ = stdin.write_all(input);
        drop(stdin);
        child.wait_with_output().unwrap()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The home holds read-only package directories of the target user.
        let _ = Command::new("chmod")
            .arg("-R")
            .arg("u+rwx")
            .arg(&self.home)
            .status();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// True once sshd in `dir` logs that it listens for the `seen + 1`st time
/// (in a namespace the test cannot reach); false when it exited.
fn wait_for_log(dir: &Path, seen: usize, child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        let log = fs::read_to_string(dir.join("sshd.log")).unwrap_or_default();
        if log.matches("Server listening on").count() > seen {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// sshd with the configuration in `dir`, in namespace `netns` if any
/// (`ip netns exec` execs it: the child is sshd itself).
fn spawn(netns: Option<&str>, dir: &Path) -> Child {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("sshd.log"))
        .unwrap();
    let mut cmd = match netns {
        Some(ns) => {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", ns, SSHD]);
            cmd
        }
        None => Command::new(SSHD),
    };
    cmd.args(["-D", "-e", "-f"])
        .arg(dir.join("sshd_config"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("cannot start sshd")
}

/// True once the server greets on `port`; false when it exited or is silent.
fn wait_for_banner(host: &str, port: u16, child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        if let Ok(mut s) = TcpStream::connect((host, port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 8];
            if s.read_exact(&mut buf).is_ok() && &buf[..4] == b"SSH-" {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// What the proxy does once `after` bytes went from client to server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward the first bytes, then close both connections.
    Cut,
    /// Forward the first bytes, then nothing either way, connections open:
    /// a target that stops answering.
    Freeze,
}

/// A TCP relay to `127.0.0.1:upstream` that counts client-to-server bytes
/// over all its connections and fails as `fault` says after `after` bytes.
pub struct Proxy {
    pub port: u16,
    sent: Arc<AtomicU64>,
    tripped: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    pub fn start(upstream: u16, fault: Fault, after: u64) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let sent = Arc::new(AtomicU64::new(0));
        // Nothing at all passes a proxy that fails after 0 bytes, not even the banner.
        let tripped = Arc::new(AtomicBool::new(after == 0));
        let stop = Arc::new(AtomicBool::new(false));
        let streams = Arc::new(Mutex::new(Vec::new()));
        let acceptor = {
            let (sent, tripped, stop, streams) =
                (sent.clone(), tripped.clone(), stop.clone(), streams.clone());
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(client) = client else { continue };
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                        continue;
                    };
                    {
                        let mut all = streams.lock().unwrap();
                        all.push(client.try_clone().unwrap());
                        all.push(server.try_clone().unwrap());
                    }
                    let relay = Relay {
                        fault,
                        after,
                        sent: sent.clone(),
                        tripped: tripped.clone(),
                        stop: stop.clone(),
                    };
                    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                    let up = relay.clone();
                    std::thread::spawn(move || up.pump(client, server, true));
                    std::thread::spawn(move || relay.pump(s2, c2, false));
                }
            })
        };
        Proxy {
            port,
            sent,
            tripped,
            stop,
            streams,
            acceptor: Some(acceptor),
        }
    }

    /// Closes every connection made so far, as a server dropping idle
    /// clients does; new connections are relayed as before.
    pub fn sever(&self) {
        for s in self.streams.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Whether the fault happened.
    pub fn tripped(&self) -> bool {
        self.tripped.load(Ordering::SeqCst)
    }

    pub fn bytes_up(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for s in self.streams.lock().unwrap().iter() {
            let _ = s.shutdown(Shutdown::Both);
        }
        // Wake the acceptor so it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

#[derive(Clone)]
struct Relay {
    fault: Fault,
    after: u64,
    sent: Arc<AtomicU64>,
    tripped: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    fn pump(&self, mut from: TcpStream, mut to: TcpStream, upstream: bool) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut n = n;
            if upstream {
                let before = self.sent.fetch_add(n as u64, Ordering::SeqCst);
                if before + n as u64 > self.after {
                    n = self.after.saturating_sub(before) as usize;
                    self.tripped.store(true, Ordering::SeqCst);
                }
            }
            if self.tripped.load(Ordering::SeqCst) && !upstream {
                n = 0;
            }
            if n > 0 && to.write_all(&buf[..n]).is_err() {
                break;
            }
            if self.tripped.load(Ordering::SeqCst) {
                match self.fault {
                    Fault::Cut => {
                        let _ = from.shutdown(Shutdown::Both);
                        let _ = to.shutdown(Shutdown::Both);
                        return;
                    }
                    Fault::Freeze => {
                        // Hold everything open and silent until the proxy goes.
                        while !self.stop.load(Ordering::SeqCst) {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        return;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    }
}
