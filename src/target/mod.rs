//! Archive targets: remote (SSH) or local copies of the archive, all driven
//! through the same receiver protocol (`docs/protocol.md`).
//!
//! [`Target`] is the contract every transport meets; the shared suite in
//! `tests/it/target_suite.rs` runs it against each one (SSH on a real sshd). Transports only know how
//! to run the receiver program ([`Transport`]); everything about the protocol
//! lives once, in [`receiver::ReceiverTarget`].

pub mod dryrun;
pub mod facts;
pub mod limit;
pub mod local;
pub mod openssh;
pub mod pack;
pub mod protocol;
pub mod receiver;
pub mod ssh;

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Result;

use crate::archive::{Alias, Name, PackageVersion};
use crate::config::{Compression, SshClient, TargetConfig, Transport as TransportConfig};

/// A package-version's descpkg on a target, as listed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OnTarget {
    /// Its mtime (whole seconds): the change key, compared with the
    /// master's.
    pub mtime: i64,
    /// When it arrived there (its ctime on the target, epoch seconds), from
    /// the receivers that report it. Aging keeps a package-version that
    /// arrived less than `writable_grace` ago, even with an old descpkg
    /// mtime (`fast` may send it before the Release Manager lists it).
    pub arrived: Option<i64>,
}

impl OnTarget {
    /// Listed with its mtime only (no arrival known).
    pub fn at(mtime: i64) -> OnTarget {
        OnTarget {
            mtime,
            arrived: None,
        }
    }
}

/// What a target holds: one cheap listing, never a walk of package files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// Package-version → its descpkg there.
    pub versions: BTreeMap<PackageVersion, OnTarget>,
    /// Aliases as found (their version may be missing on the target).
    pub aliases: Vec<Alias>,
    /// Lines with names that fail validation: reported, never used.
    pub rejected: Vec<String>,
    /// Leftover temporaries of interrupted runs (relative paths): `gc` work.
    pub leftovers: Vec<String>,
    /// Where the listing came from: the target's index, or a full scan.
    pub source: ListingSource,
    /// What a full check found the index wrong about (`D` lines), as
    /// `kind package name` (missing, changed, unindexed, alias).
    pub drift: Vec<String>,
    /// A read-only listing from an index that a plain `list` would rewrite
    /// (an older format, or a long journal): `I<TAB>tidy`.
    pub index_untidy: bool,
    /// The sha256 (hex) of the target's PackageList past its header line,
    /// when the receiver reports it (`P` line): a sync whose list has the
    /// same body leaves it as it is.
    pub packagelist_body: Option<String>,
}

/// How the receiver made a listing (`I` lines, docs/protocol.md).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ListingSource {
    /// A receiver that does not say (older ones always scan).
    #[default]
    Unknown,
    /// Read from the index `.dpkg_archive/blat-index.txt`: no walk.
    Index,
    /// A full scan; `why` (no index, an invalid one, a full check), and
    /// whether the index was rebuilt from it.
    Scan { why: String, indexed: bool },
}

/// What `list` is asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListHow {
    /// A full scan whatever the index says, compared with it (drift), and
    /// the index rebuilt: `sync --verify` and every `verify_every` runs.
    pub full: bool,
    /// Write nothing on the target (no index built): dry runs.
    pub read_only: bool,
}

/// One package-version to send, walked once ([`pack::scan`]): its entries go
/// into the stream, its counts into the receiver's arguments for checking.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub pv: PackageVersion,
    /// Non-directory entries below the version directory.
    pub files: u64,
    /// Sum of regular file sizes.
    pub bytes: u64,
    /// What goes into the stream: every entry, or with a delta, those
    /// not taken from the base on the target.
    pub entries: Vec<pack::PackEntry>,
    /// Unchanged files the receiver takes from an older version.
    pub delta: Option<crate::delta::Delta>,
}

/// The outcome of one package-version of a `receive` batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub pv: PackageVersion,
    /// `Err(reason)` when this package did not arrive.
    pub result: Result<(), String>,
    /// It failed because its delta's base on the target is not the one
    /// the master expected (`base` reply): send it again in full.
    pub stale_base: bool,
}

/// What a `delete` removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deleted {
    pub aliases: Vec<Name>,
    pub bytes: u64,
}

/// Calls back with the number of (uncompressed) bytes streamed so far.
pub type ProgressFn<'a> = &'a (dyn Fn(u64) + Sync);

/// The operations blat needs on an archive target. Each is atomic on the
/// target: a reader of the target archive never sees a partial package.
pub trait Target: Send + Sync {
    /// `name (where)`, for messages.
    fn describe(&self) -> String;

    /// The receiver's version line and the decompressors the target has.
    fn version(&self) -> Result<ReceiverInfo>;

    /// Every package-version (with descpkg mtime) and alias on the target,
    /// from its index when it has a valid one.
    fn list(&self) -> Result<Listing> {
        self.list_as(ListHow::default())
    }

    /// [`Target::list`] as `how` says (a full check, read-only).
    fn list_as(&self, how: ListHow) -> Result<Listing>;

    /// Like [`Target::list`], for one package only.
    fn stat(&self, package: &Name) -> Result<Listing>;

    /// Sends a batch of package-versions from `archive` in one stream. A
    /// failure of the whole stream is `Err`; per-package verification
    /// failures are reported in the returned list.
    fn receive(
        &self,
        archive: &crate::archive::SourceArchive,
        batch: &[Outgoing],
        compression: Compression,
        progress: ProgressFn,
    ) -> Result<Vec<Received>>;

    /// Creates or atomically repoints an alias; its version must be present.
    fn link(&self, alias: &Alias) -> Result<()>;

    /// Removes an alias, or a package-version (renamed aside first) with the
    /// aliases that point to it.
    fn delete(&self, pv: &PackageVersion) -> Result<Deleted>;

    /// Writes `<archive>/.dpkg_archive/<name>` atomically.
    fn put(&self, name: &str, data: &[u8]) -> Result<()>;

    /// Bytes free to the target user on the archive's file system.
    fn df(&self) -> Result<u64>;

    /// Removes leftover temporaries; returns their paths.
    fn gc(&self) -> Result<Vec<String>>;
}

/// What `blat-receiver version` says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReceiverInfo {
    pub protocol: String,
    pub sha256: String,
    pub decompressors: Vec<String>,
}

/// The output of one receiver run.
#[derive(Debug)]
pub struct RunOutput {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Feeds a receiver's stdin.
pub type InputFn<'a> = &'a mut (dyn FnMut(&mut dyn Write) -> Result<()> + Send);

/// Runs the receiver program somewhere.
pub trait Transport: Send + Sync {
    /// `user@host:port:archive` or the local path, for messages.
    fn describe(&self) -> String;

    /// Runs `blat-receiver <args>` with stdin fed by `input` (empty when
    /// `None`); returns its exit status and output. An `Err` means the
    /// program could not be run or the connection failed.
    fn run(&self, args: &[String], input: Option<InputFn>) -> Result<RunOutput>;
}

/// The embedded receiver program (the very file in `receiver/`).
pub const RECEIVER: &str = include_str!("../../receiver/blat-receiver");

/// Opens the archive target `target` as its config says.
pub fn open(target: &TargetConfig) -> Result<Box<dyn Target>> {
    let archive = target
        .archive()
        .ok_or_else(|| anyhow::anyhow!("target {} is not an archive target", target.name))?;
    match &archive.transport {
        TransportConfig::Local { path } => Ok(Box::new(
            receiver::ReceiverTarget::new(&target.name, local::LocalTransport::new(path.clone()))
                .with_bwlimit(archive.bwlimit),
        )),
        // Jump hosts are crossed by the libssh2 client's relays, which check
        // each hop and name it in every error (docs/configuration.md).
        TransportConfig::Ssh(ssh) if ssh.client == SshClient::Libssh2 || !ssh.jump.is_empty() => {
            Ok(Box::new(
                receiver::ReceiverTarget::new(&target.name, ssh::SshTransport::new(ssh.clone())?)
                    .with_bwlimit(archive.bwlimit),
            ))
        }
        TransportConfig::Ssh(ssh) => Ok(Box::new(
            receiver::ReceiverTarget::new(
                &target.name,
                openssh::OpensshTransport::new(ssh.clone()),
            )
            .with_bwlimit(archive.bwlimit),
        )),
    }
}
