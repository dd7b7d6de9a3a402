//! `blat fast` arguments.

use std::time::Duration;

use clap::Args;

use super::GlobalArgs;
use crate::ops::fast::FastOptions;

/// Consume tags: send each tagged package to its target now, remove the tag
/// once the package is in place (select targets with --target or --all)
#[derive(Debug, Args)]
pub struct FastArgs {
    /// Keep polling the tag directories (every fast_poll, and at once when a
    /// tag appears) for this long, then exit: `--watch 59s` from cron each minute
    #[arg(long, value_name = "DURATION", value_parser = parse_watch)]
    pub watch: Option<Duration>,
}

fn parse_watch(text: &str) -> Result<Duration, String> {
    crate::config::units::parse_duration(text)
}

impl FastArgs {
    pub fn options(&self, global: &GlobalArgs) -> FastOptions {
        FastOptions {
            selection: global.selection(),
            watch: self.watch,
        }
    }
}
