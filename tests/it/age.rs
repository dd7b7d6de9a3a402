//! Aging end to end (docs/aging.md): `immediate` inside `sync`, `master` marks
//! and deletes after `after`, `blat age --local` on a target with no
//! configuration, and every guard: empty current set, release source
//! errors, pins, aliases, young packages, max_delete, --dry-run.
//! Time is fixed with BLAT_NOW, so "after 14 days" takes no waiting.

use std::fs;
use std::process::Output;

use crate::common::*;

/// Package mtimes; runs happen at NOW, ten days later.
const T0: i64 = 1_700_000_000;
const NOW: i64 = T0 + 10 * 86400;
const DAY: i64 = 86400;

/// An archive, a release with everything, and target `t` holding it all
/// after a first sync. `y/1` is young (descpkg an hour-minus-a-minute old
/// at NOW), `p/1` is pinned, `j/1` is the version of the pinned alias `j/cur`.
fn world(aging: &str) -> World {
    let w = World::new();
    for (i, p) in ["a", "b", "c", "d", "p", "j"].iter().enumerate() {
        w.release(p, "1", T0 + i as i64);
    }
    w.release("y", "1", NOW - 3540);
    w.alias("j", "cur", "1");
    w.write_global("");
    w.write_rm(&[("P/R1", "open", 0, &["a/1", "b/1", "c/1", "d/1", "y/1"])]);
    w.local_target(
        "t",
        &format!("releases = [\"P/R1\"]\npackages = [\"p/1\", \"j/cur\"]\nwritable_grace = \"1h\"\n[aging]\n{aging}\n"),
    );
    assert_exit(&at(&w, NOW, &["sync", "--target", "t"]), 0);
    for pv in ["a/1", "b/1", "c/1", "d/1", "y/1", "p/1", "j/1"] {
        assert!(on_target(&w, pv), "{pv} not sent by the first sync");
    }
    w
}

/// The release drops b, c, d and y: those become excess (y is young).
fn shrink(w: &World) {
    w.write_rm(&[("P/R1", "open", 0, &["a/1"])]);
}

fn at(w: &World, now: i64, args: &[&str]) -> Output {
    w.blat_env(args, &[("BLAT_NOW", &now.to_string())])
}

fn on_target(w: &World, pv: &str) -> bool {
    w.target_dir("t").join(pv).join("descpkg").exists()
}

/// The target's report in a `--json` run of a per-target command.
fn report(out: &Output) -> serde_json::Value {
    json(out)["targets"][0]["report"].clone()
}

fn marks(w: &World) -> Vec<(String, String, i64)> {
    blat::state::State::open_target(&w.state(), "t")
        .unwrap()
        .marks("t")
        .unwrap()
}

fn would_delete(out: &Output) -> Vec<String> {
    let mut lines: Vec<String> = stdout(out)
        .lines()
        .filter(|l| l.contains("would delete"))
        .map(String::from)
        .collect();
    lines.sort();
    lines
}

#[test]
fn immediate_deletes_excess_in_the_same_sync_after_the_packagelist() {
    let w = world("method = \"immediate\"\nmax_delete = 10");
    shrink(&w);
    // An alias on the target protects its version, whatever the release says.
    std::os::unix::fs::symlink("1", w.target_dir("t").join("d/keep")).unwrap();
    let out = at(&w, NOW, &["sync", "--target", "t", "--json"]);
    assert_exit(&out, 0);
    let r = report(&out);
    assert_eq!(pvs(&r["aging"]["deleted"]), ["b/1", "c/1"], "{r}");
    assert!(r["aging"]["bytes_freed"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(
        r["aging"]["bytes_freed"],
        r["aging"]["deleted"][0]["bytes"].as_u64().unwrap()
            + r["aging"]["deleted"][1]["bytes"].as_u64().unwrap()
    );
    assert_eq!(r["packagelist"], true);
    assert!(!on_target(&w, "b/1") && !on_target(&w, "c/1"));
    assert!(
        !w.target_dir("t").join("b").exists(),
        "an emptied package directory goes too"
    );
    for kept in ["a/1", "d/1", "y/1", "p/1", "j/1"] {
        assert!(on_target(&w, kept), "{kept} must stay");
    }
    assert_no_leftovers(&w.target_dir("t"));
    assert!(marks(&w).is_empty(), "immediate keeps no marks");

    // The plain summary line says what aging did.
    let out = at(&w, NOW, &["sync", "--target", "t"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("aging: 0 deleted (0 B freed)"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn master_marks_first_and_deletes_once_marked_longer_than_after() {
    let w = world("method = \"master\"\nafter = \"14d\"");
    shrink(&w);
    let out = at(&w, NOW, &["sync", "--target", "t", "--json"]);
    assert_exit(&out, 0);
    let r = report(&out);
    assert_eq!(pvs(&r["aging"]["marked"]), ["b/1", "c/1", "d/1"], "{r}");
    assert!(r["aging"]["deleted"].as_array().unwrap().is_empty());
    let first: Vec<(String, String, i64)> = ["b", "c", "d"]
        .iter()
        .map(|p| (p.to_string(), "1".to_string(), NOW))
        .collect();
    assert_eq!(marks(&w), first);

    // Exactly 14 days later: still waiting, and the marks keep their time.
    // y/1 is no longer young: it is marked now.
    let out = at(&w, NOW + 14 * DAY, &["age", "--target", "t", "--json"]);
    assert_exit(&out, 0);
    let r = report(&out);
    assert_eq!(r["waiting"], 4, "{r}");
    assert!(r["deleted"].as_array().unwrap().is_empty(), "{r}");
    assert_eq!(pvs(&r["marked"]), ["y/1"], "{r}");
    let y = ("y".to_string(), "1".to_string(), NOW + 14 * DAY);
    assert_eq!(marks(&w), [first, vec![y.clone()]].concat());

    // c rejoins the set; d vanishes from the target by other hands.
    w.write_rm(&[("P/R1", "open", 0, &["a/1", "c/1"])]);
    let d = w.target_dir("t").join("d");
    make_writable(&d);
    fs::remove_dir_all(&d).unwrap();
    let out = at(&w, NOW + 14 * DAY + 1, &["age", "--target", "t", "--json"]);
    assert_exit(&out, 0);
    let r = report(&out);
    assert_eq!(pvs(&r["deleted"]), ["b/1"], "{r}");
    assert_eq!(pvs(&r["unmarked"]), ["c/1", "d/1"], "{r}");
    assert!(!on_target(&w, "b/1") && on_target(&w, "c/1") && on_target(&w, "y/1"));
    assert_eq!(marks(&w), [y]);
    let out = at(&w, NOW + 14 * DAY + 1, &["age", "--target", "t", "-v"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("t: age done: aging: 0 deleted (0 B freed)"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn an_empty_current_set_deletes_nothing_and_keeps_the_marks() {
    let w = world("method = \"master\"\nafter = \"1d\"");
    shrink(&w);
    assert_exit(&at(&w, NOW, &["age", "--target", "t"]), 0);
    assert_eq!(marks(&w).len(), 3);
    // The release is there but answers nothing; the pins are not in the
    // config of this second target either, so its set is truly empty.
    w.write_rm(&[("P/R1", "open", 0, &[])]);
    w.local_target(
        "t",
        "releases = [\"P/R1\"]\nwritable_grace = \"1h\"\n[aging]\nmethod = \"immediate\"\n",
    );
    for args in [
        &["age", "--target", "t", "--json"][..],
        &["sync", "--target", "t", "--json"][..],
    ] {
        let out = at(&w, NOW + 30 * DAY, args);
        assert_exit(&out, 0);
        assert!(
            stderr(&out).contains("the current set is empty: nothing is aged"),
            "{}",
            stderr(&out)
        );
        let r = report(&out);
        let aging = if args[0] == "sync" { &r["aging"] } else { &r };
        assert_eq!(aging["skipped"], "the current set is empty", "{r}");
    }
    for pv in ["a/1", "b/1", "c/1", "d/1", "y/1", "p/1", "j/1"] {
        assert!(on_target(&w, pv), "{pv} deleted with an empty current set");
    }
    assert_eq!(marks(&w).len(), 3, "marks untouched");
}

/// The guard judges what the Release Manager answered, per release and
/// project, not the set after pins: a release that answers no rows while
/// pins keep the set non-empty deletes nothing (it used to delete all but
/// the pins), on the master and, through the PackageList, on the target.
#[test]
fn pins_never_make_an_empty_answer_look_like_a_current_set() {
    for (config, unanswered) in [
        ("releases = [\"P/R1\"]", "release P/R1"),
        ("releases = [\"P/R1\", \"P/R2\"]", "release P/R2"),
        ("projects = [\"P\"]", "project P"),
    ] {
        let w = world("method = \"immediate\"");
        // R1 answers nothing (or R2 does, or P has no open release).
        match unanswered {
            "release P/R1" => w.write_rm(&[("P/R1", "open", 0, &[])]),
            "release P/R2" => {
                w.write_rm(&[("P/R1", "open", 0, &["a/1"]), ("P/R2", "open", 0, &[])])
            }
            _ => w.write_rm(&[("P/R1", "closed", 0, &["a/1"])]),
        }
        w.local_target(
            "t",
            &format!("{config}\npackages = [\"p/1\", \"j/cur\"]\nwritable_grace = \"1h\"\n[aging]\nmethod = \"immediate\"\n"),
        );
        for args in [
            &["sync", "--target", "t", "--json"][..],
            &["age", "--target", "t", "--json"][..],
        ] {
            let out = at(&w, NOW + 30 * DAY, args);
            assert_exit(&out, 0);
            let want =
                format!("the Release Manager answered nothing for {unanswered}: nothing is aged");
            assert!(stderr(&out).contains(&want), "{config}: {}", stderr(&out));
        }
        for pv in ["a/1", "b/1", "c/1", "d/1", "y/1", "p/1", "j/1"] {
            assert!(on_target(&w, pv), "{config}: {pv} deleted");
        }
        // The PackageList says so, and age --local on the target obeys it.
        let list =
            fs::read_to_string(w.target_dir("t").join(".dpkg_archive/packagelist.txt")).unwrap();
        assert!(
            list.contains(&format!("# unanswered: {unanswered}\n")),
            "{list}"
        );
        let out = local(&w, NOW + 30 * DAY, &["--after", "0s"]);
        assert_exit(&out, 0);
        assert!(
            stderr(&out).contains("answered nothing"),
            "{}",
            stderr(&out)
        );
        for pv in ["a/1", "b/1", "c/1", "d/1", "y/1", "p/1", "j/1"] {
            assert!(on_target(&w, pv), "{config}: age --local deleted {pv}");
        }
    }
}

#[test]
fn a_release_source_error_deletes_nothing() {
    let w = world("method = \"immediate\"");
    shrink(&w);
    fs::write(w.path().join("rm.sql"), "this is not SQL;").unwrap();
    for cmd in ["age", "sync"] {
        let out = at(&w, NOW, &[cmd, "--target", "t"]);
        assert_exit(&out, 1);
        assert!(stderr(&out).contains("error"), "{}", stderr(&out));
    }
    // A release that is not in the database is an error too, not an empty set.
    w.write_rm(&[("P/OTHER", "open", 0, &["a/1"])]);
    let out = at(&w, NOW, &["age", "--target", "t"]);
    assert_exit(&out, 1);
    for pv in ["b/1", "c/1", "d/1"] {
        assert!(on_target(&w, pv), "{pv} deleted after a source error");
    }
}

#[test]
fn more_than_max_delete_is_refused_as_a_whole_unless_forced() {
    let w = world("method = \"immediate\"\nmax_delete = 2");
    shrink(&w);
    let out = at(&w, NOW, &["age", "--target", "t"]);
    assert_exit(&out, 1);
    let msg = "refused to delete 3 package-versions: more than max_delete = 2 in one pass; nothing deleted";
    assert!(stderr(&out).contains(msg), "{}", stderr(&out));
    // In sync the rest of the pass still happens; the refusal fails it.
    let out = at(&w, NOW, &["sync", "--target", "t", "--json"]);
    assert_exit(&out, 1);
    let r = report(&out);
    assert_eq!(r["packagelist"], true);
    assert!(r["failed"].to_string().contains(msg), "{r}");
    for pv in ["b/1", "c/1", "d/1"] {
        assert!(on_target(&w, pv), "{pv} deleted although refused");
    }
    let out = at(&w, NOW, &["age", "--target", "t", "--force", "--json"]);
    assert_exit(&out, 0);
    assert_eq!(pvs(&report(&out)["deleted"]), ["b/1", "c/1", "d/1"]);
    assert!(on_target(&w, "y/1") && on_target(&w, "a/1"));
}

#[test]
fn dry_run_lists_exactly_what_would_go_and_changes_nothing() {
    let w = world("method = \"immediate\"");
    shrink(&w);
    let before = snapshot(&w.target_dir("t"));
    let out = at(&w, NOW, &["--dry-run", "age", "--target", "t"]);
    assert_exit(&out, 0);
    assert_eq!(
        would_delete(&out),
        [
            "t: would delete b/1",
            "t: would delete c/1",
            "t: would delete d/1"
        ]
    );
    assert_eq!(snapshot(&w.target_dir("t")), before);

    // master: the marks it would set are shown, not stored.
    w.local_target(
        "t",
        "releases = [\"P/R1\"]\npackages = [\"p/1\", \"j/cur\"]\n[aging]\nmethod = \"master\"\n",
    );
    let out = at(&w, NOW, &["--dry-run", "sync", "--target", "t"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("t: would mark b/1 for deletion after 14d"),
        "{}",
        stdout(&out)
    );
    assert!(would_delete(&out).is_empty(), "{}", stdout(&out));
    assert!(marks(&w).is_empty());
    assert_eq!(snapshot(&w.target_dir("t")), before);
}

/// `blat age --local` as cron on a target runs it: no configuration at all.
fn local(w: &World, now: i64, extra: &[&str]) -> Output {
    let target = w.target_dir("t");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_blat"));
    cmd.args([
        "-c",
        "/nonexistent/blat-config",
        "age",
        "--local",
        "--archive",
    ])
    .arg(&target)
    .args(extra);
    cmd.env_remove("BLAT_CONFIG")
        .env("BLAT_NOW", now.to_string());
    cmd.output().unwrap()
}

#[test]
fn target_method_leaves_aging_to_age_local_on_the_target() {
    let w = world("method = \"target\"");
    shrink(&w);
    let out = at(&w, NOW, &["sync", "--target", "t"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("3 excess left alone"),
        "{}",
        stdout(&out)
    );
    let out = at(&w, NOW, &["age", "--target", "t", "--json"]);
    assert_exit(&out, 0);
    assert!(report(&out)["skipped"]
        .as_str()
        .unwrap()
        .contains("blat age --local"));

    let marks_file = w.target_dir("t").join(".dpkg_archive/blat-age-marks.txt");
    let out = local(&w, NOW, &["--after", "14d", "--json"]);
    assert_exit(&out, 0);
    let target = w.target_dir("t");
    assert_eq!(json(&out)["targets"][0]["target"], target.to_str().unwrap());
    let r = report(&out);
    assert_eq!(pvs(&r["marked"]), ["b/1", "c/1", "d/1"], "{r}");
    let text = fs::read_to_string(&marks_file).unwrap();
    assert!(
        text.contains(&format!("b 1 {NOW}\n")) && text.contains(&format!("d 1 {NOW}\n")),
        "{text}"
    );

    let out = local(&w, NOW + 14 * DAY + 1, &["--after", "14d", "--json"]);
    assert_exit(&out, 0);
    let r = report(&out);
    assert_eq!(pvs(&r["deleted"]), ["b/1", "c/1", "d/1"], "{r}");
    assert!(r["bytes_freed"].as_u64().unwrap() > 0);
    // y/1 was young at the first pass: only marked now.
    assert_eq!(pvs(&r["marked"]), ["y/1"], "{r}");
    for kept in ["a/1", "y/1", "p/1", "j/1"] {
        assert!(
            on_target(&w, kept),
            "{kept} must stay (in the packagelist, just marked, or aliased)"
        );
    }
    assert!(fs::read_link(w.target_dir("t").join("j/cur")).is_ok());
    assert_no_leftovers(&w.target_dir("t"));
    assert!(
        !fs::read_to_string(&marks_file).unwrap().contains("b 1"),
        "deleted ones are unmarked"
    );
}

#[test]
fn age_local_guards() {
    let w = world("method = \"target\"");
    shrink(&w);
    assert_exit(&at(&w, NOW, &["plist", "--target", "t"]), 0);
    let plist = w.target_dir("t").join(".dpkg_archive/packagelist.txt");
    let good = fs::read_to_string(&plist).unwrap();
    let late = NOW + 100 * DAY;

    // Missing or empty packagelist: nothing is aged.
    fs::remove_file(&plist).unwrap();
    let out = local(&w, late, &["--after", "0"]);
    assert_exit(&out, 0);
    assert!(
        stderr(&out).contains("no .dpkg_archive/packagelist.txt"),
        "{}",
        stderr(&out)
    );
    fs::write(&plist, "# blat packagelist written x\n# releases: P/R1\n").unwrap();
    for _ in 0..2 {
        let out = local(&w, late, &["--after", "0"]);
        assert_exit(&out, 0);
        assert!(
            stdout(&out).contains("aging skipped: the current set is empty"),
            "{}",
            stdout(&out)
        );
    }
    // A packagelist line that is not `package version` stops the pass.
    fs::write(&plist, format!("{good}../etc passwd\n")).unwrap();
    let out = local(&w, late, &["--after", "0"]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("packagelist.txt:") && stderr(&out).contains("nothing is aged"),
        "{}",
        stderr(&out)
    );
    for pv in ["b/1", "c/1", "d/1"] {
        assert!(on_target(&w, pv), "{pv} deleted by a guarded pass");
    }

    // Marked at `late`; due a day later with --after 1h.
    fs::write(&plist, &good).unwrap();
    assert_exit(&local(&w, late, &["--after", "1h"]), 0);
    let marks_file = w.target_dir("t").join(".dpkg_archive/blat-age-marks.txt");
    let marks_before = fs::read_to_string(&marks_file).unwrap();
    let out = local(&w, late + DAY, &["--after", "1h", "--max-delete", "2"]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("more than max_delete = 2"),
        "{}",
        stderr(&out)
    );
    let before = snapshot(&w.target_dir("t").join("b"));
    let out = local(&w, late + DAY, &["--after", "1h", "--dry-run"]);
    assert_exit(&out, 0);
    let target = w.target_dir("t").display().to_string();
    // y/1 is long past its grace by now.
    assert_eq!(
        would_delete(&out),
        ["b/1", "c/1", "d/1", "y/1"].map(|pv| format!("{target}: would delete {pv}"))
    );
    assert_eq!(snapshot(&w.target_dir("t").join("b")), before);
    assert_eq!(fs::read_to_string(&marks_file).unwrap(), marks_before);
    let out = local(
        &w,
        late + DAY,
        &["--after", "1h", "--max-delete", "2", "--force"],
    );
    assert_exit(&out, 0);
    for pv in ["b/1", "c/1", "d/1", "y/1"] {
        assert!(!on_target(&w, pv), "{pv} not deleted");
    }
    for pv in ["a/1", "p/1", "j/1"] {
        assert!(on_target(&w, pv), "{pv} must stay");
    }

    // A damaged marks file names itself and stops the pass.
    fs::write(&marks_file, "nonsense\n").unwrap();
    let out = local(&w, late + DAY, &[]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("blat-age-marks.txt:1: expected"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn age_local_needs_its_archive() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_blat"))
        .args(["-c", "/nonexistent", "age", "--local"])
        .output()
        .unwrap();
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("--archive"), "{}", stderr(&out));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_blat"))
        .args([
            "-c",
            "/nonexistent",
            "age",
            "--local",
            "--archive",
            "/nonexistent/archive",
        ])
        .output()
        .unwrap();
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("cannot age /nonexistent/archive: no such directory"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn age_local_takes_its_lock() {
    let w = world("method = \"target\"");
    shrink(&w);
    let dpkg = w.target_dir("t").join(".dpkg_archive");
    let _held = blat::lock::TargetLock::acquire(&dpkg, "age").unwrap();
    let out = local(&w, NOW + 100 * DAY, &["--after", "0"]);
    assert_exit(&out, 4);
    let busy = format!("{} (blat age) is busy", w.target_dir("t").display());
    assert!(stderr(&out).contains(&busy), "{}", stderr(&out));
    assert!(on_target(&w, "b/1"));
}

/// Needs a receiver whose `list` gives each version's arrival (the
/// descpkg's ctime on the target) as a fifth field of its `V` lines.
#[test]
fn a_package_fast_sent_before_the_release_lists_it_is_young_for_the_grace() {
    // Built long ago (descpkg mtime T0), released to the target today by
    // fast, before the Release Manager lists it: aging must leave it for
    // writable_grace after it arrived, whatever its descpkg mtime says.
    let w = World::new();
    w.release("a", "1", T0);
    w.release("hot", "1", T0 + 5);
    w.write_global("");
    w.write_rm(&[("P/R1", "open", 0, &["a/1"])]);
    w.local_target(
        "t",
        "releases = [\"P/R1\"]\nwritable_grace = \"1h\"\n[aging]\nmethod = \"immediate\"\n",
    );
    assert_exit(&w.blat(&["tag", "hot", "1", "--target", "t"]), 0);
    assert_exit(&w.blat(&["fast", "--target", "t"]), 0);
    assert!(on_target(&w, "hot/1"), "fast sent it");
    let now = blat::clock::now();

    let out = w.blat(&["sync", "--target", "t", "--json"]);
    assert_exit(&out, 0);
    let r = report(&out);
    assert!(pvs(&r["aging"]["deleted"]).is_empty(), "{r}");
    assert!(
        on_target(&w, "hot/1"),
        "deleted within the grace of its arrival"
    );
    let out = w.blat(&["age", "--target", "t", "--json"]);
    assert_exit(&out, 0);
    assert!(on_target(&w, "hot/1"));
    // On the target itself (age --local lists through the same receiver).
    let out = local(&w, now + 60, &["--after", "0s", "--grace", "1h", "--json"]);
    assert_exit(&out, 0);
    let r = report(&out);
    assert!(pvs(&r["marked"]).is_empty(), "{r}");
    assert_eq!(r["excess"], 0, "{r}");

    // Once the grace since its arrival is over, it is excess like any other.
    let later = (now + 3 * 3600).to_string();
    let out = w.blat_env(
        &["sync", "--target", "t", "--json"],
        &[("BLAT_NOW", later.as_str())],
    );
    assert_exit(&out, 0);
    assert_eq!(pvs(&report(&out)["aging"]["deleted"]), ["hot/1"]);
    assert!(!on_target(&w, "hot/1"));
}
