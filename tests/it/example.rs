//! The README's first command: `blat -c examples/config sync --all` works
//! from a fresh clone. Run here on a copy of `examples/`, so the test never
//! writes into the work tree.

use std::fs;
use std::path::Path;

use crate::common::{assert_exit, stdout};

#[test]
fn the_bundled_example_syncs_and_then_has_nothing_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let copy = tmp.path().join("examples");
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(repo.join("examples"))
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_blat"))
            .args(["-c", copy.join("config").to_str().unwrap(), "sync", "--all"])
            .env_remove("BLAT_CONFIG")
            .env_remove("BLAT_NOW")
            .output()
            .unwrap()
    };
    let first = run();
    assert_exit(&first, 0);
    assert!(
        stdout(&first).contains("site-a: sync done: 5 sent"),
        "{}",
        stdout(&first)
    );
    let target = tmp.path().join("target/example/site-a/dpkg_archive");
    assert!(target.join("libfoo/1.1.0/descpkg").is_file());
    assert_eq!(
        fs::read_link(target.join("jats/jats2_current"))
            .unwrap()
            .to_str(),
        Some("2.1.0")
    );
    assert!(
        !target.join("oldlib").exists(),
        "closed releases and other projects stay home"
    );
    let second = run();
    assert_exit(&second, 0);
    assert!(
        stdout(&second).contains("site-a: sync done: 0 sent (0 B), 5 up to date"),
        "{}",
        stdout(&second)
    );
}
