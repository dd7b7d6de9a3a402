//! `blat status` arguments.

use std::path::PathBuf;

use clap::Args;

use super::GlobalArgs;
use crate::ops::status::StatusOptions;

/// Show per target, in one line, the last successful sync and its age, whether the target is
/// behind and the last error; then the last run of each command and its outcome, pending and
/// rejected tags, packages marked for deletion (all targets unless --target names some).
///
/// Behind: package-versions of the current set still missing or differing after the last sync,
/// and pending tags (the oldest one's age). Reads only, takes no lock and writes nothing but
/// the metrics file, so any user who may read state_dir can run it; -q shows the one-line
/// summaries only.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Also write Prometheus text format here (node_exporter textfile collector), replaced
    /// atomically
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
