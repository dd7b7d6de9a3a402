//! `blat check` arguments.

use clap::Args;

use super::GlobalArgs;
use crate::ops::check::CheckOptions;

const CHECK_HELP: &str = "\
Checks (each one line: ok, FAIL with the fix, or skip when a check it needs failed):
  config  blat.toml and targets/*.conf parse; the source archive is readable; the Release Manager answers
  releases  each release and project of a target exists, with its package-versions; its pins are in the source archive
  ssh  identity, known_hosts, dns, tcp, ssh handshake, host key, key accepted (with the transport's own messages)
  receiver  current, or else whether the next sync installs it; whether the key is a forced command
  archive  the target archive exists and its user may write it; free space against min_free; zstd when configured
  s3  credentials, bucket (one listing), write (a probe object written and removed)
Nothing on a target changes: the receiver is never installed by a check.
The authorized_keys line:
  For each SSH target check prints the line that lets blat's key in on a new target, for the target
  user's home (as the target said, else assumed to be /home/USER), the public key taken from
  <identity>.pub or derived from the private key:
    restrict,command=\"/home/pkgadmin/.blat/blat-receiver\" ssh-ed25519 AAAA... blat@master";

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
