//! blat pushes released build packages from a central package archive to
//! remote sites (over SSH, or a local directory) and to an S3 bucket, driven
//! by a Release Manager database, and keeps those sites tidy.
//!
//! Architecture map:
//! - [`cli`]: clap types → plain options structs (the core never sees clap).
//! - [`config`]: `blat.toml` + `targets/*.conf` → validated [`config::Config`].
//! - [`archive`]: names, package-versions, descpkg mtimes, aliases, grace.
//! - [`release`]: `ReleaseSource` trait (SQLite; ODBC behind a feature).
//! - [`current`]: a target's current set, resolved against the archive.
//! - [`plan`]: pure diff of current set × target listing.
//! - [`target`]: `Target` trait, the receiver protocol, transports, packing;
//!   what the receiver's `check` reports ([`target::facts`]).
//! - [`ops`]: one pass of each command (and `check`, `ssh`); [`state`],
//!   [`lock`], [`report`].
//! - `store` (feature `s3`): `ObjectStore` trait, S3, deterministic package ZIPs.
//! - `receiver/blat-receiver`: the target-side sh program, embedded.

pub mod aging;
pub mod archive;
pub mod atomic;
pub mod cli;
pub mod clock;
pub mod config;
pub mod current;
pub mod error;
pub mod exec;
pub mod index;
pub mod lock;
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
