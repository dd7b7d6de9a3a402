//! One pass of each job. Each `ops::<command>::run` takes validated options
//! and a [`Context`]; the per-target frame (selection, lock, state record,
//! error capture, summary, exit code) is shared here in [`for_each_target`].

pub mod age;
pub mod check;
pub mod fast;
pub mod index;
pub mod plist;
#[cfg(feature = "s3")]
pub mod s3sync;
pub mod ssh;
pub mod status;
pub mod sync;
pub mod tag;

use std::cell::RefCell;

use anyhow::Result;
use serde::Serialize;

use crate::config::{Config, TargetConfig};
use crate::error::{outcome_of, Outcome, UsageError};
use crate::lock::{Probe, TargetLock};
use crate::release::{self, ReleaseSource};
use crate::report::Reporter;
use crate::state::{RunFacts, State};
use crate::target::{dryrun::DryRun, Target};

/// One item of a pass that failed (a package-version, an alias, the
/// PackageList, an aging deletion) and why; the pass goes on without it.
#[derive(Debug, Serialize)]
pub struct Failure {
    pub item: String,
    pub error: String,
}

/// Which targets a command works on.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    pub targets: Vec<String>,
    pub all: bool,
}

impl Selection {
    /// This selection, or every target when it names none: the default of
    /// `status`, `check` and `tag`.
    pub fn or_every_target(&self) -> Selection {
        Selection {
            targets: self.targets.clone(),
            all: self.all || self.targets.is_empty(),
        }
    }
}

/// Everything a pass needs besides its own options.
pub struct Context {
    pub config: Config,
    pub reporter: Reporter,
    pub dry_run: bool,
    source: RefCell<Option<Box<dyn ReleaseSource>>>,
}

impl Context {
    pub fn new(config: Config, reporter: Reporter, dry_run: bool) -> Context {
        Context {
            config,
            reporter,
            dry_run,
            source: RefCell::new(None),
        }
    }

    /// Opens a target for a pass; under `--dry-run` its changes only print.
    pub fn open_target(&self, target: &TargetConfig) -> Result<Box<dyn Target + '_>> {
        let inner = crate::target::open(target)?;
        Ok(if self.dry_run {
            Box::new(DryRun::new(inner, &target.name, &self.reporter))
        } else {
            inner
        })
    }

    /// The state file: read-only under `--dry-run` (nothing is created,
    /// nothing written; a missing file is an empty state).
    pub fn state(&self) -> Result<State> {
        State::open_for(&self.config.state_dir, self.dry_run)
    }

    /// The target lock for a pass. Under `--dry-run` it creates nothing: an
    /// existing lock file is taken (a held lock still refuses the dry run),
    /// a missing one means no run holds it, an unreadable one is a warning.
    pub fn lock(&self, target: &str) -> Result<Option<TargetLock>> {
        take_lock(
            &self.config,
            &self.reporter,
            self.dry_run,
            target,
            LockKind::Target,
        )
    }

    /// The release source, opened on first use and shared by all targets.
    pub fn with_source<T>(&self, f: impl FnOnce(&mut dyn ReleaseSource) -> Result<T>) -> Result<T> {
        let mut slot = self.source.borrow_mut();
        if slot.is_none() {
            *slot = Some(release::open(&self.config)?);
        }
        f(slot.as_mut().expect("opened above").as_mut())
    }

    /// The targets a selection names, checked against the configuration.
    pub fn select(
        &self,
        selection: &Selection,
        accept: impl Fn(&TargetConfig) -> bool,
        what: &str,
    ) -> Result<Vec<TargetConfig>> {
        if selection.all && !selection.targets.is_empty() {
            return Err(UsageError("use either --target or --all, not both".into()).into());
        }
        if selection.all {
            return Ok(self
                .config
                .targets
                .iter()
                .filter(|t| accept(t))
                .cloned()
                .collect());
        }
        if selection.targets.is_empty() {
            let names: Vec<&str> = self
                .config
                .targets
                .iter()
                .filter(|t| accept(t))
                .map(|t| t.name.as_str())
                .collect();
            return Err(UsageError(format!(
                "name the {what} targets with --target NAME or use --all (configured: {})",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ))
            .into());
        }
        let mut out = Vec::new();
        for name in &selection.targets {
            let t = self.config.target(name).ok_or_else(|| {
                UsageError(format!(
                    "unknown target '{name}': no {}/targets/{name}.conf",
                    self.config.dir.display()
                ))
            })?;
            if !accept(t) {
                return Err(UsageError(format!("target '{name}' is not an {what} target")).into());
            }
            out.push(t.clone());
        }
        Ok(out)
    }
}

/// Which lock of a target.
#[derive(Clone, Copy, Debug)]
pub enum LockKind {
    /// `<target>.lock`: every pass on the target.
    Target,
    /// `<target>.watch`: one tag watcher (`blat fast`).
    Watch,
}

/// Takes a lock of `target`; see [`Context::lock`] for `--dry-run`.
pub fn take_lock(
    config: &Config,
    reporter: &Reporter,
    dry_run: bool,
    target: &str,
    kind: LockKind,
) -> Result<Option<TargetLock>> {
    let dir = &config.state_dir;
    let probe = match (dry_run, kind) {
        (false, LockKind::Target) => return TargetLock::acquire(dir, target).map(Some),
        (false, LockKind::Watch) => return TargetLock::acquire_watch(dir, target).map(Some),
        (true, LockKind::Target) => TargetLock::probe(dir, target)?,
        (true, LockKind::Watch) => TargetLock::probe_watch(dir, target)?,
    };
    Ok(match probe {
        Probe::Held(lock) => Some(lock),
        Probe::Free => None,
        Probe::Unknown(why) => {
            reporter.warn(
                target,
                &format!("{why}; going on without the lock (a dry run changes nothing)"),
            );
            None
        }
    })
}

/// What one target's pass reports.
pub trait TargetReport: Serialize {
    fn outcome(&self) -> Outcome;
    /// The one-line summary, without the target name.
    fn summary(&self) -> String;
    /// What the pass did, for the state file (`status`, its metrics).
    fn facts(&self) -> RunFacts {
        RunFacts::default()
    }
}

/// [`RunFacts::problem`] from a run's failures, (item, why) each: the first
/// one, and how many more.
pub fn first_problem(
    mut failures: impl ExactSizeIterator<Item = (String, String)>,
) -> Option<String> {
    let more = failures.len().saturating_sub(1);
    let (item, why) = failures.next()?;
    Some(if more == 0 {
        format!("{item}: {why}")
    } else {
        format!("{item}: {why} (and {more} more)")
    })
}

/// The frame of every per-target pass: lock, run, record, summarise.
#[derive(Serialize)]
pub struct Frame<R: Serialize> {
    pub target: String,
    pub outcome: Outcome,
    pub exit_code: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<R>,
}

/// The whole command's report (`--json`).
#[derive(Serialize)]
pub struct CommandReport<R: Serialize> {
    pub command: String,
    pub dry_run: bool,
    pub outcome: Outcome,
    pub exit_code: u8,
    pub targets: Vec<Frame<R>>,
}

/// Runs `pass` on each target in turn, under its lock; one failing target
/// never stops the others. Returns the command's outcome (the worst one).
pub fn for_each_target<R: TargetReport>(
    ctx: &Context,
    command: &str,
    targets: &[TargetConfig],
    mut pass: impl FnMut(&Context, &TargetConfig) -> Result<Option<R>>,
) -> Result<Outcome> {
    let state = ctx.state()?;
    let mut frames = Vec::new();
    for target in targets {
        let frame = run_one(ctx, &state, command, target, &mut pass);
        let line = match (&frame.report, &frame.error) {
            (_, Some(e)) => format!("{}: {command} {}: {e}", target.name, frame.outcome.word()),
            (Some(r), None) => format!(
                "{}: {command} {}: {}",
                target.name,
                frame.outcome.word(),
                r.summary()
            ),
            (None, None) => format!("{}: {command} skipped: not due", target.name),
        };
        if frame.error.is_some() {
            ctx.reporter.error("", &line);
        } else {
            ctx.reporter.summary(&line);
        }
        frames.push(frame);
    }
    let outcome = frames
        .iter()
        .map(|f| f.outcome)
        .max()
        .unwrap_or(Outcome::Done);
    if ctx.reporter.json() {
        let report = CommandReport {
            command: command.to_string(),
            dry_run: ctx.dry_run,
            outcome,
            exit_code: outcome.code(),
            targets: frames,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(outcome)
}

fn run_one<R: TargetReport>(
    ctx: &Context,
    state: &State,
    command: &str,
    target: &TargetConfig,
    pass: &mut impl FnMut(&Context, &TargetConfig) -> Result<Option<R>>,
) -> Frame<R> {
    let frame = |outcome: Outcome, error: Option<String>, report: Option<R>| Frame {
        target: target.name.clone(),
        outcome,
        exit_code: outcome.code(),
        error,
        report,
    };
    let _lock = match ctx.lock(&target.name) {
        Ok(lock) => lock,
        Err(e) => return frame(outcome_of(&e), Some(format!("{e:#}")), None),
    };
    let record = !ctx.dry_run;
    let run_id = if record {
        state
            .start_run(&target.name, command, crate::clock::now())
            .ok()
    } else {
        None
    };
    let started = std::time::Instant::now();
    let result = pass(ctx, target);
    let seconds = started.elapsed().as_secs_f64();
    let (outcome, error, report) = match result {
        Ok(Some(r)) => (r.outcome(), None, Some(r)),
        Ok(None) => (Outcome::Done, None, None),
        Err(e) => (outcome_of(&e), Some(format!("{e:#}")), None),
    };
    if let (Some(id), Ok(None)) = (run_id, &result_kind(&report, &error)) {
        let _ = state.discard_run(id);
    } else if let Some(id) = run_id {
        let summary = report.as_ref().map(|r| r.summary()).unwrap_or_default();
        let facts = RunFacts {
            seconds: Some(seconds),
            ..report.as_ref().map(|r| r.facts()).unwrap_or_default()
        };
        let now = crate::clock::now();
        if let Err(e) = state
            .finish_run(id, now, outcome, &summary, error.as_deref())
            .and_then(|()| state.record_facts(id, now, &facts))
        {
            ctx.reporter.warn(
                &target.name,
                &format!("cannot record the run in the state file: {e:#}"),
            );
        }
    }
    frame(outcome, error, report)
}

/// `Ok(None)` when the pass decided not to run (not due): no run is recorded.
fn result_kind<R>(report: &Option<R>, error: &Option<String>) -> Result<Option<()>, ()> {
    match (report, error) {
        (None, None) => Ok(None),
        _ => Ok(Some(())),
    }
}
