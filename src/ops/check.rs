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
mod ssh;

use releases::check_releases;
#[cfg(feature = "s3")]
use s3::check_s3;
use ssh::check_ssh;

use super::{Context, Selection};
use crate::archive::{SourceArchive, SourceEntry};
use crate::config::units::human_bytes;
use crate::config::{ArchiveTarget, Compression, Config, TargetConfig, TargetKind, Transport};
use crate::error::Outcome;
use crate::release;
use crate::report::Reporter;
use crate::target::facts::ArchiveFacts;
use crate::target::protocol::{self, Command, Exit};

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
