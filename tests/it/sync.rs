//! `blat sync` and `blat plist` end to end: the built binary, a temporary
//! archive, the SQLite release source and a local target.

use std::fs;

use crate::common::{self, assert_exit, json, stderr, stdout, World};

const T0: i64 = 1_700_000_000;

/// Two releases of project P (R1 open, R0 closed) and an alias pin.
fn world() -> World {
    let w = World::new();
    w.release("a", "1.0", T0);
    w.release("a", "1.1", T0 + 10);
    w.release("b", "2.0", T0 + 20);
    w.release("old", "0.1", T0 + 30);
    w.release("j", "1", T0 + 40);
    w.release("j", "2", T0 + 50);
    w.alias("j", "cur", "1");
    w.write_global("");
    w.write_rm(&[
        ("P/R0", "closed", 0, &["old/0.1"]),
        ("P/R1", "open", 0, &["a/1.0", "b/2.0"]),
        ("Q/X", "open", 0, &["a/1.1"]),
    ]);
    w.local_target(
        "site",
        "projects = [\"P\"]\npackages = [\"j/cur\"]\nwritable_grace = \"1h\"\n",
    );
    w
}

fn sent(report: &serde_json::Value) -> Vec<String> {
    common::pvs(&report["targets"][0]["report"]["sent"])
}

fn version_tree(w: &World, root: &std::path::Path, pv: &str) -> Vec<String> {
    let _ = w;
    common::snapshot(&root.join(pv))
}

#[test]
fn first_sync_copies_the_current_set_exactly() {
    let w = world();
    let out = w.blat(&["sync", "--all", "--json"]);
    assert_exit(&out, 0);
    let report = json(&out);
    assert_eq!(sent(&report), ["a/1.0", "b/2.0", "j/1"]);
    assert_eq!(report["outcome"], "done");
    let t = w.target_dir("site");
    for pv in ["a/1.0", "b/2.0", "j/1"] {
        assert_eq!(
            version_tree(&w, &w.archive(), pv),
            version_tree(&w, &t, pv),
            "{pv}"
        );
    }
    assert!(!t.join("old").exists(), "closed release not sent");
    assert!(!t.join("a/1.1").exists(), "other project not sent");
    assert!(!t.join("j/2").exists(), "only the alias's version");
    assert_eq!(fs::read_link(t.join("j/cur")).unwrap().to_str(), Some("1"));
    let plist = fs::read_to_string(t.join(".dpkg_archive/packagelist.txt")).unwrap();
    let body: Vec<&str> = plist.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(body, ["a 1.0", "b 2.0", "j 1"]);
    assert!(plist.starts_with("# blat packagelist written "), "{plist}");
    assert!(plist.contains("# releases: P/R1"), "{plist}");
    common::assert_no_leftovers(&t);
}

#[test]
fn no_change_sync_sends_nothing() {
    let w = world();
    assert_exit(&w.blat(&["sync", "--all"]), 0);
    let before = common::snapshot(&w.target_dir("site").join("a"));
    let out = w.blat(&["sync", "--target", "site", "--json"]);
    assert_exit(&out, 0);
    let report = json(&out);
    assert!(sent(&report).is_empty(), "{report}");
    assert_eq!(report["targets"][0]["report"]["up_to_date"], 3);
    assert!(report["targets"][0]["report"]["linked"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(common::snapshot(&w.target_dir("site").join("a")), before);
    // The plain summary line says the same.
    let out = w.blat(&["sync", "--all"]);
    assert!(
        stdout(&out).contains("site: sync done: 0 sent (0 B), 3 up to date"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn changed_descpkg_mtime_is_resent() {
    let w = world();
    assert_exit(&w.blat(&["sync", "--all"]), 0);
    let dir = w.archive().join("b/2.0");
    common::make_writable(&dir);
    fs::write(dir.join("new-file"), "rebuilt").unwrap();
    common::set_mtime(&dir.join("descpkg"), T0 + 999);
    common::make_read_only(&dir);
    let out = w.blat(&["sync", "--all", "--json"]);
    assert_exit(&out, 0);
    assert_eq!(sent(&json(&out)), ["b/2.0"]);
    let t = w.target_dir("site");
    assert_eq!(common::snapshot(&dir), common::snapshot(&t.join("b/2.0")));
    common::assert_no_leftovers(&t);
}

#[test]
fn alias_is_repointed_after_its_version_arrives() {
    let w = world();
    assert_exit(&w.blat(&["sync", "--all"]), 0);
    w.alias("j", "cur", "2");
    let out = w.blat(&["sync", "--all", "--json"]);
    assert_exit(&out, 0);
    let report = json(&out);
    assert_eq!(sent(&report), ["j/2"]);
    assert_eq!(report["targets"][0]["report"]["linked"][0]["version"], "2");
    let t = w.target_dir("site");
    assert_eq!(fs::read_link(t.join("j/cur")).unwrap().to_str(), Some("2"));
    assert!(
        t.join("j/1/descpkg").is_file(),
        "excess is left alone without aging"
    );
}

#[test]
fn writable_package_waits_for_the_grace_then_goes() {
    let w = world();
    w.build("c", "0.1", T0 + 100, common::DEFAULT_FILES);
    w.write_rm(&[("P/R1", "open", 0, &["a/1.0", "c/0.1"])]);
    let early = (T0 + 100 + 60).to_string();
    let out = w.blat_env(&["sync", "--all", "--json"], &[("BLAT_NOW", &early)]);
    assert_exit(&out, 0);
    let report = json(&out);
    assert!(!sent(&report).contains(&"c/0.1".to_string()));
    let skipped = &report["targets"][0]["report"]["skipped"][0];
    assert_eq!(
        (
            skipped["pv"]["package"].as_str(),
            skipped["reason"].as_str()
        ),
        (Some("c"), Some("writable"))
    );
    assert!(!w.target_dir("site").join("c").exists());
    let late = (T0 + 100 + 3601).to_string();
    let out = w.blat_env(&["sync", "--all", "--json"], &[("BLAT_NOW", &late)]);
    assert_exit(&out, 0);
    assert_eq!(sent(&json(&out)), ["c/0.1"]);
    assert!(w.target_dir("site").join("c/0.1/descpkg").is_file());
}

#[test]
fn unknown_release_is_an_error_and_changes_nothing() {
    let w = world();
    w.local_target("site", "releases = [\"P/NOPE\"]\n");
    let out = w.blat(&["sync", "--all"]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("release P/NOPE does not exist"),
        "{}",
        stderr(&out)
    );
    assert!(
        !w.target_dir("site").exists(),
        "nothing created on the target"
    );
    // An unknown project too.
    w.local_target("site", "projects = [\"NOPE\"]\n");
    let out = w.blat(&["sync", "--all"]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("project NOPE does not exist"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_names_from_the_database_are_refused_by_row() {
    let w = world();
    w.write_rm(&[("P/R1", "open", 0, &["a/1.0", "../../etc/passwd"])]);
    let out = w.blat(&["sync", "--all"]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("release P/R1: row ") && err.contains("invalid name '..'"),
        "{err}"
    );
    assert!(
        err.contains("'../etc/passwd'"),
        "the message shows the row: {err}"
    );
    assert!(!w.target_dir("site").exists());
}

#[test]
fn held_lock_gives_exit_code_4_and_does_nothing() {
    let w = world();
    fs::create_dir_all(w.state().join("locks")).unwrap();
    let file = fs::File::create(w.state().join("locks/site.lock")).unwrap();
    file.try_lock().unwrap();
    let out = w.blat(&["sync", "--all"]);
    assert_exit(&out, 4);
    let err = stderr(&out);
    assert!(
        err.contains("site") && err.contains("holds its lock"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(!w.target_dir("site").exists());
    drop(file);
    assert_exit(&w.blat(&["sync", "--all"]), 0);
}

#[test]
fn bad_config_names_file_line_column() {
    let w = world();
    w.local_target("site", "projects = [\"P\"]\nsync_interval = \"4x\"\n");
    let out = w.blat(&["sync", "--all"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("targets/site.conf:5:17: invalid duration '4x'"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    w.local_target("site", "projets = [\"P\"]\n");
    let err = stderr(&w.blat(&["sync", "--all"]));
    assert!(
        err.contains("targets/site.conf:4:1: unknown field `projets`"),
        "{err}"
    );
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    let w = world();
    let out = w.blat(&["sync", "--all", "--dry-run"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    for line in [
        "site: would send a/1.0",
        "site: would send b/2.0",
        "site: would send j/1",
        "site: would link j/cur -> 1",
        // written, releases, alias j/cur, three versions
        "site: would write .dpkg_archive/packagelist.txt (6 lines)",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    assert!(!w.target_dir("site").exists(), "dry run created the target");
    // Nor is the run recorded: --due still finds the target due.
    let out = w.blat(&["sync", "--all", "--due", "--json"]);
    assert_eq!(sent(&json(&out)).len(), 3);
}

#[test]
fn due_skips_recently_synced_targets() {
    let w = world();
    assert_exit(&w.blat(&["sync", "--all", "--due"]), 0);
    w.release("b", "2.1", T0);
    w.write_rm(&[("P/R1", "open", 0, &["a/1.0", "b/2.0", "b/2.1"])]);
    let out = w.blat(&["sync", "--all", "--due"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("site: sync skipped: not due"),
        "{}",
        stdout(&out)
    );
    assert!(!w.target_dir("site").join("b/2.1").exists());
    let later = (blat::clock::now() + 4 * 3600 + 1).to_string();
    assert_exit(
        &w.blat_env(&["sync", "--all", "--due"], &[("BLAT_NOW", &later)]),
        0,
    );
    assert!(w.target_dir("site").join("b/2.1").exists());
}

#[test]
fn leftovers_of_a_failed_receive_are_cleared_by_the_next_sync() {
    let w = world();
    assert_exit(&w.blat(&["sync", "--all"]), 0);
    let t = w.target_dir("site");
    // What an interrupted transfer leaves: a half-written temp of b/2.0 after
    // b/2.0 itself was lost, plus a half-deleted old version.
    // Their writer (its PID is in their names) is gone.
    let dead = common::dead_pid();
    let tmp = t.join(format!("b/.blat-tmp-{dead}-x1y2z3-0"));
    common::make_writable(&t.join("b"));
    fs::rename(t.join("b/2.0"), &tmp).unwrap();
    fs::remove_file(tmp.join("descpkg")).unwrap();
    common::make_read_only(&tmp);
    fs::create_dir(t.join(format!("a/.blat-del-{dead}-q-1"))).unwrap();
    // And what that writer left in .dpkg_archive (docs/protocol.md, *The
    // index*): its marker, and b/2.0 recorded gone before the swap.
    fs::create_dir(t.join(format!(".dpkg_archive/.blat-tmp-{dead}-writer"))).unwrap();
    let mut index = fs::OpenOptions::new()
        .append(true)
        .open(t.join(".dpkg_archive/blat-index.txt"))
        .unwrap();
    std::io::Write::write_all(
        &mut index,
        b"
-V	b	2.0	.",
    )
    .unwrap();
    let out = w.blat(&["sync", "--all", "--json"]);
    assert_exit(&out, 0);
    assert_eq!(sent(&json(&out)), ["b/2.0"]);
    assert_eq!(json(&out)["targets"][0]["report"]["leftovers_removed"], 3);
    common::assert_no_leftovers(&t);
    assert_eq!(
        common::snapshot(&w.archive().join("b/2.0")),
        common::snapshot(&t.join("b/2.0"))
    );
}

#[test]
fn one_failing_package_does_not_stop_the_others() {
    let w = world();
    // A FIFO cannot be sent: that package fails, the rest go through (exit 3).
    let dir = w.archive().join("b/2.0");
    common::make_writable(&dir);
    let fifo = dir.join("pipe");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    common::make_read_only(&dir);
    let out = w.blat(&["sync", "--all", "--json"]);
    assert_exit(&out, 3);
    let report = json(&out);
    assert_eq!(sent(&report), ["a/1.0", "j/1"]);
    let failed = &report["targets"][0]["report"]["failed"][0];
    assert_eq!(failed["item"], "b/2.0");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("unsupported file type"),
        "{failed}"
    );
    assert!(!w.target_dir("site").join("b/2.0").exists());
    assert!(stderr(&out).contains("b/2.0"), "{}", stderr(&out));
}

#[test]
fn plist_writes_only_the_packagelist() {
    let w = world();
    let out = w.blat(&["plist", "--all"]);
    assert_exit(&out, 0);
    let t = w.target_dir("site");
    let plist = fs::read_to_string(t.join(".dpkg_archive/packagelist.txt")).unwrap();
    assert_eq!(
        plist
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>(),
        ["a 1.0", "b 2.0", "j 1"]
    );
    assert!(!t.join("a").exists(), "plist sends no package");
}

#[test]
fn target_selection_is_checked() {
    let w = world();
    let out = w.blat(&["sync"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("--target NAME or use --all (configured: site)"),
        "{}",
        stderr(&out)
    );
    let out = w.blat(&["sync", "--target", "nowhere"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("unknown target 'nowhere'"),
        "{}",
        stderr(&out)
    );
}

/// A PATH holding every tool of /usr/bin and /bin except zstd: a target
/// without zstd, for the compression fallbacks.
fn path_without_zstd(w: &World) -> String {
    let bin = w.path().join("bin-without-zstd");
    fs::create_dir(&bin).unwrap();
    for dir in ["/usr/bin", "/bin"] {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name();
            if name != "zstd" && !bin.join(&name).exists() {
                std::os::unix::fs::symlink(entry.path(), bin.join(&name)).unwrap();
            }
        }
    }
    let path = bin.display().to_string();
    path
}

#[test]
fn zstd_falls_back_to_gzip_when_the_target_lacks_it() {
    let w = world();
    w.local_target("site", "projects = [\"P\"]\ncompression = \"zstd:5\"\n");
    let path = path_without_zstd(&w);
    let out = w.blat_env(&["sync", "--all", "--json"], &[("PATH", &path)]);
    assert_exit(&out, 0);
    assert!(
        stderr(&out).contains("the target has no zstd; sending with gzip instead"),
        "{}",
        stderr(&out)
    );
    assert_eq!(sent(&json(&out)), ["a/1.0", "b/2.0"]);
    // With zstd on the target, no warning.
    let w = world();
    w.local_target("site", "projects = [\"P\"]\ncompression = \"zstd:5\"\n");
    let out = w.blat(&["sync", "--all"]);
    assert_exit(&out, 0);
    assert!(!stderr(&out).contains("no zstd"), "{}", stderr(&out));
    assert!(w.target_dir("site").join("b/2.0/descpkg").is_file());
}

/// Without `compression`, a target without zstd gets gzip:1 and no warning
/// (there is nothing to fix); `-vv` says so.
#[test]
fn the_default_compression_needs_no_zstd_on_the_target() {
    let w = world();
    w.local_target("site", "projects = [\"P\"]\n");
    let path = path_without_zstd(&w);
    let out = w.blat_env(&["-vv", "sync", "--all", "--json"], &[("PATH", &path)]);
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(!err.contains("warning"), "{err}");
    assert!(
        err.contains("the target has no zstd; sending with gzip:1"),
        "{err}"
    );
    assert_eq!(sent(&json(&out)), ["a/1.0", "b/2.0"]);
    assert!(w.target_dir("site").join("b/2.0/descpkg").is_file());
}

/// A target file system that fills up half-way through a package: the
/// receive fails, nothing partial is visible, and once there is room again
/// the next sync completes. Needs root for the small tmpfs (CI runs as root).
#[test]
fn a_full_target_disk_leaves_no_partial_package() {
    let w = world();
    let big: String = "0123456789abcdef".repeat(2 * 65536); // 2 MiB, over the tmpfs size
    w.release_with("big", "1.0", T0, &[("data/blob", &big), ("small", "s")]);
    w.write_rm(&[("P/R1", "open", 0, &["a/1.0", "big/1.0"])]);
    let t = w.target_dir("site");
    fs::create_dir_all(&t).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&t)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI runs as root and must be able to mount a tmpfs"
        );
        eprintln!("skipped: cannot mount a tmpfs (not root)");
        return;
    }
    // Unmount whatever happens below.
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let guard = Unmount(t.clone());
    w.local_target(
        "site",
        "projects = [\"P\"]\ncompression = \"none\"\nparallel = 1\n",
    );
    let out = w.blat(&["sync", "--all", "--json"]);
    // Both packages travel in one batch, one stream: the stream fails, so
    // neither is installed.
    assert_exit(&out, 1);
    let report = json(&out);
    assert!(sent(&report).is_empty(), "{report}");
    let failed: Vec<&str> = report["targets"][0]["report"]["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["item"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["a/1.0", "big/1.0"]);
    assert!(
        stderr(&out).contains("No space left on device"),
        "{}",
        stderr(&out)
    );
    assert!(
        !t.join("big").exists() && !t.join("a").exists(),
        "no partial package"
    );
    common::assert_no_leftovers(&t);
    // Room again (a bigger file system): the next sync completes.
    drop(guard);
    let out = w.blat(&["sync", "--all", "--json"]);
    assert_exit(&out, 0);
    assert_eq!(sent(&json(&out)), ["a/1.0", "big/1.0"]);
    assert_eq!(
        common::snapshot(&w.archive().join("big/1.0")),
        common::snapshot(&t.join("big/1.0"))
    );
}

/// Many versions of packages new to the target, split over concurrent
/// batches: every version arrives on the first sync, with any `parallel`.
/// (Two batches holding versions of one new package used to race for its
/// directory: "cannot rename into place", exit 3.)
#[test]
fn first_sync_delivers_every_version_of_new_packages_with_any_parallel() {
    let w = World::new();
    let mut pvs = Vec::new();
    for p in 0..40 {
        for v in 0..8 {
            let (pkg, ver) = (format!("p{p}"), format!("{v}.0"));
            w.release_with(&pkg, &ver, T0 + v, &[("f", "x")]);
            pvs.push(format!("{pkg}/{ver}"));
        }
    }
    let refs: Vec<&str> = pvs.iter().map(String::as_str).collect();
    w.write_global("");
    w.write_rm(&[("P/R1", "open", 0, &refs)]);
    for parallel in [1, 3, 8, 64] {
        let t = w.target_dir("site");
        if t.exists() {
            common::make_writable(&t);
            fs::remove_dir_all(&t).unwrap();
        }
        w.local_target(
            "site",
            &format!("projects = [\"P\"]\nparallel = {parallel}\ncompression = \"none\"\n"),
        );
        let out = w.blat(&["sync", "--all", "--json"]);
        assert_exit(&out, 0);
        let mut got = sent(&json(&out));
        got.sort();
        let mut want = pvs.clone();
        want.sort();
        assert_eq!(got, want, "parallel = {parallel}");
        for pv in &pvs {
            assert_eq!(
                common::snapshot(&w.archive().join(pv)),
                common::snapshot(&t.join(pv)),
                "parallel = {parallel}: {pv}"
            );
        }
        common::assert_no_leftovers(&t);
    }
}

/// Bad items fail alone, each with a message naming the package and the
/// path, while their batch-mates arrive; names at the limit of the name
/// rule (255 characters) fit every temporary.
#[test]
fn bad_items_fail_alone_and_long_names_fit() {
    let w = World::new();
    let long_pkg = "p".repeat(255);
    let long_ver = format!("1.{}", "9".repeat(253));
    w.release(&long_pkg, &long_ver, T0);
    w.release(&long_pkg, "2.0", T0);
    w.release("ok", &long_ver, T0);
    w.release("blocked", "1.0", T0);
    w.release("linked", "1.0", T0);
    w.release("fine", "1.0", T0);
    w.write_global("");
    let l1 = format!("{long_pkg}/{long_ver}");
    let l2 = format!("{long_pkg}/2.0");
    let l3 = format!("ok/{long_ver}");
    w.write_rm(&[(
        "P/R1",
        "open",
        0,
        &[&l1, &l2, &l3, "blocked/1.0", "linked/1.0", "fine/1.0"],
    )]);
    w.local_target("site", "projects = [\"P\"]\nparallel = 1\n");
    let t = w.target_dir("site");
    fs::create_dir_all(&t).unwrap();
    // A file where a package directory should be, and a symlink planted
    // there pointing outside the archive: neither is written through.
    fs::write(t.join("blocked"), "not a directory").unwrap();
    let outside = w.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, t.join("linked")).unwrap();

    let out = w.blat(&["sync", "--all", "--json"]);
    assert_exit(&out, 3);
    let report = json(&out);
    let mut got = sent(&report);
    got.sort();
    let mut want = vec![l1.clone(), l2.clone(), l3.clone(), "fine/1.0".to_string()];
    want.sort();
    assert_eq!(got, want, "{}", report["targets"][0]["report"]["failed"]);
    let failed = &report["targets"][0]["report"]["failed"];
    let reason = |item: &str| -> String {
        failed
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["item"] == item)
            .unwrap_or_else(|| panic!("{item} not failed: {failed}"))["error"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        reason("blocked/1.0").contains(&format!("{}/blocked is not a directory", t.display())),
        "{}",
        reason("blocked/1.0")
    );
    assert!(
        reason("linked/1.0").contains("is a symlink: refused"),
        "{}",
        reason("linked/1.0")
    );
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing written through the link"
    );
    for pv in [&l1, &l2, &l3, &"fine/1.0".to_string()] {
        assert_eq!(
            common::snapshot(&w.archive().join(pv)),
            common::snapshot(&t.join(pv))
        );
    }
    common::assert_no_leftovers(&t);
}

/// A file the master cannot read fails its package with a message naming
/// the file; the rest of its batch arrives. blat runs as an unprivileged
/// user here (root reads everything).
#[test]
fn an_unreadable_file_fails_its_package_alone() {
    let w = World::new();
    w.release("a", "1.0", T0);
    w.release("c", "1.0", T0);
    let secret = w.archive().join("b/1.0/secret");
    w.release_with("b", "1.0", T0, &[("secret", "s"), ("x", "x")]);
    w.write_global("");
    w.write_rm(&[("P/R1", "open", 0, &["a/1.0", "b/1.0", "c/1.0"])]);
    w.local_target("site", "projects = [\"P\"]\nparallel = 1\n");
    common::make_writable(&w.archive().join("b/1.0"));
    fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    common::make_read_only(&w.archive().join("b/1.0"));
    // The whole world belongs to an unprivileged user who runs blat.
    let chown = std::process::Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(w.path())
        .status()
        .unwrap();
    assert!(chown.success());
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_blat"))
        .arg("-c")
        .arg(w.config())
        .args(["sync", "--all", "--json"])
        .env_remove("BLAT_CONFIG")
        .output()
        .unwrap();
    assert_exit(&out, 3);
    let report = json(&out);
    assert_eq!(sent(&report), ["a/1.0", "c/1.0"]);
    let failed = report["targets"][0]["report"]["failed"].to_string();
    assert!(
        failed.contains("b/1.0") && failed.contains(&secret.display().to_string()),
        "{failed}"
    );
    assert!(!w.target_dir("site").join("b").exists());
}

#[test]
fn a_missing_source_archive_fails_the_target_and_is_no_success_for_due() {
    let w = world();
    let moved = w.path().join("archive.unmounted");
    fs::rename(w.archive(), &moved).unwrap();
    let expected = format!(
        "site: sync failed: source archive {} does not exist (`archive` in blat.toml)",
        w.archive().display()
    );
    let out = w.blat(&["sync", "--all", "--json"]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains(&expected), "{}", stderr(&out));
    assert_eq!(json(&out)["targets"][0]["outcome"], "failed");
    assert!(
        !w.target_dir("site").join(".dpkg_archive").exists(),
        "nothing written to the target"
    );
    // plist and age (whose pins and aliases need the archive) fail alike.
    let config = fs::read_to_string(w.config().join("targets/site.conf")).unwrap();
    for command in ["plist", "age"] {
        w.local_target(
            "site",
            "projects = [\"P\"]\n[aging]\nmethod = \"immediate\"\n",
        );
        let out = w.blat(&[command, "--all"]);
        assert_exit(&out, 1);
        assert!(
            stderr(&out).contains(&format!(
                "site: {command} failed: source archive {} does not exist",
                w.archive().display()
            )),
            "{command}: {}",
            stderr(&out)
        );
    }
    // A failed sync is not a successful one: the archive back, --due syncs.
    fs::write(w.config().join("targets/site.conf"), config).unwrap();
    fs::rename(&moved, w.archive()).unwrap();
    let out = w.blat(&["sync", "--all", "--due", "--json"]);
    assert_exit(&out, 0);
    assert_eq!(sent(&json(&out)), ["a/1.0", "b/2.0", "j/1"]);
    // A file where the archive should be is no archive either.
    fs::rename(w.archive(), &moved).unwrap();
    fs::write(w.archive(), "").unwrap();
    let out = w.blat(&["sync", "--all"]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("is not a directory (`archive` in blat.toml)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn durations_and_sizes_too_large_to_hold_are_config_errors() {
    // Once `after` wrapped negative as i64 seconds: marked and deleted at once.
    let w = world();
    assert_exit(&w.blat(&["sync", "--all"]), 0);
    w.write_rm(&[("P/R1", "open", 0, &["a/1.0"])]);
    let conf = |aging: &str| {
        format!(
            "projects = [\"P\"]\npackages = [\"j/cur\"]\n[aging]\nmethod = \"master\"\n{aging}\n"
        )
    };
    w.local_target("site", &conf("after = \"9999999999999999999\""));
    let file = w.config().join("targets/site.conf");
    for command in ["sync", "age"] {
        let out = w.blat(&[command, "--all"]);
        assert_exit(&out, 2);
        assert!(
            stderr(&out).contains(&format!(
                "{}:8:9: invalid duration '9999999999999999999': expected at most 36500d (100 years)",
                file.display()
            )),
            "{}",
            stderr(&out)
        );
    }
    assert!(w.target_dir("site").join("b/2.0/descpkg").exists());
    for (aging, place, what) in [
        ("after = 9223372036854775807", ":8:9:", "invalid duration"),
        ("after = \"36501d\"", ":8:9:", "at most 36500d"),
        ("after = \"14d\"\nmax_delete = 1", "", ""),
    ] {
        w.local_target("site", &conf(aging));
        let out = w.blat(&["age", "--all"]);
        if place.is_empty() {
            assert_exit(&out, 0);
        } else {
            assert_exit(&out, 2);
            assert!(
                stderr(&out).contains(place) && stderr(&out).contains(what),
                "{aging}: {}",
                stderr(&out)
            );
        }
    }
    assert!(
        w.target_dir("site").join("b/2.0/descpkg").exists(),
        "marked, not deleted"
    );
    w.local_target("site", "projects = [\"P\"]\nmin_free = \"17179869184g\"\n");
    let out = w.blat(&["sync", "--all"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains(&format!(
            "{}:5:12: invalid size '17179869184g': expected at most 8 EiB (8589934591g)",
            file.display()
        )),
        "{}",
        stderr(&out)
    );
}

#[test]
fn leftovers_that_cannot_be_removed_are_a_warning_not_a_failure() {
    use std::os::unix::fs::PermissionsExt;
    let w = world();
    let t = w.target_dir("site");
    fs::create_dir_all(&t).unwrap();
    fs::create_dir_all(w.state()).unwrap();
    common::give_unprivileged(&t);
    common::give_unprivileged(&w.state());
    // A leftover temporary in a package directory the target user may not
    // write: root's when we are root (blat runs as nobody), else read-only.
    // Its writer (the PID in its name) is gone, so gc tries to remove it.
    let stuck = t.join(format!("zz/.blat-tmp-{}-abc123-1", common::dead_pid()));
    fs::create_dir_all(stuck.join("sub")).unwrap();
    if !common::is_root() {
        fs::set_permissions(t.join("zz"), fs::Permissions::from_mode(0o555)).unwrap();
    }
    let out = w.blat_unprivileged(&["sync", "--all", "--json"], &[]);
    assert_exit(&out, 0);
    let report = json(&out);
    assert_eq!(sent(&report), ["a/1.0", "b/2.0", "j/1"]);
    let r = &report["targets"][0]["report"];
    assert_eq!(r["packagelist"], true, "{r}");
    assert!(
        r["warnings"][0]
            .as_str()
            .unwrap()
            .contains("leftover temporaries not removed"),
        "{r}"
    );
    let err = stderr(&out);
    assert!(
        err.contains(
            "site: warning: leftover temporaries not removed (the next sync tries again): receiver gc failed: "
        ) && err.contains("gc: some leftovers could not be removed"),
        "{err}"
    );
    assert!(stuck.exists());
    assert!(
        w.blat(&["sync", "--all"]).status.success(),
        "still fine the next time"
    );
    if !common::is_root() {
        fs::set_permissions(t.join("zz"), fs::Permissions::from_mode(0o755)).unwrap();
    }
}
