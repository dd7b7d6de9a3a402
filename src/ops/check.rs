//! `blat check`: everything a sync needs, verified without changing
//! anything: the configuration, the Release Manager and each configured
//! release and project, the source archive, and for each target what its
//! kind needs (an SSH target: DNS, TCP, host key, key, receiver, archive
//! writable, free space, zstd; a local one: its directory; an S3 one:
//! credentials, bucket, a probe object written and removed). One line per
//! check, with the fix when it fails; the `authorized_keys` line for each
//! SSH target. Exit code 0 when every check holds, 1 otherwise.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

mod releases;
#[cfg(feature = "s3")]
mod s3;

use releases::check_releases;
#[cfg(feature = "s3")]
use s3::check_s3;

use super::{Context, Selection};
use crate::archive::{SourceArchive, SourceEntry};
use crate::config::units::human_bytes;
use crate::config::{
    ArchiveTarget, Compression, Config, SshConfig, TargetConfig, TargetKind, Transport,
};
use crate::error::Outcome;
use crate::release;
use crate::report::Reporter;
use crate::target::facts::ArchiveFacts;
use crate::target::protocol::{self, Command, Exit};
use crate::target::ssh::{self, ReceiverState, SshProbe, SshTransport};

#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    pub config_dir: PathBuf,
    /// No target named and no `--all`: every target.
    pub selection: Selection,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Fail,
    /// Not checked, because an earlier check it needs failed.
    Skip,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        }
    }
}

/// One line of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// `config`, `release manager`, `source archive`, or a target's name.
    pub scope: String,
    pub check: String,
    pub status: Status,
    pub detail: String,
    /// What to do about a failure (when the detail does not say it already).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// The line to put into a target's `authorized_keys`.
#[derive(Clone, Debug, Serialize)]
pub struct AuthorizedKey {
    pub target: String,
    pub user: String,
    pub host: String,
    /// The target user's home, as the target said, or assumed.
    pub home: String,
    pub home_assumed: bool,
    /// Where the line goes.
    pub file: String,
    pub line: String,
    /// Where the public key came from.
    pub key_source: String,
    /// For a jump host: its number in `jump` (1 = the first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jump: Option<usize>,
}

#[derive(Serialize)]
struct CheckReport<'a> {
    command: &'static str,
    outcome: Outcome,
    exit_code: u8,
    checks: &'a [Check],
    authorized_keys: &'a [AuthorizedKey],
}

/// Collects the checks and prints each as it is made (stdout; stderr
/// under `--json`, whose report is then the only thing on stdout).
struct Checks {
    json: bool,
    checks: Vec<Check>,
    keys: Vec<AuthorizedKey>,
}

impl Checks {
    fn add(&mut self, scope: &str, check: &str, status: Status, detail: impl Into<String>) {
        self.push(scope, check, status, detail.into(), None);
    }

    fn fail(
        &mut self,
        scope: &str,
        check: &str,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.push(scope, check, Status::Fail, detail.into(), Some(fix.into()));
    }

    fn push(
        &mut self,
        scope: &str,
        check: &str,
        status: Status,
        detail: String,
        fix: Option<String>,
    ) {
        let detail = detail.replace('\n', " ");
        let mut line = format!("{:<4}  {scope}: {check}: {detail}", status.word());
        if let Some(fix) = &fix {
            line.push_str("; fix: ");
            line.push_str(fix);
        }
        self.print(&line);
        self.checks.push(Check {
            scope: scope.to_string(),
            check: check.to_string(),
            status,
            detail,
            fix,
        });
    }

    fn print(&self, line: &str) {
        if self.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }

    fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.status == Status::Fail)
    }
}

pub fn run(options: &CheckOptions, json: bool, verbosity: u8) -> Result<Outcome> {
    let mut checks = Checks {
        json,
        checks: Vec::new(),
        keys: Vec::new(),
    };
    match Config::load(&options.config_dir) {
        Err(e) => {
            checks.fail(
                "config",
                "parses",
                format!("{e:#}"),
                "point -c DIR (or BLAT_CONFIG) at the configuration directory, or correct the place named (file:line:col; docs/configuration.md lists every key)",
            );
        }
        Ok(config) => {
            checks.add(
                "config",
                "parses",
                Status::Ok,
                format!(
                    "{}: blat.toml and {} target{}",
                    config.dir.display(),
                    config.targets.len(),
                    if config.targets.len() == 1 { "" } else { "s" }
                ),
            );
            let ctx = Context::new(config, Reporter::new(verbosity, json), true);
            let selection = options.selection.or_every_target();
            let targets = ctx.select(&selection, |_| true, "")?;
            check_everything(&ctx, &targets, &mut checks);
        }
    }
    let outcome = if checks.failed() {
        Outcome::Failed
    } else {
        Outcome::Done
    };
    let summary = format!(
        "check {}: {} ok, {} failed, {} skipped",
        if outcome == Outcome::Done {
            "done"
        } else {
            "failed"
        },
        count(&checks.checks, Status::Ok),
        count(&checks.checks, Status::Fail),
        count(&checks.checks, Status::Skip),
    );
    eprintln!("{summary}");
    if json {
        let report = CheckReport {
            command: "check",
            outcome,
            exit_code: outcome.code(),
            checks: &checks.checks,
            authorized_keys: &checks.keys,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(outcome)
}

fn count(checks: &[Check], status: Status) -> usize {
    checks.iter().filter(|c| c.status == status).count()
}

fn check_everything(ctx: &Context, targets: &[TargetConfig], checks: &mut Checks) {
    let config = &ctx.config;
    let source = SourceArchive::new(&config.archive);
    let archive_ok = check_source_archive(&source, checks);

    let mut rm = match release::open(config) {
        Ok(rm) => {
            checks.add(
                "release manager",
                "reachable",
                Status::Ok,
                format!("{} answers", rm.describe()),
            );
            Some(rm)
        }
        Err(e) => {
            checks.fail(
                "release manager",
                "reachable",
                format!("{e:#}"),
                format!(
                    "check [release_manager] in {} and that the database is up and lets blat in",
                    config.dir.join("blat.toml").display()
                ),
            );
            None
        }
    };

    for target in targets {
        let name = target.name.as_str();
        match rm.as_mut() {
            Some(rm) => check_releases(rm.as_mut(), target, checks),
            None => checks.add(
                name,
                "releases",
                Status::Skip,
                "not checked: the Release Manager is not reachable",
            ),
        }
        if archive_ok {
            check_pins(&source, target, checks);
        }
        match &target.kind {
            TargetKind::Archive(archive) => match &archive.transport {
                Transport::Local { path } => check_local(target, archive, path, checks),
                Transport::Ssh(ssh) => check_ssh(target, archive, ssh, checks),
            },
            #[cfg(feature = "s3")]
            TargetKind::S3(s3) => check_s3(target, s3, checks),
            #[cfg(not(feature = "s3"))]
            TargetKind::S3(_) => checks.fail(
                name,
                "s3",
                "this blat was built without S3 support",
                "build blat with `--features s3` (a default feature)",
            ),
        }
    }
}

fn check_source_archive(source: &SourceArchive, checks: &mut Checks) -> bool {
    let root = source.root.display();
    if let Err(e) = source.check() {
        checks.fail(
            "source archive",
            "readable",
            format!("{e:#}"),
            "mount it, or correct `archive` in blat.toml",
        );
        return false;
    }
    match std::fs::read_dir(&source.root) {
        Ok(entries) => {
            let packages = entries
                .filter_map(|e| e.ok())
                .filter(|e| {
                    !e.file_name().to_string_lossy().starts_with('.')
                        && e.file_type().is_ok_and(|t| t.is_dir())
                })
                .count();
            checks.add(
                "source archive",
                "readable",
                Status::Ok,
                format!("{root}: {packages} packages"),
            );
            true
        }
        Err(e) => {
            checks.fail(
                "source archive",
                "readable",
                format!("cannot list {root}: {e}"),
                "let the user blat runs as read it (and every package in it)",
            );
            false
        }
    }
}

/// The `packages` pins are in the source archive.
fn check_pins(source: &SourceArchive, target: &TargetConfig, checks: &mut Checks) {
    if target.packages.is_empty() {
        return;
    }
    let missing: Vec<String> = target
        .packages
        .iter()
        .filter(|pv| matches!(source.inspect(pv), Ok(SourceEntry::Missing) | Err(_)))
        .map(|pv| pv.to_string())
        .collect();
    if missing.is_empty() {
        checks.add(
            &target.name,
            "pins",
            Status::Ok,
            format!(
                "{} `packages` pin{}, all in the source archive",
                target.packages.len(),
                if target.packages.len() == 1 { "" } else { "s" }
            ),
        );
    } else {
        checks.fail(
            &target.name,
            "pins",
            format!("not in the source archive: {}", missing.join(", ")),
            format!("correct `packages` in {}", target.file.display()),
        );
    }
}

fn check_local(target: &TargetConfig, archive: &ArchiveTarget, path: &Path, checks: &mut Checks) {
    let name = target.name.as_str();
    checks.add(
        name,
        "receiver",
        Status::Ok,
        "local transport: runs the receiver built into blat (always current)",
    );
    if !path.exists() {
        // The first sync creates it: the nearest existing parent must let us.
        let parent = path.ancestors().skip(1).find(|p| p.exists());
        match parent {
            Some(p) if writable(p) => checks.add(
                name,
                "archive",
                Status::Ok,
                format!(
                    "{} does not exist yet; the first sync creates it (in {}, writable)",
                    path.display(),
                    p.display()
                ),
            ),
            _ => checks.fail(
                name,
                "archive",
                format!(
                    "{} does not exist, and blat may not create it{}",
                    path.display(),
                    parent.map_or(String::new(), |p| format!(
                        " ({} is not writable)",
                        p.display()
                    ))
                ),
                format!(
                    "create it for the user blat runs as (install -d {}), or correct `path` in {}",
                    path.display(),
                    target.file.display()
                ),
            ),
        }
        return;
    }
    let transport = crate::target::local::LocalTransport::new(path.to_path_buf());
    let out = crate::target::Transport::run(&transport, &Command::Check.args(), None);
    let facts = match out {
        Ok(out) if Exit::of(out.status) == Exit::Done => Ok(ArchiveFacts::parse(&out.stdout)),
        Ok(out) => Err(protocol::message(out.stderr.trim()).replace('\n', "; ")),
        Err(e) => Err(format!("{e:#}")),
    };
    let user = current_user();
    check_facts(target, archive, &user, facts, false, checks);
}

fn check_ssh(target: &TargetConfig, archive: &ArchiveTarget, ssh: &SshConfig, checks: &mut Checks) {
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

/// The checks on what the receiver's `check` said: the archive, free
/// space against `min_free`, zstd when configured.
fn check_facts(
    target: &TargetConfig,
    archive: &ArchiveTarget,
    user: &str,
    facts: Result<ArchiveFacts, String>,
    receiver_failed: bool,
    checks: &mut Checks,
) {
    let name = target.name.as_str();
    let file = target.file.display().to_string();
    let facts = match facts {
        Ok(f) => f,
        Err(why) => {
            let status = if receiver_failed {
                Status::Skip
            } else {
                Status::Fail
            };
            for check in ["archive", "free space"] {
                checks.push(name, check, status, why.clone(), None);
            }
            return;
        }
    };
    if !facts.exists {
        checks.fail(
            name,
            "archive",
            format!("{} does not exist", facts.archive),
            format!(
                "create it on the target for {user} (install -d -o {user} -m 755 {}), or correct the archive path in {file}",
                facts.archive
            ),
        );
        checks.add(name, "free space", Status::Skip, "not checked: no archive");
        return;
    }
    match facts.unwritable() {
        None => checks.add(
            name,
            "archive",
            Status::Ok,
            format!("{} exists and {user} may write it", facts.archive),
        ),
        Some(why) => checks.fail(
            name,
            "archive",
            why,
            format!(
                "on the target: chown -R {user} {} (or give {user} write access to it)",
                facts.archive
            ),
        ),
    }
    check_free_space(name, &file, archive, facts.avail, &facts.archive, checks);
    if let Compression::Zstd(_) = archive.compression {
        if facts.decompressors.iter().any(|d| d == "zstd") {
            checks.add(name, "zstd", Status::Ok, "the target has zstd");
        } else if !archive.compression_set {
            checks.add(
                name,
                "zstd",
                Status::Ok,
                "the target has no zstd: sync sends with gzip:1 (the default is zstd:1)",
            );
        } else {
            checks.fail(
                name,
                "zstd",
                "compression = \"zstd\" but the target has no zstd (sync falls back to gzip)",
                format!("install zstd on the target (apt-get install zstd), or set compression = \"gzip\" in {file}"),
            );
        }
    }
}

/// The free space the receiver read against `min_free`.
fn check_free_space(
    name: &str,
    file: &str,
    archive: &ArchiveTarget,
    avail: Option<u64>,
    path: &str,
    checks: &mut Checks,
) {
    match avail {
        None => checks.fail(
            name,
            "free space",
            format!("cannot read the free space of {}", path),
            "the target needs df (coreutils)",
        ),
        Some(avail) if archive.min_free == 0 => checks.add(
            name,
            "free space",
            Status::Ok,
            format!("{} free (no min_free set)", human_bytes(avail)),
        ),
        Some(avail) if avail > archive.min_free => checks.add(
            name,
            "free space",
            Status::Ok,
            format!(
                "{} free, more than min_free {}",
                human_bytes(avail),
                human_bytes(archive.min_free)
            ),
        ),
        Some(avail) => checks.fail(
            name,
            "free space",
            format!(
                "{} free, not more than min_free {}: sync sends nothing",
                human_bytes(avail),
                human_bytes(archive.min_free)
            ),
            format!("free space on the target, or lower `min_free` in {file}"),
        ),
    }
}

/// Whether this process may create entries in `dir`.
fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a valid NUL-terminated path; access has no other preconditions.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

/// The user blat runs as, for messages about local targets.
fn current_user() -> String {
    // SAFETY: geteuid cannot fail; getpwuid returns NULL or a pointer to a
    // static entry, read at once (blat runs no other thread here).
    unsafe {
        let pw = libc::getpwuid(libc::geteuid());
        if !pw.is_null() && !(*pw).pw_name.is_null() {
            if let Ok(name) = std::ffi::CStr::from_ptr((*pw).pw_name).to_str() {
                return name.to_string();
            }
        }
    }
    "the user blat runs as".into()
}
