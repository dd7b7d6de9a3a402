//! `blat status`: runs, tags, marks and the last error, as text, JSON and
//! Prometheus metrics.

use std::fs;

use crate::common::{assert_exit, stdout, World};

fn world() -> World {
    let w = World::new();
    w.release("a", "1.0", 1_700_000_000);
    w.write_global("");
    w.write_rm(&[("P/R1", "open", 0, &["a/1.0"])]);
    w.local_target("site", "projects = [\"P\"]\ntag_retries = 1\n");
    w
}

#[test]
fn status_shows_runs_tags_and_errors() {
    let w = world();
    assert_exit(&w.blat(&["sync", "--all"]), 0);
    // A tag for a package that does not exist is rejected by fast (after
    // tag_retries = 1 attempt).
    let tags = w.path().join("tags/site");
    fs::create_dir_all(&tags).unwrap();
    fs::write(tags.join("nope::1.0"), "").unwrap();
    w.blat(&["fast", "--all"]);
    fs::write(tags.join("a::1.0"), "").unwrap();
    // A failing sync leaves the last error.
    w.local_target("site", "releases = [\"P/GONE\"]\n");
    assert_exit(&w.blat(&["sync", "--all"]), 1);

    let metrics = w.path().join("blat.prom");
    let out = w.blat(&["status", "--json", "--metrics", metrics.to_str().unwrap()]);
    assert_exit(&out, 0);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let site = &v[0];
    assert_eq!(site["target"], "site");
    let sync = site["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["command"] == "sync")
        .unwrap();
    assert_eq!(sync["outcome"], "failed");
    assert_eq!(site["pending_tags"], serde_json::json!(["a::1.0"]));
    assert_eq!(site["rejected_tags"][0]["tag"], "nope::1.0");
    assert!(site["last_error"]["error"]
        .as_str()
        .unwrap()
        .contains("release P/GONE does not exist"));

    let prom = fs::read_to_string(&metrics).unwrap();
    for line in [
        "# TYPE blat_last_run_timestamp_seconds gauge",
        "blat_last_run_success{target=\"site\",command=\"sync\"} 0",
        "blat_pending_tags{target=\"site\"} 1",
        "blat_rejected_tags{target=\"site\"} 1",
        "blat_marked_packages{target=\"site\"} 0",
    ] {
        assert!(
            prom.lines().any(|l| l == line),
            "{line:?} missing in:\n{prom}"
        );
    }

    let text = stdout(&w.blat(&["status"]));
    assert!(text.starts_with("site (archive)\n"), "{text}");
    assert!(text.contains("tags: 1 pending, 1 rejected"), "{text}");
    assert!(text.contains("rejected nope::1.0: "), "{text}");
    assert!(
        text.contains("last error: ") && text.contains("sync: cannot read release P/GONE"),
        "{text}"
    );
}

#[test]
fn status_of_a_fresh_setup_is_empty_not_an_error() {
    let w = world();
    let out = w.blat(&["status", "--target", "site"]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("no runs yet"), "{}", stdout(&out));
}

/// The names in a directory tree with their mode and mtime: a state
/// directory a read-only run must leave exactly as it was.
fn listing(dir: &std::path::Path) -> Vec<String> {
    crate::common::snapshot(dir)
}

#[test]
fn status_and_dry_runs_work_for_a_user_who_may_only_read_the_state_dir() {
    let w = world();
    let log = w.path().join("blat.log");
    w.write_global(&format!("log_file = \"{}\"", log.display()));
    w.release("b", "1.0", 1_700_000_100);
    w.local_target(
        "site",
        "projects = [\"P\"]\ntag_retries = 1\n[aging]\nmethod = \"master\"\n",
    );
    assert_exit(&w.blat(&["sync", "--all"]), 0);
    assert!(w.state().join("locks/site.lock").exists());
    // Root's state directory (755, files 644): others may only read it.
    // Then b/1.0 joins the release and a tag waits: the dry runs have work.
    w.write_rm(&[("P/R1", "open", 0, &["b/1.0"])]);
    assert_exit(&w.blat(&["tag", "b", "1.0"]), 0);
    let state_before = listing(&w.state());
    let log_before = fs::read_to_string(&log).unwrap();
    let target_before = crate::common::snapshot(&w.target_dir("site"));

    let out = w.blat_unprivileged(&["status"], &[]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(text.starts_with("site (archive)\n"), "{text}");
    assert!(text.contains("  sync "), "{text}");
    assert!(text.contains("tags: 1 pending"), "{text}");
    let out = w.blat_unprivileged(&["status", "--json"], &[]);
    assert_exit(&out, 0);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["runs"][0]["outcome"], "done", "{v}");

    for (args, plan) in [
        (&["sync", "--all", "--dry-run"][..], "would send b/1.0"),
        (&["fast", "--all", "--dry-run"][..], "would send b/1.0"),
        (
            &["plist", "--all", "--dry-run"][..],
            "would write .dpkg_archive/packagelist.txt",
        ),
        (&["age", "--all", "--dry-run"][..], "would mark a/1.0"),
    ] {
        // Two hours on, a/1.0 (sent just now) is no longer young on arrival.
        let later = (blat::clock::now() + 7200).to_string();
        let out = w.blat_unprivileged(args, &[("BLAT_NOW", later.as_str())]);
        assert_exit(&out, 0);
        assert!(
            stdout(&out).contains(plan),
            "{args:?}: {}\n{}",
            stdout(&out),
            crate::common::stderr(&out)
        );
        if crate::common::is_root() {
            assert!(
                crate::common::stderr(&out).contains("cannot open log file"),
                "{args:?}: {}",
                crate::common::stderr(&out)
            );
        }
    }
    assert_eq!(listing(&w.state()), state_before, "state dir changed");
    assert_eq!(fs::read_to_string(&log).unwrap(), log_before);
    assert_eq!(
        crate::common::snapshot(&w.target_dir("site")),
        target_before
    );

    // A real run holding the target lock still stops a dry run (exit 4).
    let held = blat::lock::TargetLock::acquire(&w.state(), "site").unwrap();
    let out = w.blat_unprivileged(&["sync", "--all", "--dry-run"], &[]);
    assert_exit(&out, 4);
    assert!(
        crate::common::stderr(&out).contains("site: sync locked: target site is busy"),
        "{}",
        crate::common::stderr(&out)
    );
    drop(held);
    assert_eq!(listing(&w.state()), state_before, "state dir changed");
}

#[test]
fn status_and_dry_runs_without_any_state_create_nothing() {
    let w = world();
    // The state directory does not exist, and (run unprivileged by root)
    // could not be created either.
    assert!(!w.state().exists());
    let out = w.blat_unprivileged(&["status"], &[]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!(
            "no runs recorded: no state file {}\n",
            w.state().join("blat.db").display()
        )),
        "{text}"
    );
    assert!(text.contains("no runs yet"), "{text}");
    let out = w.blat_unprivileged(&["sync", "--all", "--dry-run"], &[]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("would send a/1.0"),
        "{}",
        stdout(&out)
    );
    let out = w.blat_unprivileged(&["fast", "--all", "--dry-run"], &[]);
    assert_exit(&out, 0);
    assert!(!w.state().exists(), "nothing created");
    assert!(!w.target_dir("site").exists(), "nothing created");
    // Run by the owner, the same: a dry run and status create nothing.
    assert_exit(&w.blat(&["sync", "--all", "--dry-run"]), 0);
    assert_exit(&w.blat(&["status"]), 0);
    assert!(!w.state().exists(), "nothing created");
}
