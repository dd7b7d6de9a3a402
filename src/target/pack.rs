//! Packing package-versions into the receiver's stream: one tar for a whole
//! batch, compressed in parallel chunks (each chunk an independent gzip member
//! or zstd frame, which `gzip -dc`/`zstd -dc` read as one stream), so both
//! cores compress while the transport writes.

use std::fs::{self, File, Metadata};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use anyhow::{bail, Context, Result};

use super::Outgoing;
use crate::archive::{PackageVersion, SourceArchive};
use crate::config::Compression;

/// Bytes of tar per compressed chunk.
const CHUNK: usize = 1 << 20;

/// One file system entry of a package-version, relative to its directory
/// (the empty path is the version directory itself).
#[derive(Clone, Debug)]
pub struct PackEntry {
    pub rel: PathBuf,
    pub meta: Metadata,
}

/// Walks a package-version once: its entries in tar order (a directory before
/// its contents, names sorted) and the counts the receiver verifies.
pub fn scan(archive: &SourceArchive, pv: &PackageVersion) -> Result<Outgoing> {
    let root = archive.version_dir(pv);
    let mut entries = Vec::new();
    let meta =
        fs::symlink_metadata(&root).with_context(|| format!("cannot read {}", root.display()))?;
    entries.push(PackEntry {
        rel: PathBuf::new(),
        meta,
    });
    walk(&root, Path::new(""), &mut entries)?;
    let mut files = 0;
    let mut bytes = 0;
    for e in &entries[1..] {
        let ft = e.meta.file_type();
        if ft.is_dir() {
            continue;
        }
        files += 1;
        if ft.is_file() {
            bytes += e.meta.len();
        }
    }
    Ok(Outgoing {
        pv: pv.clone(),
        files,
        bytes,
        entries,
        delta: None,
    })
}

fn walk(root: &Path, rel: &Path, out: &mut Vec<PackEntry>) -> Result<()> {
    let dir = root.join(rel);
    let mut names: Vec<_> = fs::read_dir(&dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()
        .with_context(|| format!("cannot list {}", dir.display()))?;
    names.sort();
    for name in names {
        let rel = rel.join(&name);
        let path = root.join(&rel);
        let meta = fs::symlink_metadata(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let ft = meta.file_type();
        if !(ft.is_dir() || ft.is_file() || ft.is_symlink()) {
            bail!(
                "{}: unsupported file type (only files, directories and symlinks are sent)",
                path.display()
            );
        }
        if ft.is_file() && !readable(&path) {
            bail!("{}: cannot read it (permission denied)", path.display());
        }
        let is_dir = ft.is_dir();
        out.push(PackEntry {
            rel: rel.clone(),
            meta,
        });
        if is_dir {
            walk(root, &rel, out)?;
        }
    }
    Ok(())
}

/// True when this process may read `path`: checked while scanning, so that
/// an unreadable file fails its own package before the batch's stream starts.
fn readable(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    unsafe { libc::access(c.as_ptr(), libc::R_OK) == 0 }
}

/// The tar name of the directory of entry `index` of a batch (receiver
/// protocol, `receive`): short whatever the version's length, so that the
/// receiver's temporary names fit the file system's name limit.
pub fn member_name(pv: &PackageVersion, token: &str, index: usize) -> String {
    format!("{}/.blat-tmp-{token}-{index}", pv.package)
}

/// Writes the batch as one tar stream (compressed as asked) into `out`.
/// `progress` gets the number of content bytes packed since its last call.
pub fn stream(
    archive: &SourceArchive,
    batch: &[Outgoing],
    token: &str,
    compression: Compression,
    out: &mut dyn Write,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<()> {
    let workers = match compression {
        Compression::None => 1,
        _ => std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(1, 8),
    };
    std::thread::scope(|scope| {
        let mut inputs = Vec::new();
        let mut outputs: Vec<Receiver<io::Result<Vec<u8>>>> = Vec::new();
        for _ in 0..workers {
            let (in_tx, in_rx) = sync_channel::<Vec<u8>>(2);
            let (out_tx, out_rx) = sync_channel::<io::Result<Vec<u8>>>(2);
            inputs.push(in_tx);
            outputs.push(out_rx);
            scope.spawn(move || {
                for chunk in in_rx {
                    if out_tx.send(compress(compression, chunk)).is_err() {
                        return;
                    }
                }
            });
        }
        let producer = scope.spawn(move || -> Result<()> {
            let mut writer = ChunkWriter {
                buf: Vec::with_capacity(CHUNK),
                inputs,
                next: 0,
            };
            write_tar(archive, batch, token, &mut writer, progress)?;
            writer.flush_chunk()?;
            Ok(())
        });
        // Collect in the order chunks were dealt out, so the stream is intact.
        let mut write_result = Ok(());
        let mut i = 0;
        while let Ok(chunk) = outputs[i % workers].recv() {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    write_result = Err(anyhow::Error::new(e).context("compression failed"));
                    break;
                }
            };
            if let Err(e) = out.write_all(&chunk) {
                write_result = Err(anyhow::Error::new(e));
                break;
            }
            i += 1;
        }
        // Dropping the receivers stops the workers and then the producer.
        drop(outputs);
        let produced = producer.join().expect("tar producer panicked");
        write_result?;
        produced?;
        out.flush()?;
        Ok(())
    })
}

fn compress(compression: Compression, chunk: Vec<u8>) -> io::Result<Vec<u8>> {
    match compression {
        Compression::None => Ok(chunk),
        Compression::Gzip(level) => {
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(chunk.len() / 2),
                flate2::Compression::new(level),
            );
            enc.write_all(&chunk)?;
            enc.finish()
        }
        Compression::Zstd(level) => zstd::bulk::compress(&chunk, level),
    }
}

/// Cuts the tar into chunks dealt round-robin to the compressor threads.
struct ChunkWriter {
    buf: Vec<u8>,
    inputs: Vec<SyncSender<Vec<u8>>>,
    next: usize,
}

impl ChunkWriter {
    fn flush_chunk(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        let i = self.next % self.inputs.len();
        self.next += 1;
        self.inputs[i]
            .send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "stream closed"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.flush_chunk()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn write_tar(
    archive: &SourceArchive,
    batch: &[Outgoing],
    token: &str,
    out: &mut dyn Write,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<()> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    for (index, outgoing) in batch.iter().enumerate() {
        let entries = &outgoing.entries;
        let root = archive.version_dir(&outgoing.pv);
        let base = PathBuf::from(member_name(&outgoing.pv, token, index));
        for entry in entries {
            let name = if entry.rel.as_os_str().is_empty() {
                base.clone()
            } else {
                base.join(&entry.rel)
            };
            let mut header = tar::Header::new_gnu();
            header.set_metadata_in_mode(&entry.meta, tar::HeaderMode::Complete);
            header.set_mtime(entry.meta.mtime().max(0) as u64);
            let ft = entry.meta.file_type();
            let path = root.join(&entry.rel);
            if ft.is_symlink() {
                let target = fs::read_link(&path)
                    .with_context(|| format!("cannot read link {}", path.display()))?;
                header.set_size(0);
                builder
                    .append_link(&mut header, &name, &target)
                    .with_context(|| format!("cannot pack {}", path.display()))?;
            } else if ft.is_dir() {
                header.set_size(0);
                builder
                    .append_data(&mut header, &name, io::empty())
                    .with_context(|| format!("cannot pack {}", path.display()))?;
            } else {
                // A file that became unreadable after the scan is left out:
                // the receiver's count check then fails its package alone
                // instead of the whole batch's stream.
                let Ok(file) = File::open(&path) else {
                    continue;
                };
                let len = entry.meta.len();
                builder
                    .append_data(&mut header, &name, io::Read::take(file, len))
                    .with_context(|| format!("cannot pack {}", path.display()))?;
                progress(len);
            }
        }
    }
    builder
        .into_inner()
        .context("cannot finish the tar stream")?;
    Ok(())
}
