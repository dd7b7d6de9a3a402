//! `blat check` of an SSH target: each login step (DNS, TCP, host key,
//! key, for every jump host and the target), the receiver (current, or how
//! it gets installed), the archive's facts, and the `authorized_keys` lines
//! to append on the target and its jump hosts.

use super::{check_facts, AuthorizedKey, Checks, Status};
use crate::config::{ArchiveTarget, SshConfig, TargetConfig};
use crate::target::ssh::{self, ReceiverState, SshProbe, SshTransport};

pub(super) fn check_ssh(
    target: &TargetConfig,
    archive: &ArchiveTarget,
    ssh: &SshConfig,
    checks: &mut Checks,
) {
    let name = target.name.as_str();
    let transport = match SshTransport::new(ssh.clone()) {
        Ok(t) => t,
        Err(e) => {
            checks.fail(name, "ssh", format!("{e:#}"), "see the message");
            return;
        }
    };
    let probe = transport.probe();
    login_steps(target, ssh, &probe, checks);
    let logged_in = probe.steps.iter().all(|s| s.ok);
    let (home, home_assumed) = match &probe.home {
        Some(h) => (h.clone(), false),
        None if ssh.user == "root" => ("/root".to_string(), true),
        None => (format!("/home/{}", ssh.user), true),
    };
    if logged_in {
        let receiver_ok = check_receiver(name, ssh, &probe, &home, checks);
        let facts = match &probe.facts {
            Some(Ok(f)) => Ok(f.clone()),
            Some(Err(e)) => Err(e.clone()),
            None => Err("not checked".into()),
        };
        check_facts(target, archive, &ssh.user, facts, !receiver_ok, checks);
    } else {
        for check in ["receiver", "archive", "free space"] {
            checks.add(name, check, Status::Skip, "not checked: no login");
        }
    }
    authorized_keys(name, ssh, &home, home_assumed, checks);
}

/// Where the receiver lives under the login's home.
fn receiver_path(home: &str) -> String {
    format!("{home}/.blat/blat-receiver")
}

/// One check line per login step of the probe (reach, host key, login, for
/// each jump host and the target), each failure with its fix: apart from
/// `check_ssh` as its first part.
fn login_steps(target: &TargetConfig, ssh: &SshConfig, probe: &SshProbe, checks: &mut Checks) {
    let name = target.name.as_str();
    for step in &probe.steps {
        // A jump host's steps are `jump N reach`, `jump N host key`, ...
        let label = match step.hop {
            Some(i) => format!("jump {} {}", i + 1, step.step.label()),
            None => step.step.label().to_string(),
        };
        if step.ok {
            checks.add(name, &label, Status::Ok, step.detail.clone());
        } else {
            let hop = step.hop.and_then(|i| ssh.jump.get(i));
            let fix = match hop {
                Some(hop) => hop_fix(step.step, &step.detail, hop, target),
                None => step_fix(step.step, &step.detail, ssh, target),
            };
            checks.push(name, &label, Status::Fail, step.detail.clone(), fix);
        }
    }
}

/// The `receiver` check of a logged-in probe, with how to install it when
/// it is missing or stale; true when the receiver can serve. Apart from
/// `check_ssh` as its second part.
fn check_receiver(
    name: &str,
    ssh: &SshConfig,
    probe: &SshProbe,
    home: &str,
    checks: &mut Checks,
) -> bool {
    let forced = probe.forced.unwrap_or(false);
    let allow_install = matches!(&probe.facts, Some(Ok(f)) if f.allow_install);
    let key_kind = match (forced, allow_install) {
        (false, _) => "the key is not restricted (no forced command)".to_string(),
        (true, false) => "the key is a forced command (restricted to the receiver)".to_string(),
        (true, true) => {
            "the key is a forced command with --allow-install (restricted to the receiver, which may update itself)"
                .to_string()
        }
    };
    match (&probe.receiver, &probe.installable) {
        (Some(ReceiverState::Current), _) => {
            checks.add(
                name,
                "receiver",
                Status::Ok,
                format!(
                    "{} is current (sha256 {}…); {key_kind}",
                    ssh::RECEIVER_PATH,
                    &ssh::receiver_sha256()[..12]
                ),
            );
            true
        }
        (Some(state), Some(Ok(how))) => {
            checks.add(
                name,
                "receiver",
                Status::Ok,
                format!("{}; {how}", receiver_state(state)),
            );
            true
        }
        (Some(state), Some(Err(why))) => {
            checks.fail(
                name,
                "receiver",
                format!("{}; {why}", receiver_state(state)),
                format!(
                    "copy this blat's receiver (/usr/share/blat/blat-receiver from the package, receiver/blat-receiver in the sources) to the target, then as root there: \
                     install -d -o {u} -m 755 {home}/.blat && install -o {u} -m 755 blat-receiver {path}{allow}",
                    u = ssh.user,
                    path = receiver_path(home),
                    allow = if forced && matches!(state, ReceiverState::Stale { .. }) {
                        "; or add --allow-install to the key's forced command"
                    } else {
                        ""
                    }
                ),
            );
            false
        }
        _ => {
            checks.fail(
                name,
                "receiver",
                "the target did not answer about its receiver",
                "run blat check -vv again; see the ssh log on the target",
            );
            false
        }
    }
}

/// The `public key` check and the authorized_keys lines to append on the
/// target and its jump hosts: apart from `check_ssh` as its last part.
fn authorized_keys(
    name: &str,
    ssh: &SshConfig,
    home: &str,
    home_assumed: bool,
    checks: &mut Checks,
) {
    match ssh::public_key(&ssh.identity) {
        Ok(key) => {
            let line = format!("restrict,command=\"{}\" {}", receiver_path(home), key.line);
            let file = format!("{home}/.ssh/authorized_keys");
            checks.add(
                name,
                "public key",
                Status::Ok,
                format!(
                    "{} ({})",
                    key.line.split_whitespace().take(1).collect::<String>(),
                    key.source
                ),
            );
            checks.print(&format!(
                "      {name}: on a new target, append to {file}{} on {}:",
                if home_assumed {
                    " (home assumed; the target did not say)"
                } else {
                    ""
                },
                ssh.host
            ));
            checks.print(&format!("      {line}"));
            checks.keys.push(AuthorizedKey {
                target: name.to_string(),
                user: ssh.user.clone(),
                host: ssh.host.clone(),
                home: home.to_string(),
                home_assumed,
                file,
                line,
                key_source: key.source.clone(),
                jump: None,
            });
            jump_host_keys(name, ssh, &key, checks);
        }
        Err(e) => checks.fail(name, "public key", format!("{e:#}"), "see the message"),
    }
}

/// The authorized_keys line for each jump host: the key may only forward
/// to the next hop (`permitopen`), and runs nothing (`command`).
fn jump_host_keys(name: &str, ssh: &SshConfig, key: &ssh::PublicKey, checks: &mut Checks) {
    for (i, hop) in ssh.jump.iter().enumerate() {
        let (next_host, next_port) = match ssh.jump.get(i + 1) {
            Some(next) => (next.host.as_str(), next.port),
            None => (ssh.host.as_str(), ssh.port),
        };
        let line = format!(
            "restrict,port-forwarding,permitopen=\"{next_host}:{next_port}\",command=\"/bin/false\" {}",
            key.line
        );
        let file = format!("~{}/.ssh/authorized_keys", hop.user);
        checks.print(&format!(
            "      {name}: on jump host {hop}, append to {file} (forwarding to {next_host} port {next_port} only):"
        ));
        checks.print(&format!("      {line}"));
        checks.keys.push(AuthorizedKey {
            target: name.to_string(),
            user: hop.user.clone(),
            host: hop.host.clone(),
            home: format!("~{}", hop.user),
            home_assumed: true,
            file,
            line,
            key_source: key.source.clone(),
            jump: Some(i + 1),
        });
    }
}

fn receiver_state(state: &ReceiverState) -> String {
    match state {
        ReceiverState::Current => format!("{} is current", ssh::RECEIVER_PATH),
        ReceiverState::Stale { sha256 } => format!(
            "{} is another version (sha256 {}…, this blat's is {}…)",
            ssh::RECEIVER_PATH,
            &sha256[..sha256.len().min(12)],
            &ssh::receiver_sha256()[..12]
        ),
        ReceiverState::Missing { why } => {
            format!("{} is not there ({why})", ssh::RECEIVER_PATH)
        }
    }
}

/// The fix for a failed connection step, when its message does not hold one.
fn step_fix(
    step: ssh::Step,
    detail: &str,
    ssh: &SshConfig,
    target: &TargetConfig,
) -> Option<String> {
    let file = target.file.display();
    let keyscan = format!(
        "ssh-keyscan -p {} {} >> {}",
        ssh.port,
        ssh.host,
        ssh.known_hosts.display()
    );
    match step {
        // The transport's messages say what to do (chmod 600, ssh-keyscan,
        // ssh-keygen -R, authorized_keys).
        ssh::Step::Identity if detail.contains("chmod") => None,
        ssh::Step::Identity => Some(format!(
            "create the key (ssh-keygen -t ed25519 -N '' -f {}) or correct `identity` in {file}",
            ssh.identity.display()
        )),
        ssh::Step::KnownHosts => Some(format!(
            "record the host key: {keyscan} (then compare ssh-keygen -lf {} with the target's own), or correct `known_hosts` in {file}",
            ssh.known_hosts.display()
        )),
        ssh::Step::Dns => Some(format!("correct `host` in {file}, or the DNS")),
        ssh::Step::Tcp => Some(format!(
            "is sshd running on {} port {}? check `host` and `port` in {file} and any firewall between",
            ssh.host, ssh.port
        )),
        ssh::Step::Handshake => Some(format!(
            "is it an SSH server on port {}? see the target's sshd log",
            ssh.port
        )),
        // Only jump hosts have it.
        ssh::Step::Reach => None,
        ssh::Step::HostKey => None,
        ssh::Step::Login if detail.contains("authorized_keys") => Some(
            "add the authorized_keys line printed below for this target".to_string(),
        ),
        ssh::Step::Login => None,
    }
}

/// The fix for a failed step at jump host `hop`, when its message does not
/// hold one.
fn hop_fix(
    step: ssh::Step,
    detail: &str,
    hop: &crate::config::JumpHost,
    target: &TargetConfig,
) -> Option<String> {
    let file = target.file.display();
    match step {
        ssh::Step::Reach | ssh::Step::Dns | ssh::Step::Tcp | ssh::Step::Handshake => Some(format!(
            "is sshd running on {} port {}? check `jump` in {file}, the DNS and any firewall between",
            hop.host, hop.port
        )),
        ssh::Step::Login if detail.contains("authorized_keys") => Some(format!(
            "add the jump host line printed below to ~{}/.ssh/authorized_keys on {}",
            hop.user, hop.host
        )),
        _ => None,
    }
}
