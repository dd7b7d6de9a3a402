//! The PackageList: `<archive>/.dpkg_archive/packagelist.txt` on a target,
//! the current set as the master last computed it. Its writer and its
//! reader live here, so the two cannot drift (docs/archive.md):
//!
//! ```text
//! # blat packagelist written 2026-11-30T04:00:00Z
//! # releases: PROJ/R1.1 PROJ/R2.0
//! # unanswered: release PROJ/R9        (only when there is something)
//! # alias: jats jats2_current 2.1.0     (one per alias of the set)
//! jats 2.1.0
//! libfoo 1.1.0
//! ```
//!
//! One `package version` a line, sorted. `age --local` judges the target by
//! it: an `unanswered` line (the Release Manager answered nothing for a
//! release or project of the target) stops it from deleting anything. The
//! `alias` lines are what a relay (`release_manager kind = "packagelist"`)
//! passes on; they are comments, so a reader that predates them skips them.

use std::ffi::OsStr;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::archive::{Alias, Name, PackageVersion, SourceEntry};
use crate::config::ReleaseName;
use crate::current::CurrentSet;
use crate::tags::nofollow::{Dir, Kind};

/// Its name under `.dpkg_archive/`.
pub const NAME: &str = "packagelist.txt";

const RELEASES: &str = "# releases: ";
const UNANSWERED: &str = "# unanswered: ";
const ALIAS: &str = "# alias: ";

/// The largest PackageList read from a site (a million lines is about
/// 30 MiB): more is not a list blat wrote.
const MAX_SITE_BYTES: u64 = 64 << 20;

/// The PackageList of `set`, written at `now`.
pub fn text(set: &CurrentSet, now: i64) -> String {
    let mut text = format!(
        "# blat packagelist written {}\n",
        crate::clock::rfc3339(now)
    );
    let releases: Vec<String> = set.releases.iter().map(|r| r.to_string()).collect();
    text.push_str(&format!("{RELEASES}{}\n", releases.join(" ")));
    if !set.unanswered.is_empty() {
        text.push_str(&format!("{UNANSWERED}{}\n", set.unanswered.join(", ")));
    }
    for a in &set.aliases {
        text.push_str(&format!("{ALIAS}{} {} {}\n", a.package, a.alias, a.version));
    }
    text.reserve(set.versions.len() * 24);
    for pv in set.versions.keys() {
        for part in [pv.package.as_str(), " ", pv.version.as_str(), "\n"] {
            text.push_str(part);
        }
    }
    text
}

/// Writes the PackageList of `set` to a target, atomically.
pub fn write(dest: &dyn crate::target::Target, set: &CurrentSet, now: i64) -> Result<()> {
    dest.put(NAME, text(set, now).as_bytes())
}

/// Writes the PackageList of `set` unless the target's has the same body
/// (`body`: the sha256 the target reported of its list past the header
/// line). True when it wrote. The header then keeps the time the content
/// was last written: a no-change sync of 100,000 package-versions spares
/// a 1.5 MB upload (issue 14). A list missing on the target, or changed
/// there by hand, reports another sum (or none) and is rewritten.
pub fn write_unless_same(
    dest: &dyn crate::target::Target,
    set: &CurrentSet,
    now: i64,
    body: Option<&str>,
) -> Result<bool> {
    let text = text(set, now);
    if body.is_some_and(|b| b == body_sha256(&text)) {
        return Ok(false);
    }
    dest.put(NAME, text.as_bytes())?;
    Ok(true)
}

/// The sha256 (hex) of a PackageList's text past its first line, as the
/// receiver reports it (`tail -n +2 | sha256sum`).
pub fn body_sha256(text: &str) -> String {
    use sha2::Digest;
    let body = text.split_once('\n').map_or("", |(_, rest)| rest);
    hex::encode(sha2::Sha256::digest(body.as_bytes()))
}

/// Reads a PackageList as a current set (membership only: what the master's
/// archive held is not known here). `None` when there is none; a line that
/// is not `package version` with valid names is an error naming the line.
pub fn read(path: &Path) -> Result<Option<CurrentSet>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    parse_at(path, &text).map(Some)
}

/// [`parse`] of `text` as read from `path`, the error naming the file and
/// line: a list that cannot be read is no basis for deleting anything.
pub fn parse_at(path: &Path, text: &str) -> Result<CurrentSet> {
    parse(text).map_err(|(n, e)| anyhow::anyhow!("{}:{n}: {e}; nothing is aged", path.display()))
}

/// The text of a PackageList as a current set, or the line number (from 1)
/// and what is wrong with it. The `releases` header is information only: a
/// name in it that does not read as `PROJECT/RELEASE` is left out.
pub fn parse(text: &str) -> Result<CurrentSet, (usize, String)> {
    let mut set = CurrentSet::default();
    let mut aliases = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if let Some(what) = line.strip_prefix(UNANSWERED) {
            set.unanswered.extend(
                what.split(", ")
                    .filter(|w| !w.trim().is_empty())
                    .map(|w| w.escape_default().to_string()),
            );
            continue;
        }
        if let Some(what) = line.strip_prefix(RELEASES) {
            set.releases.extend(
                what.split_whitespace()
                    .filter(|r| !r.chars().any(char::is_control))
                    .filter_map(|r| ReleaseName::parse(r).ok()),
            );
            continue;
        }
        if let Some(what) = line.strip_prefix(ALIAS) {
            aliases.push((n + 1, parse_alias(what).map_err(|e| (n + 1, e))?));
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let pv = match fields.as_slice() {
            [p, v] => PackageVersion::new(p, v),
            _ => Err("expected 'package version'".to_string()),
        }
        .map_err(|e| (n + 1, e))?;
        set.versions.insert(pv, SourceEntry::Missing);
    }
    // As on the master: an alias brings its version and protects it.
    for (n, alias) in aliases {
        let named = PackageVersion {
            package: alias.package.clone(),
            version: alias.alias.clone(),
        };
        if set.versions.contains_key(&named) {
            return Err((n, format!("alias {alias} has the name of a listed version")));
        }
        let version = PackageVersion {
            package: alias.package.clone(),
            version: alias.version.clone(),
        };
        set.protected.insert(version.clone());
        set.versions.entry(version).or_insert(SourceEntry::Missing);
        set.aliases.insert(alias);
    }
    Ok(set)
}

/// `package alias version`, each a valid name.
fn parse_alias(text: &str) -> Result<Alias, String> {
    match text.split_whitespace().collect::<Vec<_>>().as_slice() {
        [p, a, v] => Ok(Alias {
            package: Name::new(p)?,
            alias: Name::new(a)?,
            version: Name::new(v)?,
        }),
        _ => Err("expected '# alias: package alias version'".into()),
    }
}

/// Where the PackageList of the archive at `archive` is.
pub fn site_path(archive: &Path) -> PathBuf {
    archive.join(".dpkg_archive").join(NAME)
}

/// Reads the PackageList of a site archive for a relay, never through a
/// symlink: a site's files are not trusted (docs/security.md), so
/// `.dpkg_archive` must be a real directory and the list a regular file,
/// each opened relative to its parent with `O_NOFOLLOW`. The archive path
/// itself is the operator's (`archive` in blat.toml) and is followed like
/// the master's. `None` when there is no list; a list that cannot be read
/// or parsed is an error naming the file (and the line).
pub fn read_site(archive: &Path) -> Result<Option<CurrentSet>> {
    let path = site_path(archive);
    let real = std::fs::canonicalize(archive)
        .with_context(|| format!("cannot open the site archive {}", archive.display()))?;
    let root = Dir::open(&real)
        .with_context(|| format!("cannot open the site archive {}", archive.display()))?;
    let Some(dpkg) = open_site_dir(&root, &archive.join(".dpkg_archive"))? else {
        return Ok(None);
    };
    let name = OsStr::new(NAME);
    match dpkg.kind(name) {
        Ok(Kind::File) => {}
        Ok(other) => bail!(
            "{} is {}, not a regular file: refused (a site's PackageList is never read through a symlink)",
            path.display(),
            other.describe()
        ),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let bytes = dpkg
        .read_regular(name, MAX_SITE_BYTES + 1)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() as u64 > MAX_SITE_BYTES {
        bail!(
            "{} is larger than {} MiB: not a PackageList blat wrote",
            path.display(),
            MAX_SITE_BYTES >> 20
        );
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{} is not UTF-8 text", path.display()))?;
    parse(&text)
        .map(Some)
        .map_err(|(n, e)| anyhow::anyhow!("{}:{n}: {e}", path.display()))
}

/// `.dpkg_archive` of a site, refusing anything but a real directory.
fn open_site_dir(root: &Dir, path: &Path) -> Result<Option<Dir>> {
    let name = OsStr::new(".dpkg_archive");
    match root.kind(name) {
        Ok(Kind::Dir) => {}
        Ok(other) => bail!(
            "{} is {}, not a directory: refused (blat never reads through a symlink there)",
            path.display(),
            other.describe()
        ),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    // Swapped for a symlink since: O_NOFOLLOW refuses it (ELOOP).
    root.open_dir(name)
        .map(Some)
        .with_context(|| format!("cannot open {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pv(p: &str, v: &str) -> PackageVersion {
        PackageVersion::new(p, v).unwrap()
    }

    #[test]
    fn lines_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(NAME);
        assert!(read(&path).unwrap().is_none());
        std::fs::write(&path, "# blat packagelist written x\n# releases: P/R\n").unwrap();
        assert!(read(&path).unwrap().unwrap().is_empty());
        std::fs::write(&path, "# h\na 1.0\nb 2\n").unwrap();
        let set = read(&path).unwrap().unwrap();
        assert_eq!(
            set.versions.keys().cloned().collect::<Vec<_>>(),
            vec![pv("a", "1.0"), pv("b", "2")]
        );
        assert!(set.aging_blocked().is_none());
        for bad in ["a\n", "a 1 x\n", "../etc 1\n"] {
            std::fs::write(&path, format!("ok 1\n{bad}")).unwrap();
            let err = format!("{:#}", read(&path).unwrap_err());
            assert!(
                err.contains(&format!("{}:2: ", path.display())) && err.contains("nothing is aged"),
                "{err}"
            );
        }
    }

    #[test]
    fn written_and_read_back_with_what_was_unanswered() {
        let mut set = CurrentSet::default();
        set.versions.insert(pv("j", "1"), SourceEntry::Missing);
        set.unanswered = vec!["release P/R1".into(), "project Q".into()];
        let back = parse(&text(&set, 0)).unwrap();
        assert_eq!(
            back.versions.keys().collect::<Vec<_>>(),
            vec![&pv("j", "1")]
        );
        assert_eq!(back.unanswered, set.unanswered);
        let why = back.aging_blocked().unwrap();
        assert!(
            why.contains("answered nothing for release P/R1, project Q"),
            "{why}"
        );
    }

    #[test]
    fn aliases_and_releases_read_back_as_written() {
        let mut set = CurrentSet {
            releases: vec![ReleaseName::parse("P/R1").unwrap()],
            ..CurrentSet::default()
        };
        set.versions
            .insert(pv("jats", "2.1.0"), SourceEntry::Missing);
        set.versions.insert(pv("lib", "1"), SourceEntry::Missing);
        let alias = Alias {
            package: Name::new("jats").unwrap(),
            alias: Name::new("current").unwrap(),
            version: Name::new("2.1.0").unwrap(),
        };
        set.aliases.insert(alias.clone());
        let text = text(&set, 0);
        assert!(
            text.contains("\n# alias: jats current 2.1.0\njats 2.1.0\nlib 1\n"),
            "{text}"
        );
        let back = parse(&text).unwrap();
        assert_eq!(back.releases, set.releases);
        assert_eq!(back.aliases.iter().collect::<Vec<_>>(), vec![&alias]);
        assert!(back.protected.contains(&pv("jats", "2.1.0")));
        assert_eq!(back.package_list(), set.package_list());
        // An alias brings its version even when the list lacks the line.
        let back = parse("# alias: p a 1\nq 2\n").unwrap();
        assert_eq!(back.package_list(), ["p 1", "q 2"]);
        // A release name that is not PROJECT/RELEASE is left out, no error.
        let back = parse("# releases: P/R x P/\u{1b}y\na 1\n").unwrap();
        assert_eq!(back.releases, vec![ReleaseName::parse("P/R").unwrap()]);
    }

    #[test]
    fn a_bad_alias_line_is_an_error_naming_the_line() {
        for (bad, why) in [
            (
                "# alias: p a\n",
                "expected '# alias: package alias version'",
            ),
            (
                "# alias: p a 1 x\n",
                "expected '# alias: package alias version'",
            ),
            ("# alias: p ../a 1\n", "invalid name '../a'"),
            ("# alias: p a .hidden\n", "invalid name '.hidden'"),
            (
                "# alias: p 1 2\n",
                "alias p/1 -> 2 has the name of a listed version",
            ),
        ] {
            let (n, e) = parse(&format!("p 1\n{bad}")).unwrap_err();
            assert_eq!(n, 2, "{bad}");
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn a_site_list_is_never_read_through_a_symlink() {
        let site = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let list = "# releases: P/R\na 1\n";
        std::fs::write(elsewhere.path().join(NAME), list).unwrap();
        assert!(
            read_site(site.path()).unwrap().is_none(),
            "no .dpkg_archive"
        );

        let dpkg = site.path().join(".dpkg_archive");
        std::os::unix::fs::symlink(elsewhere.path(), &dpkg).unwrap();
        let e = format!("{:#}", read_site(site.path()).unwrap_err());
        assert!(e.contains("is a symlink, not a directory: refused"), "{e}");

        std::fs::remove_file(&dpkg).unwrap();
        std::fs::create_dir(&dpkg).unwrap();
        assert!(read_site(site.path()).unwrap().is_none(), "no list");
        std::os::unix::fs::symlink(elsewhere.path().join(NAME), dpkg.join(NAME)).unwrap();
        let e = format!("{:#}", read_site(site.path()).unwrap_err());
        assert!(
            e.contains("is a symlink, not a regular file: refused"),
            "{e}"
        );

        std::fs::remove_file(dpkg.join(NAME)).unwrap();
        std::fs::write(dpkg.join(NAME), list).unwrap();
        let set = read_site(site.path()).unwrap().unwrap();
        assert_eq!(set.package_list(), ["a 1"]);

        std::fs::write(dpkg.join(NAME), "a 1\nb\n").unwrap();
        let e = format!("{:#}", read_site(site.path()).unwrap_err());
        assert!(
            e.starts_with(&format!("{}:2: ", dpkg.join(NAME).display())),
            "{e}"
        );
        std::fs::write(dpkg.join(NAME), b"a 1\n\xff\n").unwrap();
        let e = format!("{:#}", read_site(site.path()).unwrap_err());
        assert!(e.ends_with("is not UTF-8 text"), "{e}");
    }
}
