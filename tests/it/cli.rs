//! The command line itself: clap's own consistency check and the exit codes
//! in --help (the man pages are `man.rs`).

use blat::cli::Cli;
use clap::CommandFactory;

#[test]
fn clap_definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn help_names_every_exit_code() {
    let help = Cli::command().render_long_help().to_string();
    for line in [
        "0  all done",
        "1  failed",
        "2  bad usage",
        "3  partly done",
        "4  a target's lock is held",
    ] {
        assert!(help.contains(line), "{line:?} missing from --help:\n{help}");
    }
}
