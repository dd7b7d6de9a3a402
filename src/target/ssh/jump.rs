//! Reaching an SSH target through jump hosts (`jump`, docs/configuration.md):
//! blat logs in at the first jump host over TCP, asks it to forward a
//! connection to the next hop (a direct-tcpip channel, what `ssh -J` does),
//! runs the next SSH session over that channel ([`super::relay`]), and so
//! on to the target.
//!
//! Every hop is checked as the target is: its host key against the
//! target's `known_hosts` (`[host]:port` as OpenSSH writes it), the
//! target's identity, `connect_timeout` for connecting and `io_timeout`
//! for every later wait. A failure names the hop.

use anyhow::{anyhow, Context, Result};

use super::known_hosts::KnownHosts;
use super::relay::{self, RelayedSocket};
use super::{millis, resolve, tcp_connect, Login, Passed, SshTransport, Step};
use crate::config::JumpHost;

impl SshTransport {
    /// The connection steps in the order they are taken, each with its
    /// jump host (`None`: the target). Behind jump hosts, the target's name
    /// is resolved and connected to by the last jump host: its `tcp` step
    /// is that jump host opening the forwarded connection.
    pub fn steps(&self) -> Vec<(Option<usize>, Step)> {
        let mut steps = vec![(None, Step::Identity), (None, Step::KnownHosts)];
        for i in 0..self.config.jump.len() {
            steps.extend([Step::Reach, Step::HostKey, Step::Login].map(|s| (Some(i), s)));
        }
        if self.config.jump.is_empty() {
            steps.push((None, Step::Dns));
        }
        steps.extend([Step::Tcp, Step::Handshake, Step::HostKey, Step::Login].map(|s| (None, s)));
        steps
    }

    /// Logs in at each jump host in turn and returns the socket of a
    /// connection forwarded by the last one to the target, and where the
    /// relays report trouble.
    pub(super) fn through_jumps(
        &self,
        known: &KnownHosts,
        passed: Passed,
    ) -> Result<(RelayedSocket, relay::Trouble)> {
        let c = &self.config;
        let trouble = relay::Trouble::default();
        let mut below: Option<RelayedSocket> = None;
        for (i, hop) in c.jump.iter().enumerate() {
            let name = format!("jump host {hop}");
            let at = Login {
                host: &hop.host,
                port: hop.port,
                user: &hop.user,
                hop: Some(i),
                keyscan: (i > 0).then(|| self.keyscan_behind(i, &hop.host, hop.port)),
            };
            let session = match below.take() {
                Some(socket) => self.login(socket, &at, known, passed),
                None => resolve(&hop.host, hop.port)
                    .and_then(|addrs| tcp_connect(&hop.host, hop.port, &addrs, c.connect_timeout))
                    .and_then(|tcp| {
                        let _ = tcp.set_nodelay(true);
                        self.login(tcp, &at, known, passed)
                    }),
            }
            .with_context(|| name.clone())?;
            let (next_host, next_port) = match c.jump.get(i + 1) {
                Some(next) => (next.host.as_str(), next.port),
                None => (c.host.as_str(), c.port),
            };
            // The jump host connecting onwards is part of connecting.
            session.set_timeout(millis(c.connect_timeout));
            let channel = session
                .channel_direct_tcpip(next_host, next_port, None)
                .map_err(|e| {
                    let hint = if e.message().contains("prohibited") {
                        format!(
                            "its sshd or the key's options do not allow forwarding there \
                             (AllowTcpForwarding, permitopen=\"{next_host}:{next_port}\")"
                        )
                    } else {
                        format!(
                            "is sshd running on {next_host} port {next_port}, and can {} reach it?",
                            hop.host
                        )
                    };
                    anyhow!(
                        "{name} cannot open a connection to {next_host} port {next_port}: {}; {hint}",
                        e.message()
                    )
                })?;
            if i + 1 == c.jump.len() {
                passed(
                    None,
                    Step::Tcp,
                    format!("{name} forwards to {next_host} port {next_port}"),
                );
            }
            let socket = relay::start(
                session,
                channel,
                name.clone(),
                c.io_timeout,
                trouble.clone(),
            )
            .with_context(|| format!("{name}: cannot start relaying"))?;
            below = Some(socket);
        }
        let socket = below.ok_or_else(|| anyhow!("no jump host configured"))?;
        Ok((socket, trouble))
    }

    /// The jump hosts, for messages: `jump host A, then B`.
    pub(super) fn jump_hosts(&self) -> String {
        let hops: Vec<String> = self.config.jump.iter().map(|h| h.to_string()).collect();
        format!("jump host {}", hops.join(", then "))
    }

    /// How to record the host key of `host:port`, reached through jump host
    /// `hop - 1`: ssh-keyscan from here cannot reach it, so it runs there.
    pub(super) fn keyscan_behind(&self, hop: usize, host: &str, port: u16) -> String {
        let c = &self.config;
        let file = c.known_hosts.display();
        let via = &c.jump[hop - 1];
        if hop == 1 {
            format!(
                "{} ssh-keyscan -p {port} {host} >> {file} (ssh-keyscan runs on jump host {via}, which reaches it)",
                ssh_to(via, c)
            )
        } else {
            format!(
                "run ssh-keyscan -p {port} {host} on jump host {via} (which reaches it) and append its output to {file}"
            )
        }
    }
}

/// The system ssh to a jump host reachable from here, checking its key
/// against the target's known_hosts.
fn ssh_to(hop: &JumpHost, c: &crate::config::SshConfig) -> String {
    format!(
        "ssh -p {} -i {} -o IdentitiesOnly=yes -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes {}@{}",
        hop.port,
        c.identity.display(),
        c.known_hosts.display(),
        hop.user,
        hop.host
    )
}
