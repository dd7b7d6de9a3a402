//! Zipping and uploading the ZIPs a pass decided on, `parallel` at a time;
//! each upload is remembered in the state file as it ends.

use std::collections::BTreeSet;

use anyhow::{Context as _, Result};

use super::{open_state, Ledger, Pass, S3SyncReport};
use crate::archive::{PackageVersion, SourceArchive};
use crate::ops::Failure;
use crate::report::{Reporter, TransferProgress};
use crate::state::Upload;
use crate::store::keys::{zip_key, MTIME_META};
use crate::store::{zip, Multipart, ObjectStore, Put, Stored};

/// Zips and uploads the queue with `parallel` workers; a failed package is
/// recorded and the others go on. Each upload is remembered as it ends, so
/// an interrupted pass loses nothing it finished.
pub(super) fn upload_all(
    pass: &Pass,
    source: &SourceArchive,
    queue: &[(PackageVersion, i64)],
    report: &mut S3SyncReport,
    present: &mut BTreeSet<PackageVersion>,
) {
    if queue.is_empty() {
        return;
    }
    let (ctx, target, s3, store) = (pass.ctx, pass.target, pass.s3, pass.store);
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
