//! New versions as deltas (`delta` in a target's config): when the target
//! already holds an older version of the same package that the master
//! holds too (same descpkg mtime on both sides), the files of the new
//! version that are identical to the older one's (same relative path, size
//! and content hash) are not streamed: the receiver takes them from that
//! base version on the target, after checking it (`docs/protocol.md`,
//! `receive`). The result on the target is the same as a full send.
//!
//! Hashes (SHA-256) are cached in the state directory by path, size,
//! mtime, inode and ctime ([`crate::state::HashCache`]), so a second run
//! does not read the files again.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::archive::{Name, PackageVersion, SourceArchive, SourceEntry};
use crate::config::DeltaMode;
use crate::state::{FileStamp, HashCache};
use crate::target::pack::{self, PackEntry};
use crate::target::Outgoing;

/// What a delta entry of a batch reuses from its base on the target.
#[derive(Clone, Debug)]
pub struct Delta {
    /// The older version on the target.
    pub base: Name,
    /// Its descpkg mtime, as the master and the target's listing agree.
    pub base_mtime: i64,
    pub how: DeltaMode,
    /// The new version's regular files taken from the base (not streamed).
    pub reused: Vec<PackEntry>,
    /// Sum of their sizes.
    pub reused_bytes: u64,
}

/// Where deltas of one target's sends come from: the target's versions
/// (from its listing) and the hash cache. [`Bases::off`] plans none.
pub struct Bases {
    mode: DeltaMode,
    /// Package-version → descpkg mtime on the target.
    target: BTreeMap<PackageVersion, i64>,
    hashes: Option<HashCache>,
}

impl Bases {
    /// Bases for a target with these versions; `hashes` is the cache
    /// (`None`: hashes are computed every time).
    pub fn new(
        mode: DeltaMode,
        target: BTreeMap<PackageVersion, i64>,
        hashes: Option<HashCache>,
    ) -> Bases {
        Bases {
            mode,
            target,
            hashes,
        }
    }

    /// The bases of a send to `target`, whose listing gave `versions`: the
    /// hash cache in `state_dir` is opened unless the mode is `off` or this
    /// is a dry run (which sends nothing); a cache that cannot be opened is
    /// a warning, and hashes are then computed every time.
    pub fn for_target(
        reporter: &crate::report::Reporter,
        target: &crate::config::TargetConfig,
        archive_cfg: &crate::config::ArchiveTarget,
        state_dir: &Path,
        versions: &BTreeMap<PackageVersion, crate::target::OnTarget>,
        dry_run: bool,
    ) -> Bases {
        if archive_cfg.delta == DeltaMode::Off || dry_run {
            return Bases::off();
        }
        let hashes = match HashCache::open(state_dir) {
            Ok(c) => Some(c),
            Err(e) => {
                reporter.warn(&target.name, &format!("{e:#}; hashing without a cache"));
                None
            }
        };
        let mtimes = versions.iter().map(|(pv, on)| (pv.clone(), on.mtime));
        Bases::new(archive_cfg.delta, mtimes.collect(), hashes)
    }

    /// No deltas: every package is sent in full.
    pub fn off() -> Bases {
        Bases::new(DeltaMode::Off, BTreeMap::new(), None)
    }

    /// Turns `outgoing` into a delta when a base exists and some files are
    /// unchanged; leaves it whole otherwise.
    pub fn plan(&self, source: &SourceArchive, outgoing: &mut Outgoing) -> Result<()> {
        if self.mode == DeltaMode::Off || outgoing.delta.is_some() {
            return Ok(());
        }
        let Some((base, base_mtime)) = self.base_of(source, &outgoing.pv) else {
            return Ok(());
        };
        let base_pv = PackageVersion {
            package: outgoing.pv.package.clone(),
            version: base.clone(),
        };
        let base_files = base_files(source, &base_pv)?;
        let new_root = source.version_dir(&outgoing.pv);
        let base_root = source.version_dir(&base_pv);
        let mut kept = Vec::with_capacity(outgoing.entries.len());
        let mut reused = Vec::new();
        let mut reused_bytes = 0;
        for entry in std::mem::take(&mut outgoing.entries) {
            let same = match base_files.get(&entry.rel) {
                Some(b) if reusable(&entry, b) => self.same_content(
                    &new_root.join(&entry.rel),
                    &entry.meta,
                    &base_root.join(&entry.rel),
                    b,
                )?,
                _ => false,
            };
            if same {
                reused_bytes += entry.meta.len();
                reused.push(entry);
            } else {
                kept.push(entry);
            }
        }
        outgoing.entries = kept;
        if !reused.is_empty() {
            outgoing.delta = Some(Delta {
                base,
                base_mtime,
                how: self.mode,
                reused,
                reused_bytes,
            });
        }
        Ok(())
    }

    /// The newest (by descpkg mtime, then name) other version of the
    /// package that the target holds with the same descpkg mtime as here.
    fn base_of(&self, source: &SourceArchive, pv: &PackageVersion) -> Option<(Name, i64)> {
        let from = PackageVersion {
            package: pv.package.clone(),
            version: Name::new("0").ok()?,
        };
        self.target
            .range(from..)
            .take_while(|(t, _)| t.package == pv.package)
            .filter(|(t, _)| t.version != pv.version)
            .filter(|(t, &mtime)| {
                matches!(source.inspect(t), Ok(SourceEntry::Version { descpkg_mtime, .. })
                    if descpkg_mtime == mtime)
            })
            .max_by(|a, b| (a.1, &a.0.version).cmp(&(b.1, &b.0.version)))
            .map(|(t, &mtime)| (t.version.clone(), mtime))
    }

    /// True when the two files have the same SHA-256.
    fn same_content(
        &self,
        new: &Path,
        new_meta: &std::fs::Metadata,
        base: &Path,
        base_meta: &std::fs::Metadata,
    ) -> Result<bool> {
        Ok(self.hash(new, new_meta)? == self.hash(base, base_meta)?)
    }

    fn hash(&self, path: &Path, meta: &std::fs::Metadata) -> Result<Vec<u8>> {
        let stamp = FileStamp {
            size: meta.len(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            ino: meta.ino(),
            ctime: meta.ctime(),
        };
        if let Some(h) = self.hashes.as_ref().and_then(|c| c.get(path, stamp)) {
            return Ok(h);
        }
        let mut file =
            File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut hasher = Sha256::new();
        io::copy(&mut file, &mut hasher)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let hash = hasher.finalize().to_vec();
        if let Some(c) = &self.hashes {
            c.put(path, stamp, &hash);
        }
        Ok(hash)
    }
}

/// The base version's regular files by relative path.
fn base_files(
    source: &SourceArchive,
    base: &PackageVersion,
) -> Result<HashMap<PathBuf, std::fs::Metadata>> {
    let scanned = pack::scan(source, base)?;
    Ok(scanned
        .entries
        .into_iter()
        .filter(|e| e.meta.file_type().is_file())
        .map(|e| (e.rel, e.meta))
        .collect())
}

/// A regular file whose base is a regular file of the same size, with a
/// path the manifest can carry (one line, tab-separated: no newline, no
/// tab); `descpkg` always comes in the stream, so the new version's own
/// descpkg mtime is the one that arrives.
fn reusable(entry: &PackEntry, base: &std::fs::Metadata) -> bool {
    let bytes = entry.rel.as_os_str().as_bytes();
    entry.meta.file_type().is_file()
        && base.len() == entry.meta.len()
        && !bytes.is_empty()
        && bytes != b"descpkg"
        && !bytes.iter().any(|&b| b == b'\n' || b == b'\t')
}

impl Outgoing {
    /// The same package-version, every file in the stream (after its base
    /// failed the receiver's check).
    pub fn without_delta(mut self) -> Outgoing {
        if let Some(d) = self.delta.take() {
            self.entries.extend(d.reused);
        }
        self
    }

    /// Bytes of file content the stream carries for it.
    pub fn streamed_bytes(&self) -> u64 {
        self.bytes - self.delta.as_ref().map_or(0, |d| d.reused_bytes)
    }
}

/// The `delta=I,BASE,MTIME,HOW` words of a batch's `receive` command.
pub fn options(batch: &[Outgoing]) -> Vec<String> {
    batch
        .iter()
        .enumerate()
        .filter_map(|(i, o)| {
            let d = o.delta.as_ref()?;
            Some(format!(
                "delta={i},{},{},{}",
                d.base,
                d.base_mtime,
                d.how.wire_name()
            ))
        })
        .collect()
}

/// Writes the manifest that precedes the stream when the batch has deltas:
/// `I<TAB>SIZE<TAB>MODE<TAB>MTIME<TAB>PATH` per reused file (MODE in
/// octal), then `end`.
pub fn write_manifest(batch: &[Outgoing], out: &mut dyn Write) -> io::Result<()> {
    let mut buf = Vec::new();
    for (i, o) in batch.iter().enumerate() {
        let Some(d) = &o.delta else { continue };
        for e in &d.reused {
            write!(
                buf,
                "{i}\t{}\t{:o}\t{}\t",
                e.meta.len(),
                e.meta.mode() & 0o7777,
                e.meta.mtime().max(0)
            )?;
            buf.extend_from_slice(e.rel.as_os_str().as_bytes());
            buf.push(b'\n');
        }
    }
    buf.extend_from_slice(b"end\n");
    out.write_all(&buf)
}
