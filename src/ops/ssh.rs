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
/// Behind jump hosts, a `ProxyCommand` (not `-J`: options given on the
/// command line do not reach the jump hosts' connections) runs an ssh to
/// the last jump host with the very same options, itself behind the one
/// before, so that every hop is checked as the target is.
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
            jump: Vec::new(),
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

    #[test]
    fn jump_hosts_become_nested_proxy_commands_with_the_same_options() {
        let hop = |user: &str, host: &str, port| crate::config::JumpHost {
            user: user.into(),
            host: host.into(),
            port,
        };
        let mut ssh = SshConfig {
            host: "10.0.2.2".into(),
            port: 22,
            user: "pkgadmin".into(),
            identity: "/etc/blat/ssh/id 100%".into(),
            known_hosts: "/etc/blat/ssh/known_hosts".into(),
            remote_archive: "dpkg_archive".into(),
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(60),
            jump: vec![hop("ops", "bastion", 2222)],
            client: Default::default(),
        };
        let args = |ssh: &SshConfig| -> Vec<String> {
            command(ssh, &[])
                .get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        // Every hop's host key is looked up under its exact [HOST]:PORT.
        let opts = |alias: &str| {
            format!(
                "-o IdentitiesOnly=yes -o UserKnownHostsFile=/etc/blat/ssh/known_hosts \
                 -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes \
                 -o {alias} -o ConnectTimeout=5"
            )
        };
        let bastion = opts("'HostKeyAlias=[bastion]:2222'");
        let one = format!(
            "ProxyCommand=ssh -p 2222 -l ops -i '/etc/blat/ssh/id 100%%' {bastion} -W 10.0.2.2:22 -- bastion"
        );
        let got = args(&ssh);
        assert_eq!(got[got.len() - 4..], ["-o", one.as_str(), "--", "10.0.2.2"]);
        assert_eq!(got[..5], ["-p", "22", "-l", "pkgadmin", "-i"]);

        // Two hops: the first is the second's ProxyCommand, quoted for the
        // shell and its `%` doubled once more.
        ssh.jump.insert(0, hop("gw", "fe80::1", 22));
        let inner = format!(
            "ssh -p 22 -l gw -i '/etc/blat/ssh/id 100%%' {} -W bastion:2222 -- fe80::1",
            opts("HostKeyAlias=fe80::1")
        );
        let two = format!(
            "ProxyCommand=ssh -p 2222 -l ops -i '/etc/blat/ssh/id 100%%' {bastion} -o '{}' -W 10.0.2.2:22 -- bastion",
            format!("ProxyCommand={inner}")
                .replace('%', "%%")
                .replace('\'', r"'\''")
        );
        let got = args(&ssh);
        assert_eq!(got[got.len() - 3], two);
        // An IPv6 next hop is bracketed for -W.
        ssh.jump.swap(0, 1);
        let got = args(&ssh);
        assert!(
            // quoted for the shell, inside the quoted inner ProxyCommand
            got[got.len() - 3].contains(r"-W '\''[fe80::1]:22'\''"),
            "{}",
            got[got.len() - 3]
        );
    }
}
