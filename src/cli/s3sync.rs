//! `blat s3sync` arguments.

use clap::Args;

use super::GlobalArgs;
use crate::ops::s3sync::S3SyncOptions;

/// Keep S3 targets' buckets holding one ZIP per package-version of their
/// current set (releases flagged s3sync = 1, or the target's releases and
/// projects), uploading what is missing or changed, then age the excess
#[derive(Debug, Args)]
pub struct S3syncArgs {
    /// Allow more deletions than the target's max_delete in this pass
    #[arg(long)]
    pub force: bool,
    /// Buckets worked on at once (default: `jobs` in blat.toml, else 4)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=crate::config::MAX_JOBS as i64))]
    pub jobs: Option<u16>,
}

impl S3syncArgs {
    pub fn options(&self, global: &GlobalArgs) -> S3SyncOptions {
        S3SyncOptions {
            selection: global.selection(),
            force: self.force,
            jobs: self.jobs.map(usize::from),
        }
    }
}
