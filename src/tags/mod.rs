//! The layout of a tag directory (`<tag_dir>/<target>/`), which `blat tag`
//! writes and `fast` and `status` read (docs/archive.md, Tags): tags are the
//! entries whose names do not start with `.`; rejected tags live in
//! `.rejected/<tag>`, each with its reason in `.rejected/.<tag>.reason`
//! (hidden, so it can never clash with a tag).
//!
//! Whoever can write a tag directory may only ask for a package-version to
//! be sent: [`TagDir`] follows no symlink in it (see `nofollow`), treats
//! only regular files as tags and only ever renames entries within it
//! (docs/security.md).

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::archive::PackageVersion;
use crate::config::Config;

pub(crate) mod nofollow;
use nofollow::Dir;
pub use nofollow::Kind;

/// The subdirectory of a target's tag directory that holds rejected tags.
pub const REJECTED: &str = ".rejected";

/// Prefix of `blat tag`'s temporary files (hidden: never read as tags).
const TEMP_PREFIX: &str = ".blat-tag-";

/// The tag file name of a package-version: `<package>::<version>`.
pub fn tag_name(pv: &PackageVersion) -> String {
    format!("{}::{}", pv.package, pv.version)
}

/// `<tag_dir>/<target>/`.
pub fn tag_dir(config: &Config, target: &str) -> PathBuf {
    config.tag_dir.join(target)
}

/// The file mode of tag and reason files (less the umask).
const FILE_MODE: libc::mode_t = 0o644;

/// The most bytes of a reason file `status` reads.
pub const REASON_LIMIT: u64 = 4096;

/// A target's tag directory, open. Whoever can write it may only ask for a
/// package-version to be sent: nothing in it is followed (the directory
/// itself, `.rejected`, tags, reason files), only regular files are tags,
/// entries are only ever renamed within it (never deleted through, never
/// opened but reason files, and those only as regular files), and files
/// are written by exclusive creation under unpredictable names, then
/// renamed into place.
pub struct TagDir {
    path: PathBuf,
    dir: Dir,
}

/// Why a path in a tag directory is refused: one line naming it.
fn refused(path: &Path, e: std::io::Error) -> anyhow::Error {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => anyhow::anyhow!(
            "{} is a symlink: refused (nothing in a tag directory is followed; make it a directory)",
            path.display()
        ),
        Ok(m) if !m.is_dir() => anyhow::anyhow!(
            "{} is not a directory: refused (make it a directory)",
            path.display()
        ),
        _ => anyhow::anyhow!("cannot open {}: {e}", path.display()),
    }
}

impl TagDir {
    /// Opens `<tag_dir>/<target>`: `None` when it does not exist; an error
    /// when it is a symlink or not a directory.
    pub fn open(path: &Path) -> Result<Option<TagDir>> {
        match Dir::open(path) {
            Ok(dir) => Ok(Some(TagDir {
                path: path.to_path_buf(),
                dir,
            })),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(refused(path, e)),
        }
    }

    /// Opens `<tag_dir>/<target>`, creating it (and `<tag_dir>`) if missing.
    pub fn create(path: &Path) -> Result<TagDir> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("cannot create tag directory {}", parent.display()))?;
        }
        match fs::create_dir(path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot create tag directory {}", path.display()))
            }
        }
        TagDir::open(path)?.with_context(|| format!("tag directory {} vanished", path.display()))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The entries that are tags: every name not starting with `.` (those
    /// are temporaries of writers that rename into place, and `.rejected`),
    /// sorted, as found, valid or not, whatever they are.
    pub fn pending(&self) -> Result<Vec<OsString>> {
        let mut out = self
            .dir
            .names()
            .with_context(|| format!("cannot read tag directory {}", self.path.display()))?;
        out.retain(|name| !name.as_encoded_bytes().starts_with(b"."));
        out.sort();
        Ok(out)
    }

    /// What the entry `name` is, not following it.
    pub fn kind(&self, name: &OsStr) -> std::io::Result<Kind> {
        self.dir.kind(name)
    }

    /// Removes the tag `name` (the entry itself).
    pub fn remove(&self, name: &OsStr) -> std::io::Result<()> {
        self.dir.unlink(name)
    }

    /// `.rejected`, opened (and created with mode 0700 when `create`):
    /// `None` when it does not exist; an error naming it when it is a
    /// symlink or not a directory.
    fn rejected_dir(&self, create: bool) -> Result<Option<Dir>> {
        let name = OsStr::new(REJECTED);
        if create {
            match self.dir.mkdir(name, 0o700) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("cannot create {}", self.path.join(REJECTED).display())
                    })
                }
            }
        }
        match self.dir.open_dir(name) {
            Ok(dir) => Ok(Some(dir)),
            Err(e) if e.kind() == ErrorKind::NotFound && !create => Ok(None),
            Err(e) => {
                let path = self.path.join(REJECTED);
                Err(match self.dir.kind(name) {
                    Ok(kind) if kind != Kind::Dir => anyhow::anyhow!(
                        "{} is {}, not a directory: refused (nothing in a tag directory is followed or replaced; make it a directory)",
                        path.display(),
                        kind.describe()
                    ),
                    _ => anyhow::anyhow!("cannot open {}: {e}", path.display()),
                })
            }
        }
    }

    /// An error naming `.rejected` when it exists and is not a directory
    /// (a symlink, a file): nothing can be rejected then.
    pub fn check_rejected(&self) -> Result<()> {
        self.rejected_dir(false).map(drop)
    }

    /// Moves the entry `name` (itself, whatever it is) to `.rejected/` and
    /// writes its reason beside it; returns the name it has there. A name
    /// already taken there by something a rename cannot replace (a
    /// directory) keeps its entry: the new one gets a fresh name. Nothing
    /// is ever deleted in `.rejected`.
    pub fn reject(&self, name: &OsStr, reason: &str, now: i64) -> Result<OsString> {
        let rejected = self.rejected_dir(true)?.expect("created");
        let moved = |to: &OsStr| {
            self.dir.rename(name, &rejected, to).with_context(|| {
                format!("cannot move tag to {}", self.path.join(REJECTED).display())
            })
        };
        let stored = match self.dir.rename(name, &rejected, name) {
            Ok(()) => name.to_os_string(),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EISDIR | libc::ENOTDIR | libc::ENOTEMPTY | libc::EEXIST)
                ) =>
            {
                let fresh = fresh_name(name);
                moved(&fresh)?;
                fresh
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("cannot move tag to {}", self.path.join(REJECTED).display())
                })
            }
        };
        let text = format!(
            "{} {}\n",
            crate::clock::rfc3339(now),
            harmless(&reason.replace('\n', " "))
        );
        write_atomically(&rejected, &reason_file(&stored), text.as_bytes()).with_context(|| {
            format!(
                "cannot write the reason into {}",
                self.path.join(REJECTED).display()
            )
        })?;
        Ok(stored)
    }

    /// The rejected tags with their reasons (for `status`): names made
    /// printable, reasons read only from regular files (never followed,
    /// never a FIFO), at most [`REASON_LIMIT`] bytes, control characters
    /// escaped.
    pub fn rejected(&self) -> Result<Vec<Rejected>> {
        let Some(dir) = self.rejected_dir(false)? else {
            return Ok(Vec::new());
        };
        let mut names = dir
            .names()
            .with_context(|| format!("cannot read {}", self.path.join(REJECTED).display()))?;
        names.retain(|name| !name.as_encoded_bytes().starts_with(b"."));
        names.sort();
        Ok(names
            .iter()
            .map(|name| {
                let reason = dir
                    .read_regular(&reason_file(name), REASON_LIMIT)
                    .map(|data| String::from_utf8_lossy(&data).into_owned())
                    .unwrap_or_default();
                Rejected {
                    tag: shown(name),
                    reason: harmless(reason.trim_end()),
                }
            })
            .collect())
    }

    /// Writes `name` atomically (a tag: `blat tag`).
    pub fn write(&self, name: &OsStr, data: &[u8]) -> Result<()> {
        write_atomically(&self.dir, name, data)
            .with_context(|| format!("cannot write {}", self.path.join(name).display()))
    }
}

/// The entries of tag directory `dir` that are tags (see
/// [`TagDir::pending`]); a missing directory holds none.
pub fn pending(dir: &Path) -> Result<Vec<OsString>> {
    match TagDir::open(dir)? {
        Some(d) => d.pending(),
        None => Ok(Vec::new()),
    }
}

/// A rejected tag and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejected {
    pub tag: String,
    pub reason: String,
}

/// The rejected tags of tag directory `dir` (see [`TagDir::rejected`]).
pub fn rejected(dir: &Path) -> Result<Vec<Rejected>> {
    match TagDir::open(dir)? {
        Some(d) => d.rejected(),
        None => Ok(Vec::new()),
    }
}

/// What `status` shows of a tag directory: pending tags (names made
/// printable), rejected tags, and why it could not be read, if so.
#[derive(Debug, Default)]
pub struct Overview {
    pub pending: Vec<String>,
    pub rejected: Vec<Rejected>,
    pub error: Option<String>,
}

pub fn overview(dir: &Path) -> Overview {
    let mut out = Overview::default();
    let result = TagDir::open(dir).and_then(|d| {
        let Some(d) = d else { return Ok(()) };
        out.pending = d.pending()?.iter().map(|n| shown(n)).collect();
        out.rejected = d.rejected()?;
        Ok(())
    });
    out.error = result.err().map(|e| harmless(&format!("{e:#}")));
    out
}

/// A tag's name made printable and one line: control characters (and the
/// invisible ones that reorder text) escaped; a name that is not UTF-8 is
/// shown byte by byte (`\xff`).
pub fn shown(name: &OsStr) -> String {
    match name.to_str() {
        Some(text) => harmless(text),
        None => name.as_encoded_bytes().escape_ascii().to_string(),
    }
}

/// `text` with control characters (newlines, escapes) and bidirectional or
/// zero-width formatting characters escaped: safe to print on one line.
pub fn harmless(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The reason file of rejected tag `name`: `.<name>.reason` (hidden, so it
/// never clashes with a tag), or, when that would pass the 255-byte name
/// limit, `.<prefix>-<hash>.reason`.
fn reason_file(name: &OsStr) -> OsString {
    let bytes = name.as_encoded_bytes();
    let mut file = Vec::with_capacity(bytes.len() + 8);
    file.push(b'.');
    if bytes.len() + 8 <= 255 {
        file.extend_from_slice(bytes);
    } else {
        use sha2::{Digest, Sha256};
        file.extend_from_slice(&bytes[..200]);
        file.push(b'-');
        file.extend_from_slice(hex::encode(&Sha256::digest(bytes)[..8]).as_bytes());
    }
    file.extend_from_slice(b".reason");
    std::os::unix::ffi::OsStringExt::from_vec(file)
}

/// `<name>~<token>`, cut to fit in 255 bytes: for a rejected entry whose
/// name is taken in `.rejected` by a directory.
fn fresh_name(name: &OsStr) -> OsString {
    let token = random_token();
    let bytes = name.as_encoded_bytes();
    let keep = bytes.len().min(255 - 1 - token.len());
    let mut out = bytes[..keep].to_vec();
    out.push(b'~');
    out.extend_from_slice(token.as_bytes());
    std::os::unix::ffi::OsStringExt::from_vec(out)
}

/// Writes `dir/name` by exclusive creation of a temporary file with an
/// unpredictable name in `dir` and a rename, so readers (and inotify
/// watchers) only ever see the finished file, and nothing planted under
/// the temporary name (a symlink) is ever written through.
fn write_atomically(dir: &Dir, name: &OsStr, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut attempts = 0;
    let (temp, mut file) = loop {
        let temp = OsString::from(format!(
            "{TEMP_PREFIX}{}-{}",
            std::process::id(),
            random_token()
        ));
        match dir.create_new(&temp, FILE_MODE) {
            Ok(file) => break (temp, file),
            Err(e) if e.kind() == ErrorKind::AlreadyExists && attempts < 5 => attempts += 1,
            Err(e) => return Err(e),
        }
    };
    let result = file
        .write_all(data)
        .and_then(|()| dir.rename(&temp, dir, name));
    if result.is_err() {
        let _ = dir.unlink(&temp);
    }
    result
}

fn random_token() -> String {
    crate::atomic::token(10)
}

/// Writes the tag of `pv` into `<tag_dir>/<target>/`, creating it; a tag
/// directory that is a symlink is refused.
pub fn write_tag(config: &Config, target: &str, pv: &PackageVersion) -> Result<PathBuf> {
    let dir = TagDir::create(&tag_dir(config, target))?;
    let name = tag_name(pv);
    dir.write(OsStr::new(&name), b"")?;
    Ok(dir.path().join(name))
}

/// Reads a tag's name: `package::version` with two valid names, the name
/// UTF-8. The error is one line, the name escaped in it.
pub fn parse_tag(name: &OsStr) -> Result<PackageVersion, String> {
    let Some(text) = name.to_str() else {
        return Err(format!("invalid tag name '{}': not UTF-8", shown(name)));
    };
    PackageVersion::parse(text, "::").map_err(|e| format!("invalid tag: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_skips_hidden_entries_and_reject_keeps_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["p::1", "a::b::c", ".blat-tag-1-x", ".hidden"] {
            fs::write(dir.path().join(name), "").unwrap();
        }
        assert_eq!(pending(dir.path()).unwrap(), ["a::b::c", "p::1"]);
        let tags = TagDir::open(dir.path()).unwrap().unwrap();
        tags.reject(OsStr::new("a::b::c"), "invalid name\nsecond line", 0)
            .unwrap();
        assert_eq!(pending(dir.path()).unwrap(), ["p::1"]);
        let r = rejected(dir.path()).unwrap();
        assert_eq!(
            r,
            [Rejected {
                tag: "a::b::c".into(),
                reason: "1970-01-01T00:00:00Z invalid name second line".into()
            }]
        );
        // Rejecting the same name again replaces the old entry and reason.
        fs::write(dir.path().join("a::b::c"), "").unwrap();
        tags.reject(OsStr::new("a::b::c"), "again", 1).unwrap();
        assert_eq!(
            rejected(dir.path()).unwrap()[0].reason,
            "1970-01-01T00:00:01Z again"
        );
        assert!(pending(&dir.path().join("missing")).unwrap().is_empty());
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.path().join(REJECTED))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn a_directory_in_the_way_in_rejected_is_kept_not_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let tags = TagDir::open(dir.path()).unwrap().unwrap();
        fs::create_dir_all(dir.path().join(".rejected/x/sub")).unwrap();
        fs::write(dir.path().join(".rejected/x/sub/keep"), "k").unwrap();
        fs::write(dir.path().join("x"), "").unwrap();
        let stored = tags.reject(OsStr::new("x"), "why", 0).unwrap();
        assert!(stored.to_str().unwrap().starts_with("x~"), "{stored:?}");
        assert!(dir.path().join(".rejected/x/sub/keep").exists());
        assert!(dir.path().join(".rejected").join(&stored).is_file());
        let r = rejected(dir.path()).unwrap();
        assert_eq!(r.len(), 2);
        assert!(r[1].reason.ends_with(" why"), "{r:?}");
    }

    #[test]
    fn long_names_get_a_reason_file_that_fits() {
        let long = OsString::from("x".repeat(255));
        let file = reason_file(&long);
        assert!(file.len() <= 255, "{}", file.len());
        assert_ne!(reason_file(&OsString::from("x".repeat(254))), file);
        assert_eq!(reason_file(OsStr::new("p::1")), ".p::1.reason");
        assert!(fresh_name(&long).len() <= 255);
    }

    #[test]
    fn names_and_reasons_are_made_harmless() {
        assert_eq!(
            harmless("a\nb\x1b[31m\u{202e}c"),
            "a\\nb\\u{1b}[31m\\u{202e}c"
        );
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(shown(OsStr::from_bytes(b"p::\xff\n")), "p::\\xff\\n");
        assert_eq!(shown(OsStr::new("p::1.0")), "p::1.0");
    }
}
