//! `blat s3sync`: keep an S3 target's bucket holding one deterministic ZIP
//! per package-version of its current set, at
//! `{prefix}{package}/{package}_{version}.zip`, plus `{prefix}{package}/{alias}.txt`
//! (the version, one line) for each alias; excess ZIPs go as `[aging]` says.
//!
//! Change detection costs one paginated listing of the prefix per pass: the
//! state file remembers what each upload left (descpkg mtime, size, ETag),
//! and an object the listing shows as the state remembers it is current. An
//! object the state does not know (a lost state file, another master) is
//! asked about once with a HEAD: its `descpkg-mtime` metadata says whether it
//! is current, and the answer is remembered. Nothing is ever re-uploaded
//! just because the state file is gone.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use anyhow::{Context as _, Result};
use serde::Serialize;

use super::Failure;
use super::{Context, Passes, Selection, TargetReport};
use crate::aging::{self, DryRunMarks, MarkStore, StateMarks};
use crate::archive::{Alias, Name, PackageVersion, SourceArchive, SourceEntry};
use crate::config::units::{human_bytes, human_duration};
use crate::config::{AgingMethod, S3Target, TargetConfig, TargetKind};
use crate::current::CurrentSet;
use crate::error::Outcome;
use crate::plan::{self, SkipReason, Skipped};
use crate::report::{Reporter, TransferProgress};
use crate::state::{RunFacts, State, Upload};
use crate::store::dryrun::DryRun;
use crate::store::keys::{alias_key, parse_key, zip_key, KeyKind, MTIME_META};
use crate::store::s3::S3Store;
use crate::store::{zip, Multipart, ObjectInfo, ObjectStore, Put, Requests, Stored};
use crate::target::Listing;

#[derive(Clone, Debug, Default)]
pub struct S3SyncOptions {
    pub selection: Selection,
    /// Allow more deletions than `max_delete` in one pass.
    pub force: bool,
    /// Buckets synced at once; `None`: the configuration's `jobs`.
    pub jobs: Option<usize>,
}

/// An alias object is one line; anything longer is not ours.
const ALIAS_LIMIT: u64 = 1024;

#[derive(Debug, Default, Serialize)]
pub struct S3SyncReport {
    pub store: String,
    pub releases: Vec<String>,
    pub wanted: usize,
    pub up_to_date: usize,
    /// Found in the bucket unknown to the state file, confirmed by one HEAD
    /// (or GET for an alias) and remembered: not uploaded again.
    pub adopted: usize,
    pub uploaded: Vec<PackageVersion>,
    pub bytes_uploaded: u64,
    pub aliases_written: Vec<Alias>,
    pub skipped: Vec<Skipped>,
    pub failed: Vec<Failure>,
    /// ZIPs in the bucket that are not in the current set (after the guards).
    pub excess: usize,
    pub marked: usize,
    pub deleted: Vec<PackageVersion>,
    /// Package-versions of the current set not in the bucket as they are in
    /// the archive after this pass (failed, still writable, not in the source
    /// archive).
    pub behind: usize,
    /// Aging ran (methods `immediate` and `master`, on a current set that
    /// is not empty).
    #[serde(skip)]
    pub aged: bool,
    /// Deletions due that aging refused (more than max_delete).
    #[serde(skip_serializing_if = "is_zero")]
    pub aging_refused: usize,
    /// Multipart uploads an interrupted pass left open, aborted now.
    pub aborted_uploads: usize,
    pub requests: Requests,
    pub seconds: f64,
}

impl TargetReport for S3SyncReport {
    fn outcome(&self) -> Outcome {
        let progress =
            self.up_to_date + self.uploaded.len() + self.aliases_written.len() + self.deleted.len();
        if self.failed.is_empty() {
            Outcome::Done
        } else if progress > 0 {
            Outcome::Partial
        } else {
            Outcome::Failed
        }
    }

    fn summary(&self) -> String {
        let mut parts = vec![format!(
            "{} uploaded ({})",
            self.uploaded.len(),
            human_bytes(self.bytes_uploaded)
        )];
        if !self.failed.is_empty() {
            parts.push(format!("{} failed", self.failed.len()));
        }
        parts.push(format!("{} up to date", self.up_to_date));
        if self.adopted > 0 {
            parts.push(format!("{} found in the bucket", self.adopted));
        }
        if !self.skipped.is_empty() {
            parts.push(format!("{} skipped", self.skipped.len()));
        }
        if !self.aliases_written.is_empty() {
            parts.push(format!("{} aliases written", self.aliases_written.len()));
        }
        if !self.deleted.is_empty() {
            parts.push(format!("{} deleted", self.deleted.len()));
        }
        if self.marked > 0 {
            parts.push(format!("{} marked", self.marked));
        }
        let left = self.excess.saturating_sub(self.deleted.len());
        if left > 0 {
            parts.push(format!("{left} excess left"));
        }
        parts.push(format!("{} requests", self.requests.total()));
        format!("{} in {:.1}s", parts.join(", "), self.seconds)
    }

    fn facts(&self) -> RunFacts {
        let n = |v: usize| Some(v as u64);
        RunFacts {
            seconds: Some(self.seconds),
            sent: n(self.uploaded.len()),
            bytes_sent: Some(self.bytes_uploaded),
            failed: n(self.failed.len()),
            behind: n(self.behind),
            aging_refused: self.aged.then_some(self.aging_refused as u64),
            problem: super::first_problem(
                self.failed
                    .iter()
                    .map(|f| (f.item.clone(), f.error.clone())),
            ),
            free_bytes: None,
        }
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

pub fn run(ctx: &Context, options: &S3SyncOptions) -> Result<Outcome> {
    let targets = ctx.select(
        &options.selection,
        |t| matches!(t.kind, TargetKind::S3(_)),
        "s3",
    )?;
    let passes = Passes::new("s3sync").jobs(options.jobs.unwrap_or(ctx.config.jobs));
    super::for_each_target_with(ctx, passes, &targets, |ctx, target, state| {
        let TargetKind::S3(s3) = &target.kind else {
            unreachable!("selected s3 targets only")
        };
        let store = S3Store::connect(s3)?;
        let store: Box<dyn ObjectStore> = if ctx.dry_run {
            Box::new(DryRun {
                inner: store,
                target: &target.name,
                reporter: &ctx.reporter,
            })
        } else {
            Box::new(store)
        };
        Ok(Some(s3sync_target(
            ctx,
            target,
            s3,
            store.as_ref(),
            state,
            options.force,
        )?))
    })
}

// ---- what the state file remembers -----------------------------------------

/// The state file as `s3sync` uses it, for one target. Without a state (a
/// dry run) it remembers nothing new.
struct Ledger<'a> {
    state: Option<&'a State>,
    target: &'a str,
}

/// Opens the state file for a ledger (`None` under `--dry-run`). In WAL
/// mode `synchronous = NORMAL` keeps the file consistent but skips an fsync
/// per commit: a power cut may forget the last rows, which costs one HEAD
/// each at the next pass, while a pass of thousands of small uploads would
/// otherwise spend more time in fsync than in uploading.
fn open_state(state_dir: Option<&std::path::Path>, target: &str) -> Result<Option<State>> {
    let Some(dir) = state_dir else {
        return Ok(None);
    };
    let state = State::open_target(dir, target)?;
    state.relax_sync()?;
    Ok(Some(state))
}

impl Ledger<'_> {
    /// What the state remembers of the bucket, by key (read even under
    /// `--dry-run`, from the read-only state).
    fn uploads(&self, state: &State) -> Result<HashMap<String, Upload>> {
        state.uploads(self.target)
    }

    fn record(&self, u: &Upload) -> Result<()> {
        self.state
            .map_or(Ok(()), |s| s.record_upload(self.target, u))
    }

    fn forget(&self, key: &str) -> Result<()> {
        self.state
            .map_or(Ok(()), |s| s.forget_upload(self.target, key))
    }

    fn open_multiparts(&self, state: &State) -> Result<Vec<(String, String)>> {
        state.open_multiparts(self.target)
    }

    fn multipart(&self, event: &Multipart) -> Result<()> {
        let Some(state) = self.state else {
            return Ok(());
        };
        match event {
            Multipart::Started { key, upload_id } => {
                state.multipart_started(self.target, key, upload_id, crate::clock::now())
            }
            Multipart::Ended { upload_id, .. } => state.multipart_ended(self.target, upload_id),
        }
    }
}

// ---- decisions (pure) -------------------------------------------------------

/// Why a ZIP goes up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum UploadReason {
    /// No object at its key.
    Missing,
    /// The object holds another descpkg mtime.
    Changed {
        stored_mtime: i64,
        source_mtime: i64,
    },
    /// The object carries no descpkg mtime blat can trust.
    Unknown,
}

impl std::fmt::Display for UploadReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UploadReason::Missing => f.write_str("missing"),
            UploadReason::Changed {
                stored_mtime,
                source_mtime,
            } => {
                write!(
                    f,
                    "descpkg mtime {stored_mtime} in the bucket, {source_mtime} here"
                )
            }
            UploadReason::Unknown => f.write_str("the object in the bucket has no descpkg mtime"),
        }
    }
}

/// What the listing and the state file say about one wanted ZIP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Judgement {
    UpToDate,
    /// The object is there but the state file does not vouch for it.
    AskStore,
    Upload(UploadReason),
}

/// Decides from the listing and the state file alone (no request).
pub fn judge(
    listed: Option<&ObjectInfo>,
    remembered: Option<&Upload>,
    source_mtime: i64,
) -> Judgement {
    let Some(listed) = listed else {
        return Judgement::Upload(UploadReason::Missing);
    };
    match remembered {
        Some(r) if r.etag == listed.etag && r.size == listed.size => {
            if r.descpkg_mtime == source_mtime {
                Judgement::UpToDate
            } else {
                Judgement::Upload(UploadReason::Changed {
                    stored_mtime: r.descpkg_mtime,
                    source_mtime,
                })
            }
        }
        // Unknown to the state, or replaced since: the object's metadata decides.
        _ => Judgement::AskStore,
    }
}

/// The bucket as aging sees it, for [`crate::plan::excess`] (the guards archive
/// targets use): its ZIPs with their descpkg mtime (from the state file, else
/// the upload time) and its alias objects. A package with an alias object
/// blat cannot read is left out: that alias could name any of its versions.
pub fn bucket_listing(
    prefix: &str,
    listing: &BTreeMap<String, ObjectInfo>,
    known: &HashMap<String, Upload>,
    aliases: Vec<Alias>,
    unreadable: &BTreeSet<Name>,
) -> Listing {
    let versions = listing
        .iter()
        .filter_map(|(key, o)| match parse_key(prefix, key) {
            Some(KeyKind::Zip(pv)) if !unreadable.contains(&pv.package) => {
                let mtime = known.get(key).map_or(o.last_modified, |r| r.descpkg_mtime);
                Some((pv, mtime))
            }
            _ => None,
        })
        .collect();
    Listing {
        versions,
        aliases,
        ..Listing::default()
    }
}

// ---- the pass ---------------------------------------------------------------

fn s3sync_target(
    ctx: &Context,
    target: &TargetConfig,
    s3: &S3Target,
    store: &dyn ObjectStore,
    state: &State,
    force: bool,
) -> Result<S3SyncReport> {
    let started = Instant::now();
    let source = SourceArchive::new(&ctx.config.archive);
    // A release source that fails stops the pass here: nothing is deleted.
    let set = ctx.current_set(target)?;
    // Read even under --dry-run (the plan depends on it); written only without.
    let writer = if ctx.dry_run {
        None
    } else {
        state.relax_sync()?;
        Some(state)
    };
    let pass = Pass {
        ctx,
        target,
        s3,
        store,
        ledger: Ledger {
            state: writer,
            target: &target.name,
        },
    };
    let mut report = S3SyncReport {
        store: store.describe(),
        releases: set.releases.iter().map(|r| r.to_string()).collect(),
        wanted: set.versions.len(),
        ..S3SyncReport::default()
    };
    pass.abort_interrupted(state, &mut report)?;
    let listing: BTreeMap<String, ObjectInfo> = store
        .list(&s3.prefix)?
        .into_iter()
        .map(|o| (o.key.clone(), o))
        .collect();
    let mut known = pass.known_objects(state, &listing)?;
    let now = crate::clock::now();
    let (queue, mut present) = pass.decide(&set, &listing, &mut known, now, &mut report)?;

    upload_all(
        ctx,
        target,
        s3,
        &source,
        store,
        &queue,
        &mut report,
        &mut present,
    );
    // A package the source archive lacks counts only when the bucket lacks it.
    report.behind = set
        .versions
        .iter()
        .filter(|(pv, entry)| {
            !present.contains(*pv)
                && (matches!(entry, SourceEntry::Version { .. })
                    || !listing.contains_key(&zip_key(&s3.prefix, pv)))
        })
        .count();
    let (alias_objects, unreadable) = aliases(
        ctx,
        target,
        s3,
        store,
        &pass.ledger,
        &set,
        &listing,
        &mut known,
        &present,
        &mut report,
    )?;
    age(
        ctx,
        target,
        s3,
        store,
        &pass.ledger,
        state,
        &set,
        &bucket_listing(&s3.prefix, &listing, &known, alias_objects, &unreadable),
        now,
        force,
        &mut report,
    )?;

    report.requests = store.requests();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The ZIPs to upload (with their descpkg mtime) and those already there.
type Decided = (Vec<(PackageVersion, i64)>, BTreeSet<PackageVersion>);

/// What the steps of one target's pass share.
struct Pass<'a> {
    ctx: &'a Context,
    target: &'a TargetConfig,
    s3: &'a S3Target,
    store: &'a dyn ObjectStore,
    ledger: Ledger<'a>,
}

impl Pass<'_> {
    /// Aborts the multipart uploads an interrupted pass left open (they
    /// cost storage until aborted).
    fn abort_interrupted(&self, state: &State, report: &mut S3SyncReport) -> Result<()> {
        let name = self.target.name.as_str();
        for (key, upload_id) in self.ledger.open_multiparts(state)? {
            match self.store.abort_multipart(&key, &upload_id) {
                Ok(()) => {
                    self.ledger.multipart(&Multipart::Ended {
                        key: &key,
                        upload_id: &upload_id,
                    })?;
                    report.aborted_uploads += 1;
                    self.ctx
                        .reporter
                        .info(name, &format!("aborted the interrupted upload of {key}"));
                }
                Err(e) => self.ctx.reporter.warn(name, &format!("{e:#}")),
            }
        }
        Ok(())
    }

    /// What the state file remembers of the bucket, less the objects
    /// removed behind blat's back (forgotten, so they count as missing).
    fn known_objects(
        &self,
        state: &State,
        listing: &BTreeMap<String, ObjectInfo>,
    ) -> Result<HashMap<String, Upload>> {
        let mut known = self.ledger.uploads(state)?;
        let gone: Vec<String> = known
            .keys()
            .filter(|k| !listing.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            self.ledger.forget(&key)?;
            known.remove(&key);
        }
        Ok(known)
    }

    /// Decides each wanted ZIP from the listing and the state file, then
    /// with one HEAD (in parallel) for each object the state file cannot
    /// vouch for. Returns what to upload and what is already there.
    fn decide(
        &self,
        set: &CurrentSet,
        listing: &BTreeMap<String, ObjectInfo>,
        known: &mut HashMap<String, Upload>,
        now: i64,
        report: &mut S3SyncReport,
    ) -> Result<Decided> {
        let prefix = &self.s3.prefix;
        let mut judged: Vec<(&PackageVersion, i64, Option<i64>, Judgement)> = Vec::new();
        for (pv, entry) in &set.versions {
            let SourceEntry::Version {
                descpkg_mtime,
                writable_since,
            } = entry
            else {
                report.skipped.push(Skipped {
                    pv: pv.clone(),
                    reason: SkipReason::NotInArchive,
                });
                continue;
            };
            let key = zip_key(prefix, pv);
            let judgement = judge(listing.get(&key), known.get(&key), *descpkg_mtime);
            judged.push((pv, *descpkg_mtime, *writable_since, judgement));
        }
        let asks: Vec<(&PackageVersion, i64)> = judged
            .iter()
            .filter(|j| j.3 == Judgement::AskStore)
            .map(|j| (j.0, j.1))
            .collect();
        let mut answers = ask_store_all(self.store, prefix, self.s3.parallel, &asks);
        let mut present = BTreeSet::new();
        let mut queue = Vec::new();
        for (pv, descpkg_mtime, writable_since, mut judgement) in judged {
            if judgement == Judgement::AskStore {
                judgement = match answers.remove(pv) {
                    Some(Ok((j, Some(upload)))) => {
                        self.ledger.record(&upload)?;
                        report.adopted += 1;
                        known.insert(upload.key.clone(), upload);
                        j
                    }
                    Some(Ok((j, None))) => j,
                    Some(Err(e)) => {
                        report.failed.push(Failure {
                            item: pv.to_string(),
                            error: format!("{e:#}"),
                        });
                        continue;
                    }
                    None => unreachable!("every unknown object is asked about"),
                };
            }
            match judgement {
                Judgement::UpToDate => {
                    report.up_to_date += 1;
                    present.insert(pv.clone());
                }
                Judgement::Upload(reason) => {
                    let grace = self.target.writable_grace;
                    match writable_since {
                        Some(since) if !crate::archive::past_grace(since, now, grace) => {
                            report.skipped.push(Skipped {
                                pv: pv.clone(),
                                reason: SkipReason::Writable { since },
                            })
                        }
                        _ => {
                            self.ctx
                                .reporter
                                .detail(&self.target.name, &format!("upload {pv} ({reason})"));
                            queue.push((pv.clone(), descpkg_mtime));
                        }
                    }
                }
                Judgement::AskStore => unreachable!("asked above"),
            }
        }
        for s in &report.skipped {
            let line = format!("skip {}: {}", s.pv, s.reason);
            if self.ctx.dry_run {
                self.ctx.reporter.plan_line(&self.target.name, &line)
            } else {
                self.ctx.reporter.info(&self.target.name, &line)
            }
        }
        Ok((queue, present))
    }
}

/// The HEADs of [`ask_store`] for many objects, `parallel` at a time (a
/// lost state file means one per object in the bucket).
fn ask_store_all<'a>(
    store: &dyn ObjectStore,
    prefix: &str,
    parallel: usize,
    asks: &[(&'a PackageVersion, i64)],
) -> HashMap<&'a PackageVersion, Result<(Judgement, Option<Upload>)>> {
    crate::exec::drain(asks.iter(), parallel, |queue| {
        let mut answers = Vec::new();
        while let Some(&(pv, mtime)) = queue.next() {
            answers.push((pv, ask_store(store, &zip_key(prefix, pv), pv, mtime)));
        }
        answers
    })
    .into_iter()
    .collect()
}

/// One HEAD for an object the state file cannot vouch for; returns the
/// judgement and, when the object is current, the row to remember.
fn ask_store(
    store: &dyn ObjectStore,
    key: &str,
    pv: &PackageVersion,
    mtime: i64,
) -> Result<(Judgement, Option<Upload>)> {
    let Some(head) = store.head(key)? else {
        return Ok((Judgement::Upload(UploadReason::Missing), None));
    };
    let stored: Option<i64> = head
        .metadata
        .get(MTIME_META)
        .and_then(|m| m.trim().parse().ok());
    Ok(match stored {
        Some(m) if m == mtime => (
            Judgement::UpToDate,
            Some(Upload {
                key: key.to_string(),
                package: pv.package.to_string(),
                version: pv.version.to_string(),
                descpkg_mtime: m,
                size: head.size,
                etag: head.etag,
                uploaded: crate::clock::now(),
            }),
        ),
        Some(m) => (
            Judgement::Upload(UploadReason::Changed {
                stored_mtime: m,
                source_mtime: mtime,
            }),
            None,
        ),
        None => (Judgement::Upload(UploadReason::Unknown), None),
    })
}

/// Zips and uploads the queue with `parallel` workers; a failed package is
/// recorded and the others go on. Each upload is remembered as it ends, so
/// an interrupted pass loses nothing it finished.
#[allow(clippy::too_many_arguments)]
fn upload_all(
    ctx: &Context,
    target: &TargetConfig,
    s3: &S3Target,
    source: &SourceArchive,
    store: &dyn ObjectStore,
    queue: &[(PackageVersion, i64)],
    report: &mut S3SyncReport,
    present: &mut BTreeSet<PackageVersion>,
) {
    if queue.is_empty() {
        return;
    }
    let progress = ctx.reporter.transfer(&target.name, queue.len());
    let uploader = Uploader {
        reporter: &ctx.reporter,
        state_dir: (!ctx.dry_run).then_some(ctx.config.state_dir.as_path()),
        target: &target.name,
        prefix: &s3.prefix,
        source,
        store,
        progress: &progress,
    };
    let mut results = crate::exec::drain(queue.iter().cloned(), s3.parallel, |work| {
        uploader.work(work)
    });
    progress.finish();
    results.sort_by(|a, b| a.0.cmp(&b.0));
    for (pv, result) in results {
        match result {
            Ok(stored) => {
                report.bytes_uploaded += stored.size;
                present.insert(pv.clone());
                report.uploaded.push(pv);
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

/// What the upload workers share.
struct Uploader<'a> {
    reporter: &'a Reporter,
    /// `None` under `--dry-run`: nothing is remembered.
    state_dir: Option<&'a std::path::Path>,
    target: &'a str,
    prefix: &'a str,
    source: &'a SourceArchive,
    store: &'a dyn ObjectStore,
    progress: &'a TransferProgress<'a>,
}

/// One package's upload: what was stored, or why not.
type Uploaded = (PackageVersion, Result<Stored, String>);

impl Uploader<'_> {
    fn work(&self, work: &crate::exec::Queue<(PackageVersion, i64)>) -> Vec<Uploaded> {
        let mut results = Vec::new();
        // Each worker its own connection: SQLite connections are not shared
        // across threads, and rows are written as uploads end.
        let state = match open_state(self.state_dir, self.target) {
            Ok(state) => state,
            Err(e) => {
                self.reporter.error(self.target, &format!("{e:#}"));
                return results;
            }
        };
        let ledger = Ledger {
            state: state.as_ref(),
            target: self.target,
        };
        while let Some((pv, mtime)) = work.next() {
            let result = self.upload(&ledger, &pv, mtime);
            self.progress.package_done();
            if result.is_ok() {
                self.reporter.detail(self.target, &format!("uploaded {pv}"));
            }
            results.push((pv, result.map_err(|e| format!("{e:#}"))));
        }
        results
    }

    fn upload(&self, ledger: &Ledger, pv: &PackageVersion, mtime: i64) -> Result<Stored> {
        let contents = zip::scan(self.source, pv)?;
        if contents.mtime != mtime {
            anyhow::bail!(
                "the descpkg changed during the pass (mtime {mtime}, now {})",
                contents.mtime
            );
        }
        let key = zip_key(self.prefix, pv);
        let journal = |event: Multipart| {
            if let Err(e) = ledger.multipart(&event) {
                self.reporter.warn(
                    self.target,
                    &format!("cannot journal the multipart upload of {key}: {e:#}"),
                );
            }
        };
        let stored = self.store.put(
            &Put {
                key: &key,
                metadata: &[(MTIME_META, mtime.to_string())],
                content_type: "application/zip",
                size_hint: contents.bytes,
                journal: &journal,
                progress: &|n| self.progress.add_bytes(n),
            },
            &mut |out| zip::write(&contents, out).map(|_| ()),
        )?;
        ledger
            .record(&Upload {
                key: key.clone(),
                package: pv.package.to_string(),
                version: pv.version.to_string(),
                descpkg_mtime: mtime,
                size: stored.size,
                etag: stored.etag.clone(),
                uploaded: crate::clock::now(),
            })
            .context("uploaded, but cannot remember it in the state file")?;
        Ok(stored)
    }
}

/// Writes the alias objects of the set (once their version is in the
/// bucket) and learns what every alias object in the bucket names; returns
/// those versions, which aging never removes.
#[allow(clippy::too_many_arguments)]
fn aliases(
    ctx: &Context,
    target: &TargetConfig,
    s3: &S3Target,
    store: &dyn ObjectStore,
    ledger: &Ledger,
    set: &CurrentSet,
    listing: &BTreeMap<String, ObjectInfo>,
    known: &mut HashMap<String, Upload>,
    present: &BTreeSet<PackageVersion>,
    report: &mut S3SyncReport,
) -> Result<(Vec<Alias>, BTreeSet<Name>)> {
    let name = target.name.as_str();
    let mut in_bucket = Vec::new();
    let mut unreadable = BTreeSet::new();
    // What each alias object in the bucket names: the state, else one GET.
    let mut names: HashMap<String, Option<Name>> = HashMap::new();
    for (key, listed) in listing {
        let Some(KeyKind::Alias { package, alias }) = parse_key(&s3.prefix, key) else {
            continue;
        };
        let version = match known.get(key) {
            Some(r) if r.etag == listed.etag && r.size == listed.size => Name::new(&r.version).ok(),
            _ => match store.get(key, ALIAS_LIMIT) {
                Ok(Some(body)) => {
                    let v = String::from_utf8_lossy(&body).trim().to_string();
                    match Name::new(&v) {
                        Ok(v) => {
                            let row = Upload {
                                key: key.clone(),
                                package: package.to_string(),
                                version: v.to_string(),
                                descpkg_mtime: 0,
                                size: listed.size,
                                etag: listed.etag.clone(),
                                uploaded: listed.last_modified,
                            };
                            ledger.record(&row)?;
                            known.insert(key.clone(), row);
                            Some(v)
                        }
                        Err(_) => None,
                    }
                }
                Ok(None) => continue,
                Err(e) => {
                    ctx.reporter.warn(name, &format!("{e:#}"));
                    None
                }
            },
        };
        match &version {
            Some(v) => in_bucket.push(Alias {
                package: package.clone(),
                alias,
                version: v.clone(),
            }),
            None => {
                ctx.reporter.warn(
                    name,
                    &format!(
                        "alias object {key} does not name a version: package {package} is not aged"
                    ),
                );
                unreadable.insert(package.clone());
            }
        }
        names.insert(key.clone(), version);
    }

    for alias in &set.aliases {
        let version = PackageVersion {
            package: alias.package.clone(),
            version: alias.version.clone(),
        };
        let key = alias_key(&s3.prefix, &alias.package, &alias.alias);
        if names
            .get(&key)
            .is_some_and(|v| v.as_ref() == Some(&alias.version))
        {
            continue;
        }
        if !present.contains(&version) && !ctx.dry_run {
            ctx.reporter.warn(
                name,
                &format!("alias {alias} not written: {version} is not in the bucket"),
            );
            continue;
        }
        let text = format!("{}\n", alias.version);
        let result = store.put(
            &Put {
                key: &key,
                metadata: &[],
                content_type: "text/plain",
                size_hint: text.len() as u64,
                journal: &|_| {},
                progress: &|_| {},
            },
            &mut |out| Ok(std::io::Write::write_all(out, text.as_bytes())?),
        );
        match result {
            Ok(stored) => {
                ledger.record(&Upload {
                    key: key.clone(),
                    package: alias.package.to_string(),
                    version: alias.version.to_string(),
                    descpkg_mtime: 0,
                    size: stored.size,
                    etag: stored.etag,
                    uploaded: crate::clock::now(),
                })?;
                ctx.reporter.detail(name, &format!("wrote alias {alias}"));
                report.aliases_written.push(alias.clone());
            }
            Err(e) => report.failed.push(Failure {
                item: alias.to_string(),
                error: format!("{e:#}"),
            }),
        }
    }
    Ok((in_bucket, unreadable))
}

/// Applies the target's aging method to the excess ZIPs, with the guards
/// of docs/aging.md as archive targets have them ([`crate::plan::excess`],
/// [`age::decide`]): an empty set deletes nothing; pins, alias versions and
/// young ZIPs are never excess; more than `max_delete` deletions are refused
/// without `--force`.
#[allow(clippy::too_many_arguments)]
fn age(
    ctx: &Context,
    target: &TargetConfig,
    s3: &S3Target,
    store: &dyn ObjectStore,
    ledger: &Ledger,
    state: &State,
    set: &CurrentSet,
    bucket: &Listing,
    now: i64,
    force: bool,
    report: &mut S3SyncReport,
) -> Result<()> {
    let name = target.name.as_str();
    if let Some(why) = set.aging_blocked() {
        ctx.reporter.warn(name, &format!("{why}: nothing is aged"));
        return Ok(());
    }
    let excess = plan::excess(set, bucket, now, target.writable_grace);
    report.excess = excess.len();
    let method = match target.aging.method {
        AgingMethod::None | AgingMethod::Target => return Ok(()),
        m => m,
    };
    report.aged = true;
    // The same marks and decision as archive targets (ops::age).
    let marks = StateMarks {
        state,
        target: name,
    };
    let read_only = DryRunMarks(&marks);
    let marks: &dyn MarkStore = if ctx.dry_run { &read_only } else { &marks };
    let mut d = aging::decide(method, &excess, &marks.load()?, now, target.aging.after);
    report.marked = d.marked.len();
    let say = |line: String| {
        if ctx.dry_run {
            ctx.reporter.plan_line(name, &format!("would {line}"))
        } else {
            ctx.reporter.detail(name, &line)
        }
    };
    for pv in &d.marked {
        say(format!(
            "mark {pv} for deletion after {}",
            human_duration(target.aging.after)
        ));
    }
    for pv in &d.unmarked {
        say(format!("unmark {pv}: no longer excess"));
    }
    if d.delete.len() > target.aging.max_delete && !force {
        report.aging_refused = d.delete.len();
        report.failed.push(Failure {
            item: "aging".into(),
            error: format!(
                "refused to delete {} package-versions: more than max_delete = {} in one pass; nothing deleted (check the releases, or run with --force)",
                d.delete.len(),
                target.aging.max_delete
            ),
        });
        d.delete.clear();
    }
    for pv in std::mem::take(&mut d.delete) {
        let key = zip_key(&s3.prefix, &pv);
        match store.delete(&key) {
            Ok(()) => {
                ledger.forget(&key)?;
                d.marks.remove(&pv);
                ctx.reporter.detail(name, &format!("deleted {pv}"));
                report.deleted.push(pv);
            }
            // Still marked: the next pass tries again.
            Err(e) => report.failed.push(Failure {
                item: pv.to_string(),
                error: format!("{e:#}"),
            }),
        }
    }
    marks.save(&d.marks)
}

// ---- dry run ----------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pv(p: &str, v: &str) -> PackageVersion {
        PackageVersion::new(p, v).unwrap()
    }

    fn info(key: &str, etag: &str, size: u64) -> ObjectInfo {
        ObjectInfo {
            key: key.into(),
            size,
            etag: etag.into(),
            last_modified: 0,
        }
    }

    fn row(key: &str, etag: &str, size: u64, mtime: i64) -> Upload {
        Upload {
            key: key.into(),
            package: "p".into(),
            version: "1".into(),
            descpkg_mtime: mtime,
            size,
            etag: etag.into(),
            uploaded: 0,
        }
    }

    #[test]
    fn keys_round_trip() {
        let p = pv("jats", "2.1_beta");
        assert_eq!(zip_key("pk/", &p), "pk/jats/jats_2.1_beta.zip");
        assert_eq!(
            parse_key("pk/", "pk/jats/jats_2.1_beta.zip"),
            Some(KeyKind::Zip(p))
        );
        let (j, cur) = (Name::new("jats").unwrap(), Name::new("current").unwrap());
        assert_eq!(alias_key("", &j, &cur), "jats/current.txt");
        assert_eq!(
            parse_key("", "jats/current.txt"),
            Some(KeyKind::Alias {
                package: j,
                alias: cur
            })
        );
        for foreign in [
            "other/jats/jats_1.zip",
            "pk/jats/other_1.zip",
            "pk/jats/x/y.zip",
            "pk/.hidden/x.txt",
            "pk/jats/jats_.zip",
            "pk/README",
        ] {
            assert_eq!(parse_key("pk/", foreign), None, "{foreign}");
        }
    }

    #[test]
    fn judging_needs_no_request_when_the_state_vouches() {
        let l = info("k", "e1", 10);
        assert_eq!(
            judge(None, None, 5),
            Judgement::Upload(UploadReason::Missing)
        );
        assert_eq!(
            judge(None, Some(&row("k", "e1", 10, 5)), 5),
            Judgement::Upload(UploadReason::Missing)
        );
        assert_eq!(
            judge(Some(&l), Some(&row("k", "e1", 10, 5)), 5),
            Judgement::UpToDate
        );
        assert_eq!(
            judge(Some(&l), Some(&row("k", "e1", 10, 4)), 5),
            Judgement::Upload(UploadReason::Changed {
                stored_mtime: 4,
                source_mtime: 5
            })
        );
        // Unknown to the state file, or replaced behind its back: ask once.
        assert_eq!(judge(Some(&l), None, 5), Judgement::AskStore);
        assert_eq!(
            judge(Some(&l), Some(&row("k", "e2", 10, 5)), 5),
            Judgement::AskStore
        );
    }

    #[test]
    fn aging_sees_zips_and_aliases_but_not_packages_with_unreadable_aliases() {
        let mut listing = BTreeMap::new();
        for key in [
            "p/a/a_1.zip",
            "p/a/a_2.zip",
            "p/j/j_1.zip",
            "p/j/current.txt",
            "p/u/u_1.zip",
            "p/README",
        ] {
            let mut o = info(key, "e", 1);
            o.last_modified = 500;
            listing.insert(key.to_string(), o);
        }
        let known: HashMap<String, Upload> =
            [("p/a/a_1.zip".to_string(), row("p/a/a_1.zip", "e", 1, 42))].into();
        let j = Alias {
            package: Name::new("j").unwrap(),
            alias: Name::new("current").unwrap(),
            version: Name::new("1").unwrap(),
        };
        let unreadable: BTreeSet<Name> = [Name::new("u").unwrap()].into();
        let bucket = bucket_listing("p/", &listing, &known, vec![j.clone()], &unreadable);
        assert_eq!(
            bucket.versions,
            [(pv("a", "1"), 42), (pv("a", "2"), 500), (pv("j", "1"), 500)].into()
        );
        assert_eq!(bucket.aliases, vec![j]);
        // With the archive targets' guards: only a/2 is excess.
        let mut set = CurrentSet::default();
        set.versions.insert(pv("a", "1"), SourceEntry::Missing);
        assert_eq!(
            plan::excess(&set, &bucket, 1_000_000, Duration::from_secs(3600)),
            vec![pv("a", "2")]
        );
    }
}
