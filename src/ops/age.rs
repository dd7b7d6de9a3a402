//! `blat age`: the aging pass alone, on the master for each target (from
//! its `[aging]` section), or with `--local` on a target itself from the
//! PackageList the master sent (method `target`). The policy and its guards
//! are in [`crate::aging`]; this file only opens targets and reports.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;

use super::{Context, Passes, Selection};
use crate::aging::{
    Ager, AgingReport, DryRunMarks, FileMarks, MasterPass, Rules, MARKS_FILE, PACKAGELIST,
};
use crate::config::{AgingMethod, TargetConfig};
use crate::error::{Outcome, UsageError};
use crate::plan;
use crate::report::Reporter;
use crate::state::State;
use crate::target::{dryrun::DryRun, local::LocalTransport, receiver::ReceiverTarget, Target};

/// `blat age` on the master.
#[derive(Clone, Debug, Default)]
pub struct AgeOptions {
    pub selection: Selection,
    /// Allow more deletions than `max_delete` in one pass.
    pub force: bool,
    /// Targets aged at once; `None`: the configuration's `jobs`.
    pub jobs: Option<usize>,
}

/// `blat age --local` on a target: no configuration, only these.
#[derive(Clone, Debug)]
pub struct LocalAgeOptions {
    pub archive: PathBuf,
    /// The source archive of a master configuration found on this machine,
    /// if any: `age --local` never runs on it, nor inside or around it.
    pub master_archive: Option<PathBuf>,
    pub after: Duration,
    pub grace: Duration,
    pub max_delete: usize,
    pub force: bool,
    pub dry_run: bool,
}

/// `blat age` on the master, for each selected archive target.
pub fn run(ctx: &Context, options: &AgeOptions) -> Result<Outcome> {
    let targets = ctx.select(&options.selection, |t| t.archive().is_some(), "archive")?;
    let passes = Passes::new("age").jobs(options.jobs.unwrap_or(ctx.config.jobs));
    super::for_each_target_with(ctx, passes, &targets, |ctx, target, state| {
        Ok(Some(age_target(ctx, state, target, options.force)?))
    })
}

fn age_target(
    ctx: &Context,
    state: &State,
    target: &TargetConfig,
    force: bool,
) -> Result<AgingReport> {
    let method = target.aging.method;
    match method {
        AgingMethod::None => return Ok(AgingReport::skipped(method, "aging method is none")),
        AgingMethod::Target => {
            return Ok(AgingReport::skipped(
                method,
                "aging method is target: the target ages itself (blat age --local)",
            ))
        }
        AgingMethod::Immediate | AgingMethod::Master => {}
    }
    // The current set first: a release source error stops the pass here,
    // before anything on the target is touched.
    let set = ctx.current_set(target)?;
    let dest = ctx.open_target(target)?;
    let listing = dest.list()?;
    for bad in &listing.rejected {
        ctx.reporter.warn(
            &target.name,
            &format!("target listing line ignored (invalid name): {bad}"),
        );
    }
    let now = crate::clock::now();
    let excess = plan::excess(&set, &listing, now, target.writable_grace);
    let pass = MasterPass {
        ctx,
        target,
        dest: dest.as_ref(),
        state,
        force,
    };
    pass.apply(&set, &listing, &excess, now)
}

/// `blat age --local`: on the target itself, from cron, with no
/// configuration. The current set is the PackageList the master sent; the
/// marks live in `.dpkg_archive/blat-age-marks.txt`; deletions go through
/// the same receiver program the master uses.
pub fn run_local(reporter: &Reporter, options: &LocalAgeOptions) -> Result<Outcome> {
    let archive = std::path::absolute(&options.archive).unwrap_or_else(|_| options.archive.clone());
    if !archive.is_dir() {
        return Err(UsageError(format!(
            "cannot age {}: no such directory",
            archive.display()
        ))
        .into());
    }
    if let Some(master) = &options.master_archive {
        if crate::config::paths_overlap(&archive, master) {
            return Err(UsageError(format!(
                "refusing to age {}: it overlaps the source archive {} of this machine's blat configuration (age --local is for a target's archive)",
                archive.display(),
                master.display()
            ))
            .into());
        }
    }
    let place = archive.display().to_string();
    let dpkg = archive.join(".dpkg_archive");
    // No PackageList, nothing to do: not even a lock file is created (this
    // may not be a target at all).
    let lock = || {
        if std::fs::symlink_metadata(&dpkg).is_ok_and(|m| m.file_type().is_symlink()) {
            anyhow::bail!(
                "{} is a symlink: refused (blat never writes through one)",
                dpkg.display()
            );
        }
        let has_list = std::fs::symlink_metadata(dpkg.join(PACKAGELIST)).is_ok();
        if options.dry_run || !has_list {
            Ok(None)
        } else {
            crate::lock::archive_lock(&archive, "age", &place).map(Some)
        }
    };
    super::for_archive(reporter, options.dry_run, "age", &place, lock, || {
        Ok(Some(age_local(reporter, options, &archive, &place)?))
    })
}

fn age_local(
    reporter: &Reporter,
    options: &LocalAgeOptions,
    archive: &Path,
    place: &str,
) -> Result<AgingReport> {
    let dpkg = archive.join(".dpkg_archive");
    let method = AgingMethod::Target;
    let Some(set) = crate::packagelist::read(&dpkg.join(PACKAGELIST))? else {
        reporter.warn(
            place,
            &format!("no .dpkg_archive/{PACKAGELIST} (has the master synced?): nothing is aged"),
        );
        return Ok(AgingReport::skipped(method, "no packagelist"));
    };
    let real = ReceiverTarget::new(place, LocalTransport::new(archive.to_path_buf()));
    let dest: Box<dyn Target + '_> = if options.dry_run {
        Box::new(DryRun::new(Box::new(real), place, reporter))
    } else {
        Box::new(real)
    };
    let listing = dest.list()?;
    for bad in &listing.rejected {
        reporter.warn(
            place,
            &format!("archive entry ignored (invalid name): {bad}"),
        );
    }
    let now = crate::clock::now();
    let excess = plan::excess(&set, &listing, now, options.grace);
    let marks = FileMarks {
        path: dpkg.join(MARKS_FILE),
    };
    let dry = DryRunMarks(&marks);
    let ager = Ager {
        reporter,
        name: place,
        dry_run: options.dry_run,
        dest: dest.as_ref(),
        marks: if options.dry_run { &dry } else { &marks },
        rules: Rules {
            method,
            after: options.after,
            max_delete: options.max_delete,
            force: options.force,
        },
    };
    ager.apply(&set, &listing, &excess, now)
}
