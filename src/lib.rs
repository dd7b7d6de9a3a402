//! blat pushes released build packages from a central package archive to
//! remote sites (over SSH, or a local directory) and to an S3 bucket, driven
//! by a Release Manager database, and keeps those sites tidy.
//!
//! Architecture map (the contract is in `docs/`):
//! - [`cli`]: clap types → plain options structs (the core never sees clap).
//! - [`config`]: `blat.toml` + `targets/*.conf` → validated [`config::Config`]
//!   (a target's file in `config/target.rs`, SSH and jump hosts in
//!   `config/ssh.rs`, sizes and durations in [`config::units`]).
//! - [`archive`]: names, package-versions, descpkg mtimes, the alias rule, grace.
//! - [`release`]: `ReleaseSource` trait (SQLite; ODBC behind a feature; a
//!   relay's source, a site's PackageList).
//! - [`current`]: a target's current set, resolved against the archive, with
//!   what the Release Manager answered nothing for.
//! - [`plan`]: pure diff of current set × target listing (send, link, excess).
//! - [`ops`]: one pass of each command, one file each, none importing
//!   another; `ops/frame.rs` is the frame (lock, run record, error capture,
//!   summary, JSON, exit code) they all use, serial or several targets at
//!   once, and `ops/mod.rs` the [`ops::Context`] the passes share. A large
//!   command keeps its parts in its own folder (`ops/check/`,
//!   `ops/s3sync/`, `ops/status/`), used by it alone.
//! - Shared by the commands: [`transfer`] (the send path of sync and fast,
//!   with [`delta`]: new versions as the files changed since a base),
//!   [`mod@aging`] (the one aging policy and its guards, for sites and buckets),
//!   [`packagelist`] (its writer and reader), [`tags`] (the tag-directory
//!   layout, never followed), [`exec`] (the one executor), [`atomic`] (the one
//!   atomic write, the one random token), [`lock`], [`state`], [`report`],
//!   [`malloc`] (the allocator settings for blat and its ssh processes).
//! - [`target`]: `Target` trait, the receiver protocol (its types in
//!   [`target::protocol`], spoken by [`target::receiver`]), transports
//!   (libssh2's [`target::ssh`] and OpenSSH's [`target::openssh`], which
//!   share `ssh/remote.rs`: the receiver's command lines and installation),
//!   packing; what the receiver's `check` reports ([`target::facts`]).
//! - `store` (feature `s3`): `ObjectStore` trait, S3, a bucket in memory
//!   (the contract's second implementation), key layout, dry run,
//!   deterministic package ZIPs.
//! - `receiver/blat-receiver`: the target-side sh program, embedded.
//!
//! A command's path: `main.rs` → `cli/<command>.rs` (arguments → options) →
//! `ops/<command>.rs` (`run`) → the shared modules above.

pub mod aging;
pub mod archive;
pub mod atomic;
pub mod cli;
pub mod clock;
pub mod config;
pub mod current;
pub mod delta;
pub mod error;
pub mod exec;
pub mod index;
pub mod lock;
pub mod malloc;
pub mod ops;
pub mod packagelist;
pub mod plan;
pub mod release;
pub mod report;
pub mod state;
#[cfg(feature = "s3")]
pub mod store;
pub mod tags;
pub mod target;
pub mod transfer;
