//! `blat check` arguments.

use clap::Args;

use super::GlobalArgs;
use crate::ops::check::CheckOptions;

const CHECK_HELP: &str = "\
Checks, one line each (ok, FAIL with the fix, or skip when an earlier check failed):
  config        blat.toml and targets/*.conf parse
  source archive, release manager   readable, reachable
  per target    each release and project exists (package-versions counted), the pins are in the
                source archive; SSH: identity, known_hosts, dns, tcp, ssh handshake, host key,
                key accepted, receiver (current, or installable by the next sync; whether the key
                is a forced command), archive (exists, writable), free space (against min_free),
                zstd (when compression is zstd); local: the directory; S3: credentials, bucket,
                write (a probe object written and removed)
For each SSH target it prints the authorized_keys line that lets blat's key in on a new target:
  restrict,command=\"<home>/.blat/blat-receiver\" <public key>
(the public key from <identity>.pub, or derived from the private key).
Exit codes: 0 every check holds, 1 a check failed, 2 bad usage (an unknown --target).";

/// Verify everything a sync needs, changing nothing (all targets unless
/// --target names some)
#[derive(Debug, Args)]
#[command(after_long_help = CHECK_HELP)]
pub struct CheckArgs {}

impl CheckArgs {
    pub fn options(&self, global: &GlobalArgs) -> CheckOptions {
        CheckOptions {
            config_dir: global.config.clone(),
            selection: global.selection(),
        }
    }
}
