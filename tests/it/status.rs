//! `blat status`: runs, tags, marks and the last error, as text, JSON and
//! Prometheus metrics.

use std::fs;

use crate::common::{self, assert_exit, stdout, World};

fn world() -> World {
    let w = World::new();
    w.release("a", "1.0", 1_700_000_000);
    w.write_global("");
    w.write_rm(&[("P/R1", "open", 0, &["a/1.0"])]);
    w.local_target("site", "projects = [\"P\"]\ntag_retries = 1\n");
    w
}

/// The last run of `command` in a target's `status --json` entry.
#[track_caller]
fn run_of<'a>(site: &'a serde_json::Value, command: &str) -> &'a serde_json::Value {
    site["runs"]
        .as_array()
        .unwrap_or_else(|| panic!("no runs: {site}"))
        .iter()
        .find(|r| r["command"] == command)
        .unwrap_or_else(|| panic!("no {command} run: {site}"))
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
    let v = common::json(&out);
    let site = &v[0];
    assert_eq!(site["target"], "site");
    let sync = run_of(site, "sync");
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
    let mut lines = text.lines();
    assert!(
        lines.next().unwrap().starts_with("TARGET  "),
        "a header, then one line per target:\n{text}"
    );
    let line = lines.next().unwrap();
    assert!(line.starts_with("site (archive)  "), "{text}");
    assert!(
        line.contains(" ago)  yes: 1 tag pending (oldest ")
            && line.contains("sync: cannot read release P/GONE"),
        "{text}"
    );
    assert_eq!(lines.next(), Some(""), "{text}");
    assert_eq!(lines.next(), Some("site (archive)"), "{text}");
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
    assert!(text.starts_with("TARGET  "), "{text}");
    assert!(
        text.lines().nth(1).unwrap().starts_with("site (archive)  "),
        "{text}"
    );
    assert!(
        text.contains(" ago)  yes: 1 tag pending (oldest "),
        "{text}"
    );
    assert!(text.contains("\nsite (archive)\n  sync "), "{text}");
    assert!(text.contains("  sync "), "{text}");
    assert!(text.contains("tags: 1 pending"), "{text}");
    let out = w.blat_unprivileged(&["status", "--json"], &[]);
    assert_exit(&out, 0);
    let v = common::json(&out);
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
            "no runs recorded: no state file in {}\n",
            w.state().join("targets").display()
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

/// The time the scenario's status looks, and when its runs happened.
pub const NOW: i64 = 1_800_000_000;

/// Two targets with something to say, status looking at NOW:
/// - `site` (master aging, sync_interval 20m): synced at NOW-2h and at
///   NOW-1h, when the release dropped b/1 and c/1 (marked) and listed d/1,
///   still being built (not sent: behind by one); a fast at NOW-30m
///   rejected a tag for a package that does not exist (a failed run), and
///   a tag dropped at NOW-10m waits.
/// - `aged` (immediate aging, max_delete = 0): the same syncs; the second
///   refused to delete b/1 and c/1 (a failed run).
pub fn busy_world() -> World {
    let w = World::new();
    for p in ["a", "b", "c"] {
        w.release(p, "1", 1_700_000_000);
    }
    w.write_global("");
    w.write_rm(&[("P/R1", "open", 0, &["a/1", "b/1", "c/1"])]);
    w.local_target(
        "site",
        "releases = [\"P/R1\"]\ntag_retries = 1\nsync_interval = \"20m\"\n[aging]\nmethod = \"master\"\nafter = \"1d\"\n",
    );
    w.local_target(
        "aged",
        "releases = [\"P/R1\"]\n[aging]\nmethod = \"immediate\"\nmax_delete = 0\n",
    );
    let at = |now: i64, args: &[&str]| w.blat_env(args, &[("BLAT_NOW", &now.to_string())]);
    assert_exit(&at(NOW - 7200, &["sync", "--all"]), 0);
    // d/1 is being built: written a minute ago, writable.
    w.build("d", "1", NOW - 3660, crate::common::DEFAULT_FILES);
    w.write_rm(&[("P/R1", "open", 0, &["a/1", "d/1"])]);
    assert_exit(&at(NOW - 3600, &["sync", "--all"]), 1);
    let tags = w.path().join("tags/site");
    fs::create_dir_all(&tags).unwrap();
    fs::write(tags.join("nope::1"), "").unwrap();
    assert_exit(&at(NOW - 1800, &["fast", "--target", "site"]), 1);
    fs::write(tags.join("a::1"), "").unwrap();
    crate::common::set_mtime(&tags.join("a::1"), NOW - 600);
    w
}

#[test]
fn status_says_when_each_target_last_synced_and_who_is_behind() {
    let w = busy_world();
    let now = NOW.to_string();
    // Any user who may read the state can ask.
    let out = w.blat_unprivileged(&["status", "--json"], &[("BLAT_NOW", &now)]);
    assert_exit(&out, 0);
    let v = common::json(&out);
    let target = |name: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|t| t["target"] == name)
            .unwrap()
            .clone()
    };
    let site = target("site");
    assert_eq!(site["sync_command"], "sync");
    assert_eq!(site["last_sync"], NOW - 3600, "{site}");
    assert_eq!(site["last_sync_age_seconds"], 3600);
    assert_eq!(site["sync_interval_seconds"], 1200);
    assert_eq!(site["overdue"], true, "an hour > twice 20m");
    let behind = &site["behind"];
    assert_eq!(behind["is_behind"], true);
    assert_eq!(behind["packages"], 1, "d/1, still being built");
    assert_eq!(behind["measured"], NOW - 3600);
    assert_eq!(behind["pending_tags"], 1);
    assert_eq!(behind["oldest_pending_tag"]["tag"], "a::1");
    assert_eq!(behind["oldest_pending_tag"]["age_seconds"], 600);
    assert!(site["free_space"]["bytes"].as_u64().unwrap() > 0, "{site}");
    assert_eq!(site["free_space"]["seen"], NOW - 3600);
    assert_eq!(site["next_deletion"], NOW - 3600 + 86400);
    assert_eq!(site["marked"].as_array().unwrap().len(), 2);
    assert_eq!(site["aging_refused"], serde_json::Value::Null);
    assert_eq!(site["last_error"]["command"], "fast", "{site}");
    let fast = run_of(&site, "fast");
    assert_eq!(fast["outcome"], "failed");
    assert_eq!(fast["failed"], 1, "{fast}");
    let sync = run_of(&site, "sync");
    assert_eq!(sync["behind"], 1, "{sync}");
    assert_eq!(sync["sent"], 0, "{sync}");

    let aged = target("aged");
    assert_eq!(
        aged["last_sync"],
        NOW - 7200,
        "the failed sync is no success"
    );
    assert_eq!(aged["overdue"], false, "two hours < twice 4h");
    assert_eq!(aged["behind"]["packages"], 1);
    assert_eq!(aged["aging_refused"]["packages"], 2, "{aged}");
    assert_eq!(aged["aging_refused"]["command"], "sync");
    assert_eq!(aged["last_error"]["command"], "sync", "{aged}");
    assert!(aged["last_error"]["error"].is_null(), "{aged}");
    assert!(
        aged["last_error"]["problem"]
            .as_str()
            .unwrap()
            .starts_with("aging: refused to delete 2 package-versions: more than max_delete = 0"),
        "{aged}"
    );

    // The same in one line per target, then the details.
    let out = w.blat_env(&["status"], &[("BLAT_NOW", &now)]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    let t1 = blat::clock::rfc3339(NOW - 7200);
    let t2 = blat::clock::rfc3339(NOW - 3600);
    assert_eq!(
        lines[..3],
        [
            "TARGET          LAST SUCCESSFUL SYNC                    BEHIND                                              LAST ERROR".to_string(),
            format!("aged (archive)  {t1} (2h ago)           yes: 1 package-version                              1h ago, sync: aging: refused to delete 2 package-versions: more than max_delete = 0 in one pass; nothing deleted (check the releases, or run with --force)"),
            format!("site (archive)  {t2} (1h ago), overdue  yes: 1 package-version, 1 tag pending (oldest 10m)  30m ago, fast: nope::1: nope/1 does not exist in the source archive (gave up after 1 attempts)"),
        ],
        "{text}"
    );
    for line in [
        format!("  behind at the last sync ({t2}): 1 package-version of the current set missing or differing"),
        format!("    oldest pending a::1 since {} (10m)", blat::clock::rfc3339(NOW - 600)),
        format!("  marked for deletion: 2, next deletion due {}", blat::clock::rfc3339(NOW - 3600 + 86400)),
        format!("  aging refused 2 deletions at {t2} (sync): more than max_delete; check the releases, or run with --force"),
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} missing:\n{text}");
    }
    assert!(text.contains("  free space: "), "{text}");
    // -q: the scan lines only.
    let out = w.blat_env(&["-q", "status"], &[("BLAT_NOW", &now)]);
    assert_eq!(stdout(&out).lines().count(), 3, "{}", stdout(&out));
}
