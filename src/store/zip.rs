//! The deterministic ZIP of one package-version, as CI systems fetch it
//! from S3: the same package always gives the same bytes, so the object's
//! checksum is stable and a re-zip never looks like a change.
//!
//! Layout: entries under `<package>/<version>/`, so unzipping into an
//! archive root recreates the archive layout. What makes it deterministic:
//! - entries sorted by name (bytes), directories included (with their modes);
//! - every entry carries the package's descpkg mtime, as the DOS time (UTC)
//!   and as an extended-timestamp field, so `unzip` restores the descpkg
//!   mtime (the change key) to the second and the bytes never depend on when
//!   files were touched, only on their content and modes;
//! - unix modes (permission bits) in the external attributes; symlinks stored
//!   as symlinks (their target is the entry's content);
//! - the same compression decision every time: deflate level 3 (build
//!   outputs come within 2-3% of level 6 at twice the speed: zipping must
//!   keep up with the upload), except files of 1 MiB or more whose first
//!   128 KiB do not compress (archives, images, installers): those are
//!   stored, at the speed of a copy. The decision depends on content only.
//!
//! The ZIP is streamed into any `Write` (the S3 uploader cuts it into parts as
//! it comes): nothing is held whole in memory and nothing is spooled to disk.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use zip::write::{ExtendedFileOptions, FileOptions};
use zip::{CompressionMethod, DateTime, System, ZipWriter};

use crate::archive::{PackageVersion, SourceArchive};

/// One entry of a package's ZIP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the ZIP: `<package>/<version>/<relative path>`, with a
    /// trailing `/` for directories.
    pub name: String,
    pub kind: EntryKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Dir { mode: u32 },
    File { path: PathBuf, size: u64, mode: u32 },
    Symlink { target: String },
}

/// What a package's ZIP will hold, from one walk of its directory.
#[derive(Clone, Debug)]
pub struct Contents {
    pub pv: PackageVersion,
    /// The descpkg mtime: every entry's timestamp.
    pub mtime: i64,
    /// Sorted by name.
    pub entries: Vec<Entry>,
    /// Sum of the file sizes (before compression).
    pub bytes: u64,
}

/// Files at least this big get ZIP64 fields (the crate needs to know before
/// it writes the local header; deflate may grow incompressible data a bit).
const LARGE_FILE: u64 = 0xF000_0000;

/// Deflate level of every compressed file (see the module doc).
const DEFLATE_LEVEL: i64 = 3;
/// Files this big are sampled first; smaller ones are always deflated.
const SAMPLE_FROM: u64 = 1 << 20;
/// How much of a big file the sample takes.
const SAMPLE: usize = 128 << 10;

/// Walks `pv` in the source archive (symlinks are not followed).
pub fn scan(archive: &SourceArchive, pv: &PackageVersion) -> Result<Contents> {
    let root = archive.version_dir(pv);
    let descpkg = root.join("descpkg");
    let mtime = fs::symlink_metadata(&descpkg)
        .with_context(|| format!("cannot read {}", descpkg.display()))?
        .mtime();
    let base = format!("{}/{}/", pv.package, pv.version);
    let meta =
        fs::symlink_metadata(&root).with_context(|| format!("cannot read {}", root.display()))?;
    let mut entries = vec![Entry {
        name: base.clone(),
        kind: EntryKind::Dir {
            mode: meta.mode() & 0o777,
        },
    }];
    let mut bytes = 0;
    let mut dirs = vec![(root.clone(), base)];
    while let Some((dir, prefix)) = dirs.pop() {
        let listing =
            fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?;
        for item in listing {
            let item = item.with_context(|| format!("cannot list {}", dir.display()))?;
            let path = item.path();
            let Some(file_name) = item.file_name().to_str().map(str::to_string) else {
                bail!("cannot zip {}: the file name is not UTF-8", path.display());
            };
            let meta = fs::symlink_metadata(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let name = format!("{prefix}{file_name}");
            let ft = meta.file_type();
            if ft.is_symlink() {
                let target = fs::read_link(&path)
                    .with_context(|| format!("cannot read link {}", path.display()))?;
                let Some(target) = target.to_str().map(str::to_string) else {
                    bail!(
                        "cannot zip {}: the link target is not UTF-8",
                        path.display()
                    );
                };
                entries.push(Entry {
                    name,
                    kind: EntryKind::Symlink { target },
                });
            } else if ft.is_dir() {
                let name = format!("{name}/");
                entries.push(Entry {
                    name: name.clone(),
                    kind: EntryKind::Dir {
                        mode: meta.mode() & 0o777,
                    },
                });
                dirs.push((path, name));
            } else if ft.is_file() {
                bytes += meta.len();
                entries.push(Entry {
                    name,
                    kind: EntryKind::File {
                        path,
                        size: meta.len(),
                        mode: meta.mode() & 0o777,
                    },
                });
            } else {
                bail!(
                    "cannot zip {}: not a file, directory or symlink",
                    path.display()
                );
            }
        }
    }
    entries.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    Ok(Contents {
        pv: pv.clone(),
        mtime,
        entries,
        bytes,
    })
}

/// The DOS date-time of `secs` in UTC, clamped to what ZIP can hold.
fn dos_time(secs: i64) -> DateTime {
    use chrono::{Datelike, Timelike};
    let lo = 315_532_800; // 1980-01-01T00:00:00Z
    let hi = 4_354_819_198; // 2107-12-31T23:59:58Z
    let t = chrono::DateTime::from_timestamp(secs.clamp(lo, hi), 0).expect("clamped into range");
    DateTime::from_date_and_time(
        t.year() as u16,
        t.month() as u8,
        t.day() as u8,
        t.hour() as u8,
        t.minute() as u8,
        t.second() as u8,
    )
    .expect("clamped into the DOS range")
}

/// Entry options shared by every kind: timestamps and the unix system.
fn options(contents: &Contents, mode: u32) -> Result<FileOptions<'static, ExtendedFileOptions>> {
    let mut opts = FileOptions::<ExtendedFileOptions>::default()
        .system(System::Unix)
        .last_modified_time(dos_time(contents.mtime))
        .unix_permissions(mode);
    // Extended timestamp (0x5455): flags = mtime present, then mtime as u32.
    let mtime = contents.mtime.clamp(0, u32::MAX as i64) as u32;
    let mut ut = vec![1u8];
    ut.extend_from_slice(&mtime.to_le_bytes());
    opts.add_extra_data(0x5455, ut, false)
        .context("cannot add the timestamp field")?;
    Ok(opts)
}

/// Writes the ZIP of `contents` to `out`; returns the bytes written.
pub fn write(contents: &Contents, out: impl Write) -> Result<u64> {
    let mut out = CountingWriter {
        inner: out,
        count: 0,
    };
    let mut zip = ZipWriter::new_stream(&mut out);
    let zip_err = |e: zip::result::ZipError| match e {
        zip::result::ZipError::Io(io) => anyhow::Error::new(io),
        other => anyhow::Error::new(other),
    };
    for entry in &contents.entries {
        match &entry.kind {
            EntryKind::Dir { mode } => {
                let opts = options(contents, *mode)?.compression_method(CompressionMethod::Stored);
                zip.add_directory(entry.name.as_str(), opts)
                    .map_err(zip_err)?;
            }
            EntryKind::Symlink { target } => {
                zip.add_symlink(
                    entry.name.as_str(),
                    target.as_str(),
                    options(contents, 0o777)?,
                )
                .map_err(zip_err)?;
            }
            EntryKind::File { path, size, mode } => {
                let mut file =
                    File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
                let mut head = Vec::new();
                let compress = if *size == 0 {
                    false
                } else if *size < SAMPLE_FROM {
                    true
                } else {
                    (&mut file)
                        .take(SAMPLE as u64)
                        .read_to_end(&mut head)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    compresses(&head)
                };
                let (method, level) = if compress {
                    (CompressionMethod::Deflated, Some(DEFLATE_LEVEL))
                } else {
                    (CompressionMethod::Stored, None)
                };
                let opts = options(contents, *mode)?
                    .compression_method(method)
                    .compression_level(level)
                    .large_file(*size >= LARGE_FILE);
                zip.start_file(entry.name.as_str(), opts).map_err(zip_err)?;
                zip.write_all(&head)
                    .with_context(|| format!("cannot zip {}", path.display()))?;
                let copied = head.len() as u64
                    + io::copy(&mut file, &mut zip)
                        .with_context(|| format!("cannot zip {}", path.display()))?;
                if copied != *size {
                    // A released package never changes; this one did under our feet.
                    bail!(
                        "{} changed while it was zipped ({size} bytes expected, {copied} read)",
                        path.display()
                    );
                }
            }
        }
    }
    zip.finish().map_err(zip_err)?;
    out.flush()?;
    Ok(out.count)
}

/// Whether deflate gains at least 3% on `sample` (fastest level: this only
/// tells compressible from incompressible content).
fn compresses(sample: &[u8]) -> bool {
    let mut deflated = flate2::write::DeflateEncoder::new(
        CountingWriter {
            inner: io::sink(),
            count: 0,
        },
        flate2::Compression::fast(),
    );
    if deflated.write_all(sample).is_err() {
        return true;
    }
    match deflated.finish() {
        Ok(counted) => counted.count * 100 < sample.len() as u64 * 97,
        Err(_) => true,
    }
}

/// Counts what passes through, so the caller learns the ZIP's size.
struct CountingWriter<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn package(root: &std::path::Path) -> PackageVersion {
        let dir = root.join("pkg/1.0");
        fs::create_dir_all(dir.join("lib")).unwrap();
        fs::create_dir_all(dir.join("empty")).unwrap();
        fs::write(dir.join("descpkg"), "Package: pkg\n").unwrap();
        fs::write(dir.join("lib/libx.so.1"), "x".repeat(5000)).unwrap();
        fs::write(dir.join("lib.txt"), "").unwrap();
        fs::write(dir.join("run"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(dir.join("run"), fs::Permissions::from_mode(0o755)).unwrap();
        symlink("libx.so.1", dir.join("lib/libx.so")).unwrap();
        let t = filetime::FileTime::from_unix_time(1_700_000_001, 0);
        filetime::set_file_mtime(dir.join("descpkg"), t).unwrap();
        PackageVersion::new("pkg", "1.0").unwrap()
    }

    #[test]
    fn sorted_entries_under_package_version() {
        let tmp = tempfile::tempdir().unwrap();
        let pv = package(tmp.path());
        let c = scan(&SourceArchive::new(tmp.path()), &pv).unwrap();
        let names: Vec<&str> = c.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "pkg/1.0/",
                "pkg/1.0/descpkg",
                "pkg/1.0/empty/",
                "pkg/1.0/lib.txt",
                "pkg/1.0/lib/",
                "pkg/1.0/lib/libx.so",
                "pkg/1.0/lib/libx.so.1",
                "pkg/1.0/run",
            ]
        );
        assert_eq!(c.mtime, 1_700_000_001);
        assert_eq!(c.bytes, 13 + 5000 + 10);
    }

    #[test]
    fn same_package_same_bytes_and_readable() {
        let tmp = tempfile::tempdir().unwrap();
        let pv = package(tmp.path());
        let archive = SourceArchive::new(tmp.path());
        let mut a = Vec::new();
        let n = write(&scan(&archive, &pv).unwrap(), &mut a).unwrap();
        assert_eq!(n, a.len() as u64);
        // Touching files (not the descpkg) changes nothing in the ZIP.
        let t = filetime::FileTime::from_unix_time(1_800_000_000, 0);
        filetime::set_file_mtime(tmp.path().join("pkg/1.0/run"), t).unwrap();
        let mut b = Vec::new();
        write(&scan(&archive, &pv).unwrap(), &mut b).unwrap();
        assert_eq!(a, b);

        let mut z = zip::ZipArchive::new(io::Cursor::new(a)).unwrap();
        let run = z.by_name("pkg/1.0/run").unwrap();
        assert_eq!(run.unix_mode().unwrap() & 0o777, 0o755);
        drop(run);
        let mut link = z.by_name("pkg/1.0/lib/libx.so").unwrap();
        assert!(link.is_symlink());
        let mut target = String::new();
        link.read_to_string(&mut target).unwrap();
        assert_eq!(target, "libx.so.1");
        drop(link);
        let mut lib = z.by_name("pkg/1.0/lib/libx.so.1").unwrap();
        let mut body = String::new();
        lib.read_to_string(&mut body).unwrap();
        assert_eq!(body.len(), 5000);
    }

    #[test]
    fn big_incompressible_files_are_stored() {
        let tmp = tempfile::tempdir().unwrap();
        let pv = package(tmp.path());
        let dir = tmp.path().join("pkg/1.0");
        let mut x: u64 = 7;
        let noise: Vec<u8> = (0..(2 << 20))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        fs::write(dir.join("noise.bin"), &noise).unwrap();
        fs::write(dir.join("text.txt"), "compressible line\n".repeat(100_000)).unwrap();
        let mut out = Vec::new();
        write(
            &scan(&SourceArchive::new(tmp.path()), &pv).unwrap(),
            &mut out,
        )
        .unwrap();
        let mut z = zip::ZipArchive::new(io::Cursor::new(out)).unwrap();
        let noise_entry = z.by_name("pkg/1.0/noise.bin").unwrap();
        assert_eq!(noise_entry.compression(), CompressionMethod::Stored);
        assert_eq!(noise_entry.size(), noise.len() as u64);
        drop(noise_entry);
        let text = z.by_name("pkg/1.0/text.txt").unwrap();
        assert_eq!(text.compression(), CompressionMethod::Deflated);
        assert!(text.compressed_size() < text.size() / 10);
        drop(text);
        let mut back = Vec::new();
        z.by_name("pkg/1.0/noise.bin")
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert!(back == noise);
    }

    #[test]
    fn dos_time_is_utc_and_clamped() {
        let t = dos_time(1_700_000_001); // 2023-11-14T22:13:21Z
        assert_eq!(
            (
                t.year(),
                t.month(),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            ),
            (2023, 11, 14, 22, 13, 20)
        );
        assert_eq!(dos_time(0).year(), 1980);
    }
}
