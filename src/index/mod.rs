//! The content index of an archive: `.dpkg_archive/dpkg_archive_list.txt`,
//! every file and folder one path a line, relative to the archive, sorted by
//! bytes (as `LC_ALL=C sort` sorts), so that people grep a file instead of
//! walking the tree.
//!
//! What is listed: every entry below the archive root, directories, files
//! and symlinks alike (symlinks are listed, never followed, so an alias
//! `pkg/current` is one line). Left out: names starting with `.` at depth 1
//! and 2 (never packages or versions: `.dpkg_archive/` itself, the
//! `.blat-tmp-*`/`.blat-del-*` temporaries, `.snapshot` directories), and
//! names holding a newline (they cannot be one line; reported). Inside a
//! package-version everything is listed, hidden files included.
//!
//! How it stays cheap: in byte order the lines below a directory `D/` are
//! one contiguous run, so the list is a merge of single lines (packages,
//! version directories, aliases) and blocks (everything below one version).
//! Released package-versions never change, so their blocks are cached: the
//! [`cache::Cache`] records where each block sits in the current list,
//! keyed by descpkg mtime; a re-run stats the descpkg files, walks only new
//! or changed package-versions (in parallel) and copies every other block
//! from the previous list. When nothing changed, the list is left as it is.
//! Versions still being built (writable) and directories that are not
//! package-versions are walked on every run.

pub mod cache;
pub mod walk;

use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::archive::Name;
use cache::{Cache, CachedBlock, Fingerprint, Stamp};
use walk::Block;

/// The list, under `<archive>/.dpkg_archive/`.
pub const LIST: &str = "dpkg_archive_list.txt";
/// Its cache, beside it.
pub const CACHE: &str = "dpkg_archive_list.cache";

/// Walked blocks waiting to be written, at most: bounds memory whatever the
/// order in which the walkers finish.
const WINDOW: usize = 1024;

/// One entry of the list before its lines are known.
#[derive(Debug)]
struct Item {
    /// A line's own text, or a block's directory path with a trailing `/`:
    /// sorting by key puts every line and block in its place.
    key: Vec<u8>,
    kind: Kind,
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Line,
    /// Everything below a directory; `stamp` (the descpkg mtime) for a
    /// released package-version, whose block may come from the cache.
    Block {
        stamp: Option<Stamp>,
    },
}

/// The archive's shape: what a pass would write, before any walking.
#[derive(Debug)]
pub struct Scan {
    root: PathBuf,
    items: Vec<Item>,
    /// Problems found while scanning the top two levels.
    errors: Vec<String>,
    unlisted: Vec<String>,
    cache: Option<Cache>,
    /// Why the cache is not used, when it is not.
    pub rebuild: Option<String>,
}

/// What a pass did (or, under `--dry-run`, would do).
#[derive(Debug, Default, Serialize)]
pub struct IndexReport {
    pub archive: PathBuf,
    /// Lines of the list.
    pub paths: u64,
    /// Released package-versions (the cacheable blocks).
    pub versions: usize,
    /// Blocks walked this time: new or changed package-versions, versions
    /// still being built, directories that are not package-versions.
    pub walked: usize,
    /// Package-versions copied from the previous list.
    pub reused: usize,
    /// Package-versions in the cache that are no longer in the archive.
    pub dropped: usize,
    /// Why the whole archive was walked (no cache, damaged cache, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_rebuild: Option<String>,
    /// Nothing changed: the list was left as it was.
    pub unchanged: bool,
    /// Directories that could not be read (their lines are missing).
    pub errors: Vec<String>,
    /// Entries left out because their name holds a newline.
    pub unlisted: Vec<String>,
    pub seconds: f64,
}

fn dpkg_dir(root: &Path) -> PathBuf {
    root.join(".dpkg_archive")
}

/// Lists the top two levels of the archive and loads the cache: cheap (one
/// directory read per package, two stats per package-version), and spread
/// over `threads` threads, since those stats are most of a no-change run.
pub fn scan(root: &Path, threads: usize) -> Result<Scan> {
    let meta =
        std::fs::metadata(root).with_context(|| format!("cannot index {}", root.display()))?;
    if !meta.is_dir() {
        bail!("cannot index {}: not a directory", root.display());
    }
    let mut found = Found::default();
    let mut packages = Vec::new();
    let top = std::fs::read_dir(root).with_context(|| format!("cannot list {}", root.display()))?;
    for entry in top {
        let entry = entry.with_context(|| format!("cannot list {}", root.display()))?;
        let Some(name) = found.listable(root, entry.file_name().as_bytes()) else {
            continue;
        };
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        found.items.push(Item {
            key: name.clone(),
            kind: Kind::Line,
        });
        if !is_dir {
            continue;
        }
        if std::str::from_utf8(&name).is_ok_and(|n| Name::new(n).is_ok()) {
            packages.push(name);
        } else {
            found.items.push(Item {
                key: with_slash(&name),
                kind: Kind::Block { stamp: None },
            });
        }
    }
    let next = AtomicUsize::new(0);
    let parts: Vec<Found> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads.clamp(1, packages.len().max(1)))
            .map(|_| {
                s.spawn(|| {
                    let mut part = Found::default();
                    while let Some(p) = packages.get(next.fetch_add(1, Ordering::Relaxed)) {
                        part.package(root, p);
                    }
                    part
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a scanning thread panicked"))
            .collect()
    });
    for part in parts {
        found.items.extend(part.items);
        found.errors.extend(part.errors);
        found.unlisted.extend(part.unlisted);
    }
    found.items.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    found.errors.sort();
    found.unlisted.sort();
    let mut scan = Scan {
        root: root.to_path_buf(),
        items: found.items,
        errors: found.errors,
        unlisted: found.unlisted,
        cache: None,
        rebuild: None,
    };
    match Cache::load(&dpkg_dir(root).join(CACHE)) {
        Ok(cache) => match std::fs::symlink_metadata(dpkg_dir(root).join(LIST)) {
            Ok(meta) if Some(Fingerprint::of(&meta)) == cache.list => scan.cache = Some(cache),
            Ok(_) => scan.rebuild = Some(format!("{LIST} changed since the cache was written")),
            Err(_) => scan.rebuild = Some(format!("no {LIST} yet")),
        },
        Err(reason) => scan.rebuild = Some(reason),
    }
    Ok(scan)
}

/// What scanning (part of) the top two levels found.
#[derive(Default)]
struct Found {
    items: Vec<Item>,
    errors: Vec<String>,
    unlisted: Vec<String>,
}

fn with_slash(path: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(path.len() + 1);
    key.extend_from_slice(path);
    key.push(b'/');
    key
}

impl Found {
    /// The entry's name if it belongs in the list at depth 1 or 2.
    fn listable(&mut self, dir: &Path, name: &[u8]) -> Option<Vec<u8>> {
        if name.starts_with(b".") {
            return None;
        }
        if name.contains(&b'\n') {
            self.unlisted.push(
                dir.join(OsStr::from_bytes(name))
                    .display()
                    .to_string()
                    .escape_default()
                    .to_string(),
            );
            return None;
        }
        Some(name.to_vec())
    }

    /// The entries of one package directory: versions, aliases, the rest.
    fn package(&mut self, root: &Path, package: &[u8]) {
        let dir = root.join(OsStr::from_bytes(package));
        let handle = File::open(&dir).ok();
        let entries = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) => {
                self.errors
                    .push(format!("cannot list {}: {e}", dir.display()));
                return;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    self.errors
                        .push(format!("cannot list {}: {e}", dir.display()));
                    return;
                }
            };
            let Some(name) = self.listable(&dir, entry.file_name().as_bytes()) else {
                continue;
            };
            let mut path = Vec::with_capacity(package.len() + 1 + name.len());
            path.extend_from_slice(package);
            path.push(b'/');
            path.extend_from_slice(&name);
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if is_dir {
                let stamp = released_stamp(handle.as_ref(), &entry.path(), &name);
                self.items.push(Item {
                    key: with_slash(&path),
                    kind: Kind::Block { stamp },
                });
            }
            self.items.push(Item {
                key: path,
                kind: Kind::Line,
            });
        }
    }
}

impl Scan {
    /// A digest of everything that decides the list's content when all
    /// blocks come from the cache: equal digests, equal lists.
    fn digest(&self) -> String {
        let mut h = Sha256::new();
        for item in &self.items {
            match item.kind {
                Kind::Line => h.update(b"L"),
                Kind::Block { stamp: None } => h.update(b"W"),
                Kind::Block {
                    stamp: Some((s, ns)),
                } => {
                    h.update(b"B");
                    h.update(s.to_le_bytes());
                    h.update(ns.to_le_bytes());
                }
            }
            h.update(&item.key);
            h.update(b"\n");
        }
        hex::encode(h.finalize())
    }

    /// The cached block for `item`, if the cache has it with the same stamp.
    fn cached(&self, item: &Item) -> Option<CachedBlock> {
        let Kind::Block { stamp: Some(stamp) } = item.kind else {
            return None;
        };
        self.cache
            .as_ref()?
            .blocks
            .get(&item.key)
            .filter(|c| c.stamp == stamp)
            .copied()
    }

    /// True when the list on disk is already what a pass would write.
    pub fn unchanged(&self) -> bool {
        let Some(cache) = &self.cache else {
            return false;
        };
        self.items
            .iter()
            .all(|i| i.kind != Kind::Block { stamp: None })
            && cache.digest == self.digest()
    }

    /// What a pass would do, without doing it (`--dry-run`, and the counts
    /// of the report).
    pub fn preview(&self) -> IndexReport {
        let mut r = IndexReport {
            archive: self.root.clone(),
            full_rebuild: self.rebuild.clone(),
            ..IndexReport::default()
        };
        for item in &self.items {
            match item.kind {
                Kind::Line => r.paths += 1,
                Kind::Block { stamp } => {
                    r.versions += usize::from(stamp.is_some());
                    match self.cached(item) {
                        Some(c) => {
                            r.reused += 1;
                            r.paths += c.lines;
                        }
                        None => r.walked += 1,
                    }
                }
            }
        }
        if let Some(cache) = &self.cache {
            let present: std::collections::HashSet<&[u8]> =
                self.items.iter().map(|i| i.key.as_slice()).collect();
            r.dropped = cache
                .blocks
                .keys()
                .filter(|k| !present.contains(k.as_slice()))
                .count();
        }
        r.unchanged = self.unchanged();
        if r.unchanged {
            r.paths = self.cache.as_ref().map_or(0, |c| c.paths);
        }
        r.errors = self.errors.clone();
        r.unlisted = self.unlisted.clone();
        r
    }

    /// Writes the list (temporary file, then rename) and its cache. When a
    /// cached range turns out not to match the list, starts over without
    /// the cache.
    pub fn write(mut self, threads: usize) -> Result<IndexReport> {
        let mut report = self.preview();
        if report.unchanged {
            return Ok(report);
        }
        let outcome = match self.write_list(threads) {
            Err(WriteError::Stale(reason)) => {
                self.cache = None;
                self.rebuild = Some(reason);
                report = self.preview();
                self.write_list(threads)
            }
            other => other,
        };
        let written = match outcome {
            Ok(w) => w,
            Err(WriteError::Stale(reason)) => bail!("cannot write the index: {reason}"),
            Err(WriteError::Failed(e)) => return Err(e),
        };
        report.paths = written.cache.paths;
        report.errors.extend(written.errors);
        report.unlisted.extend(written.unlisted);
        if let Err(e) = written.cache.save(&dpkg_dir(&self.root).join(CACHE)) {
            report
                .errors
                .push(format!("{e:#} (the next run walks everything)"));
        }
        Ok(report)
    }

    fn write_list(&self, threads: usize) -> Result<Written, WriteError> {
        let dir = dpkg_dir(&self.root);
        crate::atomic::own_dir(&dir)?;
        let list = dir.join(LIST);
        let file = crate::atomic::AtomicFile::create(&list)?;
        let mut old = match &self.cache {
            Some(_) => Some(
                OldList::open(&list)
                    .map_err(|e| WriteError::Stale(format!("cannot read {LIST}: {e}")))?,
            ),
            None => None,
        };
        // Blocks to walk, in list order.
        let jobs: Vec<&Item> = self
            .items
            .iter()
            .filter(|i| matches!(i.kind, Kind::Block { .. }) && self.cached(i).is_none())
            .collect();
        let pipe = Pipe::new(jobs.len());
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut written = Written::default();
        let result = std::thread::scope(|s| {
            for _ in 0..threads.max(1).min(jobs.len()) {
                s.spawn(|| pipe.work(&jobs, &self.root));
            }
            let result = self.merge(&mut out, old.as_mut(), &pipe, &mut written);
            pipe.stop();
            result
        });
        result?;
        let file = out
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("cannot write {}", list.display()))?;
        file.commit()?;
        let meta = std::fs::symlink_metadata(&list)
            .with_context(|| format!("cannot read {}", list.display()))?;
        written.cache.list = Some(Fingerprint::of(&meta));
        written.cache.digest = self.digest();
        Ok(written)
    }

    /// Writes every item in order: lines from the scan, blocks from the old
    /// list or from the walkers.
    fn merge(
        &self,
        out: &mut impl Write,
        mut old: Option<&mut OldList>,
        pipe: &Pipe,
        w: &mut Written,
    ) -> Result<(), WriteError> {
        let mut pos: u64 = 0;
        let mut job = 0;
        let io = |e: std::io::Error| {
            WriteError::Failed(anyhow::Error::new(e).context("cannot write the index"))
        };
        for item in &self.items {
            let stamp = match item.kind {
                Kind::Line => {
                    out.write_all(&item.key).map_err(io)?;
                    out.write_all(b"\n").map_err(io)?;
                    pos += item.key.len() as u64 + 1;
                    w.cache.paths += 1;
                    continue;
                }
                Kind::Block { stamp } => stamp,
            };
            let block = match (self.cached(item), old.as_deref_mut()) {
                (Some(c), Some(old)) => {
                    old.copy(&c, &item.key, out)?;
                    c
                }
                _ => {
                    let walked = pipe.take(job)?;
                    job += 1;
                    out.write_all(&walked.text).map_err(io)?;
                    let block = CachedBlock {
                        stamp: stamp.unwrap_or_default(),
                        offset: pos,
                        len: walked.text.len() as u64,
                        lines: walked.lines,
                    };
                    let complete = walked.errors.is_empty();
                    w.errors.extend(walked.errors);
                    w.unlisted.extend(walked.unlisted);
                    if stamp.is_none() || !complete {
                        pos += block.len;
                        w.cache.paths += block.lines;
                        continue;
                    }
                    block
                }
            };
            w.cache.blocks.insert(
                item.key.clone(),
                CachedBlock {
                    offset: pos,
                    ..block
                },
            );
            pos += block.len;
            w.cache.paths += block.lines;
        }
        Ok(())
    }
}

/// The stamp of a released package-version: a directory with a valid
/// version name, no write bit, and a `descpkg` regular file. Anything else
/// is walked on every run. `package` is the open package directory: stats
/// relative to it resolve one or two path components instead of the whole
/// archive path, and these stats are most of a no-change run.
fn released_stamp(package: Option<&File>, dir: &Path, name: &[u8]) -> Option<Stamp> {
    std::str::from_utf8(name)
        .ok()
        .and_then(|n| Name::new(n).ok())?;
    let (descpkg, meta) = match package {
        Some(fd) => {
            let mut rel = name.to_vec();
            let descpkg = {
                let mut d = rel.clone();
                d.extend_from_slice(b"/descpkg\0");
                lstat_at(fd, &d)?
            };
            rel.push(0);
            (descpkg, lstat_at(fd, &rel)?)
        }
        None => {
            let d = std::fs::symlink_metadata(dir.join("descpkg")).ok()?;
            let m = std::fs::symlink_metadata(dir).ok()?;
            (
                Stat {
                    mode: d.mode(),
                    mtime: d.mtime(),
                    mtime_nsec: d.mtime_nsec(),
                },
                Stat {
                    mode: m.mode(),
                    mtime: m.mtime(),
                    mtime_nsec: m.mtime_nsec(),
                },
            )
        }
    };
    let is_file = descpkg.mode & libc::S_IFMT == libc::S_IFREG;
    (is_file && meta.mode & 0o222 == 0).then_some((descpkg.mtime, descpkg.mtime_nsec))
}

struct Stat {
    mode: u32,
    mtime: i64,
    mtime_nsec: i64,
}

/// `lstat` of `rel` (NUL-terminated) below the open directory `dir`.
fn lstat_at(dir: &File, rel: &[u8]) -> Option<Stat> {
    let rel = std::ffi::CStr::from_bytes_with_nul(rel).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `dir` is an open descriptor for the call's duration, `rel` is
    // NUL-terminated, and `st` is only read after fstatat filled it.
    let st = unsafe {
        if libc::fstatat(
            dir.as_raw_fd(),
            rel.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        ) != 0
        {
            return None;
        }
        st.assume_init()
    };
    Some(Stat {
        mode: st.st_mode,
        mtime: st.st_mtime,
        mtime_nsec: st.st_mtime_nsec,
    })
}

#[derive(Default)]
struct Written {
    cache: Cache,
    errors: Vec<String>,
    unlisted: Vec<String>,
}

enum WriteError {
    /// The cache does not match the list: start over without it.
    Stale(String),
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for WriteError {
    fn from(e: anyhow::Error) -> WriteError {
        WriteError::Failed(e)
    }
}

/// The previous list, read forward only: cached blocks come in list order.
struct OldList {
    reader: BufReader<File>,
    pos: u64,
    /// The byte before `pos` (a virtual newline at the start).
    last: u8,
    buf: Vec<u8>,
}

impl OldList {
    fn open(path: &Path) -> std::io::Result<OldList> {
        Ok(OldList {
            reader: BufReader::with_capacity(1 << 20, File::open(path)?),
            pos: 0,
            last: b'\n',
            buf: Vec::new(),
        })
    }

    /// Copies one cached block, checking that it starts a line with its
    /// key and ends a line.
    fn copy(
        &mut self,
        block: &CachedBlock,
        key: &[u8],
        out: &mut impl Write,
    ) -> Result<(), WriteError> {
        let stale =
            |why: &str| WriteError::Stale(format!("the cache does not match {LIST} ({why})"));
        if block.offset < self.pos {
            return Err(stale("blocks out of order"));
        }
        if block.offset > self.pos {
            self.reader
                .seek_relative((block.offset - self.pos - 1) as i64)
                .map_err(|_| stale("cannot seek"))?;
            let mut one = [0u8];
            self.reader
                .read_exact(&mut one)
                .map_err(|_| stale("cut short"))?;
            self.last = one[0];
        }
        self.buf.resize(block.len as usize, 0);
        self.reader
            .read_exact(&mut self.buf)
            .map_err(|_| stale("cut short"))?;
        self.pos = block.offset + block.len;
        if self.last != b'\n' || !self.buf.starts_with(key) || self.buf.last() != Some(&b'\n') {
            return Err(stale(&format!(
                "no block of {} where expected",
                String::from_utf8_lossy(key)
            )));
        }
        self.last = b'\n';
        out.write_all(&self.buf).map_err(|e| {
            WriteError::Failed(anyhow::Error::new(e).context("cannot write the index"))
        })
    }
}

/// Walkers take blocks in list order and hand them back through a window
/// of [`WINDOW`] slots; the writer takes them in the same order.
struct Pipe {
    state: Mutex<PipeState>,
    changed: Condvar,
    jobs: usize,
}

struct PipeState {
    next: usize,
    consumed: usize,
    ready: Vec<Option<Block>>,
    stopped: bool,
}

impl Pipe {
    fn new(jobs: usize) -> Pipe {
        Pipe {
            state: Mutex::new(PipeState {
                next: 0,
                consumed: 0,
                ready: (0..WINDOW.min(jobs)).map(|_| None).collect(),
                stopped: false,
            }),
            changed: Condvar::new(),
            jobs,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PipeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A walker thread: walks blocks until there are none left or the
    /// writer stopped.
    fn work(&self, jobs: &[&Item], root: &Path) {
        // A panicking walker stops the pipe, so the writer never waits for
        // a block that will not come.
        struct StopOnPanic<'a>(&'a Pipe);
        impl Drop for StopOnPanic<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    self.0.stop();
                }
            }
        }
        let _guard = StopOnPanic(self);
        loop {
            let j = {
                let mut st = self.lock();
                loop {
                    if st.stopped || st.next >= self.jobs {
                        return;
                    }
                    if st.next < st.consumed + WINDOW {
                        break;
                    }
                    st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
                }
                st.next += 1;
                st.next - 1
            };
            let key = &jobs[j].key;
            let dir = root.join(OsStr::from_bytes(&key[..key.len() - 1]));
            let block = walk::walk(&dir, key);
            let mut st = self.lock();
            let slot = j % st.ready.len();
            st.ready[slot] = Some(block);
            self.changed.notify_all();
        }
    }

    /// The writer: the `j`th block, waiting for it.
    fn take(&self, j: usize) -> Result<Block> {
        let mut st = self.lock();
        loop {
            let slot = j % st.ready.len();
            if let Some(block) = st.ready[slot].take() {
                st.consumed = j + 1;
                self.changed.notify_all();
                return Ok(block);
            }
            if st.stopped {
                bail!("a walker thread failed");
            }
            st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn stop(&self) {
        self.lock().stopped = true;
        self.changed.notify_all();
    }
}

/// Threads for walking: one per core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}
