//! The one aging policy (docs/aging.md), for archive targets and S3 buckets
//! alike: what a pass decides ([`decide`]: mark, unmark, delete what is
//! due), where marks live ([`MarkStore`]: blat's state on the master, a file
//! under `.dpkg_archive/` for `age --local`, nothing under `--dry-run`),
//! and the guards every way in passes through ([`Ager::apply`]): a set that
//! blocks aging (empty, or a release or project the Release Manager
//! answered nothing for) touches nothing, not even the marks; what is
//! excess comes from [`crate::plan::excess`] (never pins, aliases or their
//! versions, never young); more deletions than `max_delete` in one pass are
//! refused as a whole unless forced. A target kind supplies only a way to
//! list and delete. Deletions go through the receiver's `delete`, which
//! removes the aliases of a version first and renames it aside before
//! removing it. The commands are `ops::age` (`blat age`, `age --local`);
//! `sync` and `s3sync` call in after their transfers.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::archive::{Name, PackageVersion};
use crate::config::units::{human_bytes, human_duration};
use crate::config::{AgingMethod, TargetConfig};
use crate::current::CurrentSet;
use crate::error::Outcome;
use crate::ops::{Context, Failure, TargetReport};
use crate::report::Reporter;
use crate::state::{RunFacts, State};
use crate::target::{Listing, ListingSource, Target};

/// The PackageList the master writes, under `<archive>/.dpkg_archive/`.
pub const PACKAGELIST: &str = crate::packagelist::NAME;
/// The marks of `age --local`, beside it.
pub const MARKS_FILE: &str = "blat-age-marks.txt";

/// What one aging pass did (or, under `--dry-run`, would do).
#[derive(Debug, Serialize)]
pub struct AgingReport {
    pub method: AgingMethod,
    /// Package-versions on the target that aging may remove.
    pub excess: usize,
    pub deleted: Vec<Removed>,
    pub bytes_freed: u64,
    /// Newly marked this pass.
    pub marked: Vec<PackageVersion>,
    /// Marks dropped: back in the current set, protected, or gone.
    pub unmarked: Vec<PackageVersion>,
    /// Marked, not yet due.
    pub waiting: usize,
    /// Why nothing was deleted although something was due (max_delete).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// How many deletions were due and refused (max_delete).
    #[serde(skip_serializing_if = "is_zero")]
    pub refused_count: usize,
    /// Why aging did nothing at all (empty current set, method elsewhere).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    pub failed: Vec<Failure>,
}

#[derive(Debug, Serialize)]
pub struct Removed {
    #[serde(flatten)]
    pub pv: PackageVersion,
    pub bytes: u64,
    /// Aliases that pointed to it and went first.
    pub aliases: Vec<Name>,
}

impl AgingReport {
    fn new(method: AgingMethod) -> AgingReport {
        AgingReport {
            method,
            excess: 0,
            deleted: Vec::new(),
            bytes_freed: 0,
            marked: Vec::new(),
            unmarked: Vec::new(),
            waiting: 0,
            refused: None,
            refused_count: 0,
            skipped: None,
            failed: Vec::new(),
        }
    }

    pub fn skipped(method: AgingMethod, why: &str) -> AgingReport {
        AgingReport {
            skipped: Some(why.to_string()),
            ..AgingReport::new(method)
        }
    }

    /// The failures a surrounding pass (sync) counts as its own.
    pub fn failures(&self) -> Vec<Failure> {
        let mut out: Vec<Failure> = self
            .failed
            .iter()
            .map(|f| Failure {
                item: f.item.clone(),
                error: f.error.clone(),
            })
            .collect();
        if let Some(why) = &self.refused {
            out.push(Failure {
                item: "aging".into(),
                error: why.clone(),
            });
        }
        out
    }

    /// `aging: 2 deleted (1.2 MiB freed), 3 marked, ...`, for summaries.
    pub fn summary(&self) -> String {
        if let Some(why) = &self.skipped {
            return format!("aging skipped: {why}");
        }
        let mut parts = vec![format!(
            "{} deleted ({} freed)",
            self.deleted.len(),
            human_bytes(self.bytes_freed)
        )];
        for (n, what) in [
            (self.marked.len(), "marked"),
            (self.unmarked.len(), "unmarked"),
            (self.waiting, "waiting"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        if self.refused.is_some() {
            parts.push("deletions refused (max_delete)".into());
        }
        if !self.failed.is_empty() {
            parts.push(format!("{} failed", self.failed.len()));
        }
        format!("aging: {}", parts.join(", "))
    }
}

impl TargetReport for AgingReport {
    fn outcome(&self) -> Outcome {
        let troubles = self.refused.is_some() || !self.failed.is_empty();
        match (troubles, self.deleted.is_empty()) {
            (false, _) => Outcome::Done,
            (true, true) => Outcome::Failed,
            (true, false) => Outcome::Partial,
        }
    }

    fn summary(&self) -> String {
        self.summary()
    }

    fn facts(&self) -> RunFacts {
        RunFacts {
            failed: Some(self.failures().len() as u64),
            aging_refused: self.skipped.is_none().then_some(self.refused_count as u64),
            problem: crate::ops::first_problem(
                self.failures().into_iter().map(|f| (f.item, f.error)),
            ),
            ..RunFacts::default()
        }
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Where the marks of a target live: blat's state file on the master, a
/// text file under `.dpkg_archive/` for `age --local`.
pub trait MarkStore {
    /// Package-version → when it was first seen excess.
    fn load(&self) -> Result<BTreeMap<PackageVersion, i64>>;
    /// Replaces all marks at once.
    fn save(&self, marks: &BTreeMap<PackageVersion, i64>) -> Result<()>;
}

/// The master's marks of one target, in the `marks` table.
pub struct StateMarks<'a> {
    pub state: &'a State,
    pub target: &'a str,
}

impl MarkStore for StateMarks<'_> {
    fn load(&self) -> Result<BTreeMap<PackageVersion, i64>> {
        // A row with a bad name can only be stale: it is dropped, never acted on.
        Ok(self
            .state
            .marks(self.target)?
            .into_iter()
            .filter_map(|(p, v, t)| PackageVersion::new(&p, &v).ok().map(|pv| (pv, t)))
            .collect())
    }

    fn save(&self, marks: &BTreeMap<PackageVersion, i64>) -> Result<()> {
        self.state.set_marks(
            self.target,
            marks
                .iter()
                .map(|(pv, t)| (pv.package.as_str(), pv.version.as_str(), *t)),
        )
    }
}

/// `age --local`'s marks: `package version first-seen` lines, replaced
/// atomically. A damaged file stops the pass with its name and line:
/// removing it is always safe (it only restarts the clocks).
pub struct FileMarks {
    pub path: PathBuf,
}

impl MarkStore for FileMarks {
    fn load(&self) -> Result<BTreeMap<PackageVersion, i64>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", self.path.display()))
            }
        };
        let mut marks = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let parsed = match fields.as_slice() {
                [p, v, t] => PackageVersion::new(p, v).ok().zip(t.parse::<i64>().ok()),
                _ => None,
            };
            let (pv, t) = parsed.ok_or_else(|| {
                anyhow::anyhow!(
                    "{}:{}: expected 'package version first-seen-epoch-seconds', found '{}' (removing the file only restarts the aging clocks)",
                    self.path.display(),
                    n + 1,
                    line.escape_default()
                )
            })?;
            marks.insert(pv, t);
        }
        Ok(marks)
    }

    fn save(&self, marks: &BTreeMap<PackageVersion, i64>) -> Result<()> {
        let mut text = String::from("# blat age --local: package-versions marked for deletion, with the time (epoch seconds) first seen excess\n");
        for (pv, t) in marks {
            text.push_str(&format!("{} {} {t}\n", pv.package, pv.version));
        }
        crate::atomic::write(&self.path, text.as_bytes())
    }
}

/// `--dry-run`: marks are read, never written.
pub struct DryRunMarks<'a>(pub &'a dyn MarkStore);

impl MarkStore for DryRunMarks<'_> {
    fn load(&self) -> Result<BTreeMap<PackageVersion, i64>> {
        self.0.load()
    }
    fn save(&self, _marks: &BTreeMap<PackageVersion, i64>) -> Result<()> {
        Ok(())
    }
}

/// The rules of one target's aging.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    pub method: AgingMethod,
    pub after: Duration,
    pub max_delete: usize,
    pub force: bool,
}

/// What aging decides, before anything is deleted (pure; unit-tested).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Due for deletion, sorted.
    pub delete: Vec<PackageVersion>,
    /// The marks after this pass, deletions not yet applied.
    pub marks: BTreeMap<PackageVersion, i64>,
    pub marked: Vec<PackageVersion>,
    pub unmarked: Vec<PackageVersion>,
    pub waiting: usize,
}

/// `immediate`: every excess package-version goes now. `master`/`target`:
/// each is marked when first seen excess and goes once it has been marked
/// for longer than `after`. Either way, marks of package-versions that are
/// no longer excess are dropped.
pub fn decide(
    method: AgingMethod,
    excess: &[PackageVersion],
    marks: &BTreeMap<PackageVersion, i64>,
    now: i64,
    after: Duration,
) -> Decision {
    let mut d = Decision::default();
    let is_excess: std::collections::BTreeSet<&PackageVersion> = excess.iter().collect();
    d.unmarked = marks
        .keys()
        .filter(|pv| !is_excess.contains(pv))
        .cloned()
        .collect();
    for pv in excess {
        let first_seen = match (method, marks.get(pv)) {
            (_, Some(t)) => *t,
            (AgingMethod::Immediate, None) => {
                d.delete.push(pv.clone());
                continue;
            }
            (_, None) => {
                d.marked.push(pv.clone());
                now
            }
        };
        d.marks.insert(pv.clone(), first_seen);
        if method == AgingMethod::Immediate
            || now.saturating_sub(first_seen) > crate::config::units::secs_i64(after)
        {
            d.delete.push(pv.clone());
        } else {
            d.waiting += 1;
        }
    }
    d.delete.sort();
    d
}

/// One target's aging pass: where to delete, where the marks are, how to talk.
pub struct Ager<'a> {
    pub reporter: &'a Reporter,
    /// The target's name (or the archive, for `--local`), for messages.
    pub name: &'a str,
    pub dry_run: bool,
    pub dest: &'a dyn Target,
    pub marks: &'a dyn MarkStore,
    pub rules: Rules,
}

impl Ager<'_> {
    /// Applies the rules to `excess` (from [`crate::plan::excess`] over `set` and
    /// `listing`). Deletion failures are recorded, not returned; an `Err`
    /// means the marks could not be read or written.
    pub fn apply(
        &self,
        set: &CurrentSet,
        listing: &Listing,
        excess: &[PackageVersion],
        now: i64,
    ) -> Result<AgingReport> {
        let method = self.rules.method;
        if let Some(why) = set.aging_blocked() {
            // A wrong release name or a database that answered nothing must
            // never empty a target; the marks stay as they are, too.
            self.reporter
                .warn(self.name, &format!("{why}: nothing is aged"));
            return Ok(AgingReport::skipped(method, &why));
        }
        let mut report = AgingReport::new(method);
        report.excess = excess.len();
        let old = self.marks.load()?;
        let mut d = decide(method, excess, &old, now, self.rules.after);
        for pv in &d.marked {
            let line = format!(
                "mark {pv} for deletion after {}",
                human_duration(self.rules.after)
            );
            self.say(line);
        }
        for pv in &d.unmarked {
            let why = if set.versions.contains_key(pv) {
                "back in the current set"
            } else if !listing.versions.contains_key(pv) {
                "no longer on the target"
            } else {
                "protected (pinned, aliased or young)"
            };
            self.say(format!("unmark {pv}: {why}"));
        }
        report.marked = std::mem::take(&mut d.marked);
        report.unmarked = std::mem::take(&mut d.unmarked);
        report.waiting = d.waiting;
        if d.delete.len() > self.rules.max_delete && !self.rules.force {
            let why = format!(
                "refused to delete {} package-versions: more than max_delete = {} in one pass; nothing deleted (check the releases, or run with --force)",
                d.delete.len(),
                self.rules.max_delete
            );
            self.reporter.error(self.name, &why);
            report.refused = Some(why);
            report.refused_count = d.delete.len();
            report.waiting += d.delete.len();
            d.delete.clear();
        }
        if listing.source == ListingSource::Index {
            d.delete = self.confirm_on_target(d.delete, &mut d.marks, &mut report);
        }
        for pv in &d.delete {
            if self.delete(pv, &mut report) {
                d.marks.remove(pv);
            }
        }
        self.marks.save(&d.marks)?;
        Ok(report)
    }

    /// Deletes one package-version due; `false` when that failed (recorded:
    /// it stays marked and the next pass tries again).
    fn delete(&self, pv: &PackageVersion, report: &mut AgingReport) -> bool {
        match self.dest.delete(pv) {
            Ok(gone) => {
                if !self.dry_run {
                    let aliases: Vec<&str> = gone.aliases.iter().map(|a| a.as_str()).collect();
                    let with = if aliases.is_empty() {
                        String::new()
                    } else {
                        format!(", with alias {}", aliases.join(", "))
                    };
                    self.reporter.detail(
                        self.name,
                        &format!("deleted {pv} ({} freed{with})", human_bytes(gone.bytes)),
                    );
                }
                report.bytes_freed += gone.bytes;
                report.deleted.push(Removed {
                    pv: pv.clone(),
                    bytes: gone.bytes,
                    aliases: gone.aliases,
                });
                true
            }
            Err(e) => {
                report.failed.push(Failure {
                    item: pv.to_string(),
                    error: format!("{e:#}"),
                });
                false
            }
        }
    }

    /// A listing read from the target's index cannot see what was changed
    /// there by hand: before deleting, each package concerned is looked at
    /// afresh (one `stat` each, at most max_delete of them). A version that
    /// an alias on the target names is kept, one no longer there is left
    /// alone; both are unmarked.
    fn confirm_on_target(
        &self,
        delete: Vec<PackageVersion>,
        marks: &mut BTreeMap<PackageVersion, i64>,
        report: &mut AgingReport,
    ) -> Vec<PackageVersion> {
        let mut fresh: BTreeMap<Name, Option<Listing>> = BTreeMap::new();
        let mut confirmed = Vec::new();
        for pv in delete {
            let listing = fresh
                .entry(pv.package.clone())
                .or_insert_with(|| self.dest.stat(&pv.package).ok());
            let Some(listing) = listing else {
                // Unreadable now: the delete itself will say why.
                confirmed.push(pv);
                continue;
            };
            if listing.aliases.iter().any(|a| a.version == pv.version) {
                self.say(format!(
                    "unmark {pv}: protected (an alias on the target names it)"
                ));
                marks.remove(&pv);
                report.unmarked.push(pv);
            } else if listing.versions.contains_key(&pv) {
                confirmed.push(pv);
            } else {
                self.say(format!("unmark {pv}: no longer on the target"));
                marks.remove(&pv);
                report.unmarked.push(pv);
            }
        }
        confirmed
    }

    /// A line about marks: part of the plan under `--dry-run`, a detail otherwise.
    fn say(&self, line: String) {
        if self.dry_run {
            self.reporter.plan_line(self.name, &format!("would {line}"));
        } else {
            self.reporter.detail(self.name, &line);
        }
    }
}

/// Aging of one archive target on the master, its marks in blat's state
/// (none are written under `--dry-run`).
pub struct MasterPass<'a> {
    pub ctx: &'a Context,
    pub target: &'a TargetConfig,
    pub dest: &'a dyn Target,
    pub state: &'a State,
    pub force: bool,
}

impl MasterPass<'_> {
    pub fn apply(
        &self,
        set: &CurrentSet,
        listing: &Listing,
        excess: &[PackageVersion],
        now: i64,
    ) -> Result<AgingReport> {
        let marks = StateMarks {
            state: self.state,
            target: &self.target.name,
        };
        let dry = DryRunMarks(&marks);
        let ager = Ager {
            reporter: &self.ctx.reporter,
            name: &self.target.name,
            dry_run: self.ctx.dry_run,
            dest: self.dest,
            marks: if self.ctx.dry_run { &dry } else { &marks },
            rules: rules(self.target, self.force),
        };
        ager.apply(set, listing, excess, now)
    }
}

/// The aging step of `sync`, after the PackageList: `None` when the
/// target's method leaves excess alone on the master (`none`, `target`).
#[allow(clippy::too_many_arguments)]
pub fn after_sync(
    ctx: &Context,
    target: &TargetConfig,
    state: &State,
    dest: &dyn Target,
    set: &CurrentSet,
    listing: &Listing,
    excess: &[PackageVersion],
    now: i64,
    force: bool,
) -> Option<AgingReport> {
    let method = target.aging.method;
    if matches!(method, AgingMethod::None | AgingMethod::Target) {
        return None;
    }
    let pass = MasterPass {
        ctx,
        target,
        dest,
        state,
        force,
    };
    Some(pass.apply(set, listing, excess, now).unwrap_or_else(|e| {
        let mut r = AgingReport::new(method);
        r.failed.push(Failure {
            item: "aging".into(),
            error: format!("{e:#}"),
        });
        r
    }))
}

pub fn rules(target: &TargetConfig, force: bool) -> Rules {
    Rules {
        method: target.aging.method,
        after: target.aging.after,
        max_delete: target.aging.max_delete,
        force,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pv(p: &str, v: &str) -> PackageVersion {
        PackageVersion::new(p, v).unwrap()
    }

    const NOW: i64 = 10_000_000;
    const AFTER: Duration = Duration::from_secs(14 * 86400);

    #[test]
    fn immediate_deletes_all_excess_and_keeps_no_marks() {
        let old = BTreeMap::from([(pv("back", "1"), NOW - 5)]);
        let d = decide(
            AgingMethod::Immediate,
            &[pv("a", "1"), pv("b", "1")],
            &old,
            NOW,
            AFTER,
        );
        assert_eq!(d.delete, vec![pv("a", "1"), pv("b", "1")]);
        assert!(d.marks.is_empty() && d.marked.is_empty());
        assert_eq!(d.unmarked, vec![pv("back", "1")]);
    }

    #[test]
    fn marks_age_until_after_then_go() {
        let excess = [pv("due", "1"), pv("new", "1"), pv("young", "1")];
        let after = AFTER.as_secs() as i64;
        let old = BTreeMap::from([
            (pv("due", "1"), NOW - after - 1),
            (pv("young", "1"), NOW - after),
            (pv("rejoined", "1"), NOW - 10 * after),
        ]);
        for method in [AgingMethod::Master, AgingMethod::Target] {
            let d = decide(method, &excess, &old, NOW, AFTER);
            // Marked for longer than `after` goes; exactly `after` waits.
            assert_eq!(d.delete, vec![pv("due", "1")]);
            assert_eq!(d.marked, vec![pv("new", "1")]);
            assert_eq!(d.unmarked, vec![pv("rejoined", "1")]);
            assert_eq!(d.waiting, 2);
            assert_eq!(
                d.marks,
                BTreeMap::from([
                    (pv("due", "1"), NOW - after - 1),
                    (pv("new", "1"), NOW),
                    (pv("young", "1"), NOW - after)
                ])
            );
        }
    }

    #[test]
    fn marks_file_round_trips_and_names_a_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileMarks {
            path: dir.path().join(MARKS_FILE),
        };
        assert!(
            store.load().unwrap().is_empty(),
            "a missing file is no marks"
        );
        let marks = BTreeMap::from([(pv("a", "1.0"), 5), (pv("b", "2"), 6)]);
        store.save(&marks).unwrap();
        assert_eq!(store.load().unwrap(), marks);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
        std::fs::write(&store.path, "# c\na 1.0 5\n../x 1 5\n").unwrap();
        let err = format!("{:#}", store.load().unwrap_err());
        assert!(
            err.contains(&format!("{}:3: expected", store.path.display())),
            "{err}"
        );
    }
}
