//! An SSH target's settings: its login, the client that speaks for it
//! (`ssh_client`), and the jump hosts it is reached through (`jump`).

use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct SshConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub identity: PathBuf,
    pub known_hosts: PathBuf,
    pub remote_archive: String,
    pub connect_timeout: Duration,
    pub io_timeout: Duration,
    /// Jump hosts to pass through, first to last (`jump`); empty: direct.
    pub jump: Vec<JumpHost>,
    /// The SSH client that carries the receiver's streams.
    pub client: SshClient,
}

/// `ssh_client`: which SSH implementation reaches the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SshClient {
    /// The system's OpenSSH client (`ssh`) over one multiplexed connection
    /// per run: about twice libssh2's throughput (bench/ssh.sh, case big),
    /// and the user's ~/.ssh/config applies.
    #[default]
    Openssh,
    /// libssh2, in process.
    Libssh2,
}

impl SshClient {
    pub(super) fn parse(text: &str) -> Result<SshClient, String> {
        match text {
            "openssh" => Ok(SshClient::Openssh),
            "libssh2" => Ok(SshClient::Libssh2),
            other => Err(format!(
                "invalid ssh_client '{other}': expected \"openssh\" or \"libssh2\""
            )),
        }
    }
}

/// One jump host (bastion) on the way to an SSH target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JumpHost {
    pub user: String,
    pub host: String,
    pub port: u16,
}

impl JumpHost {
    /// Parses `jump`: comma-separated `[user@]host[:port]` hops, first to
    /// last, as OpenSSH's ProxyJump writes them (`[addr]:port` for IPv6).
    /// A hop without a user logs in as `default_user` (the target's), one
    /// without a port uses 22.
    pub fn parse_chain(text: &str, default_user: &str) -> Result<Vec<JumpHost>, String> {
        let bad = |why: &str| {
            format!(
                "invalid jump '{}': {why}; expected [user@]host[:port], comma-separated for a chain",
                text.escape_default()
            )
        };
        if text.trim().is_empty() {
            return Err(bad("empty"));
        }
        let mut hops = Vec::new();
        for hop in text.split(',') {
            let hop = hop.trim();
            let (user, rest) = match hop.split_once('@') {
                Some((u, r)) => (u, r),
                None => (default_user, hop),
            };
            if !is_plain_word(user) {
                return Err(bad(&format!("bad user '{}'", user.escape_default())));
            }
            let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
                let (addr, after) = v6.split_once(']').ok_or_else(|| bad("'[' without ']'"))?;
                if addr.is_empty()
                    || !addr
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
                {
                    return Err(bad(&format!("bad address '[{}]'", addr.escape_default())));
                }
                match after {
                    "" => (addr, None),
                    p => (
                        addr,
                        Some(
                            p.strip_prefix(':')
                                .ok_or_else(|| bad("expected :port after ]"))?,
                        ),
                    ),
                }
            } else {
                match rest.split_once(':') {
                    Some((h, p)) => (h, Some(p)),
                    None => (rest, None),
                }
            };
            if !rest.starts_with('[') && !is_plain_word(host) {
                return Err(bad(&format!("bad host '{}'", host.escape_default())));
            }
            let port = match port {
                None => 22,
                Some(p) => match p.parse::<u16>() {
                    Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
                    _ => return Err(bad(&format!("bad port '{}'", p.escape_default()))),
                },
            };
            hops.push(JumpHost {
                user: user.to_string(),
                host: host.to_string(),
                port,
            });
        }
        Ok(hops)
    }
}

impl std::fmt::Display for JumpHost {
    /// `user@host:port` (`user@[v6]:port`), as messages name a hop.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}@[{}]:{}", self.user, self.host, self.port)
        } else {
            write!(f, "{}@{}:{}", self.user, self.host, self.port)
        }
    }
}

/// A user or host name that cannot be taken for an ssh option or split by
/// a shell: letters, digits and `._-`, not starting with `-`.
fn is_plain_word(word: &str) -> bool {
    !word.is_empty()
        && !word.starts_with('-')
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}
