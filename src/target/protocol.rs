//! The receiver protocol (`docs/protocol.md`) as types: the commands blat
//! sends, the exit statuses the receiver ends with, its per-package verdicts
//! on a batch, and the one reading of its error messages. [`super::receiver`]
//! speaks it over a transport and parses the replies; nothing else spells a
//! command or an exit code.

use std::fmt;

use super::Outgoing;
use crate::archive::{Alias, Name, PackageVersion};
use crate::config::Compression;

/// What the receiver puts before every message on stderr.
pub const MESSAGE_PREFIX: &str = "blat-receiver: ";

/// One command, with its arguments (docs/protocol.md, "Commands").
#[derive(Clone, Copy, Debug)]
pub enum Command<'a> {
    Version,
    /// `list`, `list --full` (walk and rebuild the index), `--read-only`
    /// (write nothing, for dry runs).
    List(super::ListHow),
    Stat(&'a Name),
    /// A batch in one stream; `token` names its temporaries.
    Receive {
        compression: Compression,
        token: &'a str,
        batch: &'a [Outgoing],
    },
    Link(&'a Alias),
    Delete(&'a PackageVersion),
    /// Writes `.dpkg_archive/<name>` from stdin.
    Put(&'a str),
    Df,
    Check,
    Gc,
    /// Replaces the receiver with stdin, whose sha256 is given.
    Install(&'a str),
}

impl Command<'_> {
    /// The command word, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Version => "version",
            Command::List(_) => "list",
            Command::Stat(_) => "stat",
            Command::Receive { .. } => "receive",
            Command::Link(_) => "link",
            Command::Delete(_) => "delete",
            Command::Put(_) => "put",
            Command::Df => "df",
            Command::Check => "check",
            Command::Gc => "gc",
            Command::Install(_) => "install",
        }
    }

    /// The receiver's arguments: the command word, then its own.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![self.name().to_string()];
        match *self {
            Command::Version | Command::Df | Command::Check | Command::Gc => {}
            Command::List(how) => {
                if how.full {
                    args.push("--full".into());
                }
                if how.read_only {
                    args.push("--read-only".into());
                }
            }
            Command::Stat(package) => args.push(package.to_string()),
            Command::Receive {
                compression,
                token,
                batch,
            } => {
                args.extend([compression.wire_name().to_string(), token.to_string()]);
                args.extend(crate::delta::options(batch));
                for o in batch {
                    args.extend([
                        o.pv.package.to_string(),
                        o.pv.version.to_string(),
                        o.files.to_string(),
                        o.bytes.to_string(),
                    ]);
                }
            }
            Command::Link(alias) => args.extend([
                alias.package.to_string(),
                alias.alias.to_string(),
                alias.version.to_string(),
            ]),
            Command::Delete(pv) => args.extend([pv.package.to_string(), pv.version.to_string()]),
            Command::Put(name) | Command::Install(name) => args.push(name.to_string()),
        }
        args
    }
}

/// What a command, as the receiver's words, needs of a target archive
/// directory that is not there yet: the local transport creates a new
/// target's directory for the commands that write, and answers the reads
/// as an empty archive, so a dry run leaves no trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveUse {
    /// `version`, `install`: about the receiver, not the archive.
    None,
    /// `stat`, `list --read-only`: an archive that is not there is empty.
    Reads,
    /// Everything else (a plain `list` builds the index there).
    Writes,
}

impl ArchiveUse {
    pub fn of(args: &[String]) -> ArchiveUse {
        match args.first().map(String::as_str) {
            Some("version" | "install") => ArchiveUse::None,
            Some("stat") => ArchiveUse::Reads,
            Some("list") if args.iter().any(|a| a == "--read-only") => ArchiveUse::Reads,
            _ => ArchiveUse::Writes,
        }
    }
}

/// How the receiver ended (docs/protocol.md, "Exit codes").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// 0: done.
    Done,
    /// 1: failed.
    Failed,
    /// 2: bad usage or an invalid argument; nothing was done.
    Usage,
    /// 3: partly done (`receive`: some packages of the batch failed).
    Partial,
    /// Anything else: the shell or a signal ended it.
    Other(i32),
}

impl Exit {
    pub fn of(status: i32) -> Exit {
        match status {
            0 => Exit::Done,
            1 => Exit::Failed,
            2 => Exit::Usage,
            3 => Exit::Partial,
            n => Exit::Other(n),
        }
    }
}

/// A message the receiver wrote on stderr, without its prefix.
pub fn message(line: &str) -> &str {
    line.strip_prefix(MESSAGE_PREFIX).unwrap_or(line)
}

/// `receive`'s verdict on one package-version of the batch: a line
/// `ok<TAB>P<TAB>V`, `fail<TAB>P<TAB>V<TAB>reason`, or
/// `base<TAB>P<TAB>V<TAB>reason` (a delta whose base the receiver refused:
/// nothing was installed, the master sends it again in full).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Installed(PackageVersion),
    Failed(PackageVersion, String),
    StaleBase(PackageVersion, String),
}

impl Verdict {
    /// The verdict on one report line; `None` for any other line or a
    /// package-version that is not valid.
    pub fn parse(line: &str) -> Option<Verdict> {
        let fields: Vec<&str> = line.split('\t').collect();
        let pv = |p: &str, v: &str| PackageVersion::new(p, v).ok();
        match fields.as_slice() {
            ["ok", p, v] => Some(Verdict::Installed(pv(p, v)?)),
            ["fail", p, v, reason @ ..] => Some(Verdict::Failed(pv(p, v)?, reason.join(" "))),
            ["base", p, v, reason @ ..] => Some(Verdict::StaleBase(pv(p, v)?, reason.join(" "))),
            _ => None,
        }
    }
}

/// Why a package-version of a batch did not arrive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PackageFailure {
    /// The receiver failed it (its `fail` line's reason, as one line).
    Refused(String),
    /// The receiver never reported on it: what it said on stderr, if
    /// anything (the stream or the receiver broke first).
    Unconfirmed(String),
}

impl fmt::Display for PackageFailure {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            PackageFailure::Refused(why) if why.is_empty() => {
                f.write_str("failed (the receiver gave no reason)")
            }
            PackageFailure::Unconfirmed(why) if why.is_empty() => {
                f.write_str("not confirmed by the receiver")
            }
            PackageFailure::Refused(why) | PackageFailure::Unconfirmed(why) => f.write_str(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pv(p: &str, v: &str) -> PackageVersion {
        PackageVersion::new(p, v).unwrap()
    }

    #[test]
    fn commands_spell_their_arguments() {
        let outgoing = Outgoing {
            pv: pv("p", "1.0"),
            files: 3,
            bytes: 42,
            entries: Vec::new(),
            delta: None,
        };
        let receive = Command::Receive {
            compression: Compression::Zstd(3),
            token: "tok",
            batch: std::slice::from_ref(&outgoing),
        };
        assert_eq!(
            receive.args(),
            ["receive", "zstd", "tok", "p", "1.0", "3", "42"]
        );
        let alias = Alias {
            package: Name::new("p").unwrap(),
            alias: Name::new("cur").unwrap(),
            version: Name::new("1.0").unwrap(),
        };
        assert_eq!(Command::Link(&alias).args(), ["link", "p", "cur", "1.0"]);
        assert_eq!(
            Command::Delete(&pv("p", "1.0")).args(),
            ["delete", "p", "1.0"]
        );
        assert_eq!(Command::Put("list.txt").args(), ["put", "list.txt"]);
        assert_eq!(Command::Gc.args(), ["gc"]);
    }

    #[test]
    fn exit_codes_and_messages() {
        let exits: Vec<Exit> = [0, 1, 2, 3, 127].into_iter().map(Exit::of).collect();
        assert_eq!(
            exits,
            [
                Exit::Done,
                Exit::Failed,
                Exit::Usage,
                Exit::Partial,
                Exit::Other(127)
            ]
        );
        assert_eq!(message("blat-receiver: no archive"), "no archive");
        assert_eq!(message("sh: 1: tar: not found"), "sh: 1: tar: not found");
    }

    #[test]
    fn verdicts_parse_or_are_ignored() {
        assert_eq!(
            Verdict::parse("ok\tp\t1"),
            Some(Verdict::Installed(pv("p", "1")))
        );
        assert_eq!(
            Verdict::parse("fail\tp\t1\tcount\tmismatch"),
            Some(Verdict::Failed(pv("p", "1"), "count mismatch".into()))
        );
        for line in ["ok\t..\t1", "ok\tp", "fail\tp", "OK\tp\t1", ""] {
            assert_eq!(Verdict::parse(line), None, "{line:?}");
        }
        assert_eq!(
            PackageFailure::Refused(String::new()).to_string(),
            "failed (the receiver gave no reason)"
        );
        assert_eq!(
            PackageFailure::Unconfirmed(String::new()).to_string(),
            "not confirmed by the receiver"
        );
    }

    #[test]
    fn what_each_command_needs_of_the_archive() {
        use crate::target::ListHow;
        let pv = PackageVersion::new("p", "1").unwrap();
        let name = pv.package.clone();
        let of = |c: Command| ArchiveUse::of(&c.args());
        assert_eq!(of(Command::Version), ArchiveUse::None);
        assert_eq!(of(Command::Install("abc")), ArchiveUse::None);
        assert_eq!(of(Command::Stat(&name)), ArchiveUse::Reads);
        let list = |full, read_only| Command::List(ListHow { full, read_only });
        assert_eq!(of(list(false, true)), ArchiveUse::Reads);
        assert_eq!(of(list(true, true)), ArchiveUse::Reads);
        assert_eq!(of(list(false, false)), ArchiveUse::Writes);
        assert_eq!(of(list(true, false)), ArchiveUse::Writes);
        for c in [
            Command::Delete(&pv),
            Command::Put("x"),
            Command::Df,
            Command::Check,
            Command::Gc,
        ] {
            assert_eq!(of(c), ArchiveUse::Writes, "{}", c.name());
        }
    }
}
