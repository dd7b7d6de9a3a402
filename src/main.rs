//! blat's entry point: parse, dispatch, print the one error line, exit.

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use blat::cli::{Cli, Command};
use blat::config::Config;
use blat::error::{outcome_of, Outcome};
use blat::ops::{self, Context};
use blat::report::Reporter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(outcome) => ExitCode::from(outcome.code()),
        Err(err) => {
            eprintln!("blat: error: {}", format!("{err:#}").replace('\n', " "));
            ExitCode::from(outcome_of(&err).code())
        }
    }
}

fn run(cli: &Cli) -> Result<Outcome> {
    let g = &cli.global;
    let config = Config::load(&g.config)?;
    let verbosity = if g.quiet { 0 } else { config.verbose.max(1).saturating_add(g.verbose) };
    let mut reporter = Reporter::new(verbosity, g.json);
    if let Some(log) = &config.log_file {
        reporter.set_log_file(log)?;
    }
    let ctx = Context::new(config, reporter, g.dry_run);
    match &cli.command {
        Command::Sync(args) => ops::sync::run(&ctx, &args.options(g)),
        Command::Plist(_) => ops::plist::run(&ctx, &g.selection()),
        #[cfg(feature = "s3")]
        Command::S3sync(args) => ops::s3sync::run(&ctx, &args.options(g)),
        Command::Fast(args) => ops::fast::run(&ctx, &args.options(g)),
        Command::Tag(args) => ops::tag::run(&ctx, &args.options(g)),
    }
}
