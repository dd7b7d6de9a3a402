//! `blat tag`: the Release Manager's one-line hook. It drops an empty file
//! `<package>::<version>` into each selected archive target's tag directory
//! (`<tag_dir>/<target>/`), atomically, for `blat fast` to consume.
//!
//! This file also owns the layout of a tag directory, which `fast` and
//! `status` read: tags are the entries whose names do not start with `.`;
//! rejected tags live in `.rejected/<tag>`, each with its reason in
//! `.rejected/.<tag>.reason` (hidden, so it can never clash with a tag).
//!
//! `tag` takes no target lock on purpose: it only renames one file into
//! place, and a `fast --watch` holds a target's tags for a minute at a time.

use std::ffi::OsStr;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::Serialize;

use super::{CommandReport, Context, Frame, Selection};
use crate::archive::{PackageVersion, SourceArchive, SourceEntry};
use crate::config::{Config, TargetConfig};
use crate::error::{Outcome, UsageError};

/// The subdirectory of a target's tag directory that holds rejected tags.
pub const REJECTED: &str = ".rejected";

/// Prefix of `blat tag`'s temporary files (hidden: never read as tags).
const TEMP_PREFIX: &str = ".blat-tag-";

#[derive(Clone, Debug, Default)]
pub struct TagOptions {
    /// No target named means every archive target.
    pub selection: Selection,
    pub package: String,
    pub version: String,
}

/// The tag file name of a package-version: `<package>::<version>`.
pub fn tag_name(pv: &PackageVersion) -> String {
    format!("{}::{}", pv.package, pv.version)
}

/// `<tag_dir>/<target>/`.
pub fn tag_dir(config: &Config, target: &str) -> PathBuf {
    config.tag_dir.join(target)
}

/// The entries of a tag directory that are tags: every name not starting
/// with `.` (those are temporaries of writers that rename into place, and
/// `.rejected`), sorted. Names are returned as found, valid or not. A
/// missing directory holds no tags.
pub fn pending(dir: &Path) -> Result<Vec<std::ffi::OsString>> {
    let entries = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read tag directory {}", dir.display()))
        }
    };
    let mut out = Vec::new();
    for entry in entries {
        let name = entry
            .with_context(|| format!("cannot read tag directory {}", dir.display()))?
            .file_name();
        if !name.as_encoded_bytes().starts_with(b".") {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// A rejected tag and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejected {
    pub tag: String,
    pub reason: String,
}

/// The rejected tags of a tag directory with their reasons (for `status`).
pub fn rejected(dir: &Path) -> Result<Vec<Rejected>> {
    let dir = dir.join(REJECTED);
    let mut out = Vec::new();
    for name in pending(&dir)? {
        let reason = fs::read_to_string(dir.join(reason_file(&name))).unwrap_or_default();
        out.push(Rejected {
            tag: name.to_string_lossy().into_owned(),
            reason: reason.trim_end().to_string(),
        });
    }
    Ok(out)
}

fn reason_file(name: &OsStr) -> std::ffi::OsString {
    let mut file = std::ffi::OsString::from(".");
    file.push(name);
    file.push(".reason");
    file
}

/// Moves the entry `name` of tag directory `dir` to `.rejected/` and writes
/// its reason beside it. `name` is a single component read from `dir`, so
/// the move stays inside the tag directory whatever the name holds.
pub fn reject(dir: &Path, name: &OsStr, reason: &str, now: i64) -> Result<()> {
    let rejected = dir.join(REJECTED);
    fs::create_dir_all(&rejected)
        .with_context(|| format!("cannot create {}", rejected.display()))?;
    let to = rejected.join(name);
    // A directory in the way (an earlier rejected directory of that name)
    // would make the rename fail: clear it first.
    if fs::symlink_metadata(&to).is_ok_and(|m| m.is_dir()) {
        fs::remove_dir_all(&to).with_context(|| format!("cannot replace {}", to.display()))?;
    }
    fs::rename(dir.join(name), &to)
        .with_context(|| format!("cannot move tag to {}", rejected.display()))?;
    let text = format!(
        "{} {}\n",
        crate::clock::rfc3339(now),
        reason.replace('\n', " ")
    );
    write_atomically(&rejected, &reason_file(name), text.as_bytes())
}

/// Writes `dir/name` by a temporary file in `dir` and a rename, so readers
/// (and inotify watchers) only ever see the finished file.
fn write_atomically(dir: &Path, name: &OsStr, data: &[u8]) -> Result<()> {
    let temp = dir.join(format!(
        "{TEMP_PREFIX}{}-{}",
        std::process::id(),
        random_token()
    ));
    fs::write(&temp, data).with_context(|| format!("cannot write {}", temp.display()))?;
    let to = dir.join(name);
    fs::rename(&temp, &to).map_err(|e| {
        let _ = fs::remove_file(&temp);
        anyhow::Error::new(e).context(format!("cannot rename into {}", to.display()))
    })
}

fn random_token() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..10)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// Writes the tag of `pv` into `<tag_dir>/<target>/`, creating it.
pub fn write_tag(config: &Config, target: &str, pv: &PackageVersion) -> Result<PathBuf> {
    let dir = tag_dir(config, target);
    fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create tag directory {}", dir.display()))?;
    let name = tag_name(pv);
    write_atomically(&dir, OsStr::new(&name), b"")?;
    Ok(dir.join(name))
}

#[derive(Debug, Serialize)]
pub struct TagReport {
    pub tag: String,
    pub path: PathBuf,
}

pub fn run(ctx: &Context, options: &TagOptions) -> Result<Outcome> {
    let pv = PackageVersion::new(&options.package, &options.version)
        .map_err(|e| UsageError(format!("cannot tag: {e}")))?;
    let selection = if options.selection.targets.is_empty() {
        Selection {
            targets: Vec::new(),
            all: true,
        }
    } else {
        options.selection.clone()
    };
    let targets = ctx.select(&selection, |t| t.archive().is_some(), "archive")?;
    if targets.is_empty() {
        return Err(UsageError(format!(
            "no archive target in {}/targets: a tag would go nowhere",
            ctx.config.dir.display()
        ))
        .into());
    }
    // Not an error: the tag may come before the package lands in the archive.
    match SourceArchive::new(&ctx.config.archive).inspect(&pv) {
        Ok(SourceEntry::Missing) => ctx.reporter.warn(
            "",
            &format!(
                "{pv} is not in the source archive (yet): fast will retry it, then reject the tag"
            ),
        ),
        Ok(_) => {}
        Err(e) => ctx.reporter.warn("", &format!("{e:#}")),
    }
    let frames: Vec<Frame<TagReport>> = targets.iter().map(|t| tag_one(ctx, t, &pv)).collect();
    let outcome = frames
        .iter()
        .map(|f| f.outcome)
        .max()
        .unwrap_or(Outcome::Done);
    if ctx.reporter.json() {
        let report = CommandReport {
            command: "tag".to_string(),
            dry_run: ctx.dry_run,
            outcome,
            exit_code: outcome.code(),
            targets: frames,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(outcome)
}

fn tag_one(ctx: &Context, target: &TargetConfig, pv: &PackageVersion) -> Frame<TagReport> {
    let tag = tag_name(pv);
    let result = if ctx.dry_run {
        let path = tag_dir(&ctx.config, &target.name).join(&tag);
        ctx.reporter
            .plan_line(&target.name, &format!("would write tag {}", path.display()));
        Ok(path)
    } else {
        write_tag(&ctx.config, &target.name, pv)
    };
    let (outcome, error, report) = match result {
        Ok(path) => {
            ctx.reporter
                .summary(&format!("{}: tag done: {}", target.name, path.display()));
            (Outcome::Done, None, Some(TagReport { tag, path }))
        }
        Err(e) => {
            let e = format!("{e:#}");
            ctx.reporter
                .error("", &format!("{}: tag failed: {e}", target.name));
            (Outcome::Failed, Some(e), None)
        }
    };
    Frame {
        target: target.name.clone(),
        outcome,
        exit_code: outcome.code(),
        error,
        report,
    }
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
        reject(
            dir.path(),
            OsStr::new("a::b::c"),
            "invalid name\nsecond line",
            0,
        )
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
        reject(dir.path(), OsStr::new("a::b::c"), "again", 1).unwrap();
        assert_eq!(
            rejected(dir.path()).unwrap()[0].reason,
            "1970-01-01T00:00:01Z again"
        );
        assert!(pending(&dir.path().join("missing")).unwrap().is_empty());
    }
}
