//! blat's integration tests: one binary, one module per area. Tests that
//! need a server (sshd, PostgreSQL, S3) fail instead of skipping when
//! `CI=true` and the server is missing (see `common::require`).

mod age;
mod check;
mod cli;
mod common;
mod completions;
mod concurrent;
mod example;
mod fast;
mod faults;
mod fuzz;
mod hostile;
mod index;
mod jobs;
mod man;
mod model;
mod monitoring;
#[cfg(feature = "odbc")]
mod odbc;
mod package;
mod release_suite;
#[cfg(feature = "s3")]
mod s3;
mod ssh;
mod sshd;
mod status;
mod sync;
mod tagdir;
mod target_suite;
