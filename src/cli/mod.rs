//! The command line (clap types only). Each subcommand file turns its
//! arguments into an `ops` options struct; the core never sees clap.

pub mod age;
pub mod check;
pub mod completions;
pub mod fast;
pub mod index;
pub mod plist;
#[cfg(feature = "s3")]
pub mod s3sync;
pub mod ssh;
pub mod status;
pub mod sync;
pub mod tag;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::ops::Selection;

const EXIT_CODES: &str = "\
Exit codes:
  0  all done
  1  failed
  2  bad usage or configuration
  3  partly done: some packages failed, the rest went through
  4  a target's lock is held by another blat run; nothing was done there
With several targets the most severe applies (1 > 3 > 4 > 0; 2 stops before any target).";

/// Push released packages from the package archive to remote sites and S3.
#[derive(Debug, Parser)]
#[command(name = "blat", version, about, after_long_help = EXIT_CODES, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Configuration directory (blat.toml and targets/*.conf)
    #[arg(
        short = 'c',
        long = "config",
        env = "BLAT_CONFIG",
        default_value = "/etc/blat",
        global = true,
        value_name = "DIR"
    )]
    pub config: PathBuf,
    /// More output: -v lists each package, -vv debug
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Errors and summaries only
    #[arg(short = 'q', long = "quiet", global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Show the exact plan and change nothing
    #[arg(long = "dry-run", global = true)]
    pub dry_run: bool,
    /// Print a machine-readable report on stdout
    #[arg(long = "json", global = true)]
    pub json: bool,
    /// Work on this target (repeatable)
    #[arg(long = "target", value_name = "NAME", global = true)]
    pub target: Vec<String>,
    /// Work on every configured target of the right kind
    #[arg(long = "all", global = true)]
    pub all: bool,
}

impl GlobalArgs {
    pub fn selection(&self) -> Selection {
        Selection {
            targets: self.target.clone(),
            all: self.all,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(after_long_help = crate::target::ssh::SETUP_HELP)]
    Sync(sync::SyncArgs),
    Plist(plist::PlistArgs),
    #[cfg(feature = "s3")]
    S3sync(s3sync::S3syncArgs),
    Fast(fast::FastArgs),
    Tag(tag::TagArgs),
    Index(index::IndexArgs),
    Age(age::AgeArgs),
    Status(status::StatusArgs),
    Check(check::CheckArgs),
    Ssh(ssh::SshArgs),
    Completions(completions::CompletionsArgs),
}
