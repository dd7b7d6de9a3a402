//! The `ssh` transport (issue 3): not built yet.

use anyhow::Result;

use super::{InputFn, RunOutput, Transport};
use crate::config::SshConfig;

pub struct SshTransport {
    config: SshConfig,
}

impl SshTransport {
    pub fn new(config: SshConfig) -> Result<SshTransport> {
        Err(crate::error::UsageError(format!(
            "transport \"ssh\" (host {}) is not supported by this build yet",
            config.host
        ))
        .into())
    }
}

impl Transport for SshTransport {
    fn describe(&self) -> String {
        format!("{}@{}:{}", self.config.user, self.config.host, self.config.remote_archive)
    }

    fn run(&self, _args: &[String], _input: Option<InputFn>) -> Result<RunOutput> {
        unreachable!("SshTransport::new never succeeds yet")
    }
}
