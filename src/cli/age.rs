//! `blat age` arguments: on the master (per target, from its `[aging]`
//! section) or, with `--local`, on a target itself with no configuration.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::GlobalArgs;
use crate::config::units::parse_duration;
use crate::ops::age::{AgeOptions, LocalAgeOptions};

/// Delete package-versions that left the current set, as each target's [aging] method says.
///
/// On the master (archive targets): `immediate` deletes every excess package-version now;
/// `master` marks each in the state file when first seen excess and deletes it once marked for
/// longer than `after`; `none` and `target` delete nothing here. With --local it runs on a
/// target itself (method `target`, from cron): the current set is the master's
/// .dpkg_archive/packagelist.txt, marks live in .dpkg_archive/blat-age-marks.txt, and no
/// configuration is read.
///
/// Never excess: anything when the current set is empty (or the packagelist is missing or
/// empty), pinned packages, aliases and the versions they point to, package-versions whose
/// descpkg is younger than writable_grace or that arrived on the target less than
/// writable_grace ago (the descpkg's ctime there: fast may send a package before the Release
/// Manager lists it). A release source error stops before any deletion.
/// More deletions than max_delete in one pass are refused as a whole (nothing deleted, exit
/// code 1) unless --force. Deletions rename the version aside before removing it, and remove
/// the aliases pointing to it first. --dry-run prints each "would delete".
#[derive(Debug, Args)]
pub struct AgeArgs {
    /// Allow more deletions than max_delete in this pass
    #[arg(long)]
    pub force: bool,
    /// Run on the target itself, for aging method "target" (needs --archive; no configuration)
    #[arg(long, requires = "archive")]
    pub local: bool,
    /// With --local: the archive on this machine
    #[arg(long, value_name = "DIR", requires = "local")]
    pub archive: Option<PathBuf>,
    /// With --local: delete once marked for longer than this
    #[arg(long, value_name = "DURATION", default_value = "14d", value_parser = parse_duration, requires = "local")]
    pub after: Duration,
    /// With --local: a package-version whose descpkg is younger than this, or that arrived less
    /// than this ago, is never excess
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration, requires = "local")]
    pub grace: Duration,
    /// With --local: refuse a pass that would delete more than this many package-versions
    #[arg(long, value_name = "N", default_value_t = 50, requires = "local")]
    pub max_delete: usize,
    /// Targets worked on at once (default: `jobs` in blat.toml, else 4)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=crate::config::MAX_JOBS as i64), conflicts_with = "local")]
    pub jobs: Option<u16>,
}

impl AgeArgs {
    pub fn options(&self, global: &GlobalArgs) -> AgeOptions {
        AgeOptions {
            selection: global.selection(),
            force: self.force,
            jobs: self.jobs.map(usize::from),
        }
    }

    /// `Some` with --local (then --archive is there: clap requires it).
    pub fn local_options(&self, global: &GlobalArgs) -> Option<LocalAgeOptions> {
        let archive = self.archive.clone().filter(|_| self.local)?;
        Some(LocalAgeOptions {
            archive,
            // A relay's archive is a site (a master syncs it): it may age.
            master_archive: crate::config::Config::load(&global.config)
                .ok()
                .filter(|c| {
                    !matches!(
                        c.release_manager,
                        crate::config::ReleaseManagerConfig::PackageList
                    )
                })
                .map(|c| c.archive),
            after: self.after,
            grace: self.grace,
            max_delete: self.max_delete,
            force: self.force,
            dry_run: global.dry_run,
        })
    }
}
