//! Sending package-versions to an archive target, the one send path of
//! `sync` and `fast`: `parallel` workers (one executor, `exec::drain`) fill
//! batches from a shared queue, scanning each package as it is taken, and
//! stream each batch into one receiver run. One package's failure never
//! stops the others.

use std::sync::Mutex;

use crate::archive::{PackageVersion, SourceArchive};
use crate::config::units::human_bytes;
use crate::config::{ArchiveTarget, TargetConfig};
use crate::delta::Bases;
use crate::report::TransferProgress;
use crate::target::{pack, Outgoing, Target};

/// A batch closes at this many packages or bytes, whichever comes first:
/// small packages share one receiver run, big ones stream alone.
const BATCH_PACKAGES: usize = 64;
const BATCH_BYTES: u64 = 64 << 20;

/// One package-version's transfer: bytes sent, and `Err(reason)` when it did
/// not arrive.
pub type Sent = (PackageVersion, u64, Result<(), String>);

/// The send path `sync` and `fast` share: checks free space once (when
/// `min_free` is set), then streams `pvs` with `parallel` workers in batches,
/// as deltas against `bases` where it can.
/// One package's failure never stops the others; results come back sorted.
#[allow(clippy::too_many_arguments)]
pub fn send_packages(
    reporter: &crate::report::Reporter,
    target: &TargetConfig,
    archive_cfg: &ArchiveTarget,
    source: &SourceArchive,
    dest: &dyn Target,
    pvs: &[PackageVersion],
    bases: &Bases,
    dry_run: bool,
) -> Vec<Sent> {
    if pvs.is_empty() {
        return Vec::new();
    }
    let free = if archive_cfg.min_free > 0 && !dry_run {
        read_free(reporter, target, archive_cfg, dest)
    } else {
        None
    };
    send_with_free(
        reporter,
        target,
        archive_cfg,
        source,
        dest,
        pvs,
        bases,
        free,
    )
}

/// The target's free space (one receiver call); a failure is a warning when
/// `min_free` needs the figure, a detail otherwise.
pub fn read_free(
    reporter: &crate::report::Reporter,
    target: &TargetConfig,
    archive_cfg: &ArchiveTarget,
    dest: &dyn Target,
) -> Option<u64> {
    match dest.df() {
        Ok(avail) => Some(avail),
        Err(e) if archive_cfg.min_free > 0 => {
            reporter.warn(
                &target.name,
                &format!("cannot read free space, min_free not checked: {e:#}"),
            );
            None
        }
        Err(e) => {
            reporter.detail(&target.name, &format!("cannot read free space: {e:#}"));
            None
        }
    }
}

/// [`send_packages`] with the target's free space already read: `free` is
/// checked against `min_free` (`None`: not checked), as a running estimate.
#[allow(clippy::too_many_arguments)]
pub fn send_with_free(
    reporter: &crate::report::Reporter,
    target: &TargetConfig,
    archive_cfg: &ArchiveTarget,
    source: &SourceArchive,
    dest: &dyn Target,
    pvs: &[PackageVersion],
    bases: &Bases,
    free: Option<u64>,
) -> Vec<Sent> {
    if pvs.is_empty() {
        return Vec::new();
    }
    let compression = usable_compression(reporter, target, archive_cfg, dest);
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
        bases,
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
    bases: &'a Bases,
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
            let mut outgoing = match pack::scan(self.source, &pv) {
                Ok(o) => o,
                Err(e) => {
                    results.push((pv, 0, Err(format!("{e:#}"))));
                    continue;
                }
            };
            if let Err(e) = self.bases.plan(self.source, &mut outgoing) {
                // A base that cannot be read here only costs a full send.
                outgoing = outgoing.without_delta();
                self.reporter.detail(
                    &self.target.name,
                    &format!("{pv}: sending in full, no delta: {e:#}"),
                );
            }
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
            batch_bytes += outgoing.streamed_bytes();
            batch.push(outgoing);
        }
        batch
    }

    /// Streams one batch into one receiver run; the packages whose base
    /// failed the receiver's check are sent again, in full.
    fn send_batch(&self, batch: &[Outgoing], results: &mut Vec<Sent>) {
        let mut resend = Vec::new();
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
                    let outgoing = batch.iter().find(|o| o.pv == r.pv);
                    if let (true, Some(o), Err(why)) = (r.stale_base, outgoing, &r.result) {
                        self.reporter.detail(
                            &self.target.name,
                            &format!("{}: {why}; sending it in full", r.pv),
                        );
                        resend.push(o.clone().without_delta());
                        continue;
                    }
                    if r.result.is_ok() {
                        self.reporter.detail(
                            &self.target.name,
                            &format!("sent {} ({})", r.pv, sent_note(bytes, outgoing)),
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
        if !resend.is_empty() {
            self.send_batch(&resend, results);
        }
    }
}

/// `12.0 MiB`, or for a delta `12.0 MiB, 10.8 MiB of it from BASE`.
fn sent_note(bytes: u64, outgoing: Option<&Outgoing>) -> String {
    match outgoing.and_then(|o| o.delta.as_ref()) {
        Some(d) => format!(
            "{}, {} of it from {}",
            human_bytes(bytes),
            human_bytes(d.reused_bytes),
            d.base
        ),
        None => human_bytes(bytes),
    }
}

/// The configured compression, or gzip (with a warning) when it is zstd and
/// the target's receiver reports no zstd; without `compression` in the conf,
/// zstd:1 or, on a target without zstd, gzip:1 (no warning: nothing to fix).
fn usable_compression(
    reporter: &crate::report::Reporter,
    target: &TargetConfig,
    archive_cfg: &ArchiveTarget,
    dest: &dyn Target,
) -> crate::config::Compression {
    use crate::config::Compression;
    let wanted = archive_cfg.compression;
    if !matches!(wanted, Compression::Zstd(_)) {
        return wanted;
    }
    let has_zstd = dest
        .version()
        .map(|info| info.decompressors.iter().any(|d| d == "zstd"));
    match has_zstd {
        Ok(true) => wanted,
        _ if !archive_cfg.compression_set => {
            reporter.detail(&target.name, "the target has no zstd; sending with gzip:1");
            Compression::DEFAULT_WITHOUT_ZSTD
        }
        Ok(false) => {
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
