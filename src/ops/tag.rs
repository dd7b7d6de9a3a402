//! `blat tag`: the Release Manager's one-line hook. It drops an empty file
//! `<package>::<version>` into each selected archive target's tag directory
//! (`<tag_dir>/<target>/`, laid out as [`crate::tags`] says), atomically,
//! for `blat fast` to consume.
//!
//! `tag` takes no target lock on purpose: it only renames one file into
//! place, and a `fast --watch` holds a target's tags for a minute at a time.

use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use super::{CommandReport, Context, Frame, Selection};
use crate::archive::{PackageVersion, SourceArchive, SourceEntry};
use crate::config::TargetConfig;
use crate::error::{Outcome, UsageError};
use crate::tags::{tag_dir, tag_name, write_tag};

#[derive(Clone, Debug, Default)]
pub struct TagOptions {
    /// No target named means every archive target.
    pub selection: Selection,
    pub package: String,
    pub version: String,
}

#[derive(Debug, Serialize)]
pub struct TagReport {
    pub tag: String,
    pub path: PathBuf,
}

pub fn run(ctx: &Context, options: &TagOptions) -> Result<Outcome> {
    let pv = PackageVersion::new(&options.package, &options.version)
        .map_err(|e| UsageError(format!("cannot tag: {e}")))?;
    let selection = options.selection.or_every_target();
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
