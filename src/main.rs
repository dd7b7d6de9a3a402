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
    if let Some(outcome) = run_without_config(cli)? {
        return Ok(outcome);
    }
    let config = Config::load(&g.config)?;
    let verbosity = if g.quiet {
        0
    } else {
        config.verbose.saturating_add(g.verbose)
    };
    let mut reporter = Reporter::new(verbosity, g.json);
    // `status` writes nothing, not even to the log; a dry run logs when it
    // can, but a user who may not write the log can still run one.
    if let Some(log) = config
        .log_file
        .as_ref()
        .filter(|_| !matches!(cli.command, Command::Status(_)))
    {
        if let Err(e) = reporter.set_log_file(log) {
            if !g.dry_run {
                return Err(e);
            }
            reporter.warn("", &format!("{e:#}; this dry run is not logged there"));
        }
    }
    let ctx = Context::new(config, reporter, g.dry_run);
    match &cli.command {
        Command::Sync(args) => ops::sync::run(&ctx, &args.options(g)),
        Command::Plist(_) => ops::plist::run(&ctx, &g.selection()),
        #[cfg(feature = "s3")]
        Command::S3sync(args) => ops::s3sync::run(&ctx, &args.options(g)),
        Command::Fast(args) => ops::fast::run(&ctx, &args.options(g)),
        Command::Tag(args) => ops::tag::run(&ctx, &args.options(g)),
        Command::Index(args) => {
            ops::index::run(&ctx.reporter, &args.options(g, &ctx.config.archive))
        }
        Command::Age(args) => ops::age::run(&ctx, &args.options(g)),
        Command::Status(args) => ops::status::run(&ctx, &args.options(g)),
        Command::Check(_) | Command::Ssh(_) | Command::Completions(_) => {
            unreachable!("run without the frame above")
        }
    }
}

/// The target-side commands (`index --archive`, `age --local`, run by cron
/// on a target) read no configuration: a target has none. Neither do
/// `completions`, `check` (it loads it as one of its checks) and `ssh`
/// (which replaces this process).
fn run_without_config(cli: &Cli) -> Result<Option<Outcome>> {
    let g = &cli.global;
    let reporter = || {
        Reporter::new(
            if g.quiet {
                0
            } else {
                1u8.saturating_add(g.verbose)
            },
            g.json,
        )
    };
    match &cli.command {
        Command::Index(args) if args.archive.is_some() => {
            ops::index::run(&reporter(), &args.options(g, std::path::Path::new(""))).map(Some)
        }
        Command::Age(args) => match args.local_options(g) {
            Some(options) => ops::age::run_local(&reporter(), &options).map(Some),
            None => Ok(None),
        },
        // check reads the configuration itself: a configuration that does
        // not parse is one of its failed checks.
        Command::Check(args) => {
            let verbosity = if g.quiet {
                0
            } else {
                1u8.saturating_add(g.verbose)
            };
            ops::check::run(&args.options(g), g.json, verbosity).map(Some)
        }
        Command::Ssh(args) => {
            let config = Config::load(&g.config)?;
            ops::ssh::run(&config, &args.name, &args.command).map(|()| None)
        }
        Command::Completions(args) => {
            blat::cli::completions::run(args, &g.config)?;
            Ok(Some(Outcome::Done))
        }
        _ => Ok(None),
    }
}
