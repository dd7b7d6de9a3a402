//! `blat sync`: bring a target in line with its current set: send what is
//! missing or differs, create or repoint aliases once their version is there,
//! write the PackageList, then age as configured.

use std::collections::BTreeSet;
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use super::{Context, Failure, Passes, Selection, TargetReport};
use crate::archive::{Alias, PackageVersion, SourceArchive};
use crate::config::units::human_bytes;
use crate::config::{ArchiveTarget, TargetConfig};
use crate::error::Outcome;
use crate::plan::{self, Plan};
use crate::state::{RunFacts, State};
use crate::target::{ListHow, Listing, ListingSource, Target};

#[derive(Clone, Debug, Default)]
pub struct SyncOptions {
    pub selection: Selection,
    /// Only targets whose last successful sync is older than `sync_interval`.
    pub due: bool,
    /// Allow more deletions than `max_delete` in one pass.
    pub force: bool,
    /// A full check of every target: walk it, compare with its index,
    /// rebuild the index, send what is missing (else every `verify_every`).
    pub verify: bool,
    /// Targets synced at once; `None`: the configuration's `jobs`.
    pub jobs: Option<usize>,
}

#[derive(Debug, Default, Serialize)]
pub struct SyncReport {
    pub releases: Vec<String>,
    pub wanted: usize,
    /// Where the target's listing came from: `index`, or `scan: <why>`.
    pub listing: String,
    /// The listing was a full check (walked and compared with the index).
    pub full_check: bool,
    /// What the full check found the index wrong about (`missing P V`,
    /// `changed P V`, `unindexed P V`, `alias P A`); the sync repairs it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<String>,
    pub up_to_date: usize,
    pub sent: Vec<PackageVersion>,
    pub bytes_sent: u64,
    pub failed: Vec<Failure>,
    pub skipped: Vec<plan::Skipped>,
    pub linked: Vec<Alias>,
    /// Package-versions of the current set still missing on the target, or
    /// there with another descpkg mtime, after this sync: failed, refused
    /// (min_free), still writable, or not in the source archive.
    pub behind: usize,
    /// The target's free space as read at the start of the sync.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub free_bytes: Option<u64>,
    pub excess: usize,
    pub leftovers_removed: usize,
    /// What went wrong without failing the pass (leftovers that stayed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub packagelist: bool,
    /// The target's PackageList had the same content: not rewritten.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub packagelist_unchanged: bool,
    /// What aging did after the PackageList (methods `immediate`, `master`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aging: Option<crate::aging::AgingReport>,
    pub seconds: f64,
}

impl TargetReport for SyncReport {
    fn outcome(&self) -> Outcome {
        if self.failed.is_empty() {
            Outcome::Done
        } else if self.sent.is_empty() && self.linked.is_empty() {
            Outcome::Failed
        } else {
            Outcome::Partial
        }
    }

    fn summary(&self) -> String {
        let mut parts = vec![format!(
            "{} sent ({})",
            self.sent.len(),
            human_bytes(self.bytes_sent)
        )];
        if !self.failed.is_empty() {
            parts.push(format!("{} failed", self.failed.len()));
        }
        parts.push(format!("{} up to date", self.up_to_date));
        if !self.skipped.is_empty() {
            parts.push(format!("{} skipped", self.skipped.len()));
        }
        if !self.linked.is_empty() {
            parts.push(format!("{} aliases linked", self.linked.len()));
        }
        match &self.aging {
            Some(aging) => parts.push(aging.summary()),
            None if self.excess > 0 => parts.push(format!("{} excess left alone", self.excess)),
            None => {}
        }
        parts.push(if self.packagelist_unchanged {
            "packagelist unchanged".into()
        } else if self.packagelist {
            "packagelist written".into()
        } else {
            "packagelist not written".into()
        });
        if !self.warnings.is_empty() {
            parts.push("leftover temporaries not removed".into());
        }
        if self.full_check {
            parts.push(format!(
                "full check: {} difference{} from the index",
                self.drift.len(),
                if self.drift.len() == 1 { "" } else { "s" }
            ));
        }
        format!("{} in {:.1}s", parts.join(", "), self.seconds)
    }

    fn facts(&self) -> RunFacts {
        let n = |v: usize| Some(v as u64);
        RunFacts {
            seconds: Some(self.seconds),
            sent: n(self.sent.len()),
            bytes_sent: Some(self.bytes_sent),
            failed: n(self.failed.len()),
            behind: n(self.behind),
            aging_refused: self
                .aging
                .as_ref()
                .filter(|a| a.skipped.is_none())
                .map(|a| a.refused_count as u64),
            problem: super::first_problem(
                self.failed
                    .iter()
                    .map(|f| (f.item.clone(), f.error.clone())),
            ),
            free_bytes: self.free_bytes,
        }
    }
}

pub fn run(ctx: &Context, options: &SyncOptions) -> Result<Outcome> {
    let targets = ctx.select(&options.selection, |t| t.archive().is_some(), "archive")?;
    let passes = Passes::new("sync").jobs(options.jobs.unwrap_or(ctx.config.jobs));
    super::for_each_target_with(ctx, passes, &targets, |ctx, target, state| {
        if options.due && !is_due(state, target)? {
            return Ok(None);
        }
        let full = options.verify || full_check_due(state, target)?;
        Ok(Some(sync_target(ctx, state, target, options.force, full)?))
    })
}

/// A full check is due when `verify_every` syncs have trusted the target's
/// index since the last one (or none was ever recorded).
fn full_check_due(state: &State, target: &TargetConfig) -> Result<bool> {
    let every = target.archive().map_or(0, |a| a.verify_every);
    if every == 0 {
        return Ok(false);
    }
    Ok(match state.syncs_since_full_check(&target.name)? {
        None => true,
        Some(n) => n + 1 >= u64::from(every),
    })
}

fn is_due(state: &State, target: &TargetConfig) -> Result<bool> {
    Ok(match state.last_success(&target.name, "sync")? {
        None => true,
        Some(last) => {
            crate::clock::now().saturating_sub(last)
                >= crate::config::units::secs_i64(target.sync_interval)
        }
    })
}

fn sync_target(
    ctx: &Context,
    state: &State,
    target: &TargetConfig,
    force: bool,
    full: bool,
) -> Result<SyncReport> {
    let started = Instant::now();
    let archive_cfg = target.archive().expect("selected archive targets only");
    let source = SourceArchive::new(&ctx.config.archive);
    let dest = ctx.open_target(target)?;
    let (set, listing) = set_and_listing(ctx, target, dest.as_ref(), full)?;
    let mut report = SyncReport {
        releases: set.releases.iter().map(|r| r.to_string()).collect(),
        wanted: set.versions.len(),
        ..SyncReport::default()
    };
    let listing = note_listing(ctx, state, target, listing, full, &mut report);
    if !listing.leftovers.is_empty() {
        remove_leftovers(ctx, target, dest.as_ref(), &mut report);
    }
    for bad in &listing.rejected {
        ctx.reporter.warn(
            &target.name,
            &format!("target listing line ignored (invalid name): {bad}"),
        );
    }
    let now = crate::clock::now();
    // The free space, once per sync (for min_free, and for status), asked
    // while the plan is made.
    let (plan, free) = std::thread::scope(|scope| {
        let free = (!ctx.dry_run).then(|| {
            scope.spawn(|| {
                crate::transfer::read_free(&ctx.reporter, target, archive_cfg, dest.as_ref())
            })
        });
        let plan = plan::plan(&set, &listing, now, target.writable_grace);
        (
            plan,
            free.and_then(|f| f.join().expect("the free space thread panicked")),
        )
    });
    report.free_bytes = free;
    report.up_to_date = plan.up_to_date;
    report.excess = plan.excess.len();
    ctx.reporter
        .skipped(&target.name, &plan.skipped, ctx.dry_run);
    report.skipped = plan.skipped.clone();

    send_all(
        ctx,
        target,
        archive_cfg,
        &source,
        dest.as_ref(),
        &plan,
        &listing.versions,
        &mut report,
    );
    report.behind = behind(&plan, &listing, report.sent.len());
    // On the target now: listed, or sent by this sync.
    let sent: BTreeSet<PackageVersion> = report.sent.iter().cloned().collect();
    let present = |pv: &PackageVersion| listing.versions.contains_key(pv) || sent.contains(pv);
    link_aliases(ctx, target, dest.as_ref(), &plan, &present, &mut report);
    let same = listing.packagelist_body.as_deref();
    write_packagelist(ctx, target, dest.as_ref(), &set, now, same, &mut report);
    if let Some(aging) = crate::aging::after_sync(
        ctx,
        target,
        state,
        dest.as_ref(),
        &set,
        &listing,
        &plan.excess,
        now,
        force,
    ) {
        report.failed.extend(aging.failures());
        report.aging = Some(aging);
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The target's current set and listing. The set (Release Manager, source
/// archive) is loaded while the target is reached and lists itself from
/// its index, read-only: on a big target each takes about half of a
/// no-change sync, and a set that cannot be loaded must leave the target
/// as it was. A listing that did not come from the index (none yet, or
/// not valid), from an index a plain `list` would tidy (an older format),
/// or a full check is taken once the set is loaded, as one that may write
/// (it rebuilds or rewrites the index).
fn set_and_listing(
    ctx: &Context,
    target: &TargetConfig,
    dest: &dyn Target,
    full: bool,
) -> Result<(std::sync::Arc<crate::current::CurrentSet>, Listing)> {
    let (set, early) = std::thread::scope(|scope| {
        let set = scope.spawn(|| ctx.current_set(target));
        let early = (!full).then(|| {
            dest.list_as(ListHow {
                full: false,
                read_only: true,
            })
        });
        (
            set.join().expect("the current set's thread panicked"),
            early,
        )
    });
    let set = set?;
    let listing = match early.transpose()? {
        // A dry run lists read-only anyway.
        Some(listing)
            if ctx.dry_run || (listing.source == ListingSource::Index && !listing.index_untidy) =>
        {
            listing
        }
        _ => dest.list_as(ListHow {
            full,
            read_only: false,
        })?,
    };
    Ok((set, listing))
}

/// Writes the target's `.dpkg_archive/packagelist.txt` for the current set; a
/// failure is the sync's, not fatal to it. Apart from `sync_target`.
fn write_packagelist(
    ctx: &Context,
    target: &TargetConfig,
    dest: &dyn Target,
    set: &crate::current::CurrentSet,
    now: i64,
    same: Option<&str>,
    report: &mut SyncReport,
) {
    match crate::packagelist::write_unless_same(dest, set, now, same) {
        Ok(wrote) => {
            report.packagelist = true;
            report.packagelist_unchanged = !wrote;
        }
        Err(e) => {
            let error = format!("{e:#}");
            ctx.reporter
                .error(&target.name, &format!("packagelist: {error}"));
            report.failed.push(Failure {
                item: "packagelist".into(),
                error,
            })
        }
    }
}

/// The listing shows leftovers of interrupted runs; only then is gc run.
/// Housekeeping only: a leftover that cannot be removed (a file system gone
/// read-only, foreign permissions) is a warning, the sync goes on.
fn remove_leftovers(
    ctx: &Context,
    target: &TargetConfig,
    dest: &dyn Target,
    report: &mut SyncReport,
) {
    match dest.gc() {
        Ok(removed) => {
            report.leftovers_removed = removed.len();
            for l in &removed {
                ctx.reporter
                    .detail(&target.name, &format!("removed leftover {l}"));
            }
        }
        Err(e) => {
            let warning =
                format!("leftover temporaries not removed (the next sync tries again): {e:#}");
            ctx.reporter.warn(&target.name, &warning);
            report.warnings.push(warning);
        }
    }
}

/// Behind: what was missing or differing before, less the `sent` that
/// arrived. A package the source archive lacks counts only when the target
/// lacks it.
fn behind(plan: &Plan, listing: &Listing, sent: usize) -> usize {
    plan.send.len().saturating_sub(sent)
        + plan
            .skipped
            .iter()
            .filter(|s| match s.reason {
                plan::SkipReason::Writable { .. } => true,
                plan::SkipReason::NotInArchive => !listing.versions.contains_key(&s.pv),
            })
            .count()
}

/// Reports the target's listing: from its index, or (`full`) a full check
/// that walked it, said where the index was wrong and rebuilt it. Counted
/// in the state for `verify_every`: a listing that rebuilt the index (a
/// full check, or a target that had no valid index) starts the count again.
fn note_listing(
    ctx: &Context,
    state: &State,
    target: &TargetConfig,
    listing: Listing,
    full: bool,
    report: &mut SyncReport,
) -> Listing {
    let rebuilt = matches!(listing.source, ListingSource::Scan { indexed: true, .. });
    report.full_check = full;
    report.listing = match &listing.source {
        ListingSource::Index => "index".into(),
        ListingSource::Scan { why, .. } => format!("scan: {why}"),
        ListingSource::Unknown => "scan".into(),
    };
    ctx.reporter
        .detail(&target.name, &format!("listing from {}", report.listing));
    if !listing.drift.is_empty() {
        const SHOWN: usize = 10;
        let mut shown = listing.drift[..listing.drift.len().min(SHOWN)].join(", ");
        if listing.drift.len() > SHOWN {
            shown.push_str(&format!(" and {} more", listing.drift.len() - SHOWN));
        }
        ctx.reporter.warn(
            &target.name,
            &format!(
                "full check: the target's index was wrong about {} entr{} (changed on the target by hand?), {}: {shown}",
                listing.drift.len(),
                if listing.drift.len() == 1 { "y" } else { "ies" },
                if ctx.dry_run {
                    "a sync without --dry-run repairs it"
                } else {
                    "index rebuilt, what is missing is sent"
                }
            ),
        );
        report.drift = listing.drift.clone();
    }
    if !ctx.dry_run {
        if let Err(e) = state.count_listing(&target.name, rebuilt, crate::clock::now()) {
            ctx.reporter.warn(
                &target.name,
                &format!("cannot count the sync for verify_every in the state file: {e:#}"),
            );
        }
    }
    listing
}

/// Sends the plan's packages with `parallel` workers, in batches; a failed
/// package is recorded and the others go on.
#[allow(clippy::too_many_arguments)]
fn send_all(
    ctx: &Context,
    target: &TargetConfig,
    archive_cfg: &ArchiveTarget,
    source: &SourceArchive,
    dest: &dyn Target,
    plan: &Plan,
    on_target: &std::collections::BTreeMap<PackageVersion, crate::target::OnTarget>,
    report: &mut SyncReport,
) {
    if plan.send.is_empty() {
        return;
    }
    let bases = crate::delta::Bases::for_target(
        &ctx.reporter,
        target,
        archive_cfg,
        &ctx.config.state_dir,
        on_target,
        ctx.dry_run,
    );
    for s in &plan.send {
        let why = match &s.reason {
            plan::SendReason::Missing => "missing".to_string(),
            plan::SendReason::Changed {
                target_mtime,
                source_mtime,
            } => {
                format!("descpkg mtime {target_mtime} on target, {source_mtime} here")
            }
        };
        if !ctx.dry_run {
            ctx.reporter
                .detail(&target.name, &format!("send {} ({why})", s.pv));
        }
    }
    let pvs: Vec<PackageVersion> = plan.send.iter().map(|s| s.pv.clone()).collect();
    let free = report.free_bytes.filter(|_| archive_cfg.min_free > 0);
    let results = crate::transfer::send_with_free(
        &ctx.reporter,
        target,
        archive_cfg,
        source,
        dest,
        &pvs,
        &bases,
        free,
    );
    for (pv, bytes, result) in results {
        match result {
            Ok(()) => {
                report.bytes_sent += bytes;
                report.sent.push(pv);
            }
            Err(error) => {
                ctx.reporter.error(&target.name, &format!("{pv}: {error}"));
                report.failed.push(Failure {
                    item: pv.to_string(),
                    error,
                });
            }
        }
    }
}

/// Creates or repoints the plan's aliases whose version is on the target.
fn link_aliases(
    ctx: &Context,
    target: &TargetConfig,
    dest: &dyn Target,
    plan: &Plan,
    present: &dyn Fn(&PackageVersion) -> bool,
    report: &mut SyncReport,
) {
    for alias in &plan.links {
        let version = PackageVersion {
            package: alias.package.clone(),
            version: alias.version.clone(),
        };
        if !present(&version) && !ctx.dry_run {
            ctx.reporter.warn(
                &target.name,
                &format!("alias {alias} not linked: {version} is not on the target"),
            );
            continue;
        }
        match dest.link(alias) {
            Ok(()) => {
                ctx.reporter
                    .detail(&target.name, &format!("linked {alias}"));
                report.linked.push(alias.clone());
            }
            Err(e) => report.failed.push(Failure {
                item: alias.to_string(),
                error: format!("{e:#}"),
            }),
        }
    }
}
