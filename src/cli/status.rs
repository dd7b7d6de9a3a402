//! `blat status` arguments.

use std::path::PathBuf;

use clap::Args;

use super::GlobalArgs;
use crate::ops::status::StatusOptions;

/// Show per target the last run of each command and its outcome, pending and
/// rejected tags, packages marked for deletion and the last error (all
/// targets unless --target names some)
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Also write Prometheus text format here (node_exporter textfile collector)
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
}

impl StatusArgs {
    pub fn options(&self, global: &GlobalArgs) -> StatusOptions {
        StatusOptions {
            selection: global.selection(),
            metrics: self.metrics.clone(),
        }
    }
}
