//! The receiver on an SSH target, for both SSH clients (libssh2 and
//! OpenSSH): its command lines, quoted for a login shell or a forced
//! command, and its installation (checked by sha256, replaced when stale).

use std::io::Write;

use anyhow::{bail, Result};
use sha2::{Digest, Sha256};

use super::RECEIVER_PATH;
use crate::target::protocol::{self, Command};
use crate::target::receiver::parse_version_reply;
use crate::target::{InputFn, RunOutput, RECEIVER};

/// The login shell's command line for `blat-receiver -a ARCHIVE ARGS`.
/// Words are quoted only when they need it: a forced command sees the
/// line split on blanks, without shell unquoting.
pub(in crate::target) fn receiver_command<S: AsRef<str>>(
    remote_archive: &str,
    args: &[S],
) -> String {
    let archive = remote_archive;
    // `~/x` is the receiver's relative `x`, which needs no shell.
    let archive = archive.strip_prefix("~/").unwrap_or(archive);
    let mut line = format!("{RECEIVER_PATH} -a {}", shell_word(archive));
    for a in args {
        line.push(' ');
        line.push_str(&shell_word(a.as_ref()));
    }
    line
}

/// Makes sure the target runs exactly the embedded receiver; `exec` runs
/// one remote command line (the transport's own way).
pub(in crate::target) fn ensure_receiver(
    endpoint: &str,
    remote_archive: &str,
    exec: &mut dyn FnMut(&str, Option<InputFn>) -> Result<RunOutput>,
) -> Result<()> {
    let want = receiver_sha256();
    let installed = |out: &RunOutput| -> Option<String> {
        (out.status == 0)
            .then(|| version_sha(&out.stdout))
            .flatten()
    };
    let probe = exec(
        &receiver_command(remote_archive, &Command::Version.args()),
        None,
    )?;
    let found = installed(&probe);
    if found.as_deref() == Some(want.as_str()) {
        return Ok(());
    }
    let mut why = Vec::new();
    let mut feed = |w: &mut dyn Write| -> Result<()> { Ok(w.write_all(RECEIVER.as_bytes())?) };
    if found.is_some() {
        // A receiver answers (perhaps as the key's forced command): it
        // can replace itself, wherever it lives.
        let out = exec(
            &receiver_command(remote_archive, &Command::Install(&want).args()),
            Some(&mut feed),
        )?;
        if out.status != 0 {
            why.push(first_line(&out.stderr, out.status));
        }
    }
    if found.is_none() || !why.is_empty() {
        // mktemp: an unpredictable name, created exclusively.
        let script = format!(
            "umask 022 && mkdir -p ~/.blat && tmp=$(mktemp ~/.blat/.blat-tmp-$$-receiver-XXXXXXXX) && \
             {{ cat > \"$tmp\" && chmod 755 \"$tmp\" && mv -f \"$tmp\" {RECEIVER_PATH} || {{ rm -f \"$tmp\"; exit 1; }}; }}"
        );
        let out = exec(&script, Some(&mut feed))?;
        if out.status != 0 {
            why.push(first_line(&out.stderr, out.status));
        }
    }
    let check = exec(
        &receiver_command(remote_archive, &Command::Version.args()),
        None,
    )?;
    match installed(&check) {
        Some(sha) if sha == want => Ok(()),
        Some(sha) => bail!(
            "the receiver on {} could not be updated (it has sha256 {sha}, blat needs {want}){}",
            endpoint,
            reasons(&why)
        ),
        None => bail!(
            "cannot install the receiver as {RECEIVER_PATH} on {}: {}{}",
            endpoint,
            first_line(&check.stderr, check.status),
            reasons(&why)
        ),
    }
}

/// A word for the remote login shell: as is when it holds only characters
/// no shell treats specially, else single-quoted.
pub(super) fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./+,:=@%~".contains(&b))
        && !word.starts_with('~');
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The sha256 of the embedded receiver, as `version` prints it.
pub fn receiver_sha256() -> String {
    hex::encode(Sha256::digest(RECEIVER.as_bytes()))
}

/// The sha256 a `version` reply names, if it names one.
pub(super) fn version_sha(stdout: &str) -> Option<String> {
    let info = parse_version_reply(stdout);
    (!info.sha256.is_empty()).then_some(info.sha256)
}

pub(super) fn first_line(stderr: &str, status: i32) -> String {
    let line = stderr.trim().lines().next().unwrap_or_default();
    let line = protocol::message(line);
    if line.is_empty() {
        format!("exit code {status}")
    } else {
        line.to_string()
    }
}

fn reasons(why: &[String]) -> String {
    if why.is_empty() {
        String::new()
    } else {
        format!(" ({})", why.join("; "))
    }
}
