//! blat's integration tests: one binary, one module per area. Tests that
//! need a server (sshd, PostgreSQL, S3) fail instead of skipping when
//! `CI=true` and the server is missing (see `common::require`).

mod age;
mod check;
mod cli;
mod common;
mod completions;
mod concurrent;
mod delta;
mod example;
mod fast;
mod faults;
mod fuzz;
mod hostile;
mod index;
mod jobs;
mod jump;
mod kubernetes;
mod man;
mod model;
mod monitoring;
mod netns;
#[cfg(feature = "odbc")]
mod odbc;
mod package;
mod relay;
mod release_suite;
mod rindex;
#[cfg(feature = "s3")]
mod s3;
mod ssh;
mod sshd;
mod status;
#[cfg(feature = "s3")]
mod store_suite;
mod sync;
mod tagdir;
mod target_suite;
