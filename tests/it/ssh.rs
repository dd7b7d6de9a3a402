//! SSH targets against a real OpenSSH server (`sshd.rs`), as an unprivileged
//! target user: the shared Target suite, `blat sync` end to end with several
//! sessions, host key and user key failures, connections cut or frozen in
//! the middle of a package, forced-command keys, the receiver installing
//! itself, and min_free.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use blat::config::{SshClient, SshConfig};
use blat::target::openssh::OpensshTransport;
use blat::target::receiver::ReceiverTarget;
use blat::target::ssh::{receiver_sha256, SshTransport};
use blat::target::{InputFn, RunOutput, Transport, RECEIVER};

use crate::common::{self, assert_exit, stderr, stdout, World};
use crate::sshd::{give_to, keygen, public_key, sh, Fault, Proxy, Sshd};
use crate::target_suite::Harness;

const T0: i64 = 1_700_000_000;

/// A world with project P (a, b) and a pinned alias j/cur, and the ssh
/// target `site` on `sshd`.
fn world(sshd: &Sshd, extra: &str) -> World {
    let w = World::new();
    w.release_project_p(T0);
    sshd.write_target(
        &w,
        "site",
        &format!("projects = [\"P\"]\npackages = [\"j/cur\"]\n{extra}"),
    );
    w
}

fn sync(w: &World) -> Output {
    w.blat(&["sync", "--target", "site"])
}

fn assert_same_version(w: &World, sshd: &Sshd, pv: &str) {
    assert_eq!(
        common::snapshot(&w.archive().join(pv)),
        common::snapshot(&sshd.archive().join(pv)),
        "{pv}"
    );
}

#[track_caller]
fn assert_err_contains(out: &Output, code: i32, needles: &[&str]) {
    assert_exit(out, code);
    let err = stderr(out);
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}:\n{err}");
    }
}

fn ssh_config(sshd: &Sshd) -> SshConfig {
    SshConfig {
        host: "127.0.0.1".into(),
        port: sshd.port,
        user: sshd.user.clone(),
        identity: sshd.identity.clone(),
        known_hosts: sshd.known_hosts.clone(),
        remote_archive: "dpkg_archive".into(),
        connect_timeout: Duration::from_secs(10),
        io_timeout: Duration::from_secs(30),
        jump: Vec::new(),
        client: SshClient::default(),
    }
}

/// Either SSH client, for running the shared suite over each.
enum AnyClient {
    Openssh(OpensshTransport),
    Libssh2(SshTransport),
}

impl AnyClient {
    fn of(config: SshConfig) -> AnyClient {
        match config.client {
            SshClient::Openssh => AnyClient::Openssh(OpensshTransport::new(config)),
            SshClient::Libssh2 => AnyClient::Libssh2(SshTransport::new(config).unwrap()),
        }
    }
}

impl Transport for AnyClient {
    fn describe(&self) -> String {
        match self {
            AnyClient::Openssh(t) => t.describe(),
            AnyClient::Libssh2(t) => t.describe(),
        }
    }

    fn run(&self, args: &[String], input: Option<InputFn>) -> anyhow::Result<RunOutput> {
        match self {
            AnyClient::Openssh(t) => t.run(args, input),
            AnyClient::Libssh2(t) => t.run(args, input),
        }
    }
}

// ------------------------------------------------------------ the shared suite

mod suite {
    use super::*;

    /// Each case on a server of its own, over the openssh client (the
    /// default); `suite::libssh2::CASE` runs it over libssh2.
    fn harness() -> Option<Harness> {
        harness_with(SshClient::Openssh)
    }

    fn harness_with(client: SshClient) -> Option<Harness> {
        let sshd = Sshd::start()?;
        let root = sshd.archive();
        let config = SshConfig {
            client,
            ..ssh_config(&sshd)
        };
        let open = || AnyClient::of(config.clone());
        Some(Harness::new("ssh", World::new(), root, open, Some(sshd)))
    }

    crate::target_suite!(harness);

    mod libssh2 {
        use super::*;

        fn harness() -> Option<Harness> {
            harness_with(SshClient::Libssh2)
        }

        crate::target_suite!(harness);
    }
}

// ------------------------------------------------------------ sync end to end

#[test]
fn sync_over_ssh_copies_exactly_and_installs_the_receiver() {
    let Some(sshd) = Sshd::start() else { return };
    let w = world(&sshd, "");
    assert!(!sshd.receiver().exists());
    let out = sync(&w);
    assert_exit(&out, 0);
    for pv in ["a/1.0", "b/2.0", "j/1"] {
        assert_same_version(&w, &sshd, pv);
    }
    assert_eq!(
        fs::metadata(sshd.archive().join("a/1.0"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o555
    );
    assert_eq!(
        fs::read_link(sshd.archive().join("j/cur"))
            .unwrap()
            .to_str(),
        Some("1")
    );
    assert!(sshd
        .archive()
        .join(".dpkg_archive/packagelist.txt")
        .is_file());
    assert_eq!(fs::read_to_string(sshd.receiver()).unwrap(), RECEIVER);
    assert_eq!(
        fs::metadata(sshd.receiver()).unwrap().permissions().mode() & 0o777,
        0o755
    );

    // A new descpkg mtime replaces the read-only version as the target user.
    let dir = w.archive().join("a/1.0");
    common::make_writable(&dir);
    fs::remove_dir_all(&dir).unwrap();
    w.release_with("a", "1.0", T0 + 500, &[("new.txt", "new")]);
    let out = w.blat(&["sync", "--target", "site", "--json"]);
    assert_exit(&out, 0);
    let report = common::json(&out);
    assert_eq!(
        common::pvs(&report["targets"][0]["report"]["sent"]),
        ["a/1.0"]
    );
    assert_same_version(&w, &sshd, "a/1.0");
    common::assert_no_leftovers(&sshd.archive());

    // Nothing changed: nothing sent, and the receiver is not sent again.
    let installed = fs::metadata(sshd.receiver()).unwrap().modified().unwrap();
    let out = w.blat(&["sync", "--target", "site", "--json"]);
    assert_exit(&out, 0);
    let report = common::json(&out);
    assert_eq!(
        common::pvs(&report["targets"][0]["report"]["sent"]),
        Vec::<String>::new()
    );
    assert_eq!(
        fs::metadata(sshd.receiver()).unwrap().modified().unwrap(),
        installed
    );
}

/// The OpenSSH client's master connection, its control socket and its
/// private directory are gone when the run ends, whether it succeeded or
/// failed at the target; and its socket was private while it lived.
#[test]
fn the_openssh_master_ends_with_the_run_and_leaves_nothing() {
    let Some(sshd) = Sshd::start() else { return };
    let w = world(&sshd, "ssh_client = \"openssh\"\n");
    let runtime = tempfile::tempdir().unwrap();
    let rt = runtime.path().to_str().unwrap().to_string();
    let mentions_runtime = |a: &[String]| a.iter().any(|x| x.contains(&rt));
    // A run that works, then one the receiver fails (its archive is a file).
    let out = w.blat_env(&["sync", "--target", "site"], &[("XDG_RUNTIME_DIR", &rt)]);
    assert_exit(&out, 0);
    assert_same_version(&w, &sshd, "b/2.0");
    sshd.write_target(
        &w,
        "site",
        "projects = [\"P\"]\nssh_client = \"openssh\"\nremote_archive = \".blat/blat-receiver\"\n",
    );
    let out = w.blat_env(&["sync", "--target", "site"], &[("XDG_RUNTIME_DIR", &rt)]);
    assert_exit(&out, 1);
    for _ in 0..50 {
        if common::processes(mentions_runtime).is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        common::processes(mentions_runtime).is_empty(),
        "an ssh master outlived its run: {:?}",
        common::processes(mentions_runtime)
    );
    let left: Vec<_> = fs::read_dir(runtime.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(
        sshd.log().matches("Accepted publickey").count(),
        2,
        "one login per run"
    );
}

#[test]
fn parallel_senders_use_sessions_of_their_own() {
    let Some(sshd) = Sshd::start() else { return };
    let w = World::new();
    let mut content = Vec::new();
    for i in 0..150 {
        let p = format!("p{i:03}");
        w.release_with(&p, "1", T0 + i, &[("f", &p)]);
        content.push(format!("{p}/1"));
    }
    let content: Vec<&str> = content.iter().map(String::as_str).collect();
    w.write_global("");
    w.write_rm(&[("P/R1", "open", 0, &content)]);
    sshd.write_target(
        &w,
        "site",
        "projects = [\"P\"]\nparallel = 3\ncompression = \"zstd\"\n",
    );
    let out = sync(&w);
    assert_exit(&out, 0);
    let listed = fs::read_dir(sshd.archive()).unwrap().count();
    assert_eq!(listed, 151, "150 packages and .dpkg_archive");
    for pv in ["p000/1", "p077/1", "p149/1"] {
        assert_same_version(&w, &sshd, pv);
    }
    let logins = sshd.log().matches("Accepted publickey").count();
    if std::env::var("BLAT_TEST_SSH_CLIENT").as_deref() == Ok("libssh2") {
        assert!(
            (2..=3).contains(&logins),
            "{logins} logins: batches should run on parallel sessions, at most 3"
        );
    } else {
        // OpenSSH: parallel sessions over one multiplexed connection.
        assert_eq!(logins, 1, "one connection per run:\n{}", sshd.log());
    }
}

// ------------------------------------------------------------ host keys

/// Runs a sync with `known_hosts` holding `text`.
fn sync_with_known_hosts(sshd: &Sshd, text: &str) -> (World, Output) {
    let w = world(sshd, "");
    fs::write(&sshd.known_hosts, text).unwrap();
    let out = sync(&w);
    (w, out)
}

fn fingerprint(public: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("k.pub");
    fs::write(&f, format!("{public}\n")).unwrap();
    sh(Command::new("ssh-keygen").arg("-lf").arg(&f))
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string()
}

#[test]
fn unknown_host_is_refused_with_fingerprint_and_keyscan_hint() {
    let Some(sshd) = Sshd::start() else { return };
    // The right key, but recorded for the default port only: not this host.
    let key = sshd.host_key("ed25519");
    let (w, out) = sync_with_known_hosts(
        &sshd,
        &format!("127.0.0.1 {key}\n[otherhost]:{} {key}\n", sshd.port),
    );
    let port = sshd.port;
    let kh = sshd.known_hosts.display();
    assert_err_contains(
        &out,
        1,
        &[
            &format!("unknown host [127.0.0.1]:{port}: its key is not in known_hosts {kh}"),
            &format!("the host offered ssh-ed25519 {}", fingerprint(&key)),
            &format!("ssh-keyscan -p {port} 127.0.0.1 >> {kh}"),
        ],
    );
    sshd.assert_untouched();

    // Doing what the message says makes the next run work.
    let scanned = sh(Command::new("ssh-keyscan").args(["-p", &port.to_string(), "127.0.0.1"]));
    fs::write(&sshd.known_hosts, scanned).unwrap();
    assert_exit(&sync(&w), 0);
    assert!(sshd.archive().join("a/1.0/descpkg").is_file());
}

#[test]
fn changed_host_key_is_refused() {
    let Some(sshd) = Sshd::start() else { return };
    let other = keygen(&sshd.path().join("impostor"), "ed25519");
    let text = format!("[127.0.0.1]:{} {}\n", sshd.port, public_key(&other));
    let (_w, out) = sync_with_known_hosts(&sshd, &text);
    assert_err_contains(
        &out,
        1,
        &[
            &format!("HOST KEY MISMATCH for [127.0.0.1]:{}", sshd.port),
            &fingerprint(&sshd.host_key("ed25519")),
            &format!(
                "{} line 1 holds another ssh-ed25519 key",
                sshd.known_hosts.display()
            ),
            "ssh-keygen -R",
        ],
    );
    sshd.assert_untouched();
}

#[test]
fn hashed_and_ecdsa_only_entries_are_accepted() {
    let Some(sshd) = Sshd::start() else { return };
    // The server prefers ed25519; knowing only its ecdsa key must still work.
    let text = format!(
        "# only ecdsa\n[127.0.0.1]:{} {}\n",
        sshd.port,
        sshd.host_key("ecdsa")
    );
    let (w, out) = sync_with_known_hosts(&sshd, &text);
    assert_exit(&out, 0);
    assert!(sshd.archive().join("a/1.0/descpkg").is_file());
    // Hashed entries (ssh-keygen -H, HashKnownHosts yes).
    let text = format!("[127.0.0.1]:{} {}\n", sshd.port, sshd.host_key("ed25519"));
    fs::write(&sshd.known_hosts, text).unwrap();
    sh(Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&sshd.known_hosts));
    let hashed = fs::read_to_string(&sshd.known_hosts).unwrap();
    assert!(hashed.starts_with("|1|"), "{hashed}");
    assert_exit(&sync(&w), 0);
}

// ------------------------------------------------------------ user keys

#[test]
fn key_not_in_authorized_keys_is_refused() {
    let Some(sshd) = Sshd::start() else { return };
    let w = world(&sshd, "");
    let stranger = keygen(&sshd.path().join("stranger"), "ed25519");
    sshd.write_site_with_identity(&w, &stranger, "");
    let out = sync(&w);
    assert_err_contains(
        &out,
        1,
        &[
            &format!(
                "127.0.0.1 refused the key {} for user {}",
                stranger.display(),
                sshd.user
            ),
            "authorized_keys",
        ],
    );
    sshd.assert_untouched();
}

#[test]
fn too_open_identity_is_refused_like_openssh() {
    let Some(sshd) = Sshd::start() else { return };
    let w = world(&sshd, "");
    let key = w.path().join("id_open");
    fs::copy(&sshd.identity, &key).unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    sshd.write_site_with_identity(&w, &key, "");
    let out = sync(&w);
    assert_err_contains(
        &out,
        1,
        &[
            &format!(
                "identity {} is accessible by group or others (mode 0644)",
                key.display()
            ),
            "chmod 600",
        ],
    );
    sshd.assert_untouched();
    assert_eq!(
        sshd.connections(),
        0,
        "refused before connecting:\n{}",
        sshd.log()
    );
}

#[test]
fn missing_or_unreadable_identity_is_refused() {
    let Some(sshd) = Sshd::start() else { return };
    let w = world(&sshd, "");
    let missing = w.path().join("no_such_key");
    sshd.write_site_with_identity(&w, &missing, "");
    assert_err_contains(
        &sync(&w),
        1,
        &[&format!("cannot read identity {}", missing.display())],
    );

    // A key only its owner may read, used by another user.
    let key = w.path().join("id_private");
    fs::copy(&sshd.identity, &key).unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    sshd.write_site_with_identity(&w, &key, "");
    let mut cmd;
    if sh(Command::new("id").arg("-u")).trim() == "0" {
        use std::os::unix::process::CommandExt;
        // Run blat as the (unprivileged) target user, with a state dir it
        // owns, from a place it can reach (the build may sit below /root).
        let blat = w.path().join("blat");
        if fs::hard_link(env!("CARGO_BIN_EXE_blat"), &blat).is_err() {
            fs::copy(env!("CARGO_BIN_EXE_blat"), &blat).unwrap();
        }
        cmd = Command::new(&blat);
        fs::create_dir_all(w.state()).unwrap();
        give_to(&sshd.user, &w.state());
        let uid: u32 = sh(Command::new("id").args(["-u", &sshd.user]))
            .trim()
            .parse()
            .unwrap();
        let gid: u32 = sh(Command::new("id").args(["-g", &sshd.user]))
            .trim()
            .parse()
            .unwrap();
        cmd.uid(uid).gid(gid).env("HOME", &sshd.home);
    } else {
        cmd = Command::new(env!("CARGO_BIN_EXE_blat"));
        fs::set_permissions(&key, fs::Permissions::from_mode(0o000)).unwrap();
    }
    cmd.arg("-c")
        .arg(w.config())
        .args(["sync", "--target", "site"])
        .env_remove("BLAT_NOW");
    let out = cmd.output().unwrap();
    assert_err_contains(
        &out,
        1,
        &[&format!(
            "cannot read identity {}: Permission denied",
            key.display()
        )],
    );
    sshd.assert_untouched();
}

// ------------------------------------------------------------ broken connections

#[test]
fn connection_refused_is_one_clear_line() {
    let Some(sshd) = Sshd::start() else { return };
    let w = world(&sshd, "");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    w.write_target("site", &sshd.target_conf(port, "projects = [\"P\"]"));
    let out = sync(&w);
    assert_err_contains(
        &out,
        1,
        &[&format!(
            "cannot connect to 127.0.0.1 port {port}: Connection refused"
        )],
    );
}

#[test]
fn silent_server_times_out_at_connect_timeout() {
    let Some(sshd) = Sshd::start() else { return };
    let w = world(&sshd, "");
    let proxy = Proxy::start(sshd.port, Fault::Freeze, 0);
    sshd.trust_port(proxy.port);
    w.write_target(
        "site",
        &sshd.target_conf(proxy.port, "projects = [\"P\"]\nconnect_timeout = \"1s\""),
    );
    let started = Instant::now();
    let out = sync(&w);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert_err_contains(
        &out,
        1,
        &[&format!(
            "SSH handshake with 127.0.0.1:{} timed out (connect_timeout 1s)",
            proxy.port
        )],
    );
    sshd.assert_untouched();
}

/// A world whose batch holds small packages and a 24 MiB one, sent
/// uncompressed so the bytes on the wire are predictable.
fn world_with_big_package(sshd: &Sshd) -> World {
    let w = world(sshd, "compression = \"none\"\n");
    w.big_package("big", "1", T0 + 60, 24 << 20);
    w.write_rm(&[("P/R1", "open", 0, &["a/1.0", "b/2.0", "big/1"])]);
    w
}

#[test]
fn connection_cut_mid_package_leaves_nothing_and_next_sync_completes() {
    let Some(sshd) = Sshd::start() else { return };
    let w = world_with_big_package(&sshd);
    // Setup (handshake, receiver install, gc, list) is far below 6 MiB: the
    // cut falls inside the big package's stream.
    let proxy = Proxy::start(sshd.port, Fault::Cut, 6 << 20);
    sshd.trust_port(proxy.port);
    // One sender: the whole plan is one batch, all of it in flight at the cut.
    let extra = "projects = [\"P\"]\npackages = [\"j/cur\"]\ncompression = \"none\"\nparallel = 1";
    w.write_target("site", &sshd.target_conf(proxy.port, extra));
    let out = sync(&w);
    assert!(
        proxy.tripped(),
        "the proxy never cut ({} bytes up): {}",
        proxy.bytes_up(),
        stderr(&out)
    );
    assert_err_contains(
        &out,
        1,
        &[&format!(
            "connection to {}@127.0.0.1:{} lost",
            sshd.user, proxy.port
        )],
    );
    for pv in ["big/1", "a/1.0", "b/2.0", "j/1"] {
        assert!(
            !sshd.archive().join(pv).exists(),
            "{pv} visible after a cut"
        );
    }
    drop(proxy);

    w.write_target("site", &sshd.target_conf(sshd.port, extra));
    let out = sync(&w);
    assert_exit(&out, 0);
    for pv in ["big/1", "a/1.0", "b/2.0", "j/1"] {
        assert_same_version(&w, &sshd, pv);
    }
    common::assert_no_leftovers(&sshd.archive());
}

#[test]
fn target_that_stops_answering_fails_at_io_timeout() {
    let Some(sshd) = Sshd::start() else { return };
    let w = world_with_big_package(&sshd);
    let proxy = Proxy::start(sshd.port, Fault::Freeze, 6 << 20);
    sshd.trust_port(proxy.port);
    let extra =
        "projects = [\"P\"]\ncompression = \"none\"\nparallel = 1\nio_timeout = \"2s\"\nconnect_timeout = \"2s\"";
    w.write_target("site", &sshd.target_conf(proxy.port, extra));
    let started = Instant::now();
    let out = sync(&w);
    let took = started.elapsed();
    assert!(
        proxy.tripped(),
        "the proxy never froze ({} bytes up): {}",
        proxy.bytes_up(),
        stderr(&out)
    );
    assert!(
        took < Duration::from_secs(30),
        "a frozen target must not hang blat: {took:?}"
    );
    assert_err_contains(
        &out,
        1,
        &[
            &format!("{}@127.0.0.1:{} stopped answering", sshd.user, proxy.port),
            "io_timeout 2s",
        ],
    );
    // The package in flight is half there, under a temporary name only
    // (new packages are staged in <archive>/.blat-tmp-TOKEN-new/).
    assert!(!sshd.archive().join("big").exists());
    let staged: Vec<_> = fs::read_dir(sshd.archive())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".blat-tmp-")
        })
        .collect();
    assert_eq!(staged.len(), 1, "{staged:?}");
    let blob = staged[0].join("big/1/blob.bin");
    let got = fs::metadata(&blob).map(|m| m.len()).unwrap_or(0);
    assert!(
        got < 24 << 20,
        "{} holds {got} bytes: the stream was not cut",
        blob.display()
    );
    drop(proxy);

    w.write_target(
        "site",
        &sshd.target_conf(sshd.port, "projects = [\"P\"]\ncompression = \"none\""),
    );
    assert_exit(&sync(&w), 0);
    assert_same_version(&w, &sshd, "big/1");
    common::assert_no_leftovers(&sshd.archive());
}

#[test]
fn an_idle_session_dropped_by_the_server_is_replaced() {
    let Some(sshd) = Sshd::start() else { return };
    // A relay that never fails by itself.
    let proxy = Proxy::start(sshd.port, Fault::Cut, u64::MAX);
    sshd.trust_port(proxy.port);
    let transport = SshTransport::new(SshConfig {
        port: proxy.port,
        ..ssh_config(&sshd)
    })
    .unwrap();
    let df = || transport.run(&["df".to_string()], None).unwrap();
    assert_eq!(df().status, 0);
    proxy.sever();
    let out = df();
    assert_eq!(out.status, 0, "{out:?}");
    assert!(out.stdout.starts_with("avail\t"), "{out:?}");
    assert_eq!(
        sshd.log().matches("Accepted publickey").count(),
        2,
        "one new login after the drop"
    );
}

// ------------------------------------------------------------ the receiver

#[test]
fn missing_broken_or_stale_receivers_are_replaced() {
    let Some(sshd) = Sshd::start() else { return };
    let w = world(&sshd, "");
    let stale = format!("{RECEIVER}\n# an older receiver\n");
    for (what, planted) in [("broken", "#!/bin/sh\nexit 7\n"), ("stale", stale.as_str())] {
        sshd.plant_receiver(planted);
        assert_exit(&sync(&w), 0);
        assert_eq!(
            fs::read_to_string(sshd.receiver()).unwrap(),
            RECEIVER,
            "{what} receiver not replaced"
        );
    }
    assert!(sshd.archive().join("a/1.0/descpkg").is_file());
}

#[test]
fn a_stale_receiver_that_cannot_be_replaced_is_never_run() {
    let Some(sshd) = Sshd::start() else { return };
    let w = world(&sshd, "");
    let stale = format!("{RECEIVER}\n# an older receiver\n");
    sshd.plant_receiver(&stale);
    let dir = sshd.receiver().parent().unwrap().to_path_buf();
    // The target user can no longer write there.
    if sh(Command::new("id").arg("-u")).trim() == "0" {
        sh(Command::new("chown").arg("-R").arg("root:").arg(&dir));
    } else {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o555)).unwrap();
    }
    let out = sync(&w);
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    assert_err_contains(
        &out,
        1,
        &[
            &format!(
                "the receiver on {}@127.0.0.1:{} could not be updated",
                sshd.user, sshd.port
            ),
            &receiver_sha256(),
        ],
    );
    assert_eq!(fs::read_to_string(sshd.receiver()).unwrap(), stale);
    let entries: Vec<_> = fs::read_dir(sshd.archive()).unwrap().collect();
    assert!(
        entries.is_empty(),
        "nothing may be sent through a stale receiver"
    );
}

#[test]
fn forced_command_key_syncs_and_runs_nothing_else() {
    let Some(sshd) = Sshd::start() else { return };
    let w = world(&sshd, "");
    let key = sshd.forced_key(&w, "");
    let conf = fs::read_to_string(w.config().join("targets/site.conf")).unwrap();
    w.write_target("site", &format!("{conf}packages = [\"j/cur\"]\n"));
    // An older receiver is there (installed by hand): under a forced
    // command it may not replace itself, and nothing goes through it.
    let stale = format!("{RECEIVER}\n# an older receiver\n");
    sshd.plant_receiver(&stale);
    let out = sync(&w);
    assert_err_contains(
        &out,
        1,
        &[
            "could not be updated",
            "install: refused: this key is restricted to blat-receiver",
            "--allow-install",
        ],
    );
    assert_eq!(fs::read_to_string(sshd.receiver()).unwrap(), stale);
    assert_eq!(fs::read_dir(sshd.archive()).unwrap().count(), 0);
    // Updated by hand, as the message says: the sync goes through.
    sshd.plant_receiver(RECEIVER);
    let out = sync(&w);
    assert_exit(&out, 0);
    assert_eq!(fs::read_to_string(sshd.receiver()).unwrap(), RECEIVER);
    for pv in ["a/1.0", "b/2.0", "j/1"] {
        assert_same_version(&w, &sshd, pv);
    }
    assert_eq!(
        fs::read_link(sshd.archive().join("j/cur"))
            .unwrap()
            .to_str(),
        Some("1")
    );

    // The same key runs nothing but the receiver.
    let pwned = sshd.home.join("pwned");
    for command in [
        format!("touch {}", pwned.display()),
        format!("blat-receiver list; touch {}", pwned.display()),
        format!("~/.blat/blat-receiver list && touch {}", pwned.display()),
        format!("$(touch {})/blat-receiver list", pwned.display()),
    ] {
        let out = sshd.ssh(&key, &command);
        assert_ne!(out.status.code(), Some(0), "{command}: {}", stdout(&out));
        assert!(!pwned.exists(), "{command} ran");
    }
    let out = sshd.ssh(&key, "id");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("blat-receiver: refused: this key only runs blat-receiver"),
        "{}",
        stderr(&out)
    );
    // Nor can it replace the receiver with a program of its own choosing,
    // whatever the words it sends.
    let evil = format!("#!/bin/sh\ntouch {}\n", pwned.display());
    let evil_sha = sha256_hex(evil.as_bytes());
    for command in [
        format!("blat-receiver install {evil_sha}"),
        format!("blat-receiver --allow-install install {evil_sha}"),
        format!("blat-receiver -a /tmp --allow-install install {evil_sha}"),
    ] {
        let out = sshd.ssh_with_input(&key, &command, evil.as_bytes());
        assert_ne!(out.status.code(), Some(0), "{command}");
        assert_eq!(
            fs::read_to_string(sshd.receiver()).unwrap(),
            RECEIVER,
            "{command}"
        );
    }
    sshd.ssh(&key, "blat-receiver version");
    assert!(!pwned.exists());
}

/// The operator may allow a restricted receiver to update itself, on the
/// authorized_keys line: then blat replaces a stale one.
#[test]
fn forced_command_with_allow_install_updates_itself() {
    let Some(sshd) = Sshd::start() else { return };
    let w = world(&sshd, "");
    sshd.forced_key(&w, " --allow-install");
    sshd.plant_receiver(&format!("{RECEIVER}\n# an older receiver\n"));
    let out = sync(&w);
    assert_exit(&out, 0);
    assert_eq!(fs::read_to_string(sshd.receiver()).unwrap(), RECEIVER);
    assert_same_version(&w, &sshd, "a/1.0");
}

// ------------------------------------------------------------ min_free

#[test]
fn min_free_refuses_what_does_not_fit_and_sends_the_rest() {
    let Some(sshd) = Sshd::start() else { return };
    let w = world(&sshd, "");
    // A sparse 2 GiB package: never read, only its size counts.
    let dir = w.build("huge", "1", T0 + 70, &[]);
    fs::File::create(dir.join("blob.bin"))
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    common::set_mtime(&dir, T0 + 70);
    common::make_read_only(&dir);
    w.write_rm(&[("P/R1", "open", 0, &["a/1.0", "b/2.0", "huge/1"])]);
    let df = sh(Command::new("df").arg("-Pk").arg(sshd.archive()));
    let avail_k: u64 = df
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .nth(3)
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        avail_k > 2 << 20,
        "needs more than 2 GiB free for this test"
    );
    // 1 GiB below what is free: small packages fit, 2 GiB do not.
    let min_free = format!("{}k", avail_k - (1 << 20));
    sshd.write_target(
        &w,
        "site",
        &format!("projects = [\"P\"]\nmin_free = \"{min_free}\"\n"),
    );
    let out = sync(&w);
    assert_err_contains(&out, 3, &["huge/1", "min_free"]);
    assert!(!sshd.archive().join("huge").exists());
    assert_same_version(&w, &sshd, "a/1.0");
    assert_same_version(&w, &sshd, "b/2.0");
}

// ------------------------------------------------------------ batches

/// One batch mixing packages new to the target (staged, moved in with one
/// `mv`) and new versions of known ones (renamed beside their place), with
/// a failing version of each kind: what fails is absent, the rest arrives.
#[test]
fn mixed_batch_of_new_and_known_packages() {
    use blat::archive::{PackageVersion, SourceArchive};
    use blat::config::Compression;
    use blat::target::{pack, Target};
    let Some(sshd) = Sshd::start() else { return };
    let w = World::new();
    let target = ReceiverTarget::new("ssh", SshTransport::new(ssh_config(&sshd)).unwrap());
    let source = SourceArchive::new(w.archive());
    let pv = |p: &str, v: &str| PackageVersion::new(p, v).unwrap();
    w.release("known", "1", T0);
    let first = pack::scan(&source, &pv("known", "1")).unwrap();
    assert!(target
        .receive(&source, &[first], Compression::Gzip(1), &|_| {})
        .unwrap()[0]
        .result
        .is_ok());
    for (p, v) in [
        ("known", "2"),
        ("known", "3"),
        ("fresh", "1.0"),
        ("fresh", "1.1"),
        ("lonely", "1"),
        ("b.c", "1"),
    ] {
        w.release(p, v, T0 + 1);
    }
    let mut batch: Vec<_> = [
        ("known", "2"),
        ("known", "3"),
        ("fresh", "1.0"),
        ("fresh", "1.1"),
        ("lonely", "1"),
        ("b.c", "1"),
    ]
    .iter()
    .map(|(p, v)| pack::scan(&source, &pv(p, v)).unwrap())
    .collect();
    // Declared counts that do not match: known/3, fresh/1.1 and lonely/1 fail.
    for i in [1, 3, 4] {
        batch[i].files += 1;
    }
    let results = target
        .receive(&source, &batch, Compression::Gzip(1), &|_| {})
        .unwrap();
    let verdict = |p: &str, v: &str| {
        results
            .iter()
            .find(|r| r.pv == pv(p, v))
            .unwrap()
            .result
            .clone()
    };
    for (p, v) in [("known", "2"), ("fresh", "1.0"), ("b.c", "1")] {
        assert_eq!(verdict(p, v), Ok(()), "{p}/{v}");
        assert_same_version(&w, &sshd, &format!("{p}/{v}"));
    }
    for (p, v) in [("known", "3"), ("fresh", "1.1"), ("lonely", "1")] {
        assert!(
            verdict(p, v).is_err_and(|e| e.contains("files, expected")),
            "{p}/{v}: {:?}",
            verdict(p, v)
        );
        assert!(!sshd.archive().join(p).join(v).exists(), "{p}/{v}");
    }
    assert!(
        !sshd.archive().join("lonely").exists(),
        "a new package with nothing verified never appears"
    );
    common::assert_no_leftovers(&sshd.archive());
    let listed: Vec<String> = target
        .list()
        .unwrap()
        .versions
        .keys()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(listed, ["b.c/1", "fresh/1.0", "known/1", "known/2"]);
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

// ------------------------------------------------------------ the README's setup

/// The shell lines of the README between `<!-- test: NAME ... -->` and
/// `<!-- /test -->` (its indented code), so the documented steps are the
/// tested ones.
fn readme_steps(name: &str) -> Vec<String> {
    let readme =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = format!("<!-- test: {name} ");
    let from = readme
        .find(&start)
        .unwrap_or_else(|| panic!("README.md has no {start}... marker"));
    let block = &readme[from..];
    let block = &block[..block.find("<!-- /test -->").expect("an end marker")];
    let steps: Vec<String> = block
        .lines()
        .skip(1)
        .filter_map(|l| l.strip_prefix("    "))
        .map(String::from)
        .collect();
    assert!(!steps.is_empty(), "no steps in README block {name}");
    steps
}

#[test]
fn readme_target_setup_leaves_a_receiver_that_updates_itself() {
    let Some(sshd) = Sshd::start() else { return };
    let w = world(&sshd, "");
    // The fixture made the user (useradd -m -s /bin/sh, as documented) and
    // a home of its own; the steps make its archive (a link) from scratch.
    fs::remove_dir(sshd.archive()).unwrap();
    let srv = sshd.path().join("srv/dpkg_archive");
    let home = sshd.home.display().to_string();
    let mut ran = Vec::new();
    for step in readme_steps("target-setup")
        .into_iter()
        .chain(readme_steps("receiver-install"))
    {
        if step.starts_with("useradd ") {
            continue;
        }
        let line = step
            .replace("~pkgadmin", &home)
            .replace("pkgadmin", &sshd.user)
            .replace("/srv/dpkg_archive", &srv.display().to_string());
        // From a checkout, as the README's receiver/blat-receiver assumes.
        sh(Command::new("sh")
            .arg("-c")
            .arg(&line)
            .current_dir(env!("CARGO_MANIFEST_DIR")));
        ran.push(line);
    }
    assert!(
        ran.iter().any(|l| l.contains("blat-receiver")),
        "the receiver is installed by hand: {ran:?}"
    );
    assert_eq!(fs::read_to_string(sshd.receiver()).unwrap(), RECEIVER);
    // Later blat brings a new receiver: the one installed by hand is stale.
    let mut old = fs::OpenOptions::new()
        .append(true)
        .open(sshd.receiver())
        .unwrap();
    std::io::Write::write_all(&mut old, b"\n# an older receiver\n").unwrap();
    drop(old);
    // An unrestricted key lets blat update it (a restricted one never
    // does): the update is written beside it, in ~/.blat, which the
    // documented steps leave to the target user.
    let out = sync(&w);
    assert_exit(&out, 0);
    assert_eq!(
        fs::read_to_string(sshd.receiver()).unwrap(),
        RECEIVER,
        "updated"
    );
    assert!(fs::symlink_metadata(sshd.archive())
        .unwrap()
        .file_type()
        .is_symlink());
    for pv in ["a/1.0", "b/2.0"] {
        assert_same_version(&w, &sshd, pv);
        assert!(
            srv.join(pv).join("descpkg").is_file(),
            "{pv} in {}",
            srv.display()
        );
    }
}
