//! `blat status`: per target, one line to scan (last successful sync and
//! its age, whether the target is behind, the last error), then the last
//! run of each command and its outcome, pending and rejected tags, packages
//! marked for deletion; as text, `--json`, or Prometheus text
//! (`--metrics FILE`) for node_exporter's textfile collector. Reads only:
//! takes no lock, writes nothing but the metrics file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

mod metrics;

pub use metrics::metrics;

use super::{Context, Selection};
use crate::config::units::human_bytes;
use crate::config::{AgingMethod, TargetConfig, TargetKind};
use crate::error::Outcome;
use crate::state::{FreeSpace, Run, State};
use crate::tags as tag;

#[derive(Clone, Debug, Default)]
pub struct StatusOptions {
    /// No target named and no `--all`: every target.
    pub selection: Selection,
    pub metrics: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
pub struct TargetStatus {
    pub target: String,
    pub kind: &'static str,
    /// The command that brings the target in line: `sync` or `s3sync`.
    pub sync_command: &'static str,
    pub sync_interval_seconds: u64,
    /// When that command last finished with outcome `done`.
    pub last_sync: Option<i64>,
    pub last_sync_age_seconds: Option<i64>,
    /// No successful sync for more than twice `sync_interval`.
    pub overdue: bool,
    pub behind: Behind,
    /// The target's free space as last read (by a sync).
    pub free_space: Option<FreeSpace>,
    /// The last aging pass refused deletions (more than max_delete).
    pub aging_refused: Option<AgingRefused>,
    /// The earliest time a marked package-version may be deleted
    /// (method `master`).
    pub next_deletion: Option<i64>,
    /// The most recent run of each command (it may still be running).
    pub runs: Vec<Run>,
    pub pending_tags: Vec<String>,
    pub rejected_tags: Vec<tag::Rejected>,
    /// Why the tag directory could not be read (a symlink is refused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags_error: Option<String>,
    pub marked: Vec<Marked>,
    pub last_error: Option<Run>,
    /// The most recent finished run of each command (for the metrics).
    #[serde(skip)]
    pub finished_runs: Vec<Run>,
    /// When each command last finished with outcome `done`.
    #[serde(skip)]
    pub successes: Vec<(String, i64)>,
    /// When status looked: every age is counted from it.
    #[serde(skip)]
    pub now: i64,
}

/// How far the target is behind its current set.
#[derive(Debug, Default, Serialize)]
pub struct Behind {
    /// True when package-versions were missing or differing at the last
    /// sync that measured it, or tags are pending; false when neither;
    /// absent when no sync measured it and no tag is pending.
    pub is_behind: Option<bool>,
    /// Package-versions of the current set missing on the target or there
    /// with another descpkg mtime after the last sync that measured it.
    pub packages: Option<u64>,
    /// When that sync finished.
    pub measured: Option<i64>,
    pub pending_tags: usize,
    pub oldest_pending_tag: Option<PendingTag>,
}

#[derive(Debug, Serialize)]
pub struct PendingTag {
    pub tag: String,
    /// The tag file's mtime: when it was dropped.
    pub since: i64,
    pub age_seconds: i64,
}

#[derive(Debug, Serialize)]
pub struct AgingRefused {
    pub packages: u64,
    pub command: String,
    pub at: i64,
}

#[derive(Debug, Serialize)]
pub struct Marked {
    pub package: String,
    pub version: String,
    pub since: i64,
    /// When `master` aging may delete it (absent for other methods).
    pub due: Option<i64>,
}

pub fn run(ctx: &Context, options: &StatusOptions) -> Result<Outcome> {
    let selection = options.selection.or_every_target();
    let targets = ctx.select(&selection, |_| true, "")?;
    // Reads only: a user who may only read state_dir can run it, and a
    // missing state file (no run yet) creates nothing. A state file of an
    // older blat is read as far as it goes.
    let now = crate::clock::now();
    let mut recorded = false;
    let statuses = targets
        .iter()
        .map(|t| {
            let state = State::open_status(&ctx.config.state_dir, &t.name)?;
            recorded |= state.recorded();
            target_status(&state, &ctx.config.tag_dir, t, now)
        })
        .collect::<Result<Vec<_>>>()?;
    if let Some(path) = &options.metrics {
        write_metrics(path, &statuses)?;
    }
    if ctx.reporter.json() {
        println!("{}", serde_json::to_string_pretty(&statuses)?);
    } else {
        if !recorded {
            println!(
                "no runs recorded: no state file in {}",
                ctx.config
                    .state_dir
                    .join(crate::state::TARGETS_DIR)
                    .display()
            );
        }
        if statuses.is_empty() {
            println!(
                "no targets configured: no {}",
                ctx.config.dir.join("targets/*.conf").display()
            );
        } else {
            print!("{}", table(&statuses));
        }
        if ctx.reporter.verbosity() > 0 && !statuses.is_empty() {
            print!("\n{}", text(&statuses));
        }
    }
    Ok(Outcome::Done)
}

fn target_status(
    state: &State,
    tag_dir: &Path,
    target: &TargetConfig,
    now: i64,
) -> Result<TargetStatus> {
    let dir = tag_dir.join(&target.name);
    let after = crate::config::units::secs_i64(target.aging.after);
    let master = target.aging.method == AgingMethod::Master;
    let tags = tag::overview(&dir);
    let (kind, sync_command) = match target.kind {
        TargetKind::Archive(_) => ("archive", "sync"),
        TargetKind::S3(_) => ("s3", "s3sync"),
    };
    let interval = crate::config::units::secs_i64(target.sync_interval);
    let successes = state.last_successes(&target.name)?;
    let last_sync = successes
        .iter()
        .find(|(c, _)| c == sync_command)
        .map(|(_, t)| *t);
    let last_sync_age = last_sync.map(|t| now.saturating_sub(t).max(0));
    let pending_tags: Vec<String> = tags.pending.clone();
    let oldest_pending_tag = oldest_tag(&dir, &pending_tags, now);
    let measured = state.last_behind(&target.name, sync_command)?;
    let packages = measured.as_ref().and_then(|r| r.facts.behind);
    let is_behind = match (packages, pending_tags.len()) {
        (_, n) if n > 0 => Some(true),
        (Some(p), _) => Some(p > 0),
        (None, _) => None,
    };
    let marked: Vec<Marked> = state
        .marks(&target.name)?
        .into_iter()
        .map(|(package, version, since)| Marked {
            package,
            version,
            since,
            due: master.then_some(since.saturating_add(after)),
        })
        .collect();
    let aging_refused = state.last_aging(&target.name)?.and_then(|r| {
        let packages = r.facts.aging_refused.filter(|n| *n > 0)?;
        Some(AgingRefused {
            packages,
            command: r.command,
            at: r.finished.unwrap_or(r.started),
        })
    });
    Ok(TargetStatus {
        target: target.name.clone(),
        kind,
        sync_command,
        sync_interval_seconds: target.sync_interval.as_secs(),
        last_sync,
        last_sync_age_seconds: last_sync_age,
        overdue: last_sync_age.is_none_or(|age| age > interval.saturating_mul(2)),
        behind: Behind {
            is_behind,
            packages,
            measured: measured.and_then(|r| r.finished),
            pending_tags: pending_tags.len(),
            oldest_pending_tag,
        },
        free_space: state.free_space(&target.name)?,
        aging_refused,
        next_deletion: marked.iter().filter_map(|m| m.due).min(),
        runs: state.last_runs(&target.name)?,
        pending_tags,
        rejected_tags: tags.rejected,
        tags_error: tags.error,
        marked,
        last_error: state.last_error(&target.name)?,
        finished_runs: state.last_finished_runs(&target.name)?,
        successes,
        now,
    })
}

/// The pending tag dropped first (by its file's mtime); a tag that vanished
/// meanwhile (consumed) is left out.
fn oldest_tag(dir: &Path, tags: &[String], now: i64) -> Option<PendingTag> {
    tags.iter()
        .filter_map(|tag| {
            let meta = std::fs::symlink_metadata(dir.join(tag)).ok()?;
            let since = meta
                .modified()
                .ok()?
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            Some((since, tag))
        })
        .min()
        .map(|(since, tag)| PendingTag {
            tag: tag.clone(),
            since,
            age_seconds: now.saturating_sub(since).max(0),
        })
}

fn when(t: Option<i64>) -> String {
    t.map_or_else(|| "-".to_string(), crate::clock::rfc3339)
}

/// An age for people: its two largest units (`45s`, `12m3s`, `2h10m`,
/// `3d4h`); the second is left out when it is 0 (`1d`, not `1d0h`).
pub fn age(secs: i64) -> String {
    const UNITS: [(i64, char); 4] = [(86400, 'd'), (3600, 'h'), (60, 'm'), (1, 's')];
    let secs = secs.max(0);
    let Some(i) = UNITS.iter().position(|(unit, _)| secs >= *unit) else {
        return "0s".into();
    };
    let (unit, name) = UNITS[i];
    let mut out = format!("{}{name}", secs / unit);
    if let Some(&(next, next_name)) = UNITS.get(i + 1) {
        let n = secs % unit / next;
        if n > 0 {
            out.push_str(&format!("{n}{next_name}"));
        }
    }
    out
}

fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("{n} {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The scan line's cells of one target: name, last successful sync,
/// behind, last error.
fn cells(s: &TargetStatus) -> [String; 4] {
    let sync = match (s.last_sync, s.last_sync_age_seconds) {
        (Some(t), Some(a)) => format!(
            "{} ({} ago){}",
            crate::clock::rfc3339(t),
            age(a),
            if s.overdue { ", overdue" } else { "" }
        ),
        _ => "never".to_string(),
    };
    let b = &s.behind;
    let mut parts = Vec::new();
    if let Some(n) = b.packages.filter(|n| *n > 0) {
        parts.push(plural(n, "package-version"));
    }
    if let Some(t) = &b.oldest_pending_tag {
        parts.push(format!(
            "{} pending (oldest {})",
            plural(b.pending_tags as u64, "tag"),
            age(t.age_seconds)
        ));
    } else if b.pending_tags > 0 {
        parts.push(format!("{} pending", plural(b.pending_tags as u64, "tag")));
    }
    let behind = match (b.is_behind, parts.is_empty()) {
        (Some(true), false) => format!("yes: {}", parts.join(", ")),
        (Some(false), _) => "no".to_string(),
        _ => "not measured yet".to_string(),
    };
    let error = match &s.last_error {
        Some(e) => format!(
            "{} ago, {}: {}",
            age(s.now.saturating_sub(e.finished.unwrap_or(e.started))),
            e.command,
            one_line(
                e.error
                    .as_deref()
                    .or(e.facts.problem.as_deref())
                    .unwrap_or("")
            )
        ),
        None => "-".to_string(),
    };
    [format!("{} ({})", s.target, s.kind), sync, behind, error]
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One line per target a person can scan: the last successful sync and its
/// age, whether the target is behind, the last error.
pub fn table(statuses: &[TargetStatus]) -> String {
    let header = [
        "TARGET".to_string(),
        "LAST SUCCESSFUL SYNC".to_string(),
        "BEHIND".to_string(),
        "LAST ERROR".to_string(),
    ];
    let rows: Vec<[String; 4]> = std::iter::once(header)
        .chain(statuses.iter().map(cells))
        .collect();
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
    let widths = [width(0), width(1), width(2)];
    let mut out = String::new();
    for r in &rows {
        let _ = writeln!(
            out,
            "{:<w0$}  {:<w1$}  {:<w2$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
    }
    out
}

/// The details: a block per target.
pub fn text(statuses: &[TargetStatus]) -> String {
    let mut out = String::new();
    for s in statuses {
        let _ = writeln!(out, "{} ({})", s.target, s.kind);
        runs_text(&mut out, s);
        tags_text(&mut out, s);
        aging_text(&mut out, s);
        if let Some(f) = &s.free_space {
            let _ = writeln!(
                out,
                "  free space: {} (read {})",
                human_bytes(f.bytes),
                crate::clock::rfc3339(f.seen)
            );
        }
        if let Some(e) = &s.last_error {
            let _ = writeln!(
                out,
                "  last error: {} {}: {}",
                when(e.finished),
                e.command,
                e.error
                    .as_deref()
                    .or(e.facts.problem.as_deref())
                    .unwrap_or("")
            );
        }
    }
    out
}

/// The last run of each command, and how far behind the last sync found
/// the target.
fn runs_text(out: &mut String, s: &TargetStatus) {
    if s.runs.is_empty() {
        let _ = writeln!(out, "  no runs yet");
    }
    for r in &s.runs {
        let _ = writeln!(
            out,
            "  {:<8} {} {:<8} {}",
            r.command,
            when(r.finished.or(Some(r.started))),
            r.outcome.as_deref().unwrap_or("running"),
            r.error.as_deref().or(r.summary.as_deref()).unwrap_or("")
        );
    }
    match (s.behind.packages, s.behind.measured) {
        (Some(0), Some(t)) => {
            let _ = writeln!(
                out,
                "  in step with the current set at the last {} ({})",
                s.sync_command,
                crate::clock::rfc3339(t)
            );
        }
        (Some(n), Some(t)) => {
            let _ = writeln!(
                out,
                "  behind at the last {} ({}): {} of the current set missing or differing",
                s.sync_command,
                crate::clock::rfc3339(t),
                plural(n, "package-version")
            );
        }
        _ => {}
    }
}

/// Pending and rejected tags.
fn tags_text(out: &mut String, s: &TargetStatus) {
    let _ = writeln!(
        out,
        "  tags: {} pending, {} rejected",
        s.pending_tags.len(),
        s.rejected_tags.len()
    );
    if let Some(e) = &s.tags_error {
        let _ = writeln!(out, "  tags: error: {e}");
    }
    if let Some(t) = &s.behind.oldest_pending_tag {
        let _ = writeln!(
            out,
            "    oldest pending {} since {} ({})",
            t.tag,
            crate::clock::rfc3339(t.since),
            age(t.age_seconds)
        );
    }
    for r in &s.rejected_tags {
        let _ = writeln!(out, "    rejected {}: {}", r.tag, r.reason);
    }
}

/// Package-versions marked for deletion, and deletions aging refused.
fn aging_text(out: &mut String, s: &TargetStatus) {
    let next = s
        .next_deletion
        .map(|d| format!(", next deletion due {}", crate::clock::rfc3339(d)))
        .unwrap_or_default();
    let _ = writeln!(out, "  marked for deletion: {}{next}", s.marked.len());
    for m in &s.marked {
        let due = m
            .due
            .map(|d| format!(", deletion due {}", crate::clock::rfc3339(d)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "    {}/{} since {}{due}",
            m.package,
            m.version,
            crate::clock::rfc3339(m.since)
        );
    }
    if let Some(r) = &s.aging_refused {
        let _ = writeln!(
            out,
            "  aging refused {} deletions at {} ({}): more than max_delete; check the releases, or run with --force",
            r.packages,
            crate::clock::rfc3339(r.at),
            r.command
        );
    }
}

/// Written beside and renamed over, so the collector never reads half a file.
fn write_metrics(path: &Path, statuses: &[TargetStatus]) -> Result<()> {
    crate::atomic::write(path, metrics::metrics(statuses).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::age;

    #[test]
    fn ages_for_people() {
        for (secs, text) in [
            (0, "0s"),
            (45, "45s"),
            (60, "1m"),
            (723, "12m3s"),
            (7800, "2h10m"),
            (7205, "2h"),
            (86400 + 3600 * 4 + 5, "1d4h"),
            (86400 + 300, "1d"),
            (-5, "0s"),
        ] {
            assert_eq!(age(secs), text, "{secs}");
        }
    }
}
