//! `blat check` of a target's releases: each configured release and
//! project exists in the Release Manager, with its package count; an S3
//! target naming none takes the releases flagged s3sync.

use anyhow::Result;

use super::{Checks, Status};
use crate::config::{ReleaseName, TargetConfig, TargetKind};
use crate::release::{self, ReleaseSource};

/// Each configured release and project exists, with its package count.
pub(super) fn check_releases(
    rm: &mut dyn ReleaseSource,
    target: &TargetConfig,
    checks: &mut Checks,
) {
    let name = target.name.as_str();
    // A relay has no releases: every target gets the whole list.
    if let Ok(Some(listed)) = rm.relayed() {
        checks.add(
            name,
            "releases",
            Status::Ok,
            format!(
                "a relay: the whole PackageList, {} package-versions and {} aliases, and {} `packages` pins",
                listed.versions.len(),
                listed.aliases.len(),
                target.packages.len()
            ),
        );
        return;
    }
    let file = target.file.display().to_string();
    for rel in &target.releases {
        match release::release_content(rm, rel) {
            Ok(content) => checks.add(
                name,
                &format!("release {rel}"),
                Status::Ok,
                format!("{} package-versions", content.len()),
            ),
            Err(e) => checks.fail(
                name,
                &format!("release {rel}"),
                format!("{e:#}"),
                format!(
                    "correct `releases` in {file}, or create the release in the Release Manager"
                ),
            ),
        }
    }
    for project in &target.projects {
        check_project(rm, target, project, checks);
    }
    let none = target.releases.is_empty() && target.projects.is_empty();
    if none && matches!(target.kind, TargetKind::S3(_)) {
        check_s3sync_releases(rm, target, checks);
    } else if none {
        checks.add(
            name,
            "releases",
            Status::Ok,
            format!(
                "none configured: only the {} `packages` pins",
                target.packages.len()
            ),
        );
    }
}

/// The package-versions of `releases`, counted; the first that cannot be
/// read is the error.
fn rows_of(rm: &mut dyn ReleaseSource, releases: &[ReleaseName]) -> Result<usize> {
    releases
        .iter()
        .map(|r| release::release_content(rm, r).map(|c| c.len()))
        .sum()
}

/// `N release(s)` and, when there are any, their names.
fn count_releases(releases: &[ReleaseName], what: &str) -> String {
    let plural = if releases.len() == 1 { "" } else { "s" };
    let count = format!("{} {what}release{plural}", releases.len());
    if releases.is_empty() {
        return count;
    }
    let names: Vec<&str> = releases.iter().map(|r| r.release.as_str()).collect();
    format!("{count} ({})", names.join(", "))
}

/// One project exists, with its not-closed releases and their package count.
fn check_project(
    rm: &mut dyn ReleaseSource,
    target: &TargetConfig,
    project: &str,
    checks: &mut Checks,
) {
    let (name, what) = (target.name.as_str(), format!("project {project}"));
    let open = match release::selected_releases(rm, &[], &[project.to_string()], false) {
        Ok(open) => open,
        Err(e) => {
            let file = target.file.display();
            return checks.fail(
                name,
                &what,
                format!("{e:#}"),
                format!(
                    "correct `projects` in {file}, or create the project in the Release Manager"
                ),
            );
        }
    };
    match rows_of(rm, &open) {
        Ok(rows) => checks.add(
            name,
            &what,
            Status::Ok,
            format!(
                "{}, {rows} package-versions",
                count_releases(&open, "not-closed ")
            ),
        ),
        Err(e) => checks.fail(
            name,
            &what,
            format!("{e:#}"),
            "check the Release Manager's rows for this project",
        ),
    }
}

/// An S3 target naming no release takes the releases flagged s3sync.
fn check_s3sync_releases(rm: &mut dyn ReleaseSource, target: &TargetConfig, checks: &mut Checks) {
    let (name, what) = (target.name.as_str(), "s3sync releases");
    let flagged = match release::selected_releases(rm, &[], &[], true) {
        Ok(flagged) => flagged,
        Err(e) => {
            return checks.fail(
                name,
                what,
                format!("{e:#}"),
                "check the Release Manager (releases.s3sync)",
            )
        }
    };
    match rows_of(rm, &flagged) {
        Ok(rows) => checks.add(
            name,
            what,
            Status::Ok,
            format!(
                "{} release{} flagged s3sync, {rows} package-versions",
                flagged.len(),
                if flagged.len() == 1 { "" } else { "s" }
            ),
        ),
        Err(e) => checks.fail(
            name,
            what,
            format!("{e:#}"),
            "check the Release Manager's rows for these releases",
        ),
    }
}
