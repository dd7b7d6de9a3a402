//! The PackageList: `<archive>/.dpkg_archive/packagelist.txt` on a target,
//! the current set as the master last computed it. Its writer and its
//! reader live here, so the two cannot drift (docs/archive.md):
//!
//! ```text
//! # blat packagelist written 2026-11-30T04:00:00Z
//! # releases: PROJ/R1.1 PROJ/R2.0
//! # unanswered: release PROJ/R9        (only when there is something)
//! jats 2.1.0
//! libfoo 1.1.0
//! ```
//!
//! One `package version` a line, sorted. `age --local` judges the target by
//! it: an `unanswered` line (the Release Manager answered nothing for a
//! release or project of the target) stops it from deleting anything.

use std::path::Path;

use anyhow::{Context, Result};

use crate::archive::{PackageVersion, SourceEntry};
use crate::current::CurrentSet;

/// Its name under `.dpkg_archive/`.
pub const NAME: &str = "packagelist.txt";

const UNANSWERED: &str = "# unanswered: ";

/// The PackageList of `set`, written at `now`.
pub fn text(set: &CurrentSet, now: i64) -> String {
    let mut text = format!(
        "# blat packagelist written {}\n",
        crate::clock::rfc3339(now)
    );
    let releases: Vec<String> = set.releases.iter().map(|r| r.to_string()).collect();
    text.push_str(&format!("# releases: {}\n", releases.join(" ")));
    if !set.unanswered.is_empty() {
        text.push_str(&format!("{UNANSWERED}{}\n", set.unanswered.join(", ")));
    }
    for line in set.package_list() {
        text.push_str(&line);
        text.push('\n');
    }
    text
}

/// Writes the PackageList of `set` to a target, atomically.
pub fn write(dest: &dyn crate::target::Target, set: &CurrentSet, now: i64) -> Result<()> {
    dest.put(NAME, text(set, now).as_bytes())
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
/// and what is wrong with it.
pub fn parse(text: &str) -> Result<CurrentSet, (usize, String)> {
    let mut set = CurrentSet::default();
    for (n, line) in text.lines().enumerate() {
        if let Some(what) = line.strip_prefix(UNANSWERED) {
            set.unanswered.extend(
                what.split(", ")
                    .filter(|w| !w.trim().is_empty())
                    .map(|w| w.escape_default().to_string()),
            );
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
    Ok(set)
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
}
