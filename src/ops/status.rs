//! `blat status`: per target, the last run of each command and its outcome,
//! pending and rejected tags, packages marked for deletion, the last error;
//! as text, `--json`, or Prometheus text (`--metrics FILE`) for
//! node_exporter's textfile collector. Reads only: takes no lock.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use super::{tag, Context, Selection};
use crate::config::{AgingMethod, TargetConfig, TargetKind};
use crate::error::Outcome;
use crate::state::{Run, State};

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
    pub runs: Vec<Run>,
    pub pending_tags: Vec<String>,
    pub rejected_tags: Vec<tag::Rejected>,
    pub marked: Vec<Marked>,
    pub last_error: Option<Run>,
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
    let selection = if options.selection.targets.is_empty() {
        Selection {
            targets: Vec::new(),
            all: true,
        }
    } else {
        options.selection.clone()
    };
    let targets = ctx.select(&selection, |_| true, "")?;
    // Reads only: a user who may only read state_dir can run it, and a
    // missing state file (no run yet) creates nothing.
    let state = State::open_read_only(&ctx.config.state_dir)?;
    let statuses = targets
        .iter()
        .map(|t| target_status(&state, &ctx.config.tag_dir, t))
        .collect::<Result<Vec<_>>>()?;
    if let Some(path) = &options.metrics {
        write_metrics(path, &statuses)?;
    }
    if ctx.reporter.json() {
        println!("{}", serde_json::to_string_pretty(&statuses)?);
    } else {
        if !state.recorded() {
            println!(
                "no runs recorded: no state file {}",
                ctx.config.state_dir.join("blat.db").display()
            );
        }
        print!("{}", text(&statuses));
    }
    Ok(Outcome::Done)
}

fn target_status(state: &State, tag_dir: &Path, target: &TargetConfig) -> Result<TargetStatus> {
    let dir = tag_dir.join(&target.name);
    let after = crate::config::units::secs_i64(target.aging.after);
    let master = target.aging.method == AgingMethod::Master;
    Ok(TargetStatus {
        target: target.name.clone(),
        kind: match target.kind {
            TargetKind::Archive(_) => "archive",
            TargetKind::S3(_) => "s3",
        },
        runs: state.last_runs(&target.name)?,
        pending_tags: tag::pending(&dir)?
            .iter()
            .map(|n| n.to_string_lossy().into_owned())
            .collect(),
        rejected_tags: tag::rejected(&dir)?,
        marked: state
            .marks(&target.name)?
            .into_iter()
            .map(|(package, version, since)| Marked {
                package,
                version,
                since,
                due: master.then_some(since.saturating_add(after)),
            })
            .collect(),
        last_error: state.last_error(&target.name)?,
    })
}

fn when(t: Option<i64>) -> String {
    t.map_or_else(|| "-".to_string(), crate::clock::rfc3339)
}

/// The human form: a block per target.
pub fn text(statuses: &[TargetStatus]) -> String {
    let mut out = String::new();
    for s in statuses {
        let _ = writeln!(out, "{} ({})", s.target, s.kind);
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
        let _ = writeln!(
            out,
            "  tags: {} pending, {} rejected",
            s.pending_tags.len(),
            s.rejected_tags.len()
        );
        for r in &s.rejected_tags {
            let _ = writeln!(out, "    rejected {}: {}", r.tag, r.reason);
        }
        let _ = writeln!(out, "  marked for deletion: {}", s.marked.len());
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
        if let Some(e) = &s.last_error {
            let _ = writeln!(
                out,
                "  last error: {} {}: {}",
                when(e.finished),
                e.command,
                e.error.as_deref().unwrap_or("")
            );
        }
    }
    out
}

/// Prometheus text exposition format, one gauge family per fact.
pub fn metrics(statuses: &[TargetStatus]) -> String {
    let mut out = String::new();
    let family = |out: &mut String, name: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    };
    family(
        &mut out,
        "blat_last_run_timestamp_seconds",
        "When the last run of a command on a target finished.",
    );
    for s in statuses {
        for r in &s.runs {
            if let Some(f) = r.finished {
                let _ = writeln!(
                    out,
                    "blat_last_run_timestamp_seconds{{target=\"{}\",command=\"{}\"}} {f}",
                    s.target, r.command
                );
            }
        }
    }
    family(
        &mut out,
        "blat_last_run_success",
        "1 when the last run of a command on a target was done, else 0.",
    );
    for s in statuses {
        for r in &s.runs {
            let ok = u8::from(r.outcome.as_deref() == Some("done"));
            let _ = writeln!(
                out,
                "blat_last_run_success{{target=\"{}\",command=\"{}\"}} {ok}",
                s.target, r.command
            );
        }
    }
    for (name, help, value) in [
        (
            "blat_pending_tags",
            "Tags waiting in the target's tag directory.",
            &(|s: &TargetStatus| s.pending_tags.len()) as &dyn Fn(&TargetStatus) -> usize,
        ),
        (
            "blat_rejected_tags",
            "Tags moved to .rejected/.",
            &|s: &TargetStatus| s.rejected_tags.len(),
        ),
        (
            "blat_marked_packages",
            "Packages marked for deletion by aging.",
            &|s: &TargetStatus| s.marked.len(),
        ),
    ] {
        family(&mut out, name, help);
        for s in statuses {
            let _ = writeln!(out, "{name}{{target=\"{}\"}} {}", s.target, value(s));
        }
    }
    out
}

/// Written beside and renamed over, so the collector never reads half a file.
fn write_metrics(path: &Path, statuses: &[TargetStatus]) -> Result<()> {
    crate::atomic::write(path, metrics(statuses).as_bytes())
}
