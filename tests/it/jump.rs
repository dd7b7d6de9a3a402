//! SSH targets behind jump hosts (`jump`), with real sshd instances in
//! network namespaces (`netns.rs`): the jump host's sshd is reachable from
//! the test process, the target's only from the jump host. Sync end to
//! end through one and two jump hosts, `blat ssh` and `blat check` through
//! them, a jump host with a wrong host key, one that refuses the key or
//! the forwarding, one killed in the middle of a package, and relays that
//! end with their sessions and pass EOF both ways.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use blat::config::{JumpHost, SshConfig};
use blat::target::ssh::SshTransport;
use blat::target::Transport;

use crate::common::{self, assert_exit, stderr, stdout, World};
use crate::netns::Line;
use crate::sshd::{known_name, public_key, Listen, Sshd};

const T0: i64 = 1_700_000_000;

/// A target behind `hops.len()` jump hosts, each in a namespace of `line`.
/// Every jump host takes the target's key; the target's known_hosts holds
/// every jump host's key. (Fields drop in order: the servers before their
/// namespaces.)
struct Site {
    hops: Vec<Sshd>,
    target: Sshd,
    line: Line,
}

fn site(hops: usize) -> Option<Site> {
    let line = Line::new(hops + 1)?;
    let start = |k: usize, forwarding: bool| {
        Sshd::start_in(&Listen {
            netns: Some(line.ns(k)),
            host: &line.addr(k),
            port: Some(22),
            forwarding,
        })
    };
    let hops = (0..hops)
        .map(|k| start(k, true))
        .collect::<Option<Vec<_>>>()?;
    let target = start(hops.len(), false)?;
    let site = Site { hops, target, line };
    for hop in &site.hops {
        hop.authorize(&public_key(&site.target.identity));
        site.trust(hop, &hop.host_key("ed25519"));
    }
    Some(site)
}

impl Site {
    /// Adds a known_hosts line for `hop` with `key` to the target's file.
    fn trust(&self, hop: &Sshd, key: &str) {
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(&self.target.known_hosts)
            .unwrap();
        writeln!(f, "{} {key}", known_name(&hop.host, hop.port)).unwrap();
    }

    /// `jump` for the chain: `user@host` (port 22 by default).
    fn jump(&self) -> String {
        self.hops
            .iter()
            .map(|h| format!("{}@{}", h.user, h.host))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn conf(&self, extra: &str) -> String {
        self.target.target_conf(
            22,
            &format!(
                "projects = [\"P\"]\npackages = [\"j/cur\"]\nconnect_timeout = \"5s\"\njump = \"{}\"\n{extra}",
                self.jump()
            ),
        )
    }

    fn ssh_config(&self) -> SshConfig {
        SshConfig {
            host: self.target.host.clone(),
            port: 22,
            user: self.target.user.clone(),
            identity: self.target.identity.clone(),
            known_hosts: self.target.known_hosts.clone(),
            remote_archive: "dpkg_archive".into(),
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(20),
            client: blat::config::SshClient::Libssh2,
            jump: self
                .hops
                .iter()
                .map(|h| JumpHost {
                    user: h.user.clone(),
                    host: h.host.clone(),
                    port: h.port,
                })
                .collect(),
        }
    }
}

/// Project P (a, b) and a pinned alias j/cur; target `site` behind the
/// jump hosts, and `mirror`, a local target with the same content.
fn world(site: &Site, extra: &str) -> World {
    let w = World::new();
    w.release_project_p(T0);
    w.write_target("site", &site.conf(extra));
    w.local_target("mirror", "projects = [\"P\"]\npackages = [\"j/cur\"]");
    w
}

fn sync(w: &World) -> Output {
    w.blat(&["sync", "--target", "site"])
}

/// The names in a target archive, without blat's own directory.
fn names(archive: &Path) -> Vec<String> {
    common::walk(archive)
        .iter()
        .map(|p| p.strip_prefix(archive).unwrap().display().to_string())
        .filter(|p| !p.starts_with(".dpkg_archive"))
        .collect()
}

/// The PackageList without the line that says when it was written.
fn package_list(archive: &Path) -> Vec<String> {
    fs::read_to_string(archive.join(".dpkg_archive/packagelist.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("# blat packagelist written"))
        .map(String::from)
        .collect()
}

/// The target holds exactly what the local mirror holds, each version as
/// in the source archive.
#[track_caller]
fn assert_converged(w: &World, target: &Sshd) {
    let mirror = w.target_dir("mirror");
    assert_exit(&w.blat(&["sync", "--target", "mirror"]), 0);
    assert_eq!(names(&target.archive()), names(&mirror));
    assert_eq!(package_list(&target.archive()), package_list(&mirror));
    for pv in ["a/1.0", "b/2.0", "j/1"] {
        assert_eq!(
            common::snapshot(&w.archive().join(pv)),
            common::snapshot(&target.archive().join(pv)),
            "{pv}"
        );
    }
    assert!(
        common::leftovers(&target.archive()).is_empty(),
        "{:?}",
        common::leftovers(&target.archive())
    );
}

/// Nothing on the target: no connection reached it, nothing written.
#[track_caller]
fn assert_untouched(target: &Sshd) {
    assert_eq!(target.connections(), 0, "{}", target.log());
    let entries: Vec<_> = fs::read_dir(target.archive())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(entries.is_empty(), "target archive changed: {entries:?}");
    assert!(!target.receiver().exists(), "receiver installed");
}

/// The one error line blat printed for `site`.
#[track_caller]
fn error_line(out: &Output) -> String {
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("site")).collect();
    assert_eq!(lines.len(), 1, "one line for the target:\n{err}");
    lines[0].to_string()
}

#[test]
fn sync_through_a_jump_host_reaches_a_target_the_master_cannot() {
    let Some(site) = site(1) else { return };
    let (bastion, target) = (&site.hops[0], &site.target);
    let w = world(&site, "");

    // Directly, the target cannot be reached from here.
    let direct = site
        .conf("")
        .replace(&format!("jump = \"{}\"\n", site.jump()), "");
    w.write_target("site", &direct);
    let out = sync(&w);
    assert_exit(&out, 1);
    let line = error_line(&out);
    assert!(
        line.contains(&format!("cannot connect to {} port 22", target.host)),
        "{line}"
    );
    assert_untouched(target);

    w.write_target("site", &site.conf(""));
    let out = sync(&w);
    assert_exit(&out, 0);
    assert_converged(&w, target);
    // The target saw the connection come from the jump host's side.
    let from = format!("Connection from {} ", site.line.uplink(1));
    assert!(target.log().contains(&from), "{}", target.log());
    assert!(
        bastion.log().contains("Accepted publickey"),
        "{}",
        bastion.log()
    );

    // Again: nothing to send.
    let out = w.blat(&["sync", "--target", "site", "--json"]);
    assert_exit(&out, 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["targets"][0]["report"]["sent"],
        serde_json::json!([])
    );

    // blat ssh takes the same way, with the same checks at the jump host.
    let out = w.blat(&["ssh", "site", "printenv", "HOME"]);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out).trim(), target.home.display().to_string());

    // blat check: each step at the jump host, then the target through it.
    let out = w.blat(&["check", "--target", "site"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    let hop = format!("{}@{}:22", bastion.user, bastion.host);
    for want in [
        format!("ok    site: jump 1 reach: {hop} answers and speaks SSH"),
        "ok    site: jump 1 host key: ssh-ed25519 ".to_string(),
        format!("ok    site: jump 1 key accepted: {} lets", bastion.host),
        format!(
            "ok    site: tcp: jump host {hop} forwards to {} port 22",
            target.host
        ),
        "ok    site: ssh handshake:".to_string(),
        "ok    site: key accepted:".to_string(),
        "ok    site: receiver:".to_string(),
        format!("site: on jump host {hop}, append to"),
        format!(
            "restrict,port-forwarding,permitopen=\"{}:22\",command=\"/bin/false\" ssh-ed25519 ",
            target.host
        ),
    ] {
        assert!(text.contains(&want), "no {want:?} in:\n{text}");
    }
    let order: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("ok    site: "))
        .map(|l| l.split(':').next().unwrap())
        .collect();
    let at = |label: &str| order.iter().position(|l| *l == label).unwrap();
    assert!(at("jump 1 key accepted") < at("tcp") && at("tcp") < at("ssh handshake"));
}

#[test]
fn a_chain_of_two_jump_hosts() {
    let Some(site) = site(2) else { return };
    let w = world(&site, "");
    // The second hop with its port spelled out.
    let jump = format!("{},{}:22", site.jump().split(',').next().unwrap(), {
        let h = &site.hops[1];
        format!("{}@{}", h.user, h.host)
    });
    w.write_target(
        "site",
        &site.conf("").replace(
            &format!("jump = \"{}\"", site.jump()),
            &format!("jump = \"{jump}\""),
        ),
    );
    let out = sync(&w);
    assert_exit(&out, 0);
    assert_converged(&w, &site.target);
    // Each hop came from the one before.
    for k in 1..=2 {
        let server = if k == 2 { &site.target } else { &site.hops[k] };
        let from = format!("Connection from {} ", site.line.uplink(k));
        assert!(server.log().contains(&from), "hop {k}: {}", server.log());
    }

    let out = w.blat(&["ssh", "site", "printenv", "HOME"]);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out).trim(), site.target.home.display().to_string());

    let out = w.blat(&["check", "--target", "site"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    for k in 1..=2 {
        for step in ["reach", "host key", "key accepted"] {
            assert!(
                text.contains(&format!("ok    site: jump {k} {step}: ")),
                "jump {k} {step}:\n{text}"
            );
        }
    }
    let second = &site.hops[1];
    assert!(text.contains(&format!("permitopen=\"{}:22\"", second.host)));
}

#[test]
fn a_wrong_host_key_at_the_jump_host_stops_before_it() {
    let Some(site) = site(1) else { return };
    let (bastion, target) = (&site.hops[0], &site.target);
    // The target's own key recorded for the jump host: a mismatch.
    let kh = fs::read_to_string(&target.known_hosts).unwrap();
    let wrong: String = kh
        .lines()
        .map(|l| {
            if l.starts_with(&format!("{} ", bastion.host)) {
                format!("{} {}\n", bastion.host, target.host_key("ed25519"))
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    fs::write(&target.known_hosts, &wrong).unwrap();
    let w = world(&site, "");
    let out = sync(&w);
    assert_exit(&out, 1);
    let line = error_line(&out);
    for want in [
        format!(
            "jump host {}@{}:22: HOST KEY MISMATCH for {}",
            bastion.user, bastion.host, bastion.host
        ),
        format!("ssh-keygen -R '{}'", bastion.host),
        format!("ssh-keyscan -p 22 {}", bastion.host),
    ] {
        assert!(line.contains(&want), "no {want:?} in {line}");
    }
    assert_untouched(target);
    assert!(
        !bastion.log().contains("Accepted publickey"),
        "{}",
        bastion.log()
    );

    let out = w.blat(&["check", "--target", "site"]);
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert!(text.contains("ok    site: jump 1 reach:"), "{text}");
    assert!(text.contains("FAIL  site: jump 1 host key: "), "{text}");
    assert!(!text.contains("site: tcp:"), "{text}");

    // The target's key unknown behind a good jump host: the hint runs
    // ssh-keyscan on the jump host, which reaches it.
    let only_bastion: String = kh
        .lines()
        .filter(|l| l.starts_with(&format!("{} ", bastion.host)))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&target.known_hosts, only_bastion).unwrap();
    let out = sync(&w);
    assert_exit(&out, 1);
    let line = error_line(&out);
    for want in [
        format!("unknown host {}: its key is not in known_hosts", target.host),
        format!(
            "ssh -p 22 -i {} -o IdentitiesOnly=yes -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes {}@{} ssh-keyscan -p 22 {} >> {}",
            target.identity.display(),
            target.known_hosts.display(),
            bastion.user,
            bastion.host,
            target.host,
            target.known_hosts.display()
        ),
    ] {
        assert!(line.contains(&want), "no {want:?} in {line}");
    }
    // The hint works: it records the target's key, and the sync goes on.
    let hint = line.split("add it: ").nth(1).unwrap();
    let cmd = hint.split(" (ssh-keyscan runs").next().unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{cmd}");
    assert_exit(&sync(&w), 0);
    assert_converged(&w, target);
}

#[test]
fn a_jump_host_that_refuses_the_key_or_the_forwarding_fails_cleanly() {
    let Some(site) = site(1) else { return };
    let (bastion, target) = (&site.hops[0], &site.target);
    let authorized = bastion.path().join("authorized_keys");
    let key = public_key(&target.identity);
    let w = world(&site, "");

    // The key is not in the jump host's authorized_keys.
    fs::write(&authorized, format!("{}\n", public_key(&bastion.identity))).unwrap();
    let out = sync(&w);
    assert_exit(&out, 1);
    let line = error_line(&out);
    let want = format!(
        "jump host {}@{}:22: {} refused the key {} for user {}",
        bastion.user,
        bastion.host,
        bastion.host,
        target.identity.display(),
        bastion.user
    );
    assert!(line.contains(&want), "{line}");
    assert_untouched(target);
    let out = w.blat(&["check", "--target", "site"]);
    let text = stdout(&out);
    assert!(text.contains("FAIL  site: jump 1 key accepted: "), "{text}");

    // Restricted to forwarding elsewhere: the forwarding is refused.
    fs::write(
        &authorized,
        format!(
            "restrict,port-forwarding,permitopen=\"192.0.2.9:22\",command=\"/bin/false\" {key}\n"
        ),
    )
    .unwrap();
    let out = sync(&w);
    assert_exit(&out, 1);
    let line = error_line(&out);
    for want in [
        format!(
            "jump host {}@{}:22 cannot open a connection to {} port 22",
            bastion.user, bastion.host, target.host
        ),
        format!("permitopen=\"{}:22\"", target.host),
    ] {
        assert!(line.contains(&want), "no {want:?} in {line}");
    }
    assert_untouched(target);

    // The line blat check prints for the jump host lets exactly this through.
    let out = w.blat(&["check", "--target", "site"]);
    let text = stdout(&out);
    let printed = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("restrict,port-forwarding,"))
        .unwrap_or_else(|| panic!("no jump host line:\n{text}"));
    fs::write(&authorized, format!("{printed}\n")).unwrap();
    assert_exit(&sync(&w), 0);
    assert_converged(&w, target);
    // The key runs nothing on the jump host.
    let out = bastion.ssh(&target.identity, "echo hello");
    assert!(!stdout(&out).contains("hello"), "{out:?}");
}

/// The bytes of the big package's blob staged on the target so far.
fn staged_bytes(archive: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(archive) else {
        return 0;
    };
    rd.flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".blat-tmp-"))
        .filter_map(|e| fs::metadata(e.path().join("big/1/blob.bin")).ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0)
}

/// Starts `blat sync --target site` and returns it once the big package
/// is streaming to the target.
fn sync_until_streaming(w: &World, site: &Site) -> std::process::Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_blat"))
        .arg("-c")
        .arg(w.config())
        .args(["sync", "--target", "site"])
        .env_remove("BLAT_CONFIG")
        .env_remove("BLAT_NOW")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while staged_bytes(&site.target.archive()) < 1 << 20 {
        assert!(
            Instant::now() < deadline && child.try_wait().unwrap().is_none(),
            "the big package never started streaming"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

/// Every error line of the run names the jump host.
#[track_caller]
fn assert_errors_name(out: &Output, hop: &str) {
    let err = stderr(out);
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("site: error")).collect();
    assert!(!errors.is_empty(), "{err}");
    for line in errors {
        assert!(line.contains(hop), "{line}");
    }
}

#[test]
fn a_jump_host_that_freezes_fails_at_io_timeout() {
    let Some(site) = site(1) else { return };
    let w = world(
        &site,
        "compression = \"none\"\nparallel = 1\nio_timeout = \"3s\"",
    );
    w.big_package("big", "1", T0 + 60, 96 << 20);
    w.write_rm(&[("P/R1", "open", 0, &["a/1.0", "b/2.0", "big/1"])]);
    let child = sync_until_streaming(&w, &site);
    // The jump host stops: connections open, nothing moves.
    let frozen = site.line.pids(0);
    for pid in &frozen {
        // SAFETY: kill(2) on a pid from `ip netns pids`.
        unsafe { libc::kill(*pid, libc::SIGSTOP) };
    }
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    for pid in &frozen {
        // SAFETY: as above.
        unsafe { libc::kill(*pid, libc::SIGCONT) };
    }
    assert!(
        // io_timeout for the batch, connect_timeout for each later attempt.
        started.elapsed() < Duration::from_secs(60),
        "a frozen jump host held blat for {:?}",
        started.elapsed()
    );
    assert_exit(&out, 1);
    assert_errors_name(
        &out,
        &format!("jump host {}@{}:22", site.hops[0].user, site.hops[0].host),
    );
    assert!(stderr(&out).contains("io_timeout 3s") || stderr(&out).contains("nothing sent for 3s"));
    assert!(!site.target.archive().join("big").exists());

    assert_exit(&sync(&w), 0);
    assert_eq!(
        common::snapshot(&w.archive().join("big/1")),
        common::snapshot(&site.target.archive().join("big/1"))
    );
    assert!(common::leftovers(&site.target.archive()).is_empty());
}

#[test]
fn a_jump_host_killed_mid_sync_leaves_no_partial_package() {
    let Some(mut site) = site(1) else { return };
    let w = world(
        &site,
        "compression = \"none\"\nparallel = 1\nio_timeout = \"10s\"",
    );
    w.big_package("big", "1", T0 + 60, 96 << 20);
    w.write_rm(&[("P/R1", "open", 0, &["a/1.0", "b/2.0", "big/1"])]);

    let child = sync_until_streaming(&w, &site);
    // The jump host dies: its sshd and every session it runs.
    site.line.kill_all(0);
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "blat took {:?} to notice",
        started.elapsed()
    );
    assert_exit(&out, 1);
    // Each package in flight, and what came after, names the jump host.
    assert_errors_name(
        &out,
        &format!("jump host {}@{}:22", site.hops[0].user, site.hops[0].host),
    );
    assert!(
        !site.target.archive().join("big").exists(),
        "big/1 visible after the jump host died"
    );
    // Whatever is visible is whole.
    for pv in ["a/1.0", "b/2.0", "j/1"] {
        let there = site.target.archive().join(pv);
        if there.exists() {
            assert_eq!(
                common::snapshot(&w.archive().join(pv)),
                common::snapshot(&there),
                "{pv}"
            );
        }
    }

    site.hops[0].restart();
    assert_exit(&sync(&w), 0);
    assert_eq!(
        common::snapshot(&w.archive().join("big/1")),
        common::snapshot(&site.target.archive().join("big/1"))
    );
    assert!(
        common::leftovers(&site.target.archive()).is_empty(),
        "{:?}",
        common::leftovers(&site.target.archive())
    );
}

/// Established TCP connections from this network namespace to `addr:22`.
fn connections_to(addr: &str) -> usize {
    let octets: Vec<u8> = addr.split('.').map(|o| o.parse().unwrap()).collect();
    let want = format!(
        "{:02X}{:02X}{:02X}{:02X}:0016",
        octets[3], octets[2], octets[1], octets[0]
    );
    fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(2) == Some(&want.as_str()) && f.get(3) == Some(&"01")
        })
        .count()
}

#[test]
fn relays_pass_eof_both_ways_and_end_with_their_sessions() {
    let Some(site) = site(1) else { return };
    let (bastion, target) = (&site.hops[0], &site.target);
    let transport = SshTransport::new(site.ssh_config()).unwrap();
    let df = || transport.run(&["df".to_string()], None);
    let out = df().unwrap();
    assert_eq!(out.status, 0, "{out:?}");
    assert_eq!(connections_to(&bastion.host), 1);

    // The target drops the session (its sshd's session process dies): the
    // relay passes the end on, and the idle session is replaced.
    let in_target = site.line.pids(1);
    // Session processes, not the listener ("sshd: /usr/sbin/sshd ... [listener] ...").
    let sessions: Vec<i32> = common::processes(|argv| {
        argv.first().is_some_and(|a| a.starts_with("sshd:"))
            && !argv.iter().any(|a| a.contains("[listener]"))
    })
    .into_iter()
    .map(|(pid, _)| pid)
    .filter(|pid| in_target.contains(pid))
    .collect();
    assert!(!sessions.is_empty(), "no session process in {in_target:?}");
    for pid in sessions {
        common::kill9(pid);
    }
    let out = df().unwrap();
    assert_eq!(out.status, 0, "{out:?}");
    assert!(out.stdout.starts_with("avail\t"), "{out:?}");
    assert_eq!(target.log().matches("Accepted publickey").count(), 2);
    // The first relay ended: one connection to the jump host is left.
    let deadline = Instant::now() + Duration::from_secs(10);
    while connections_to(&bastion.host) != 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(connections_to(&bastion.host), 1);

    // Dropping the transport ends the last relay and its connection.
    drop(transport);
    let deadline = Instant::now() + Duration::from_secs(10);
    while connections_to(&bastion.host) != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        connections_to(&bastion.host),
        0,
        "a relay outlived its session"
    );
}
