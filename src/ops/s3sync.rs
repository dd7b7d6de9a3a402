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

use anyhow::Result;
use serde::Serialize;

mod aliases;
mod judge;
mod upload;

pub use judge::{bucket_listing, judge, Judgement, UploadReason};

use super::Failure;
use super::{Context, Passes, Selection, TargetReport};
use crate::aging::{self, DryRunMarks, MarkStore, StateMarks};
use crate::archive::{Alias, PackageVersion, SourceArchive, SourceEntry};
use crate::config::units::{human_bytes, human_duration};
use crate::config::{AgingMethod, S3Target, TargetConfig, TargetKind};
use crate::current::CurrentSet;
use crate::error::Outcome;
use crate::plan::{self, SkipReason, Skipped};
use crate::state::{RunFacts, State, Upload};
use crate::store::dryrun::DryRun;
use crate::store::keys::zip_key;
use crate::store::s3::S3Store;
use crate::store::{Multipart, ObjectInfo, ObjectStore, Requests};
use crate::target::Listing;

#[derive(Clone, Debug, Default)]
pub struct S3SyncOptions {
    pub selection: Selection,
    /// Allow more deletions than `max_delete` in one pass.
    pub force: bool,
    /// Buckets synced at once; `None`: the configuration's `jobs`.
    pub jobs: Option<usize>,
}

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

    upload::upload_all(&pass, &source, &queue, &mut report, &mut present);
    report.behind = behind(&set, &present, &listing, &s3.prefix);
    let (alias_objects, unreadable) =
        aliases::aliases(&pass, &set, &listing, &mut known, &present, &mut report)?;
    age(
        &pass,
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

/// Package-versions of the set not in the bucket as the archive has them:
/// one the source archive lacks counts only when the bucket lacks it.
fn behind(
    set: &CurrentSet,
    present: &BTreeSet<PackageVersion>,
    listing: &BTreeMap<String, ObjectInfo>,
    prefix: &str,
) -> usize {
    set.versions
        .iter()
        .filter(|(pv, entry)| {
            !present.contains(*pv)
                && (matches!(entry, SourceEntry::Version { .. })
                    || !listing.contains_key(&zip_key(prefix, pv)))
        })
        .count()
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
        let judged = judge_set(set, listing, known, prefix, report);
        let asks: Vec<(&PackageVersion, i64)> = judged
            .iter()
            .filter(|j| j.3 == Judgement::AskStore)
            .map(|j| (j.0, j.1))
            .collect();
        let mut answers = judge::ask_store_all(self.store, prefix, self.s3.parallel, &asks);
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
        self.ctx
            .reporter
            .skipped(&self.target.name, &report.skipped, self.ctx.dry_run);
        Ok((queue, present))
    }
}

/// One wanted ZIP judged: its package-version, descpkg mtime, writable
/// since, and what the listing and the state file say.
type Judged<'a> = (&'a PackageVersion, i64, Option<i64>, Judgement);

/// Judges each package-version of the set that the source archive has
/// from the listing and the state file alone; the others are skipped.
fn judge_set<'a>(
    set: &'a CurrentSet,
    listing: &BTreeMap<String, ObjectInfo>,
    known: &HashMap<String, Upload>,
    prefix: &str,
    report: &mut S3SyncReport,
) -> Vec<Judged<'a>> {
    let mut judged = Vec::new();
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
    judged
}

/// Applies the target's aging method to the excess ZIPs, with the guards
/// of docs/aging.md as archive targets have them ([`crate::plan::excess`],
/// [`age::decide`]): an empty set deletes nothing; pins, alias versions and
/// young ZIPs are never excess; more than `max_delete` deletions are refused
/// without `--force`.
fn age(
    pass: &Pass,
    state: &State,
    set: &CurrentSet,
    bucket: &Listing,
    now: i64,
    force: bool,
    report: &mut S3SyncReport,
) -> Result<()> {
    let (ctx, target, store, ledger) = (pass.ctx, pass.target, pass.store, &pass.ledger);
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
        let key = zip_key(&pass.s3.prefix, &pv);
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
