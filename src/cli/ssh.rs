//! `blat ssh` arguments.

use clap::Args;

/// Run the system's ssh to an SSH target as blat reaches it: its user,
/// identity, port and known_hosts (host keys checked strictly)
#[derive(Debug, Args)]
#[command(after_long_help = "\
Runs: ssh -p PORT -l USER -i IDENTITY -o IdentitiesOnly=yes -o UserKnownHostsFile=KNOWN_HOSTS
  -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o ConnectTimeout=SECONDS
  -- HOST [COMMAND...]
and exits with ssh's exit code. A key restricted to the receiver (a forced command) runs
nothing but it: blat ssh TARGET .blat/blat-receiver version")]
pub struct SshArgs {
    /// The target's name (an SSH target)
    #[arg(value_name = "TARGET")]
    pub name: String,
    /// A command to run there instead of a login shell
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}
