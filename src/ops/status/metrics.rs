//! `blat status --metrics`: the Prometheus text exposition format (every
//! family a gauge) of what status found, for node_exporter's textfile
//! collector. The families are documented in `blat-status(1)`, which is
//! generated from this writer.

use std::fmt::Write as _;

use super::TargetStatus;
use crate::error::Outcome;
use crate::state::Run;

/// The outcomes `blat_last_run_outcome` has a series for.
const OUTCOMES: [Outcome; 5] = [
    Outcome::Done,
    Outcome::Partial,
    Outcome::Failed,
    Outcome::Locked,
    Outcome::Usage,
];

/// A label value in the exposition format: `\`, `"` and newlines escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The labels of one command's runs on one target.
fn target_command(s: &TargetStatus, command: &str) -> String {
    format!(
        "target=\"{}\",command=\"{}\"",
        label(&s.target),
        label(command)
    )
}

/// One gauge family of the exposition format: its HELP and TYPE lines,
/// then its samples (`labels` without braces, value).
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn start(&mut self, name: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} gauge");
    }

    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        let _ = writeln!(self.out, "{name}{{{labels}}} {value}");
    }

    /// A family with one sample per target (label `target`), from `value`
    /// (`None`: no sample for that target).
    fn per_target<V: std::fmt::Display>(
        &mut self,
        name: &str,
        help: &str,
        statuses: &[TargetStatus],
        value: impl Fn(&TargetStatus) -> Option<V>,
    ) {
        self.start(name, help);
        for s in statuses {
            if let Some(v) = value(s) {
                self.sample(name, &format!("target=\"{}\"", label(&s.target)), v);
            }
        }
    }

    /// A family with one sample per target and command: its last finished
    /// run (labels `target`, `command`), from `value`.
    fn per_run<V: std::fmt::Display>(
        &mut self,
        name: &str,
        help: &str,
        statuses: &[TargetStatus],
        value: impl Fn(&Run) -> V,
    ) {
        self.start(name, help);
        for s in statuses {
            for r in &s.finished_runs {
                self.sample(name, &target_command(s, &r.command), value(r));
            }
        }
    }
}

/// Prometheus text exposition format (every family a gauge): per target
/// and command the last success, the last run (time, outcome, duration,
/// packages and bytes sent and failed); per target how far behind it is,
/// its tags, marks and free space; `blat_info`.
pub fn metrics(statuses: &[TargetStatus]) -> String {
    let mut out = String::new();
    let mut f = Family { out: &mut out };
    f.start(
        "blat_info",
        "The blat that wrote these metrics (always 1; its version as a label).",
    );
    f.sample(
        "blat_info",
        &format!("version=\"{}\"", label(env!("CARGO_PKG_VERSION"))),
        1,
    );
    f.per_target(
        "blat_sync_interval_seconds",
        "The target's sync_interval (sync --due syncs it when its last success is older).",
        statuses,
        |s| Some(s.sync_interval_seconds),
    );
    last_runs(&mut f, statuses);
    what_runs_did(&mut f, statuses);
    targets(&mut f, statuses);
    out
}

/// When each command last succeeded and last ran, and how that run ended.
fn last_runs(f: &mut Family, statuses: &[TargetStatus]) {
    let name = "blat_last_success_timestamp_seconds";
    f.start(
        name,
        "When a command last finished with outcome done on a target (0: never; always present for sync and s3sync).",
    );
    for s in statuses {
        if s.last_sync.is_none() {
            f.sample(name, &target_command(s, s.sync_command), 0);
        }
        for (command, at) in &s.successes {
            f.sample(name, &target_command(s, command), at);
        }
    }
    f.per_run(
        "blat_last_run_timestamp_seconds",
        "When the last finished run of a command on a target finished.",
        statuses,
        |r| r.finished.unwrap_or(r.started),
    );
    f.per_run(
        "blat_last_run_success",
        "1 when the last finished run of a command on a target was done, else 0.",
        statuses,
        |r| u8::from(r.outcome.as_deref() == Some("done")),
    );
    let name = "blat_last_run_outcome";
    f.start(
        name,
        "The outcome of the last finished run of a command on a target: 1 for its outcome, 0 for the others (done, partial, failed, locked, usage).",
    );
    for s in statuses {
        for r in &s.finished_runs {
            for o in OUTCOMES {
                let labels = format!("{},outcome=\"{}\"", target_command(s, &r.command), o.word());
                f.sample(
                    name,
                    &labels,
                    u8::from(r.outcome.as_deref() == Some(o.word())),
                );
            }
        }
    }
}

/// How long each command's last run took and what it moved.
fn what_runs_did(f: &mut Family, statuses: &[TargetStatus]) {
    f.per_run(
        "blat_last_run_duration_seconds",
        "How long the last finished run of a command on a target took.",
        statuses,
        |r| {
            let seconds = r.facts.seconds.unwrap_or_else(|| {
                r.finished
                    .map_or(0.0, |f| f.saturating_sub(r.started) as f64)
            });
            format!("{seconds:.3}")
        },
    );
    f.per_run(
        "blat_last_run_sent_packages",
        "Package-versions the last finished run of a command sent to the target (uploaded, for s3sync).",
        statuses,
        |r| r.facts.sent.unwrap_or(0),
    );
    f.per_run(
        "blat_last_run_sent_bytes",
        "Bytes of the package-versions the last finished run of a command sent.",
        statuses,
        |r| r.facts.bytes_sent.unwrap_or(0),
    );
    f.per_run(
        "blat_last_run_failed_packages",
        "Package-versions (and other items: aliases, the PackageList, deletions) that failed in the last finished run of a command.",
        statuses,
        |r| r.facts.failed.unwrap_or(0),
    );
}

/// Per target: how far behind, its tags, its marks, its free space.
fn targets(f: &mut Family, statuses: &[TargetStatus]) {
    f.per_target(
        "blat_behind_packages",
        "Package-versions of the target's current set missing on it or differing after the last sync that measured it.",
        statuses,
        |s| s.behind.packages,
    );
    f.per_target(
        "blat_pending_tags",
        "Tags waiting in the target's tag directory.",
        statuses,
        |s| Some(s.pending_tags.len()),
    );
    f.per_target(
        "blat_oldest_pending_tag_age_seconds",
        "How long the oldest tag in the target's tag directory has been waiting (0: none).",
        statuses,
        |s| {
            Some(
                s.behind
                    .oldest_pending_tag
                    .as_ref()
                    .map_or(0, |t| t.age_seconds),
            )
        },
    );
    f.per_target(
        "blat_rejected_tags",
        "Tags moved to .rejected/.",
        statuses,
        |s| Some(s.rejected_tags.len()),
    );
    f.per_target(
        "blat_marked_packages",
        "Package-versions marked for deletion by aging.",
        statuses,
        |s| Some(s.marked.len()),
    );
    f.per_target(
        "blat_next_deletion_timestamp_seconds",
        "When the first marked package-version of the target may be deleted (aging method master).",
        statuses,
        |s| s.next_deletion,
    );
    f.per_target(
        "blat_aging_refused_packages",
        "Deletions the last aging pass on the target refused: more than max_delete were due (0: none).",
        statuses,
        |s| Some(s.aging_refused.as_ref().map_or(0, |r| r.packages)),
    );
    f.per_target(
        "blat_target_free_bytes",
        "Free space on the target's archive file system as last read by a sync.",
        statuses,
        |s| s.free_space.as_ref().map(|free| free.bytes),
    );
}
