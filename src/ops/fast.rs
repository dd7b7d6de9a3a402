//! `blat fast`: consume tags, so a released package reaches its targets in
//! seconds instead of at the next full sync (docs/archive.md, Tags).
//!
//! Each selected archive target gets its own thread for the whole run (the
//! concurrent frame of [`super::frame`], one job per target), so a slow or
//! unreachable target never delays the others. A thread holds the
//! target's watcher lock (`locks/<target>.watch`) for the run and takes the
//! target lock only for a poll that found tags: a minute-long `--watch` thus
//! keeps out a second watcher (exit code 4) without shutting `sync` out.
//!
//! A poll reads the tag directory (nothing else when it is empty), looks each
//! tagged package-version up in the source archive, asks the target about
//! those packages only (`Target::stat`), sends what is absent or differs by
//! the path `sync` uses, links aliases, and removes a tag only once its
//! package is in place. Between polls the thread sleeps `fast_poll`, or less:
//! on Linux an inotify watch on the tag directory wakes it as soon as a tag
//! is written there (polling still covers tag directories on NFS).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;

mod deliver;
mod wake;

use super::{Context, LockKind, PassResult, Passes, Selection, Stopped, TargetReport};
use crate::archive::{past_grace, Alias, PackageVersion, SourceArchive, SourceEntry};
use crate::config::units::human_bytes;
use crate::config::{ArchiveTarget, Config, TargetConfig};
use crate::error::{LockHeld, Outcome, UsageError};
use crate::report::Reporter;
use crate::state::State;
use crate::tags as tag;
use crate::target::{self, dryrun::DryRun, Target};
use wake::Wake;

#[derive(Clone, Debug, Default)]
pub struct FastOptions {
    pub selection: Selection,
    /// Keep polling for this long, then exit; `None`: one pass.
    pub watch: Option<Duration>,
}

/// The shortest pause between polls, whatever `fast_poll` says: with
/// `fast_poll = 0` a watch would spin on the tag directory.
const MIN_POLL: Duration = Duration::from_millis(100);

/// What one target's run did, summed over all its polls.
#[derive(Debug, Default, Serialize)]
pub struct FastReport {
    /// Package-versions sent (an alias tag sends its version).
    pub sent: Vec<PackageVersion>,
    pub bytes_sent: u64,
    pub linked: Vec<Alias>,
    /// Tags consumed because the target already had their package.
    pub up_to_date: Vec<String>,
    /// Tags left in place because their source is still being written.
    pub kept: Vec<TagNote>,
    /// Tags moved to `.rejected/`.
    pub rejected: Vec<TagNote>,
    /// Tags that failed and stay for a retry.
    pub failed: Vec<TagNote>,
    /// The last poll that found tags could not take the target lock.
    pub busy: bool,
    pub polls: u32,
    pub seconds: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct TagNote {
    pub tag: String,
    pub reason: String,
}

impl FastReport {
    fn did_something(&self) -> bool {
        !self.sent.is_empty() || !self.linked.is_empty() || !self.up_to_date.is_empty()
    }
}

impl TargetReport for FastReport {
    fn outcome(&self) -> Outcome {
        if !self.rejected.is_empty() || !self.failed.is_empty() {
            if self.did_something() {
                Outcome::Partial
            } else {
                Outcome::Failed
            }
        } else if self.busy && !self.did_something() {
            Outcome::Locked
        } else {
            Outcome::Done
        }
    }

    fn summary(&self) -> String {
        let mut parts = vec![format!(
            "{} sent ({})",
            self.sent.len(),
            human_bytes(self.bytes_sent)
        )];
        if !self.linked.is_empty() {
            parts.push(format!("{} aliases linked", self.linked.len()));
        }
        parts.push(format!("{} up to date", self.up_to_date.len()));
        parts.push(format!("{} kept (writable)", self.kept.len()));
        parts.push(format!("{} rejected", self.rejected.len()));
        parts.push(format!("{} failed", self.failed.len()));
        if self.busy {
            parts.push("tags waiting: target busy with another run".into());
        }
        let polls = if self.polls == 1 {
            String::new()
        } else {
            format!(", {} polls", self.polls)
        };
        format!("{} in {:.1}s{polls}", parts.join(", "), self.seconds)
    }

    fn facts(&self) -> crate::state::RunFacts {
        crate::state::RunFacts {
            seconds: Some(self.seconds),
            sent: Some(self.sent.len() as u64),
            bytes_sent: Some(self.bytes_sent),
            failed: Some((self.failed.len() + self.rejected.len()) as u64),
            problem: super::first_problem(
                self.rejected
                    .iter()
                    .chain(&self.failed)
                    .map(|t| (t.tag.clone(), t.reason.clone()))
                    .collect::<Vec<_>>()
                    .into_iter(),
            ),
            ..Default::default()
        }
    }
}

pub fn run(ctx: &Context, options: &FastOptions) -> Result<Outcome> {
    if options.watch.is_some() && ctx.dry_run {
        return Err(UsageError(
            "--watch and --dry-run do not go together: a dry run shows one pass".into(),
        )
        .into());
    }
    let targets = ctx.select(&options.selection, |t| t.archive().is_some(), "archive")?;
    // --watch is at most 100 years (units::MAX_DURATION): this cannot fail.
    let deadline = Instant::now()
        .checked_add(options.watch.unwrap_or_default())
        .ok_or_else(|| UsageError("--watch: too long".into()))?;
    // Every target at once, each under its watcher lock; under --watch a
    // held one is waited for (the previous minute's run ending) rather than
    // leaving the target unwatched.
    let passes = Passes {
        command: "fast",
        jobs: targets.len(),
        lock: LockKind::Watch,
        lock_wait: options.watch.is_some().then_some(deadline),
    };
    super::for_each_target_with(ctx, passes, &targets, |ctx, target, state| {
        let state = (!ctx.dry_run).then_some(state);
        watch_target(ctx, target, state, deadline)
    })
}

/// One target's polls until the deadline, summed up in one report.
fn watch_target(
    ctx: &Context,
    target: &TargetConfig,
    state: Option<&State>,
    deadline: Instant,
) -> PassResult<FastReport> {
    let started = Instant::now();
    let mut poller = Poller::new(&ctx.config, &ctx.reporter, ctx.dry_run, target, state)?;
    let wake = Wake::new(&poller.dir);
    let result = loop {
        if let Err(e) = poller.poll() {
            break Err(e);
        }
        let now = Instant::now();
        if now >= deadline {
            break Ok(());
        }
        wake.wait(ctx.config.fast_poll.max(MIN_POLL).min(deadline - now));
    };
    poller.report.seconds = started.elapsed().as_secs_f64();
    match result {
        Ok(()) => Ok(Some(poller.report)),
        Err(error) => Err(Stopped {
            error,
            report: Some(Box::new(poller.report)),
        }),
    }
}

/// A tag that names a valid package-version, with what it needs.
struct Wanted {
    tag: String,
    /// The package-version to have on the target (an alias's version).
    pv: PackageVersion,
    descpkg_mtime: i64,
    /// The alias to link once `pv` is there (alias tags only).
    alias: Option<Alias>,
}

/// One target's polls and what they found.
struct Poller<'a> {
    config: &'a Config,
    reporter: &'a Reporter,
    dry_run: bool,
    target: &'a TargetConfig,
    archive_cfg: &'a ArchiveTarget,
    source: SourceArchive,
    dir: PathBuf,
    /// The tag directory, open for the poll in progress (nothing in it is
    /// followed: see `tag::TagDir`).
    tags: Option<tag::TagDir>,
    /// `None` under `--dry-run`: nothing is counted or recorded.
    state: Option<&'a State>,
    /// Opened on the first poll with work, kept while it works.
    dest: Option<Box<dyn Target + 'a>>,
    /// Tags whose failure this run already counted (once per run, so a
    /// target down for a minute does not use up ten retries in a watch).
    counted: HashMap<String, u32>,
    /// Tags already reported as kept (said once per run, not every poll).
    announced: HashSet<String>,
    kept: BTreeMap<String, TagNote>,
    report: FastReport,
}

impl<'a> Poller<'a> {
    fn new(
        config: &'a Config,
        reporter: &'a Reporter,
        dry_run: bool,
        target: &'a TargetConfig,
        state: Option<&'a State>,
    ) -> Result<Poller<'a>> {
        let dir = tag::tag_dir(config, &target.name);
        if !dry_run {
            tag::TagDir::create(&dir)?;
        }
        Ok(Poller {
            config,
            reporter,
            dry_run,
            target,
            archive_cfg: target.archive().expect("selected archive targets only"),
            source: SourceArchive::new(&config.archive),
            dir,
            tags: None,
            state,
            dest: None,
            counted: HashMap::new(),
            announced: HashSet::new(),
            kept: BTreeMap::new(),
            report: FastReport::default(),
        })
    }

    fn name(&self) -> &str {
        &self.target.name
    }

    /// One look at the tag directory, and the work it calls for.
    fn poll(&mut self) -> Result<()> {
        self.report.polls += 1;
        let tags = tag::TagDir::open(&self.dir)?;
        let names = match &tags {
            Some(t) => t.pending()?,
            None => Vec::new(),
        };
        if names.is_empty() {
            self.report.busy = false;
            self.kept.clear();
            self.report.kept.clear();
            return Ok(());
        }
        let tags = tags.expect("tags were found in it");
        // A `.rejected` that is a symlink or a file stops the target: no tag
        // is touched until someone makes it a directory again.
        tags.check_rejected()?;
        let _lock = match super::take_lock(
            self.config,
            self.reporter,
            self.dry_run,
            &self.target.name,
            LockKind::Target,
        ) {
            Ok(lock) => lock,
            Err(e) if e.downcast_ref::<LockHeld>().is_some() => {
                if !self.report.busy {
                    self.reporter.info(
                        self.name(),
                        "tags wait: another blat run holds the target lock",
                    );
                }
                self.report.busy = true;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        self.report.busy = false;
        // Without the archive every tag would look like a missing package
        // and use up its retries: fail the run instead, tags untouched.
        self.source.check()?;
        let present: BTreeSet<String> = names
            .iter()
            .filter_map(|n| n.to_str().map(String::from))
            .collect();
        self.kept.retain(|tag, _| present.contains(tag));
        self.tags = Some(tags);
        let wanted = self.classify(names);
        if !wanted.is_empty() {
            self.deliver(wanted);
        }
        self.tags = None;
        self.report.kept = self.kept.values().cloned().collect();
        Ok(())
    }

    /// Checks each tag's name and source; rejects, keeps or fails what cannot
    /// go now and returns the rest.
    fn classify(&mut self, names: Vec<OsString>) -> Vec<Wanted> {
        let now = crate::clock::now();
        let mut wanted = Vec::new();
        for name in names {
            let tag = tag::shown(&name);
            // Only a regular file is a tag: anything else (a directory, a
            // symlink, a FIFO) is moved aside as it is, never opened.
            let kind = self.tags.as_ref().map(|t| t.kind(&name));
            match kind {
                Some(Ok(tag::Kind::File)) => {}
                Some(Ok(kind)) => {
                    self.reject(&name, &tag, &format!("{}, not a tag file", kind.describe()));
                    continue;
                }
                // Consumed or moved by someone else meanwhile.
                Some(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Some(Err(e)) => {
                    self.reporter
                        .warn(self.name(), &format!("cannot look at tag {tag}: {e}"));
                    continue;
                }
                None => continue,
            }
            let pv = match tag::parse_tag(&name) {
                Ok(pv) => pv,
                Err(e) => {
                    self.reject(&name, &tag, &e);
                    continue;
                }
            };
            // An alias tag wants its version and the link (one level only).
            let (version, alias, entry) = match self.source.inspect(&pv) {
                Ok(SourceEntry::Alias(version)) => {
                    let alias = Alias {
                        package: pv.package.clone(),
                        alias: pv.version.clone(),
                        version: version.clone(),
                    };
                    let version = PackageVersion {
                        package: pv.package.clone(),
                        version,
                    };
                    let entry = self.source.inspect(&version);
                    (version, Some(alias), entry)
                }
                other => (pv.clone(), None, other),
            };
            match entry {
                Ok(SourceEntry::Version {
                    descpkg_mtime,
                    writable_since,
                }) => {
                    if let Some(since) =
                        writable_since.filter(|&s| !past_grace(s, now, self.target.writable_grace))
                    {
                        self.keep(&tag, &version, since);
                        continue;
                    }
                    self.kept.remove(&tag);
                    wanted.push(Wanted {
                        tag,
                        pv: version,
                        descpkg_mtime,
                        alias,
                    });
                }
                Ok(_) => {
                    let what = match &alias {
                        Some(a) => format!(
                            "alias {a}: {version} is not a package-version in the source archive"
                        ),
                        None => format!("{pv} does not exist in the source archive"),
                    };
                    self.fail(&tag, &what);
                }
                Err(e) => self.fail(&tag, &format!("{e:#}")),
            }
        }
        wanted
    }

    fn detail(&self, message: &str) {
        if !self.dry_run {
            self.reporter.detail(self.name(), message);
        }
    }

    /// The tag's package is in place: remove the tag, forget its attempts.
    fn consume(&mut self, tag: &str) {
        self.report.failed.retain(|f| f.tag != tag);
        self.counted.remove(tag);
        if self.dry_run {
            self.reporter
                .plan_line(self.name(), &format!("would remove tag {tag}"));
            return;
        }
        let removed = match &self.tags {
            Some(tags) => tags.remove(std::ffi::OsStr::new(tag)),
            None => Ok(()),
        };
        if let Err(e) = removed {
            if e.kind() != std::io::ErrorKind::NotFound {
                self.reporter
                    .warn(self.name(), &format!("cannot remove tag {tag}: {e}"));
            }
        }
        if let Some(state) = &self.state {
            let _ = state.forget_tag(&self.target.name, tag);
        }
    }

    /// Leaves a tag whose source is still being written for a later poll.
    fn keep(&mut self, tag: &str, pv: &PackageVersion, since: i64) {
        let until =
            since.saturating_add(crate::config::units::secs_i64(self.target.writable_grace));
        let reason = format!(
            "{pv} is still writable (since {}); sent once it is read-only or after {}",
            crate::clock::rfc3339(since),
            crate::clock::rfc3339(until)
        );
        if self.announced.insert(tag.to_string()) {
            self.reporter
                .info(self.name(), &format!("tag {tag} kept: {reason}"));
        }
        self.kept.insert(
            tag.to_string(),
            TagNote {
                tag: tag.to_string(),
                reason,
            },
        );
    }

    /// A failed attempt: counted once per run; at `tag_retries` attempts the
    /// tag is rejected, before that it stays for a retry.
    fn fail(&mut self, tag: &str, reason: &str) {
        self.kept.remove(tag);
        let attempts = match (self.counted.get(tag), &self.state) {
            (Some(&n), _) => n,
            (None, Some(state)) => {
                let n = state
                    .tag_failed(&self.target.name, tag, reason)
                    .unwrap_or_else(|e| {
                        self.reporter.warn(
                            &self.target.name,
                            &format!("cannot count the attempt in the state file: {e:#}"),
                        );
                        1
                    });
                self.counted.insert(tag.to_string(), n);
                self.reporter.error(
                    &self.target.name,
                    &format!(
                        "tag {tag}: {reason} (attempt {n} of {})",
                        self.target.tag_retries.max(1)
                    ),
                );
                n
            }
            (None, None) => {
                self.reporter
                    .plan_line(&self.target.name, &format!("tag {tag} fails: {reason}"));
                self.counted.insert(tag.to_string(), 0);
                0
            }
        };
        if self.state.is_some() && attempts >= self.target.tag_retries.max(1) {
            let why = format!("{reason} (gave up after {attempts} attempts)");
            self.report.failed.retain(|f| f.tag != tag);
            self.reject(&OsString::from(tag), tag, &why);
            return;
        }
        self.report.failed.retain(|f| f.tag != tag);
        self.report.failed.push(TagNote {
            tag: tag.to_string(),
            reason: reason.to_string(),
        });
    }

    /// Moves a tag to `.rejected/` with its reason; `shown` is its name made
    /// printable.
    fn reject(&mut self, name: &OsString, shown: &str, reason: &str) {
        self.kept.remove(shown);
        self.counted.remove(shown);
        self.report.rejected.push(TagNote {
            tag: shown.to_string(),
            reason: reason.to_string(),
        });
        if self.dry_run {
            self.reporter
                .plan_line(self.name(), &format!("would reject tag {shown}: {reason}"));
            return;
        }
        self.reporter
            .error(self.name(), &format!("tag {shown} rejected: {reason}"));
        let moved = match &self.tags {
            Some(tags) => tags.reject(name, reason, crate::clock::now()).map(drop),
            None => Err(anyhow::anyhow!("the tag directory is not open")),
        };
        if let Err(e) = moved {
            self.reporter.error(
                self.name(),
                &format!("cannot move tag {shown} aside: {e:#}"),
            );
        }
        if let Some(state) = &self.state {
            let _ = state.forget_tag(&self.target.name, shown);
        }
    }
}

/// Opens a target for a poll; under `--dry-run` its changes only print.
fn open_target<'a>(
    reporter: &'a Reporter,
    dry_run: bool,
    target: &TargetConfig,
) -> Result<Box<dyn Target + 'a>> {
    let inner = target::open(target)?;
    Ok(if dry_run {
        Box::new(DryRun::new(inner, &target.name, reporter))
    } else {
        inner
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_follows_what_happened() {
        let mut r = FastReport::default();
        assert_eq!(r.outcome(), Outcome::Done);
        r.kept.push(TagNote {
            tag: "p::1".into(),
            reason: "writable".into(),
        });
        assert_eq!(r.outcome(), Outcome::Done, "a kept tag is not a failure");
        r.busy = true;
        assert_eq!(r.outcome(), Outcome::Locked);
        r.rejected.push(TagNote {
            tag: "a::b::c".into(),
            reason: "invalid".into(),
        });
        assert_eq!(r.outcome(), Outcome::Failed);
        r.sent.push(PackageVersion::new("p", "2").unwrap());
        assert_eq!(r.outcome(), Outcome::Partial);
        assert!(
            r.summary()
                .starts_with("1 sent (0 B), 0 up to date, 1 kept (writable), 1 rejected, 0 failed"),
            "{}",
            r.summary()
        );
    }
}
