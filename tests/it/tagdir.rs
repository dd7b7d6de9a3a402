//! The tag directory is written by others (the Release Manager's hook):
//! whoever can write `<tag_dir>/<target>/` may only ask for a
//! package-version to be sent. Each test plants something there (symlinks,
//! FIFOs, files where directories go, odd names), runs `fast`, `status` or
//! `tag`, and checks that nothing outside the tag directory was read,
//! changed or deleted, and that no run hangs.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, assert_exit, stderr, stdout, World};

const T0: i64 = 1_700_000_000;
const SECRET: &str = "SECRET-CONTENTS-4242";

/// One released package `p/1.0`, a local target `site`, and a victim
/// directory outside the tag directory holding a secret and a subdirectory.
fn world() -> World {
    let w = World::new();
    w.release("p", "1.0", T0);
    w.write_global("");
    w.write_rm(&[("P/R1", "open", 0, &["p/1.0"])]);
    w.local_target("site", "projects = [\"P\"]\ntag_retries = 3\n");
    let victim = victim(&w);
    fs::create_dir_all(victim.join("important")).unwrap();
    fs::write(victim.join("important/keep"), "keep me").unwrap();
    fs::write(victim.join("secret"), SECRET).unwrap();
    fs::create_dir_all(tags(&w)).unwrap();
    w
}

fn victim(w: &World) -> PathBuf {
    w.path().join("victim")
}

fn tags(w: &World) -> PathBuf {
    w.path().join("tags").join("site")
}

/// What must stay as it is: the victim directory and the configuration.
fn outside(w: &World) -> (Vec<String>, Vec<String>) {
    (common::snapshot(&victim(w)), common::snapshot(&w.config()))
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

/// Runs the built blat, killing it (and failing the test) if it has not
/// ended within 30 seconds: a run that blocks on a FIFO must fail the test,
/// not hang it.
fn blat_timed(w: &World, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_blat"))
        .arg("-c")
        .arg(w.config())
        .args(args)
        .env_remove("BLAT_CONFIG")
        .env_remove("BLAT_NOW")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "blat {args:?} hung (killed after 30s)\n--- stdout\n{}\n--- stderr\n{}",
                stdout(&out),
                stderr(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn status_all(w: &World) -> String {
    let text = blat_timed(w, &["status"]);
    assert_exit(&text, 0);
    let json = blat_timed(w, &["status", "--json"]);
    assert_exit(&json, 0);
    format!(
        "{}{}{}{}",
        stdout(&text),
        stderr(&text),
        stdout(&json),
        stderr(&json)
    )
}

#[test]
fn a_rejected_dir_that_links_to_a_victim_is_refused_nothing_deleted_or_moved_there() {
    let w = world();
    let dir = tags(&w);
    symlink(victim(&w), dir.join(".rejected")).unwrap();
    // An invalid tag named like a directory of the victim: rejecting it
    // through the link once deleted victim/important and put the tag there.
    fs::write(dir.join("important"), "planted").unwrap();
    fs::write(dir.join("p::1.0"), "").unwrap();
    let before = outside(&w);

    let out = blat_timed(&w, &["fast", "--all"]);
    assert_eq!(
        outside(&w),
        before,
        "nothing outside the tag directory changed"
    );
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{}/.rejected is a symlink, not a directory: refused",
            dir.display()
        )),
        "{err}"
    );
    assert_eq!(
        err.lines().filter(|l| l.contains(".rejected")).count(),
        1,
        "{err}"
    );
    assert_eq!(outside(&w), before);
    assert!(dir.join("important").is_file() && dir.join("p::1.0").is_file());
    assert!(fs::symlink_metadata(dir.join(".rejected"))
        .unwrap()
        .file_type()
        .is_symlink());

    // status reads nothing through it either: no victim name, no secret.
    let shown = status_all(&w);
    assert!(
        !shown.contains(SECRET) && !shown.contains("keep"),
        "{shown}"
    );
    assert!(shown.contains(".rejected is a symlink"), "{shown}");
    assert_eq!(outside(&w), before);
}

#[test]
fn a_rejected_dir_that_links_into_the_config_plants_no_target() {
    let w = world();
    let dir = tags(&w);
    symlink(w.config().join("targets"), dir.join(".rejected")).unwrap();
    // A "tag" that is a target file: renamed into targets/ through the
    // link, the next run would have synced the archive to it.
    fs::write(
        dir.join("evil.conf"),
        format!(
            "kind = \"archive\"\ntransport = \"local\"\npath = \"{}\"\nprojects = [\"P\"]\n",
            victim(&w).join("planted").display()
        ),
    )
    .unwrap();
    let before = outside(&w);
    let out = blat_timed(&w, &["fast", "--all"]);
    assert_eq!(outside(&w), before, "nothing planted in the config");
    assert!(!w.config().join("targets/evil.conf").exists());
    assert_exit(&out, 1);
    assert!(!w.config().join("targets/.evil.conf.reason").exists());
    let out = blat_timed(&w, &["sync", "--all"]);
    assert_exit(&out, 0);
    assert!(!victim(&w).join("planted").exists());
}

#[test]
fn a_rejected_entry_that_is_a_file_is_refused_and_left_alone() {
    let w = world();
    let dir = tags(&w);
    fs::write(dir.join(".rejected"), "not a directory").unwrap();
    fs::write(dir.join("a::b::c"), "").unwrap();
    let out = blat_timed(&w, &["fast", "--all"]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{}/.rejected is a regular file, not a directory: refused",
            dir.display()
        )),
        "{err}"
    );
    assert_eq!(
        fs::read_to_string(dir.join(".rejected")).unwrap(),
        "not a directory"
    );
    assert!(dir.join("a::b::c").exists(), "the tag stays");
    let shown = status_all(&w);
    assert!(shown.contains(".rejected is a regular file"), "{shown}");
}

#[test]
fn status_never_prints_what_a_reason_file_links_to() {
    let w = world();
    let rejected = tags(&w).join(".rejected");
    fs::create_dir_all(&rejected).unwrap();
    fs::write(rejected.join("x"), "").unwrap();
    symlink(victim(&w).join("secret"), rejected.join(".x.reason")).unwrap();
    let before = outside(&w);
    let shown = status_all(&w);
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(shown.contains("rejected x: "), "{shown}");
    assert_eq!(outside(&w), before);
}

#[test]
fn status_does_not_hang_on_a_fifo_reason_and_reads_only_4_kib() {
    let w = world();
    let rejected = tags(&w).join(".rejected");
    fs::create_dir_all(&rejected).unwrap();
    fs::write(rejected.join("x"), "").unwrap();
    mkfifo(&rejected.join(".x.reason"));
    fs::write(rejected.join("big"), "").unwrap();
    fs::write(
        rejected.join(".big.reason"),
        format!("{}\x1b[2J{}", "r".repeat(5000), "TAIL"),
    )
    .unwrap();
    let shown = status_all(&w);
    assert!(shown.contains("rejected x: \n"), "{shown}");
    assert!(
        !shown.contains("TAIL") && !shown.contains('\x1b'),
        "{shown}"
    );
    let line = shown
        .lines()
        .find(|l| l.contains("rejected big: "))
        .unwrap();
    assert!(line.len() < 4200, "{}", line.len());
}

#[test]
fn a_fifo_tag_is_moved_aside_never_opened() {
    let w = world();
    let dir = tags(&w);
    mkfifo(&dir.join("p::1.0"));
    let out = blat_timed(&w, &["fast", "--all", "--json"]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("tag p::1.0 rejected: a FIFO, not a tag file"),
        "{err}"
    );
    let kind = fs::symlink_metadata(dir.join(".rejected/p::1.0"))
        .unwrap()
        .file_type();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&kind));
    assert!(!w.target_dir("site").join("p").exists(), "nothing sent");
    let shown = status_all(&w);
    assert!(shown.contains("rejected p::1.0: "), "{shown}");
}

#[test]
fn a_symlink_tag_is_moved_aside_as_a_link_and_never_read() {
    let w = world();
    let dir = tags(&w);
    symlink(victim(&w).join("secret"), dir.join("p::1.0")).unwrap();
    symlink(victim(&w).join("important"), dir.join("p::dir")).unwrap();
    symlink(victim(&w).join("secret"), dir.join("bad name")).unwrap();
    let before = outside(&w);
    let out = blat_timed(&w, &["fast", "--all"]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    for name in ["p::1.0", "p::dir", "bad name"] {
        assert!(
            err.contains(&format!("tag {name} rejected: a symlink, not a tag file")),
            "{name}: {err}"
        );
        let moved = dir.join(".rejected").join(name);
        assert!(
            fs::symlink_metadata(&moved)
                .unwrap()
                .file_type()
                .is_symlink(),
            "{name}"
        );
    }
    assert_eq!(
        fs::read_link(dir.join(".rejected/p::1.0")).unwrap(),
        victim(&w).join("secret")
    );
    assert!(!w.target_dir("site").join("p").exists(), "nothing sent");
    assert_eq!(outside(&w), before);
    let shown = status_all(&w);
    assert!(!shown.contains(SECRET), "{shown}");
    assert_eq!(outside(&w), before);
}

#[test]
fn a_tag_dir_that_is_a_symlink_is_refused_by_fast_tag_and_status() {
    let w = world();
    let dir = tags(&w);
    fs::remove_dir(&dir).unwrap();
    symlink(victim(&w), &dir).unwrap();
    // Tags in the victim: fast once consumed them (deleting victim files).
    fs::write(victim(&w).join("p::1.0"), "").unwrap();
    fs::write(victim(&w).join("a::b::c"), "").unwrap();
    let before = outside(&w);

    let out = blat_timed(&w, &["fast", "--all"]);
    assert_eq!(outside(&w), before, "no victim file consumed as a tag");
    assert_exit(&out, 1);
    let refused = format!("{} is a symlink: refused", dir.display());
    assert!(stderr(&out).contains(&refused), "{}", stderr(&out));
    assert_eq!(outside(&w), before);
    assert!(!w.target_dir("site").join("p").exists(), "nothing sent");

    let out = blat_timed(&w, &["tag", "p", "1.0"]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains(&refused), "{}", stderr(&out));
    let out = blat_timed(&w, &["tag", "q", "2"]);
    assert_exit(&out, 1);
    assert_eq!(outside(&w), before, "no tag written into the victim");

    let shown = status_all(&w);
    assert!(shown.contains(&refused), "{shown}");
    assert!(
        !shown.contains("secret") && !shown.contains("a::b::c"),
        "{shown}"
    );
    assert_eq!(outside(&w), before);
}

#[test]
fn odd_names_are_rejected_and_shown_escaped_on_one_line() {
    let w = world();
    let dir = tags(&w);
    let names: [&[u8]; 3] = [
        b"p::1.0\nsite: fast done: forged line",
        b"x\x1b[2Jy",
        b"p::1.0\r",
    ];
    for name in names {
        fs::write(dir.join(OsStr::from_bytes(name)), "").unwrap();
    }
    let out = blat_timed(&w, &["fast", "--all"]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(
        !err.lines()
            .any(|l| l.starts_with("site: fast done: forged")),
        "{err}"
    );
    assert!(!err.contains('\x1b') && !err.contains('\r'), "{err:?}");
    assert!(
        err.contains("tag p::1.0\\nsite: fast done: forged line rejected: invalid tag"),
        "{err}"
    );
    for name in names {
        assert!(dir.join(".rejected").join(OsStr::from_bytes(name)).exists());
    }
    assert!(!w.target_dir("site").join("p").exists(), "nothing sent");
    let shown = status_all(&w);
    assert!(
        !shown.contains('\x1b') && !shown.contains('\r'),
        "{shown:?}"
    );
    assert!(
        shown.contains("rejected p::1.0\\nsite: fast done: forged line: "),
        "{shown}"
    );
    assert!(shown.contains("rejected x\\u{1b}[2Jy: "), "{shown}");
}

#[test]
fn a_directory_tag_rejected_twice_deletes_nothing() {
    let w = world();
    let dir = tags(&w);
    fs::create_dir_all(dir.join("p::dir")).unwrap();
    fs::write(dir.join("p::dir/first"), "1").unwrap();
    symlink(victim(&w), dir.join("p::dir/victim")).unwrap();
    assert_exit(&blat_timed(&w, &["fast", "--all"]), 1);
    assert!(dir.join(".rejected/p::dir/first").exists());
    fs::create_dir_all(dir.join("p::dir")).unwrap();
    fs::write(dir.join("p::dir/second"), "2").unwrap();
    let before = outside(&w);
    let out = blat_timed(&w, &["fast", "--all"]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("tag p::dir rejected: a directory, not a tag file"),
        "{}",
        stderr(&out)
    );
    // The first rejected directory is kept; the second sits beside it.
    assert_eq!(
        fs::read_to_string(dir.join(".rejected/p::dir/first")).unwrap(),
        "1"
    );
    let mut second: Vec<String> = fs::read_dir(dir.join(".rejected"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("p::dir~"))
        .collect();
    assert_eq!(second.len(), 1, "{second:?}");
    let second = dir.join(".rejected").join(second.pop().unwrap());
    assert_eq!(fs::read_to_string(second.join("second")).unwrap(), "2");
    assert_eq!(outside(&w), before);
    let shown = status_all(&w);
    assert!(shown.contains("tags: 0 pending, 2 rejected"), "{shown}");
}

#[test]
fn a_tag_name_of_255_bytes_is_rejected_with_its_reason() {
    let w = world();
    // No `::`: invalid, whatever else it holds.
    let name = "v".repeat(255);
    assert_eq!(name.len(), 255);
    fs::write(tags(&w).join(&name), "").unwrap();
    let out = blat_timed(&w, &["fast", "--all"]);
    assert_exit(&out, 1);
    assert!(
        !stderr(&out).contains("cannot"),
        "the reason was written: {}",
        stderr(&out)
    );
    let shown = status_all(&w);
    assert!(
        shown.contains(&format!("rejected {name}: ")) && shown.contains("invalid package-version"),
        "{shown}"
    );
}

#[test]
fn a_reason_file_planted_as_a_link_is_replaced_never_written_through() {
    let w = world();
    let rejected = tags(&w).join(".rejected");
    fs::create_dir_all(&rejected).unwrap();
    symlink(victim(&w).join("secret"), rejected.join(".a::b::c.reason")).unwrap();
    fs::write(tags(&w).join("a::b::c"), "").unwrap();
    let before = outside(&w);
    assert_exit(&blat_timed(&w, &["fast", "--all"]), 1);
    assert_eq!(outside(&w), before);
    assert!(fs::symlink_metadata(rejected.join(".a::b::c.reason"))
        .unwrap()
        .is_file());
    let shown = status_all(&w);
    assert!(
        shown.contains("rejected a::b::c: ") && !shown.contains(SECRET),
        "{shown}"
    );
}

#[test]
fn good_tags_still_go_beside_planted_entries() {
    let w = world();
    let dir = tags(&w);
    mkfifo(&dir.join("q::fifo"));
    symlink(victim(&w), dir.join("q::link")).unwrap();
    assert_exit(&blat_timed(&w, &["tag", "p", "1.0"]), 0);
    let before = outside(&w);
    let out = blat_timed(&w, &["fast", "--all"]);
    assert_exit(&out, 3);
    assert!(w.target_dir("site").join("p/1.0/descpkg").exists());
    assert!(!dir.join("p::1.0").exists(), "the good tag is consumed");
    assert_eq!(outside(&w), before);
}
