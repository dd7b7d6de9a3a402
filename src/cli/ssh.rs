//! `blat ssh` arguments.

use clap::Args;

/// Run the system's ssh to an SSH target as blat reaches it: its user,
/// identity, port and known_hosts (host keys checked strictly)
#[derive(Debug, Args)]
#[command(after_long_help = "\
What it runs:
    ssh -p PORT -l USER -i IDENTITY -o IdentitiesOnly=yes -o UserKnownHostsFile=KNOWN_HOSTS
        -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o ConnectTimeout=SECS
        -- HOST [COMMAND...]
  with the target's settings, in place of blat: the exit status is ssh's. Host keys are checked
  against the target's known_hosts only, as blat checks them. Behind jump hosts (`jump`),
  -o ProxyCommand=\"ssh ... -W HOST:PORT -- JUMP_HOST\" reaches the target through the last one,
  with the same identity, known_hosts and checks, nested once per jump host (-J would not apply
  them to the jump hosts). A key restricted to the receiver (a forced command) runs nothing else;
  the receiver itself answers: .blat/blat-receiver version")]
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
