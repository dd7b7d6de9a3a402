//! `blat check` on an SSH target: each step of connecting, taken by the
//! transport's own code (so with its messages and its host key checking),
//! then what the key may run and what the receiver there is and says. It
//! changes nothing on the target: the receiver is never installed here.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use ssh2::Session;

use super::{
    first_line, known_hosts, receiver_sha256, shell_word, version_sha, SshTransport, Step,
};
use crate::target::facts::ArchiveFacts;
use crate::target::protocol;
use crate::target::{RunOutput, RECEIVER};

/// One connection step and how it went.
#[derive(Clone, Debug, Serialize)]
pub struct StepResult {
    /// The jump host (an index into `jump`), or `None`: the target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hop: Option<usize>,
    pub step: Step,
    pub ok: bool,
    pub detail: String,
}

/// The receiver on the target, as `version` finds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ReceiverState {
    /// The very program built into this blat.
    Current,
    /// Another version.
    Stale { sha256: String },
    /// Nothing answers (`why`: what the target said).
    Missing { why: String },
}

/// What `blat check` learns about an SSH target.
#[derive(Clone, Debug, Default)]
pub struct SshProbe {
    /// The steps that passed, then the one that failed (if any).
    pub steps: Vec<StepResult>,
    /// Once logged in: the receiver there.
    pub receiver: Option<ReceiverState>,
    /// Once logged in: the key runs only the receiver (a forced command).
    pub forced: Option<bool>,
    /// When the receiver is not current: `Ok(how)` when the next sync
    /// installs it by itself, `Err(why not)`.
    pub installable: Option<Result<String, String>>,
    /// What the receiver's `check` says (the installed one when current,
    /// else the embedded one run through an unrestricted key), or why it
    /// could not be asked.
    pub facts: Option<Result<ArchiveFacts, String>>,
    /// `$HOME` of the target user, when the target said.
    pub home: Option<String>,
}

/// What an unrestricted key runs first: a marker a forced command never
/// prints, `$HOME`, and whether blat could write the receiver's directory.
const SHELL_PROBE: &str = "printf 'blat-check\\n%s\\n' \"$HOME\"; \
     if [ -d \"$HOME/.blat\" ]; then d=\"$HOME/.blat\"; else d=\"$HOME\"; fi; \
     if [ -w \"$d\" ]; then echo installable; else printf 'not-writable %s\\n' \"$d\"; fi";

impl SshTransport {
    /// Connects step by step and looks at the receiver; never fails:
    /// every problem is in the returned probe.
    pub fn probe(&self) -> SshProbe {
        let mut probe = SshProbe::default();
        let mut passed = Vec::new();
        let connected = self.connect_steps(&mut |hop, step, detail| {
            passed.push(StepResult {
                hop,
                step,
                ok: true,
                detail,
            })
        });
        probe.steps = passed;
        let session = match connected {
            Ok(session) => session,
            Err(e) => {
                let (hop, failed) = self
                    .steps()
                    .into_iter()
                    .find(|(h, s)| !probe.steps.iter().any(|p| p.hop == *h && p.step == *s))
                    .unwrap_or((None, Step::Login));
                probe.steps.push(StepResult {
                    hop,
                    step: failed,
                    ok: false,
                    detail: format!("{e:#}").replace('\n', " "),
                });
                return probe;
            }
        };
        if let Err(e) = self.probe_receiver(&session, &mut probe) {
            let why = format!("{e:#}").replace('\n', " ");
            probe.facts.get_or_insert(Err(why));
        }
        let _ = session.disconnect(None, "blat check done", None);
        probe
    }

    /// Runs one receiver command with no input, as the probe does.
    fn call(&self, session: &Session, command: protocol::Command) -> Result<RunOutput> {
        self.exec(session, &self.command_line(&command.args()), None)
    }

    fn probe_receiver(&self, session: &Session, probe: &mut SshProbe) -> Result<()> {
        let shell = self.exec(session, SHELL_PROBE, None)?;
        let mut lines = shell.stdout.lines();
        let forced = lines.next() != Some("blat-check");
        probe.forced = Some(forced);
        let installable_dir = if forced {
            None
        } else {
            probe.home = lines.next().filter(|h| !h.is_empty()).map(String::from);
            lines.next().map(String::from)
        };

        let version = self.call(session, protocol::Command::Version)?;
        let found = (version.status == 0)
            .then(|| version_sha(&version.stdout))
            .flatten();
        let state = match found {
            Some(sha) if sha == receiver_sha256() => ReceiverState::Current,
            Some(sha) => ReceiverState::Stale { sha256: sha },
            None => ReceiverState::Missing {
                why: first_line(&version.stderr, version.status),
            },
        };
        probe.receiver = Some(state.clone());

        if state != ReceiverState::Current {
            probe.installable = Some(match (forced, &state, installable_dir.as_deref()) {
                (false, _, Some("installable")) => {
                    Ok("the key runs any command: the next sync installs it".into())
                }
                (false, _, other) => Err(format!(
                    "{} is not writable for {}: blat cannot put the receiver there",
                    other
                        .and_then(|o| o.strip_prefix("not-writable "))
                        .unwrap_or("~/.blat"),
                    self.config.user
                )),
                (true, ReceiverState::Stale { .. }, _) => self.install_allowed(session)?,
                (true, _, _) => Err(
                    "the key is restricted to a forced command, and the receiver it runs is not there"
                        .into(),
                ),
            });
        }

        let check = match (&state, forced) {
            (ReceiverState::Current, _) => Some(self.call(session, protocol::Command::Check)?),
            // The embedded receiver, run as a script read from stdin:
            // what the next sync would install, installing nothing.
            (_, false) => {
                let command = format!("sh -s -- -a {} check", shell_word(self.archive_arg()));
                let mut feed = |w: &mut dyn std::io::Write| -> Result<()> {
                    Ok(w.write_all(RECEIVER.as_bytes())?)
                };
                Some(self.exec(session, &command, Some(&mut feed))?)
            }
            (_, true) => None,
        };
        probe.facts = Some(match check {
            Some(RunOutput {
                status: 0, stdout, ..
            }) => {
                let facts = ArchiveFacts::parse(&stdout);
                if probe.home.is_none() && !facts.home.is_empty() {
                    probe.home = Some(facts.home.clone());
                }
                Ok(facts)
            }
            Some(out) => Err(format!(
                "the receiver's check failed: {}",
                first_line(&out.stderr, out.status)
            )),
            None => Err("not checked: the key only runs the receiver, which is not current".into()),
        });
        Ok(())
    }

    /// Whether a restricted receiver may replace itself: asks it to
    /// install an empty program under a checksum that cannot match. One
    /// that may not refuses at once; one that may writes a temporary file
    /// beside itself, finds the mismatch and removes it again.
    fn install_allowed(&self, session: &Session) -> Result<Result<String, String>> {
        let zeros = "0".repeat(64);
        let out = self.call(session, protocol::Command::Install(&zeros))?;
        let said = first_line(&out.stderr, out.status);
        Ok(if said.contains("sha256 mismatch") {
            Ok("its forced command says --allow-install: the next sync updates it".into())
        } else if said.contains("refused") {
            Err(
                "the key is restricted to the receiver, whose forced command does not say --allow-install, so it cannot update itself"
                    .into(),
            )
        } else {
            Err(said)
        })
    }

    /// The `-a` word the receiver gets (`~/x` is its relative `x`).
    fn archive_arg(&self) -> &str {
        let archive = self.config.remote_archive.as_str();
        archive.strip_prefix("~/").unwrap_or(archive)
    }
}

/// An OpenSSH public key line and where it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PublicKey {
    /// `type base64 [comment]`, as authorized_keys takes it.
    pub line: String,
    pub source: String,
}

/// The public key of the private key `identity`: `<identity>.pub` when it
/// is there (and is that key's), else derived from the private key (an
/// OpenSSH-format key holds its public key in clear; other formats ask
/// `ssh-keygen -y`).
pub fn public_key(identity: &Path) -> Result<PublicKey> {
    let derived = std::fs::read_to_string(identity)
        .ok()
        .and_then(|text| openssh_public_blob(&text));
    let pub_path = {
        let mut p = identity.as_os_str().to_owned();
        p.push(".pub");
        std::path::PathBuf::from(p)
    };
    if let Ok(text) = std::fs::read_to_string(&pub_path) {
        let line = text
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        let mut fields = line.split_whitespace();
        let blob = fields.nth(1).and_then(known_hosts::base64_decode);
        match (&blob, &derived) {
            (None, _) => bail!(
                "{} is not an OpenSSH public key; recreate it: ssh-keygen -y -f {} > {}",
                pub_path.display(),
                identity.display(),
                pub_path.display()
            ),
            (Some(b), Some(d)) if b != d => bail!(
                "{} is not the public key of {} ({} there, {} in the private key); recreate it: ssh-keygen -y -f {} > {}",
                pub_path.display(),
                identity.display(),
                known_hosts::fingerprint(b),
                known_hosts::fingerprint(d),
                identity.display(),
                pub_path.display()
            ),
            _ => {}
        }
        return Ok(PublicKey {
            line: line.to_string(),
            source: format!("read from {}", pub_path.display()),
        });
    }
    if let Some(blob) = derived {
        let key_type = known_hosts::key_type_of(&blob).unwrap_or("ssh-unknown");
        return Ok(PublicKey {
            line: format!("{key_type} {}", known_hosts::base64_encode(&blob, true)),
            source: format!(
                "derived from {} (there is no {})",
                identity.display(),
                pub_path.display()
            ),
        });
    }
    let out = Command::new("ssh-keygen")
        .arg("-y")
        .arg("-P")
        .arg("")
        .arg("-f")
        .arg(identity)
        .output()
        .context("cannot run ssh-keygen -y to derive the public key")?;
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || line.is_empty() {
        bail!(
            "there is no {} and ssh-keygen -y cannot derive it from {}: {}",
            pub_path.display(),
            identity.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(PublicKey {
        line,
        source: format!(
            "derived from {} by ssh-keygen -y (there is no {})",
            identity.display(),
            pub_path.display()
        ),
    })
}

/// The public key blob of an `openssh-key-v1` private key (stored in
/// clear, even when the private part is encrypted).
fn openssh_public_blob(text: &str) -> Option<Vec<u8>> {
    let body: String = text
        .lines()
        .skip_while(|l| l.trim() != "-----BEGIN OPENSSH PRIVATE KEY-----")
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .map(str::trim)
        .collect();
    let data = known_hosts::base64_decode(&body)?;
    let rest = data.strip_prefix(b"openssh-key-v1\0")?;
    let (_cipher, rest) = ssh_string(rest)?;
    let (_kdf, rest) = ssh_string(rest)?;
    let (_kdf_options, rest) = ssh_string(rest)?;
    let count = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
    if count == 0 {
        return None;
    }
    let (blob, _) = ssh_string(&rest[4..])?;
    known_hosts::key_type_of(blob)?;
    Some(blob.to_vec())
}

/// One SSH wire string: a big-endian u32 length, then the bytes.
fn ssh_string(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_be_bytes(data.get(..4)?.try_into().ok()?) as usize;
    let end = 4usize.checked_add(len)?;
    Some((data.get(4..end)?, &data[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keygen(dir: &Path, kind: &str) -> std::path::PathBuf {
        let key = dir.join(format!("id_{kind}"));
        let ok = Command::new("ssh-keygen")
            .args(["-q", "-t", kind, "-N", "", "-C", "me@here", "-f"])
            .arg(&key)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ssh-keygen failed");
        key
    }

    #[test]
    fn public_keys_are_read_checked_or_derived() {
        if Command::new("ssh-keygen").arg("-?").output().is_err() {
            eprintln!("skipped: no ssh-keygen");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let key = keygen(dir.path(), "ed25519");
        let pub_text = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        let k = public_key(&key).unwrap();
        assert_eq!(k.line, pub_text.trim());
        assert!(k.source.starts_with("read from"), "{}", k.source);

        // Without the .pub: derived from the OpenSSH private key, same key.
        std::fs::remove_file(key.with_extension("pub")).unwrap();
        let k = public_key(&key).unwrap();
        let mut want = pub_text.split_whitespace();
        assert_eq!(
            k.line,
            format!("{} {}", want.next().unwrap(), want.next().unwrap())
        );
        assert!(k.source.starts_with("derived from"), "{}", k.source);

        // A .pub of another key is refused, with the fix.
        let other = keygen(dir.path(), "ecdsa");
        std::fs::copy(other.with_extension("pub"), key.with_extension("pub")).unwrap();
        let err = public_key(&key).unwrap_err().to_string();
        assert!(
            err.contains("is not the public key of") && err.contains("ssh-keygen -y -f"),
            "{err}"
        );
    }
}
