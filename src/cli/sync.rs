//! `blat sync` arguments.

use clap::Args;

use super::GlobalArgs;
use crate::ops::sync::SyncOptions;

/// Bring targets in line with their current set from the Release Manager:
/// send what is missing or differs, link aliases, write the PackageList.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Only targets whose last successful sync is older than their sync_interval
    #[arg(long)]
    pub due: bool,
    /// Allow more deletions than the target's max_delete in this pass
    #[arg(long)]
    pub force: bool,
    /// Full check: walk each target instead of trusting its index, repair the
    /// index and send what was changed on the target by hand (else every
    /// verify_every syncs)
    #[arg(long)]
    pub verify: bool,
    /// Targets worked on at once (default: `jobs` in blat.toml, else 4)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=crate::config::MAX_JOBS as i64))]
    pub jobs: Option<u16>,
}

impl SyncArgs {
    pub fn options(&self, global: &GlobalArgs) -> SyncOptions {
        SyncOptions {
            selection: global.selection(),
            due: self.due,
            force: self.force,
            verify: self.verify,
            jobs: self.jobs.map(usize::from),
        }
    }
}
