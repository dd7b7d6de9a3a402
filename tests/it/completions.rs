//! Shell completions: the packaged scripts in `contrib/completions/` are
//! exactly `blat completions SHELL` (`BLAT_UPDATE_COMPLETIONS=1` rewrites
//! them), and in bash, zsh and fish they complete subcommands and, from the
//! configuration named by `-c`, target names after `--target` and `blat ssh`.

use std::path::{Path, PathBuf};
use std::process::Command;

use blat::cli::completions::{script, Shell};

use crate::common::{assert_exit, stdout, World};

const FILES: [(Shell, &str); 3] = [
    (Shell::Bash, "blat.bash"),
    (Shell::Zsh, "_blat"),
    (Shell::Fish, "blat.fish"),
];

fn contrib() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("contrib/completions")
}

#[test]
fn packaged_scripts_match_the_clap_definitions() {
    let dir = contrib();
    if std::env::var("BLAT_UPDATE_COMPLETIONS").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(&dir).unwrap();
        for (shell, name) in FILES {
            std::fs::write(dir.join(name), script(shell)).unwrap();
        }
    }
    let stale: Vec<&str> = FILES
        .iter()
        .filter(|(shell, name)| {
            std::fs::read_to_string(dir.join(name)).ok() != Some(script(*shell))
        })
        .map(|(_, name)| *name)
        .collect();
    assert!(
        stale.is_empty(),
        "completion scripts out of date: {stale:?}; run BLAT_UPDATE_COMPLETIONS=1 cargo test --test it completions"
    );
    // And `blat completions SHELL` prints the same.
    let w = World::new();
    for (shell, word) in [
        (Shell::Bash, "bash"),
        (Shell::Zsh, "zsh"),
        (Shell::Fish, "fish"),
    ] {
        let out = w.blat(&["completions", word]);
        assert_exit(&out, 0);
        assert_eq!(stdout(&out), script(shell), "{word}");
    }
}

/// A configuration with three targets, a prepared file and a broken one.
fn world() -> World {
    let w = World::new();
    w.write_global("");
    w.local_target("site-b", "");
    w.local_target("site-a", "");
    w.write_target("ci", "kind = \"this file does not parse");
    std::fs::write(w.config().join("targets/next.conf.new"), "").unwrap();
    w
}

#[test]
fn targets_are_listed_from_the_configuration_without_parsing_it() {
    let w = world();
    let out = w.blat(&["completions", "--targets"]);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "ci\nsite-a\nsite-b\n");
    // No configuration: nothing, and no error.
    let out = Command::new(env!("CARGO_BIN_EXE_blat"))
        .args(["-c", "/nonexistent", "completions", "--targets"])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "");
}

/// PATH with the built blat first, as the scripts call `blat`.
fn path() -> String {
    let bin = Path::new(env!("CARGO_BIN_EXE_blat")).parent().unwrap();
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Whether `shell` is installed; under CI it must be (scripts/test-env
/// installs bash, zsh and fish).
fn have(shell: &str) -> bool {
    let there = Command::new(shell)
        .arg("-c")
        .arg("true")
        .output()
        .is_ok_and(|o| o.status.success());
    if !there {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{shell} is required under CI=true (scripts/test-env start installs it)");
        }
        eprintln!("skipped: {shell} not installed");
    }
    there
}

/// Runs `code` in `shell` with the packaged script loaded.
fn run(shell: &str, code: &str) -> String {
    let file = contrib().join(match shell {
        "bash" => "blat.bash",
        "zsh" => "_blat",
        _ => "blat.fish",
    });
    let load = match shell {
        // compdef is compinit's; the script only registers itself with it.
        "zsh" => format!("compdef() {{ :; }}; source {}", file.display()),
        _ => format!("source {}", file.display()),
    };
    let out = Command::new(shell)
        .arg("-c")
        .arg(format!("{load}\n{code}"))
        .env("PATH", path())
        .env_remove("BLAT_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{shell}: {code}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
}

/// bash: what `_blat_with_targets` offers for the words (the last is the
/// one being completed).
fn bash_complete(words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let code = format!(
        "COMP_WORDS=({}); COMP_CWORD={}; _blat_with_targets blat '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        quoted.join(" "),
        words.len() - 1,
        words[words.len() - 1],
        words[words.len() - 2]
    );
    let mut got: Vec<String> = run("bash", &code).lines().map(String::from).collect();
    got.sort();
    got
}

#[test]
fn bash_completes_subcommands_and_targets() {
    if !have("bash") {
        return;
    }
    let w = world();
    let c = w.config().display().to_string();
    assert_eq!(bash_complete(&["blat", "sy"]), ["sync"]);
    assert_eq!(bash_complete(&["blat", "ch"]), ["check"]);
    assert_eq!(
        bash_complete(&["blat", "-c", &c, "sync", "--target", "site"]),
        ["site-a", "site-b"]
    );
    assert_eq!(
        bash_complete(&["blat", "-c", &c, "--target", ""]),
        ["ci", "site-a", "site-b"]
    );
    assert_eq!(
        bash_complete(&["blat", "--config", &c, "ssh", ""]),
        ["ci", "site-a", "site-b"]
    );
    // After the target, ssh's words are the remote command's: no targets.
    assert!(!bash_complete(&["blat", "-c", &c, "ssh", "ci", ""]).contains(&"site-a".to_string()));
    let shells = bash_complete(&["blat", "completions", ""]);
    for shell in ["bash", "zsh", "fish"] {
        assert!(shells.contains(&shell.to_string()), "{shells:?}");
    }
}

#[test]
fn fish_completes_subcommands_and_targets() {
    if !have("fish") {
        return;
    }
    let w = world();
    let c = w.config().display().to_string();
    let complete = |line: &str| -> Vec<String> {
        let mut got: Vec<String> = run("fish", &format!("complete -C '{line}'"))
            .lines()
            .map(|l| l.split('\t').next().unwrap_or("").to_string())
            .collect();
        got.sort();
        got.dedup();
        got
    };
    assert!(complete("blat sy").contains(&"sync".to_string()));
    assert_eq!(
        complete(&format!("blat -c {c} sync --target ")),
        ["ci", "site-a", "site-b"]
    );
    assert_eq!(
        complete(&format!("blat -c {c} ssh ")),
        ["ci", "site-a", "site-b"]
    );
}

#[test]
fn zsh_completes_targets() {
    if !have("zsh") {
        return;
    }
    let w = world();
    let c = w.config().display().to_string();
    // _describe is compsys's; here it prints the candidates it was given.
    let got = run(
        "zsh",
        &format!(
            "_describe() {{ print -l -- ${{(P)4}} }}; BUFFER='blat -c {c} sync --target '; _blat_targets"
        ),
    );
    assert_eq!(got, "ci\nsite-a\nsite-b\n");
    // The generated script wires it to --target and to ssh's TARGET.
    let text = script(Shell::Zsh);
    assert!(text.contains(":NAME:_blat_targets'"), "{text}");
    assert!(text.contains("(an SSH target):_blat_targets'"));
    assert!(!text.contains(":NAME:_default'"));
}
