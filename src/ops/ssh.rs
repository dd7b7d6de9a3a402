//! `blat ssh TARGET [COMMAND...]`: the system's `ssh` to an SSH target as
//! blat reaches it (its user, identity, port and known_hosts, host keys
//! checked strictly), so an operator never retypes them.

use std::os::unix::process::CommandExt;
use std::process::Command;

use anyhow::{anyhow, Result};

use crate::config::{Config, SshConfig, Transport};
use crate::error::UsageError;

/// The ssh command line for `ssh` (host keys only from `known_hosts`, only
/// the configured identity), running `command` when it is not empty.
pub fn command(ssh: &SshConfig, command: &[String]) -> Command {
    crate::target::openssh::command(ssh, &[], command)
}

/// The SSH settings of target `name`.
pub fn target_ssh<'a>(config: &'a Config, name: &str) -> Result<&'a SshConfig> {
    let target = config.target(name).ok_or_else(|| {
        UsageError(format!(
            "unknown target '{name}': no {}/targets/{name}.conf",
            config.dir.display()
        ))
    })?;
    match target.archive().map(|a| &a.transport) {
        Some(Transport::Ssh(ssh)) => Ok(ssh),
        _ => Err(UsageError(format!("target '{name}' is not an SSH target")).into()),
    }
}

/// Replaces this process with `ssh`; returns only when it cannot run.
pub fn run(config: &Config, name: &str, args: &[String]) -> Result<()> {
    let ssh = target_ssh(config, name)?;
    let err = command(ssh, args).exec();
    Err(anyhow!(
        "cannot run ssh: {err} (blat ssh needs the OpenSSH client: apt-get install openssh-client)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_command_line_carries_every_setting() {
        let ssh = SshConfig {
            host: "site-a.example.com".into(),
            port: 2222,
            user: "pkgadmin".into(),
            identity: "/etc/blat/ssh/id_ed25519".into(),
            known_hosts: "/etc/blat/my ssh/known_hosts".into(),
            remote_archive: "dpkg_archive".into(),
            connect_timeout: Duration::from_secs(15),
            io_timeout: Duration::from_secs(60),
            client: Default::default(),
        };
        let cmd = command(&ssh, &["ls".into(), "-l".into()]);
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(cmd.get_program(), "ssh");
        assert_eq!(
            args,
            [
                "-p",
                "2222",
                "-l",
                "pkgadmin",
                "-i",
                "/etc/blat/ssh/id_ed25519",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "UserKnownHostsFile=\"/etc/blat/my ssh/known_hosts\"",
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "HostKeyAlias=[site-a.example.com]:2222",
                "-o",
                "ConnectTimeout=15",
                "--",
                "site-a.example.com",
                "ls",
                "-l"
            ]
        );
    }
}
