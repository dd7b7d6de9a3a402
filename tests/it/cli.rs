//! The command line itself: clap's own consistency check, and man pages that
//! cannot drift from the clap definitions (`BLAT_UPDATE_MAN=1` rewrites them).

use std::path::PathBuf;

use blat::cli::Cli;
use clap::CommandFactory;

#[test]
fn clap_definition_is_consistent() {
    Cli::command().debug_assert();
}

/// Renders `blat.1` and one `blat-<sub>.1` per subcommand.
fn render() -> Vec<(String, Vec<u8>)> {
    let cmd = Cli::command();
    let mut pages = Vec::new();
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut buf).unwrap();
    pages.push(("blat.1".to_string(), buf));
    for sub in cmd.get_subcommands() {
        // clap wants a 'static name; leaking a few bytes in a test is fine.
        let name: &'static str = Box::leak(format!("blat-{}", sub.get_name()).into_boxed_str());
        let sub = sub.clone().name(name);
        let mut buf = Vec::new();
        clap_mangen::Man::new(sub).render(&mut buf).unwrap();
        pages.push((format!("{name}.1"), buf));
    }
    pages
}

#[test]
fn man_pages_match_the_clap_definitions() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("man");
    let pages = render();
    if std::env::var("BLAT_UPDATE_MAN").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "1") {
                std::fs::remove_file(path).unwrap();
            }
        }
        for (name, text) in &pages {
            std::fs::write(dir.join(name), text).unwrap();
        }
    }
    let mut stale = Vec::new();
    for (name, text) in &pages {
        if std::fs::read(dir.join(name)).ok().as_ref() != Some(text) {
            stale.push(name.clone());
        }
    }
    let extra: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().to_string()))
                .filter(|n| n.ends_with(".1") && !pages.iter().any(|(p, _)| p == n))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        stale.is_empty() && extra.is_empty(),
        "man pages out of date: {stale:?}, no longer generated: {extra:?}; run BLAT_UPDATE_MAN=1 cargo test --test it man_pages"
    );
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
