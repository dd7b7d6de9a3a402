//! `blat sync`: bring a target in line with its current set: send what is
//! missing or differs, create or repoint aliases once their version is there,
//! write the PackageList, then age as configured.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use super::{Context, Selection, TargetReport};
use crate::archive::{Alias, PackageVersion, SourceArchive};
use crate::config::units::human_bytes;
use crate::config::{ArchiveTarget, TargetConfig};
use crate::current::{self, CurrentSet};
use crate::error::Outcome;
use crate::plan::{self, Plan};
use crate::report::TransferProgress;
use crate::state::State;
use crate::target::{self, dryrun::DryRun, pack, Outgoing, Target};

#[derive(Clone, Debug, Default)]
pub struct SyncOptions {
    pub selection: Selection,
    /// Only targets whose last successful sync is older than `sync_interval`.
    pub due: bool,
    /// Allow more deletions than `max_delete` in one pass.
    pub force: bool,
}

/// A batch closes at this many packages or bytes, whichever comes first:
/// small packages share one receiver run, big ones stream alone.
const BATCH_PACKAGES: usize = 64;
const BATCH_BYTES: u64 = 64 << 20;

#[derive(Debug, Default, Serialize)]
pub struct SyncReport {
    pub releases: Vec<String>,
    pub wanted: usize,
    pub up_to_date: usize,
    pub sent: Vec<PackageVersion>,
    pub bytes_sent: u64,
    pub failed: Vec<Failure>,
    pub skipped: Vec<plan::Skipped>,
    pub linked: Vec<Alias>,
    pub excess: usize,
    pub leftovers_removed: usize,
    /// What went wrong without failing the pass (leftovers that stayed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub packagelist: bool,
    /// What aging did after the PackageList (methods `immediate`, `master`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aging: Option<super::age::AgingReport>,
    pub seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct Failure {
    pub item: String,
    pub error: String,
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
        parts.push(if self.packagelist {
            "packagelist written".into()
        } else {
            "packagelist not written".into()
        });
        if !self.warnings.is_empty() {
            parts.push("leftover temporaries not removed".into());
        }
        format!("{} in {:.1}s", parts.join(", "), self.seconds)
    }
}

pub fn run(ctx: &Context, options: &SyncOptions) -> Result<Outcome> {
    let targets = ctx.select(&options.selection, |t| t.archive().is_some(), "archive")?;
    let state = ctx.state()?;
    super::for_each_target(ctx, "sync", &targets, |ctx, target| {
        if options.due && !is_due(&state, target)? {
            return Ok(None);
        }
        sync_target(ctx, target, options.force).map(Some)
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

/// Opens a target for a pass; under `--dry-run` its changes only print.
pub fn open_target<'a>(ctx: &'a Context, target: &TargetConfig) -> Result<Box<dyn Target + 'a>> {
    let inner = target::open(&ctx.config, target)?;
    Ok(if ctx.dry_run {
        Box::new(DryRun::new(inner, &target.name, &ctx.reporter))
    } else {
        inner
    })
}

fn sync_target(ctx: &Context, target: &TargetConfig, force: bool) -> Result<SyncReport> {
    let started = Instant::now();
    let archive_cfg = target.archive().expect("selected archive targets only");
    let source = SourceArchive::new(&ctx.config.archive);
    let set = ctx.with_source(|s| current::load(target, s, &source))?;
    let dest = open_target(ctx, target)?;
    let mut report = SyncReport {
        releases: set.releases.iter().map(|r| r.to_string()).collect(),
        wanted: set.versions.len(),
        ..SyncReport::default()
    };
    let listing = dest.list()?;
    // The listing shows leftovers of interrupted runs; only then is gc run.
    // Housekeeping only: a leftover that cannot be removed (a file system
    // gone read-only, foreign permissions) is a warning, the sync goes on.
    if !listing.leftovers.is_empty() {
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
    for bad in &listing.rejected {
        ctx.reporter.warn(
            &target.name,
            &format!("target listing line ignored (invalid name): {bad}"),
        );
    }
    let now = crate::clock::now();
    let plan = plan::plan(&set, &listing, now, target.writable_grace);
    report.up_to_date = plan.up_to_date;
    report.excess = plan.excess.len();
    for s in &plan.skipped {
        let line = format!("skip {}: {}", s.pv, s.reason);
        if ctx.dry_run {
            ctx.reporter.plan_line(&target.name, &line)
        } else {
            ctx.reporter.info(&target.name, &line)
        }
    }
    report.skipped = plan.skipped.clone();

    let mut present: BTreeSet<PackageVersion> = listing.versions.keys().cloned().collect();
    send_all(
        ctx,
        target,
        archive_cfg,
        &source,
        dest.as_ref(),
        &plan,
        &mut report,
        &mut present,
    );
    link_aliases(ctx, target, dest.as_ref(), &plan, &present, &mut report);
    match write_packagelist(dest.as_ref(), &set, now) {
        Ok(()) => report.packagelist = true,
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
    if let Some(aging) = super::age::after_sync(
        ctx,
        target,
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
    report: &mut SyncReport,
    present: &mut BTreeSet<PackageVersion>,
) {
    if plan.send.is_empty() {
        return;
    }
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
    let results = send_packages(
        &ctx.reporter,
        target,
        archive_cfg,
        source,
        dest,
        &pvs,
        ctx.dry_run,
    );
    for (pv, bytes, result) in results {
        match result {
            Ok(()) => {
                report.bytes_sent += bytes;
                present.insert(pv.clone());
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

/// One package-version's transfer: bytes sent, and `Err(reason)` when it did
/// not arrive.
pub type Sent = (PackageVersion, u64, Result<(), String>);

/// The send path `sync` and `fast` share: checks free space once (when
/// `min_free` is set), then streams `pvs` with `parallel` workers in batches.
/// One package's failure never stops the others; results come back sorted.
pub fn send_packages(
    reporter: &crate::report::Reporter,
    target: &TargetConfig,
    archive_cfg: &ArchiveTarget,
    source: &SourceArchive,
    dest: &dyn Target,
    pvs: &[PackageVersion],
    dry_run: bool,
) -> Vec<Sent> {
    if pvs.is_empty() {
        return Vec::new();
    }
    // Free space: the target's figure once, then our own running estimate.
    let free = if archive_cfg.min_free > 0 && !dry_run {
        match dest.df() {
            Ok(avail) => Some(avail),
            Err(e) => {
                reporter.warn(
                    &target.name,
                    &format!("cannot read free space, min_free not checked: {e:#}"),
                );
                None
            }
        }
    } else {
        None
    };
    let compression = usable_compression(reporter, target, archive_cfg.compression, dest);
    let archive_cfg = &ArchiveTarget {
        compression,
        ..archive_cfg.clone()
    };
    let progress = reporter.transfer(&target.name, pvs.len());
    let sender = Sender {
        reporter,
        target,
        archive_cfg,
        source,
        dest,
        free: Mutex::new(free),
        progress: &progress,
    };
    let mut results = crate::exec::drain(pvs.iter().cloned(), archive_cfg.parallel, |queue| {
        sender.work(queue)
    });
    progress.finish();
    results.sort_by(|a, b| a.0.cmp(&b.0));
    results
}

/// What the send workers share.
struct Sender<'a> {
    reporter: &'a crate::report::Reporter,
    target: &'a TargetConfig,
    archive_cfg: &'a ArchiveTarget,
    source: &'a SourceArchive,
    dest: &'a dyn Target,
    /// The target's free space as we estimate it, when `min_free` is set.
    free: Mutex<Option<u64>>,
    progress: &'a TransferProgress<'a>,
}

impl Sender<'_> {
    /// One worker: fills a batch from the queue, streams it, until the
    /// queue is empty.
    fn work(&self, queue: &crate::exec::Queue<PackageVersion>) -> Vec<Sent> {
        let mut results = Vec::new();
        loop {
            let batch = self.fill_batch(queue, &mut results);
            if batch.is_empty() {
                return results;
            }
            self.send_batch(&batch, &mut results);
        }
    }

    /// Takes packages until the batch is full, scanning each (one walk) as
    /// it is taken; a package that cannot be scanned or would break
    /// `min_free` fails alone.
    fn fill_batch(
        &self,
        queue: &crate::exec::Queue<PackageVersion>,
        results: &mut Vec<Sent>,
    ) -> Vec<Outgoing> {
        let mut batch: Vec<Outgoing> = Vec::new();
        let mut batch_bytes = 0;
        while batch.len() < BATCH_PACKAGES && batch_bytes < BATCH_BYTES {
            let Some(pv) = queue.next() else {
                break;
            };
            let outgoing = match pack::scan(self.source, &pv) {
                Ok(o) => o,
                Err(e) => {
                    results.push((pv, 0, Err(format!("{e:#}"))));
                    continue;
                }
            };
            let min_free = self.archive_cfg.min_free;
            if let Some(avail) = self.free.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                if avail.saturating_sub(outgoing.bytes) < min_free {
                    let msg = format!(
                        "not sent: {} would leave less than min_free {} free on the target ({} free)",
                        human_bytes(outgoing.bytes),
                        human_bytes(min_free),
                        human_bytes(*avail)
                    );
                    results.push((pv, 0, Err(msg)));
                    continue;
                }
                *avail -= outgoing.bytes;
            }
            batch_bytes += outgoing.bytes;
            batch.push(outgoing);
        }
        batch
    }

    /// Streams one batch into one receiver run.
    fn send_batch(&self, batch: &[Outgoing], results: &mut Vec<Sent>) {
        let sizes: Vec<(PackageVersion, u64)> =
            batch.iter().map(|o| (o.pv.clone(), o.bytes)).collect();
        let add = |n: u64| self.progress.add_bytes(n);
        match self
            .dest
            .receive(self.source, batch, self.archive_cfg.compression, &add)
        {
            Ok(received) => {
                for r in received {
                    let bytes = sizes
                        .iter()
                        .find(|(pv, _)| *pv == r.pv)
                        .map_or(0, |(_, b)| *b);
                    if r.result.is_ok() {
                        self.reporter.detail(
                            &self.target.name,
                            &format!("sent {} ({})", r.pv, human_bytes(bytes)),
                        );
                    }
                    self.progress.package_done();
                    results.push((r.pv, bytes, r.result));
                }
            }
            Err(e) => {
                let msg = format!("{e:#}");
                for (pv, _) in sizes {
                    results.push((pv, 0, Err(msg.clone())));
                }
            }
        }
    }
}

/// The configured compression, or gzip (with a warning) when it is zstd and
/// the target's receiver reports no zstd.
fn usable_compression(
    reporter: &crate::report::Reporter,
    target: &TargetConfig,
    wanted: crate::config::Compression,
    dest: &dyn Target,
) -> crate::config::Compression {
    use crate::config::Compression;
    if !matches!(wanted, Compression::Zstd(_)) {
        return wanted;
    }
    match dest.version() {
        Ok(info) if info.decompressors.iter().any(|d| d == "zstd") => wanted,
        Ok(_) => {
            reporter.warn(
                &target.name,
                "the target has no zstd; sending with gzip instead",
            );
            Compression::Gzip(6)
        }
        Err(e) => {
            reporter.warn(
                &target.name,
                &format!("cannot ask the target for zstd ({e:#}); sending with gzip"),
            );
            Compression::Gzip(6)
        }
    }
}

/// Creates or repoints the plan's aliases whose version is on the target.
fn link_aliases(
    ctx: &Context,
    target: &TargetConfig,
    dest: &dyn Target,
    plan: &Plan,
    present: &BTreeSet<PackageVersion>,
    report: &mut SyncReport,
) {
    for alias in &plan.links {
        let version = PackageVersion {
            package: alias.package.clone(),
            version: alias.version.clone(),
        };
        if !present.contains(&version) && !ctx.dry_run {
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

pub fn write_packagelist(dest: &dyn Target, set: &CurrentSet, now: i64) -> Result<()> {
    dest.put(
        crate::packagelist::NAME,
        crate::packagelist::text(set, now).as_bytes(),
    )
}
