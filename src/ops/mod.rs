//! One pass of each job. Each `ops::<command>::run` takes validated options
//! and a [`Context`]; target selection is here, and the per-target frame
//! (lock, state record, error capture, summary, JSON, exit code), serial or
//! concurrent, is [`frame`]'s [`for_each_target`].

pub mod age;
pub mod check;
pub mod fast;
pub mod frame;
pub mod index;
pub mod plist;
#[cfg(feature = "s3")]
pub mod s3sync;
pub mod ssh;
pub mod status;
pub mod sync;
pub mod tag;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use serde::Serialize;

pub use frame::{
    for_archive, for_each_target, for_each_target_with, CommandReport, Frame, PassResult, Passes,
    Stopped,
};

use crate::archive::{PackageVersion, SourceArchive};
use crate::config::{Config, ReleaseName, TargetConfig, TargetKind};
use crate::current::{self, CurrentSet};
use crate::error::{Outcome, UsageError};
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

/// Everything a pass needs besides its own options. It is shared by the
/// passes of targets worked on at once (`Sync`): each target's state is
/// its own ([`Context::state_of`]), and the release source is taken by one
/// query at a time.
pub struct Context {
    pub config: Config,
    pub reporter: Reporter,
    pub dry_run: bool,
    source: Mutex<Option<Box<dyn ReleaseSource>>>,
    /// The current sets loaded so far, by what they are made of.
    sets: Mutex<BTreeMap<SetKey, Arc<SetSlot>>>,
}

/// One current set: empty until loaded (and while a load failed).
type SetSlot = Mutex<Option<Arc<CurrentSet>>>;

/// What a target's current set is made of ([`current::load`]): targets
/// that agree on it share one set per run.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct SetKey {
    s3: bool,
    releases: Vec<ReleaseName>,
    projects: Vec<String>,
    packages: Vec<PackageVersion>,
}

impl Context {
    pub fn new(config: Config, reporter: Reporter, dry_run: bool) -> Context {
        Context {
            config,
            reporter,
            dry_run,
            source: Mutex::new(None),
            sets: Mutex::new(BTreeMap::new()),
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

    /// The state file of `target`: read-only under `--dry-run` (nothing is
    /// created, nothing written; a missing file is an empty state).
    pub fn state_of(&self, target: &str) -> Result<State> {
        State::open_for(&self.config.state_dir, target, self.dry_run)
    }

    /// Splits the state file of an earlier blat into one file per target,
    /// once (see [`crate::state::split_legacy`]); before any pass that may
    /// write a target's state.
    pub fn split_state(&self) -> Result<()> {
        let Some(split) = crate::state::split_legacy(&self.config.state_dir)? else {
            return Ok(());
        };
        self.reporter.info(
            "",
            &format!(
                "state split into one file per target in {} ({} targets); the old file is kept as {}",
                self.config.state_dir.join(crate::state::TARGETS_DIR).display(),
                split.targets.len(),
                split.kept_as.display()
            ),
        );
        for why in &split.skipped {
            self.reporter.warn(
                "",
                &format!("state rows left in {}: {why}", split.kept_as.display()),
            );
        }
        Ok(())
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
    /// `f` gets a handle that takes the source for each query alone, so
    /// passes running at once wait for each other's queries only, never
    /// for each other's archive lookups.
    pub fn with_source<T>(&self, f: impl FnOnce(&mut dyn ReleaseSource) -> Result<T>) -> Result<T> {
        {
            let mut slot = self.source.lock().unwrap_or_else(|e| e.into_inner());
            if slot.is_none() {
                *slot = Some(release::open(&self.config)?);
            }
        }
        f(&mut SharedSource(&self.source))
    }

    /// The current set of `target`: loaded from the release source and the
    /// source archive once per run for all targets with the same releases,
    /// projects and pins (a hundred targets of one release ask once, not a
    /// hundred times; the run works from one look at both). A failed load
    /// is not kept: the next target asks again.
    pub fn current_set(&self, target: &TargetConfig) -> Result<Arc<CurrentSet>> {
        let key = SetKey {
            s3: matches!(target.kind, TargetKind::S3(_)),
            releases: target.releases.clone(),
            projects: target.projects.clone(),
            packages: target.packages.clone(),
        };
        let slot = {
            let mut sets = self.sets.lock().unwrap_or_else(|e| e.into_inner());
            sets.entry(key).or_default().clone()
        };
        // Held while loading: a target with the same set waits for this
        // load instead of doing it again.
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(set) = slot.as_ref() {
            return Ok(set.clone());
        }
        let source = SourceArchive::new(&self.config.archive);
        let set = Arc::new(self.with_source(|s| current::load(target, s, &source))?);
        *slot = Some(set.clone());
        Ok(set)
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

/// The release source of a [`Context`], taken for one query at a time.
struct SharedSource<'a>(&'a Mutex<Option<Box<dyn ReleaseSource>>>);

impl SharedSource<'_> {
    fn with<T>(&self, f: impl FnOnce(&mut dyn ReleaseSource) -> T) -> T {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(slot
            .as_mut()
            .expect("opened by Context::with_source")
            .as_mut())
    }
}

impl ReleaseSource for SharedSource<'_> {
    fn describe(&self) -> String {
        self.with(|s| s.describe())
    }

    fn release_rows(&mut self, release: &ReleaseName) -> Result<Vec<(String, String)>> {
        self.with(|s| s.release_rows(release))
    }

    fn open_releases(&mut self, project: &str) -> Result<Vec<ReleaseName>> {
        self.with(|s| s.open_releases(project))
    }

    fn s3_releases(&mut self) -> Result<Vec<ReleaseName>> {
        self.with(|s| s.s3_releases())
    }

    fn relayed(&mut self) -> Result<Option<CurrentSet>> {
        self.with(|s| s.relayed())
    }
}

/// The context crosses threads: passes on several targets share it.
const _: () = {
    const fn shared<T: Send + Sync>() {}
    shared::<Context>();
};
