//! `blat index`: write an archive's content index
//! (`.dpkg_archive/dpkg_archive_list.txt`, see [`crate::index`]). Runs on a
//! target from cron with only `--archive`, or on the master for its own
//! archive; either way under a lock in `.dpkg_archive/locks/index.lock`.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::TargetReport;
use crate::error::{Outcome, UsageError};
use crate::index::{self, IndexReport};
use crate::report::Reporter;

#[derive(Clone, Debug)]
pub struct IndexOptions {
    pub archive: PathBuf,
    /// Walker threads; `None`: one per core.
    pub threads: Option<usize>,
    pub dry_run: bool,
}

impl TargetReport for IndexReport {
    fn outcome(&self) -> Outcome {
        if self.errors.is_empty() {
            Outcome::Done
        } else {
            Outcome::Partial
        }
    }

    fn summary(&self) -> String {
        summary(self)
    }
}

pub fn run(reporter: &Reporter, options: &IndexOptions) -> Result<Outcome> {
    let archive = std::path::absolute(&options.archive).unwrap_or_else(|_| options.archive.clone());
    if !archive.is_dir() {
        return Err(UsageError(format!(
            "cannot index {}: no such directory",
            archive.display()
        ))
        .into());
    }
    let place = archive.display().to_string();
    // A dry run only reads: no lock, nothing created.
    let lock = || {
        if options.dry_run {
            Ok(None)
        } else {
            crate::lock::archive_lock(&archive, "index", &place).map(Some)
        }
    };
    super::for_archive(reporter, options.dry_run, "index", &place, lock, || {
        Ok(Some(index_archive(reporter, options, &archive, &place)?))
    })
}

fn index_archive(
    reporter: &Reporter,
    options: &IndexOptions,
    archive: &Path,
    place: &str,
) -> Result<IndexReport> {
    let started = std::time::Instant::now();
    let threads = options.threads.unwrap_or_else(index::default_threads);
    let scan = index::scan(archive, threads)?;
    if let Some(why) = &scan.rebuild {
        reporter.detail(place, &format!("walking every package-version: {why}"));
    }
    let mut report = if options.dry_run {
        let r = scan.preview();
        let line = if r.unchanged {
            format!("{} is up to date: would leave it as it is", index::LIST)
        } else {
            format!(
                "would write .dpkg_archive/{} ({} package-versions walked, {} from the cache, {} dropped)",
                index::LIST,
                r.walked,
                r.reused,
                r.dropped
            )
        };
        reporter.plan_line(place, &line);
        r
    } else {
        scan.write(threads)?
    };
    report.seconds = started.elapsed().as_secs_f64();
    for e in &report.errors {
        reporter.warn(place, e);
    }
    for u in &report.unlisted {
        reporter.warn(
            place,
            &format!("not listed (its name holds a newline): {u}"),
        );
    }
    Ok(report)
}

fn summary(r: &IndexReport) -> String {
    let what = if r.unchanged { "unchanged" } else { "written" };
    let mut parts = vec![
        format!("{} paths {what}", r.paths),
        format!("{} package-versions", r.versions),
        format!("{} walked", r.walked),
        format!("{} from the cache", r.reused),
    ];
    if r.dropped > 0 {
        parts.push(format!("{} dropped", r.dropped));
    }
    if !r.errors.is_empty() {
        parts.push(format!("{} unreadable", r.errors.len()));
    }
    format!("{} in {:.2}s", parts.join(", "), r.seconds)
}
