//! The README's first command, `blat -c examples/config sync --all`, works
//! on a fresh clone at once: a `git clone` of this repository's HEAD into a
//! temporary directory (so every file is new and every version directory
//! writable, as a checkout leaves them), run in the same second.

use std::fs;
use std::path::Path;

use crate::common::{assert_exit, stdout};

#[test]
fn the_bundled_example_syncs_and_then_has_nothing_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let clone = tmp.path().join("clone");
    let out = std::process::Command::new("git")
        .args(["clone", "-q", "--no-hardlinks"])
        .arg(repo)
        .arg(&clone)
        .output()
        .expect("git must be installed to test the README example");
    assert!(
        out.status.success(),
        "git clone of {} failed: {}",
        repo.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let copy = clone.join("examples");
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
    let target = clone.join("target/example/site-a/dpkg_archive");
    for pv in [
        "libfoo/1.0.0",
        "libfoo/1.1.0",
        "jats/2.1.0",
        "tools/3.2",
        "zlib/1.2.13",
    ] {
        assert!(target.join(pv).join("descpkg").is_file(), "{pv} is missing");
    }
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
