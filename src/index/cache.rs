//! The index cache (`.dpkg_archive/dpkg_archive_list.cache`): where each
//! released package-version's block of lines sits in the current
//! `dpkg_archive_list.txt`, keyed by its descpkg mtime. A re-run copies those
//! byte ranges instead of walking the package-versions again.
//!
//! The cache holds no paths of its own: the list file is the data, the cache
//! is its table of contents. It is only trusted while the list file is the
//! very one it describes (size, mtime, inode, device), and every copied range
//! is checked to start a line with the expected prefix; anything else means
//! a full rebuild, never an error.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::Result;

const MAGIC: &str = "blat-index-cache 1";

/// Identifies one version of the list file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    pub len: u64,
    pub mtime: i64,
    pub mtime_nsec: i64,
    pub ino: u64,
    pub dev: u64,
}

impl Fingerprint {
    pub fn of(meta: &Metadata) -> Fingerprint {
        Fingerprint {
            len: meta.len(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            ino: meta.ino(),
            dev: meta.dev(),
        }
    }
}

/// A descpkg mtime to the nanosecond: the change key of a package-version.
pub type Stamp = (i64, i64);

/// One package-version's block in the list file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CachedBlock {
    pub stamp: Stamp,
    pub offset: u64,
    pub len: u64,
    pub lines: u64,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Cache {
    /// The list file this cache describes (`None` only while building).
    pub list: Option<Fingerprint>,
    /// Lines in the list file.
    pub paths: u64,
    /// Digest of the archive's shape when the list was written (see
    /// `index::Scan::digest`): equal digests mean nothing changed.
    pub digest: String,
    /// Block key (`package/version/`) → where its lines are.
    pub blocks: HashMap<Vec<u8>, CachedBlock>,
}

impl Cache {
    /// Reads a cache file; `Err(reason)` when it is missing or not usable.
    pub fn load(path: &Path) -> Result<Cache, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err("no cache yet".into()),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        Cache::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn parse(text: &str) -> Result<Cache, String> {
        let mut lines = text.lines().enumerate();
        let mut next = |what: &str| {
            lines
                .next()
                .map(|(_, l)| l)
                .ok_or_else(|| format!("cut short before the {what} line"))
        };
        if next("first")? != MAGIC {
            return Err(format!("not a cache file (first line is not '{MAGIC}')"));
        }
        let list = next("list")?;
        let f: Vec<&str> = list.split(' ').collect();
        let bad_number = |s: &str| format!("bad number '{s}' in the list line");
        let int = |s: &str| s.parse::<i64>().map_err(|_| bad_number(s));
        let nat = |s: &str| s.parse::<u64>().map_err(|_| bad_number(s));
        let (fp, paths) = match f.as_slice() {
            ["list", len, mtime, nsec, ino, dev, paths] => (
                Fingerprint {
                    len: nat(len)?,
                    mtime: int(mtime)?,
                    mtime_nsec: int(nsec)?,
                    ino: nat(ino)?,
                    dev: nat(dev)?,
                },
                nat(paths)?,
            ),
            _ => return Err("bad list line".into()),
        };
        let digest = next("digest")?
            .strip_prefix("digest ")
            .filter(|d| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or("bad digest line")?
            .to_string();
        let mut blocks = HashMap::new();
        for (n, line) in lines {
            let bad = || {
                format!(
                    "line {}: expected 'B mtime nsec offset len lines package/version/'",
                    n + 1
                )
            };
            let f: Vec<&str> = line.split(' ').collect();
            let ["B", mtime, nsec, offset, len, count, key] = f.as_slice() else {
                return Err(bad());
            };
            let int = |s: &str| s.parse::<i64>().map_err(|_| bad());
            let nat = |s: &str| s.parse::<u64>().map_err(|_| bad());
            let block = CachedBlock {
                stamp: (int(mtime)?, int(nsec)?),
                offset: nat(offset)?,
                len: nat(len)?,
                lines: nat(count)?,
            };
            if !key.ends_with('/')
                || block
                    .offset
                    .checked_add(block.len)
                    .is_none_or(|end| end > fp.len)
            {
                return Err(bad());
            }
            blocks.insert(key.as_bytes().to_vec(), block);
        }
        Ok(Cache {
            list: Some(fp),
            paths,
            digest,
            blocks,
        })
    }

    fn text(&self) -> String {
        let fp = self.list.expect("a saved cache describes a list file");
        let mut text = format!(
            "{MAGIC}\nlist {} {} {} {} {} {}\ndigest {}\n",
            fp.len, fp.mtime, fp.mtime_nsec, fp.ino, fp.dev, self.paths, self.digest
        );
        let mut keys: Vec<&Vec<u8>> = self.blocks.keys().collect();
        keys.sort();
        for key in keys {
            let b = &self.blocks[key];
            // Keys are validated package/version names: plain ASCII.
            text.push_str(&format!(
                "B {} {} {} {} {} {}\n",
                b.stamp.0,
                b.stamp.1,
                b.offset,
                b.len,
                b.lines,
                String::from_utf8_lossy(key)
            ));
        }
        text
    }

    /// Writes the cache atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::atomic::write(path, self.text().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Cache {
        let mut blocks = HashMap::new();
        blocks.insert(
            b"p/1.0/".to_vec(),
            CachedBlock {
                stamp: (1_700_000_000, 5),
                offset: 4,
                len: 30,
                lines: 2,
            },
        );
        blocks.insert(
            b"q/2/".to_vec(),
            CachedBlock {
                stamp: (1, 0),
                offset: 40,
                len: 10,
                lines: 1,
            },
        );
        Cache {
            list: Some(Fingerprint {
                len: 100,
                mtime: 7,
                mtime_nsec: 8,
                ino: 9,
                dev: 10,
            }),
            paths: 6,
            digest: "ab".repeat(32),
            blocks,
        }
    }

    #[test]
    fn round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        sample().save(&path).unwrap();
        assert_eq!(Cache::load(&path).unwrap(), sample());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
    }

    #[test]
    fn damaged_caches_are_refused_with_a_reason() {
        let good = sample().text();
        let cases = [
            ("".to_string(), "cut short before the first line"),
            (
                good.replacen("blat-index-cache 1", "blat-index-cache 9", 1),
                "not a cache file",
            ),
            (
                good.lines().take(2).collect::<Vec<_>>().join("\n"),
                "cut short",
            ),
            (good.replacen("list 100", "list x", 1), "bad number"),
            (good.replacen("digest ab", "digest zz", 1), "bad digest"),
            (good.replacen(" 40 10 ", " 95 10 ", 1), "expected 'B"),
            (good.replacen("q/2/", "q/2", 1), "expected 'B"),
            (format!("{good}B 1 2 3\n"), "line 6"),
        ];
        for (text, want) in cases {
            let err = Cache::parse(&text).unwrap_err();
            assert!(
                err.contains(want),
                "{err:?} should say {want:?} for:\n{text}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            Cache::load(&dir.path().join("none")).unwrap_err(),
            "no cache yet"
        );
    }
}
