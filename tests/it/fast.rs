//! `blat tag` and `blat fast` end to end: the built binary, a temporary
//! archive and local targets (a tag directory per target under `tags/`).

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::{self, assert_exit, json, stderr, stdout, World};

const T0: i64 = 1_700_000_000;

/// One released package, one still being written, an aliased package, and
/// one local target `site`.
fn world() -> World {
    let w = World::new();
    w.release("p", "1.0", T0);
    w.release("j", "1", T0 + 10);
    w.release("j", "2", T0 + 20);
    w.alias("j", "cur", "2");
    w.write_global("");
    w.write_rm(&[("P/R1", "open", 0, &["p/1.0"])]);
    w.local_target(
        "site",
        "projects = [\"P\"]\ntag_retries = 3\nwritable_grace = \"1h\"\n",
    );
    w
}

fn tags(w: &World, target: &str) -> PathBuf {
    w.path().join("tags").join(target)
}

/// The tags waiting in a target's tag directory (hidden entries aside).
fn waiting(w: &World, target: &str) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(tags(w, target))
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    out.retain(|n| !n.starts_with('.'));
    out.sort();
    out
}

/// The report of the target named `name` in a `--json` answer.
fn report<'a>(json: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    json["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == name)
        .unwrap_or_else(|| panic!("{json}"))
}

/// The `report` part of target `name`'s frame in a `--json` answer.
fn target_report(out: &std::process::Output, name: &str) -> serde_json::Value {
    report(&json(out), name)["report"].clone()
}

fn names(list: &serde_json::Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            v if v.get("package").is_some() => common::pv_of(v),
            v => v["tag"].as_str().unwrap().to_string(),
        })
        .collect()
}

fn same_tree(w: &World, target: &str, pv: &str) {
    assert_eq!(
        common::snapshot(&w.archive().join(pv)),
        common::snapshot(&w.target_dir(target).join(pv)),
        "{pv}"
    );
}

/// Waits until a `fast` run holds the watcher lock of `target` (a loaded
/// machine may take a while to start it). Trying the lock ourselves is
/// harmless: a watcher that finds it taken tries again 250 ms later.
fn wait_until_watching(w: &World, target: &str) {
    let path = w.state().join("locks").join(format!("{target}.watch"));
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if let Ok(file) = fs::File::open(&path) {
            if matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock)) {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no fast run holds {} after 30 s", path.display());
}

/// Waits until `path` exists; returns how long that took.
fn wait_for(path: &Path, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if path.exists() {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn tag_then_fast_delivers_the_package_and_removes_the_tag() {
    let w = world();
    let out = w.blat(&["tag", "p", "1.0"]);
    assert_exit(&out, 0);
    assert_eq!(waiting(&w, "site"), ["p::1.0"]);
    assert_eq!(
        fs::metadata(tags(&w, "site").join("p::1.0")).unwrap().len(),
        0,
        "a tag is an empty file"
    );

    let out = w.blat(&["fast", "--all", "--json"]);
    assert_exit(&out, 0);
    let r = target_report(&out, "site");
    assert_eq!(names(&r["sent"]), ["p/1.0"]);
    same_tree(&w, "site", "p/1.0");
    assert!(waiting(&w, "site").is_empty(), "tag consumed");
    common::assert_no_leftovers(&w.target_dir("site"));
    assert!(
        !w.target_dir("site").join("j").exists(),
        "only the tagged package"
    );
    assert!(
        stdout(&out).contains("\"polls\": 1"),
        "one pass without --watch"
    );

    // Tagged again while the target has it: consumed, nothing sent.
    assert_exit(&w.blat(&["tag", "p", "1.0", "--target", "site"]), 0);
    let out = w.blat(&["fast", "--target", "site", "--json"]);
    assert_exit(&out, 0);
    let r = target_report(&out, "site");
    assert!(names(&r["sent"]).is_empty(), "{r}");
    assert_eq!(names(&r["up_to_date"]), ["p::1.0"]);
    assert!(waiting(&w, "site").is_empty());

    let out = w.blat(&["fast", "--all"]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("site: fast done: 0 sent (0 B), 0 up to date, 0 kept (writable), 0 rejected, 0 failed in "), "{}", stdout(&out));
}

#[test]
fn a_changed_descpkg_mtime_is_sent_again() {
    let w = world();
    assert_exit(&w.blat(&["tag", "p", "1.0"]), 0);
    assert_exit(&w.blat(&["fast", "--all"]), 0);
    // The target's copy differs from the source in its change key.
    let descpkg = w.target_dir("site").join("p/1.0/descpkg");
    common::make_writable(&w.target_dir("site").join("p/1.0"));
    common::set_mtime(&descpkg, T0 - 100);
    assert_exit(&w.blat(&["tag", "p", "1.0"]), 0);
    let out = w.blat(&["fast", "--all", "--json"]);
    assert_exit(&out, 0);
    assert_eq!(names(&target_report(&out, "site")["sent"]), ["p/1.0"]);
    same_tree(&w, "site", "p/1.0");
}

#[test]
fn tag_writes_into_every_archive_target_and_refuses_invalid_names() {
    let w = world();
    w.local_target("other", "");
    w.write_target("bucket", "kind = \"s3\"\nbucket = \"b\"\n");
    assert_exit(&w.blat(&["tag", "j", "cur"]), 0);
    assert_eq!(waiting(&w, "site"), ["j::cur"]);
    assert_eq!(waiting(&w, "other"), ["j::cur"]);
    assert!(!tags(&w, "bucket").exists(), "S3 targets take no tags");
    let leftover: Vec<_> = fs::read_dir(tags(&w, "site"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftover.len(), 1, "no temporary file left: {leftover:?}");

    for (package, version) in [
        ("../../etc", "x"),
        ("p", "a b"),
        ("p", "1::2"),
        (".hidden", "1"),
        ("p", ""),
    ] {
        let out = w.blat(&["tag", package, version]);
        assert_exit(&out, 2);
        assert!(
            stderr(&out).contains("cannot tag: invalid name"),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(
        waiting(&w, "site"),
        ["j::cur"],
        "nothing written for refused names"
    );
    assert!(!w.path().join("etc").exists());

    let out = w.blat(&["tag", "p", "1.0", "--target", "bucket"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("target 'bucket' is not an archive target"),
        "{}",
        stderr(&out)
    );

    // A tag for a package not (yet) in the archive is written, with a warning.
    let out = w.blat(&["tag", "later", "1"]);
    assert_exit(&out, 0);
    assert!(
        stderr(&out).contains("later/1 is not in the source archive (yet)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_tag_names_are_rejected_with_their_reason_and_never_used() {
    let w = world();
    let dir = tags(&w, "site");
    fs::create_dir_all(&dir).unwrap();
    let bad: Vec<&OsStr> = vec![
        OsStr::new("a::b::c"),
        OsStr::new("noseparator"),
        OsStr::new("p::1.0;rm -rf ~"),
        OsStr::new("p::$(touch pwned)"),
        OsStr::from_bytes(b"p::\xff"),
    ];
    for name in &bad {
        fs::write(dir.join(name), "").unwrap();
    }
    fs::create_dir(dir.join("p::dir")).unwrap();
    // Hidden names are never tags (writers' temporaries): left alone, unused.
    fs::write(dir.join("..::x"), "").unwrap();
    fs::write(dir.join(".p::1.0.tmp"), "").unwrap();
    fs::write(dir.join("p::1.0"), "").unwrap();

    let out = w.blat(&["fast", "--all", "--json"]);
    assert_exit(&out, 3);
    let r = target_report(&out, "site");
    assert_eq!(names(&r["sent"]), ["p/1.0"], "the good tag still goes");
    assert_eq!(
        r["rejected"].as_array().unwrap().len(),
        bad.len() + 1,
        "{r}"
    );
    assert!(
        waiting(&w, "site").is_empty(),
        "every tag consumed or moved aside"
    );
    for name in bad.iter().chain([&OsStr::new("p::dir")]) {
        assert!(
            fs::symlink_metadata(dir.join(".rejected").join(name)).is_ok(),
            "{name:?} in .rejected/"
        );
        let mut reason_file = std::ffi::OsString::from(".");
        reason_file.push(name);
        reason_file.push(".reason");
        let reason = fs::read_to_string(dir.join(".rejected").join(reason_file)).unwrap();
        assert!(
            reason.contains("invalid") || reason.contains("not a tag file"),
            "{name:?}: {reason}"
        );
    }
    let reason = fs::read_to_string(dir.join(".rejected/.a::b::c.reason")).unwrap();
    assert!(reason.contains("invalid name 'b::c'"), "{reason}");
    let err = stderr(&out);
    assert!(
        err.contains("site: error: tag a::b::c rejected: invalid tag:"),
        "{err}"
    );
    // Nothing but the good package reached the target; nothing ran.
    let entries: Vec<_> = fs::read_dir(w.target_dir("site"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["p"], "{entries:?}");
    assert!(!w.path().join("pwned").exists() && !Path::new("pwned").exists());

    assert!(dir.join("..::x").exists() && dir.join(".p::1.0.tmp").exists());
    assert!(!dir.join(".rejected/..::x").exists());
    // Rejected tags stay rejected: the next run has nothing to do.
    assert_exit(&w.blat(&["fast", "--all"]), 0);
}

#[test]
fn a_writable_package_waits_for_its_grace_then_goes() {
    let w = world();
    w.build("w", "0.1", T0, common::DEFAULT_FILES);
    assert_exit(&w.blat(&["tag", "w", "0.1"]), 0);

    let early = (T0 + 600).to_string();
    let out = w.blat_env(&["fast", "--all", "--json"], &[("BLAT_NOW", &early)]);
    assert_exit(&out, 0);
    let r = target_report(&out, "site");
    assert_eq!(names(&r["kept"]), ["w::0.1"]);
    assert!(
        r["kept"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("still writable"),
        "{r}"
    );
    assert_eq!(waiting(&w, "site"), ["w::0.1"], "tag kept");
    assert!(
        !w.target_dir("site").join("w").exists(),
        "not sent while writable"
    );

    // Kept tags are not failures: no attempt is counted, however many runs.
    for _ in 0..4 {
        assert_exit(&w.blat_env(&["fast", "--all"], &[("BLAT_NOW", &early)]), 0);
    }
    assert_eq!(waiting(&w, "site"), ["w::0.1"]);

    let late = (T0 + 3601).to_string();
    let out = w.blat_env(&["fast", "--all", "--json"], &[("BLAT_NOW", &late)]);
    assert_exit(&out, 0);
    assert_eq!(names(&target_report(&out, "site")["sent"]), ["w/0.1"]);
    same_tree(&w, "site", "w/0.1");
    assert!(waiting(&w, "site").is_empty());
}

#[test]
fn a_tag_for_a_missing_package_is_rejected_after_the_retries() {
    let w = world();
    assert_exit(&w.blat(&["tag", "nope", "1"]), 0);
    for attempt in 1..=2 {
        let out = w.blat(&["fast", "--all", "--json"]);
        assert_exit(&out, 1);
        let r = target_report(&out, "site");
        assert_eq!(names(&r["failed"]), ["nope::1"], "{r}");
        assert!(
            stderr(&out).contains(&format!(
                "tag nope::1: nope/1 does not exist in the source archive (attempt {attempt} of 3)"
            )),
            "{}",
            stderr(&out)
        );
        assert_eq!(waiting(&w, "site"), ["nope::1"], "kept for a retry");
    }
    let out = w.blat(&["fast", "--all", "--json"]);
    assert_exit(&out, 1);
    let r = target_report(&out, "site");
    assert_eq!(names(&r["rejected"]), ["nope::1"], "{r}");
    assert!(names(&r["failed"]).is_empty());
    assert!(waiting(&w, "site").is_empty());
    let reason = fs::read_to_string(tags(&w, "site").join(".rejected/.nope::1.reason")).unwrap();
    assert!(
        reason.contains("does not exist in the source archive (gave up after 3 attempts)"),
        "{reason}"
    );

    // A tag that arrives in time is not held against its earlier failures.
    assert_exit(&w.blat(&["tag", "late", "1"]), 0);
    assert_exit(&w.blat(&["fast", "--all"]), 1);
    w.release("late", "1", T0);
    assert_exit(&w.blat(&["fast", "--all"]), 0);
    assert!(w.target_dir("site").join("late/1/descpkg").exists());
    assert_exit(&w.blat(&["tag", "late", "1"]), 0);
    common::make_writable(&w.archive().join("late"));
    fs::remove_dir_all(w.archive().join("late")).unwrap();
    let out = w.blat(&["fast", "--all"]);
    assert!(
        stderr(&out).contains("(attempt 1 of 3)"),
        "attempts start afresh: {}",
        stderr(&out)
    );
}

#[test]
fn an_alias_tag_brings_its_version_and_the_link() {
    let w = world();
    assert_exit(&w.blat(&["tag", "j", "cur"]), 0);
    let out = w.blat(&["fast", "--all", "--json"]);
    assert_exit(&out, 0);
    let r = target_report(&out, "site");
    assert_eq!(names(&r["sent"]), ["j/2"]);
    assert_eq!(r["linked"][0]["alias"], "cur");
    let t = w.target_dir("site");
    same_tree(&w, "site", "j/2");
    assert_eq!(fs::read_link(t.join("j/cur")).unwrap().to_str(), Some("2"));
    assert!(!t.join("j/1").exists(), "only the alias's version");
    assert!(waiting(&w, "site").is_empty());

    // The alias moves back to 1 in the source: tagging it again repoints it.
    w.alias("j", "cur", "1");
    assert_exit(&w.blat(&["tag", "j", "cur"]), 0);
    let out = w.blat(&["fast", "--all", "--json"]);
    assert_exit(&out, 0);
    assert_eq!(names(&target_report(&out, "site")["sent"]), ["j/1"]);
    assert_eq!(fs::read_link(t.join("j/cur")).unwrap().to_str(), Some("1"));
    assert!(
        t.join("j/2/descpkg").exists(),
        "the old version is left alone"
    );

    // Nothing changed: consumed as up to date, nothing sent or linked.
    assert_exit(&w.blat(&["tag", "j", "cur"]), 0);
    let out = w.blat(&["fast", "--all", "--json"]);
    let r = target_report(&out, "site");
    assert_eq!(names(&r["up_to_date"]), ["j::cur"], "{r}");
    assert!(r["linked"].as_array().unwrap().is_empty());
}

#[test]
fn one_target_down_does_not_stop_the_others() {
    let w = world();
    w.local_target("good", "");
    // A local target whose archive path can never exist: under a plain file.
    fs::write(w.path().join("plainfile"), "").unwrap();
    w.write_target(
        "down",
        &format!(
            "kind = \"archive\"\ntransport = \"local\"\npath = \"{}\"\ntag_retries = 5\n",
            w.path().join("plainfile/archive").display()
        ),
    );
    assert_exit(&w.blat(&["tag", "p", "1.0"]), 0);
    let out = w.blat(&["fast", "--all", "--json"]);
    assert_exit(&out, 1);
    let j = json(&out);
    assert_eq!(report(&j, "down")["outcome"], "failed");
    assert_eq!(names(&report(&j, "down")["report"]["failed"]), ["p::1.0"]);
    assert_eq!(waiting(&w, "down"), ["p::1.0"], "kept for a retry");
    for t in ["good", "site"] {
        assert_eq!(report(&j, t)["outcome"], "done", "{j}");
        same_tree(&w, t, "p/1.0");
        assert!(waiting(&w, t).is_empty());
    }
    // Under --json the summaries go to stderr with the log lines.
    let err = stderr(&out);
    assert!(err.contains("good: fast done: 1 sent"), "{err}");
    assert!(err.contains("down: error: tag p::1.0: "), "{err}");
    assert!(err.contains("down: fast failed: 0 sent (0 B), 0 up to date, 0 kept (writable), 0 rejected, 1 failed"), "{err}");
}

#[test]
fn watch_picks_up_a_tag_written_while_it_runs() {
    let w = world();
    let started = Instant::now();
    let mut child = w.spawn(&["fast", "--all", "--watch", "15s"]);
    wait_until_watching(&w, "site");
    assert_exit(&w.blat(&["tag", "p", "1.0"]), 0);
    // No latency figure here (that is bench/fast.sh's job): the point is
    // that the running watcher, not a later run, sent it.
    let arrived = wait_for(
        &w.target_dir("site").join("p/1.0/descpkg"),
        Duration::from_secs(14),
    );
    arrived.expect("the watcher sent the package while it ran");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the watcher was still running"
    );
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 0);
    assert!(
        started.elapsed() >= Duration::from_secs(15),
        "watched for the whole duration"
    );
    assert!(waiting(&w, "site").is_empty());
    same_tree(&w, "site", "p/1.0");
    assert!(
        stdout(&out).contains("site: fast done: 1 sent"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn overlapping_runs_are_refused_but_sync_is_not_shut_out() {
    let w = world();
    let child = w.spawn(&["fast", "--target", "site", "--watch", "8s"]);
    wait_until_watching(&w, "site");
    let out = w.blat(&["fast", "--target", "site"]);
    assert_exit(&out, 4);
    assert!(
        stderr(&out).contains("site: fast locked: target site is busy"),
        "{}",
        stderr(&out)
    );
    // The watcher holds the target lock only around transfers.
    assert_exit(&w.blat(&["sync", "--target", "site"]), 0);
    assert!(w.target_dir("site").join("p/1.0/descpkg").exists());
    assert_exit(&child.wait_with_output().unwrap(), 0);
}

#[test]
fn a_late_watcher_takes_over_when_the_previous_one_ends() {
    let w = world();
    let first = w.spawn(&["fast", "--target", "site", "--watch", "2s"]);
    wait_until_watching(&w, "site");
    // Started while the first watches: it waits for the lock, not exit 4.
    let second = w.spawn(&["fast", "--target", "site", "--watch", "12s"]);
    let first = first.wait_with_output().unwrap();
    assert_exit(&first, 0);
    std::thread::sleep(Duration::from_millis(700));
    assert_exit(&w.blat(&["tag", "p", "1.0"]), 0);
    let taken = wait_for(
        &w.target_dir("site").join("p/1.0/descpkg"),
        Duration::from_secs(5),
    );
    let second = second.wait_with_output().unwrap();
    assert!(
        taken.is_some(),
        "second watcher took over: {}{}",
        stdout(&second),
        stderr(&second)
    );
    assert_exit(&second, 0);
    assert!(
        stdout(&second).contains("site: fast done: 1 sent"),
        "{}",
        stdout(&second)
    );
}

#[test]
fn dry_run_shows_the_plan_and_changes_nothing() {
    let w = world();
    assert_exit(&w.blat(&["tag", "p", "1.0"]), 0);
    fs::write(tags(&w, "site").join("a::b::c"), "").unwrap();
    let out = w.blat(&["--dry-run", "fast", "--all"]);
    assert_exit(&out, 3);
    let text = stdout(&out);
    for line in [
        "site: would send p/1.0",
        "site: would remove tag p::1.0",
        "site: would reject tag a::b::c: invalid tag",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
    assert_eq!(waiting(&w, "site"), ["a::b::c", "p::1.0"]);
    assert!(!w.target_dir("site").join("p").exists());

    let out = w.blat(&["--dry-run", "tag", "q", "1"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("site: would write tag "),
        "{}",
        stdout(&out)
    );
    assert!(!tags(&w, "site").join("q::1").exists());

    let out = w.blat(&["--dry-run", "fast", "--all", "--watch", "5s"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("--watch and --dry-run"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn fast_needs_a_target_selection_and_a_valid_watch() {
    let w = world();
    let out = w.blat(&["fast"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("--target NAME or use --all"),
        "{}",
        stderr(&out)
    );
    let out = w.blat(&["fast", "--all", "--watch", "soon"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("invalid duration 'soon'"),
        "{}",
        stderr(&out)
    );
}

// ------------------------------------------------------------ over SSH

mod over_ssh {
    use super::*;
    use crate::sshd::{Fault, Proxy, Sshd};

    /// The world of the local tests, with its target `site` on `sshd`.
    fn ssh_world(sshd: &Sshd, extra: &str) -> World {
        let w = world();
        sshd.write_target(&w, "site", extra);
        w
    }

    fn same_on_server(w: &World, sshd: &Sshd, pv: &str) {
        assert_eq!(
            common::snapshot(&w.archive().join(pv)),
            common::snapshot(&sshd.archive().join(pv)),
            "{pv}"
        );
    }

    #[test]
    fn tag_then_fast_delivers_over_ssh() {
        let Some(sshd) = Sshd::start() else { return };
        let w = ssh_world(&sshd, "");
        assert_exit(&w.blat(&["tag", "p", "1.0"]), 0);
        assert_exit(&w.blat(&["tag", "j", "cur"]), 0);
        let out = w.blat(&["fast", "--all", "--json"]);
        assert_exit(&out, 0);
        let r = target_report(&out, "site");
        assert_eq!(names(&r["sent"]), ["j/2", "p/1.0"]);
        same_on_server(&w, &sshd, "p/1.0");
        same_on_server(&w, &sshd, "j/2");
        assert_eq!(
            fs::read_link(sshd.archive().join("j/cur"))
                .unwrap()
                .to_str(),
            Some("2")
        );
        assert!(!sshd.archive().join("j/1").exists());
        assert!(waiting(&w, "site").is_empty());

        // Writable source: kept, then sent once past its grace.
        w.build("w", "0.1", T0, common::DEFAULT_FILES);
        assert_exit(&w.blat(&["tag", "w", "0.1"]), 0);
        let early = (T0 + 60).to_string();
        assert_exit(&w.blat_env(&["fast", "--all"], &[("BLAT_NOW", &early)]), 0);
        assert_eq!(waiting(&w, "site"), ["w::0.1"]);
        assert!(!sshd.archive().join("w").exists());
        let late = (T0 + 7200).to_string();
        assert_exit(&w.blat_env(&["fast", "--all"], &[("BLAT_NOW", &late)]), 0);
        same_on_server(&w, &sshd, "w/0.1");
        assert!(waiting(&w, "site").is_empty());
    }

    #[test]
    fn bad_and_missing_tags_over_ssh() {
        let Some(sshd) = Sshd::start() else { return };
        let w = ssh_world(&sshd, "tag_retries = 2\n");
        fs::create_dir_all(tags(&w, "site")).unwrap();
        fs::write(tags(&w, "site").join("a::b::c"), "").unwrap();
        assert_exit(&w.blat(&["tag", "nope", "1"]), 0);
        assert_exit(&w.blat(&["fast", "--all"]), 1);
        assert_eq!(waiting(&w, "site"), ["nope::1"]);
        assert_exit(&w.blat(&["fast", "--all"]), 1);
        assert!(waiting(&w, "site").is_empty());
        for tag in ["a::b::c", "nope::1"] {
            assert!(
                tags(&w, "site").join(".rejected").join(tag).exists(),
                "{tag}"
            );
        }
        let entries: Vec<_> = fs::read_dir(sshd.archive())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            entries.is_empty(),
            "nothing reached the server: {entries:?}"
        );
    }

    #[test]
    fn watch_over_ssh_picks_up_a_tag_in_moments() {
        let Some(sshd) = Sshd::start() else { return };
        let w = ssh_world(&sshd, "");
        let mut child = w.spawn(&["fast", "--all", "--watch", "15s"]);
        wait_until_watching(&w, "site");
        assert_exit(&w.blat(&["tag", "p", "1.0"]), 0);
        let arrived = wait_for(
            &sshd.archive().join("p/1.0/descpkg"),
            Duration::from_secs(14),
        );
        arrived.expect("the watcher sent the package over SSH while it ran");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the watcher was still running"
        );
        assert_exit(&child.wait_with_output().unwrap(), 0);
        same_on_server(&w, &sshd, "p/1.0");
        assert!(waiting(&w, "site").is_empty());
    }

    /// A target that accepts connections and then says nothing must not
    /// hold up another: each target has its own thread.
    #[test]
    fn a_frozen_target_does_not_delay_another() {
        let Some(sshd) = Sshd::start() else { return };
        let w = ssh_world(&sshd, "");
        let frozen = Proxy::start(sshd.port, Fault::Freeze, 0);
        w.write_target(
            "frozen",
            &sshd.target_conf(frozen.port, "connect_timeout = \"30s\"\n"),
        );
        // A closed port fails at once; it must not disturb the others either.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        w.write_target("closed", &sshd.target_conf(closed, ""));
        assert_exit(&w.blat(&["tag", "p", "1.0"]), 0);
        let started = Instant::now();
        let mut child = w.spawn(&["fast", "--all", "--json"]);
        // An ordering, not a stopwatch: the reachable target is served while
        // the run still waits on the frozen one (connect_timeout 30 s).
        let served = wait_for(
            &sshd.archive().join("p/1.0/descpkg"),
            Duration::from_secs(25),
        );
        served.expect("the reachable target was served while the frozen one hung");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run was still waiting on the frozen target"
        );
        let out = child.wait_with_output().unwrap();
        assert!(
            started.elapsed() >= Duration::from_secs(29),
            "the frozen target was waited for: connect_timeout"
        );
        assert_exit(&out, 1);
        let j = json(&out);
        assert_eq!(report(&j, "site")["outcome"], "done", "{j}");
        assert_eq!(report(&j, "frozen")["outcome"], "failed", "{j}");
        assert_eq!(report(&j, "closed")["outcome"], "failed", "{j}");
        assert_eq!(waiting(&w, "frozen"), ["p::1.0"], "kept for a retry");
        assert_eq!(waiting(&w, "closed"), ["p::1.0"], "kept for a retry");
        assert!(waiting(&w, "site").is_empty());
    }
}

/// The schedules in `contrib/` run real blat command lines: each parses with
/// the clap definition, and each unit a timer or path unit starts exists.
#[test]
fn contrib_schedules_use_commands_blat_accepts() {
    use clap::Parser;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib");
    let mut commands = Vec::new();
    for file in ["cron/blat", "cron/blat-target"] {
        let text = fs::read_to_string(root.join(file)).unwrap();
        for line in text.lines().map(str::trim) {
            let first = line.split_whitespace().next().unwrap_or("");
            if line.is_empty() || line.starts_with('#') || first.contains('=') {
                continue;
            }
            // Five time fields and the user, then the command.
            let command: Vec<&str> = line.split_whitespace().skip(6).collect();
            commands.push((file.to_string(), command.join(" ")));
        }
    }
    let units: Vec<String> = fs::read_dir(root.join("systemd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for unit in &units {
        let text = fs::read_to_string(root.join("systemd").join(unit)).unwrap();
        for line in text.lines() {
            if let Some(command) = line.strip_prefix("ExecStart=") {
                commands.push((unit.clone(), command.to_string()));
            }
            if let Some(started) = line.strip_prefix("Unit=") {
                let started = started.replace("%i", "");
                assert!(
                    units.contains(&started),
                    "{unit} starts {started}, which contrib/systemd lacks"
                );
            }
        }
    }
    assert!(commands.len() >= 8, "{commands:?}");
    for (file, command) in &commands {
        let words: Vec<String> = command
            .split_whitespace()
            .take_while(|w| !w.starts_with('>'))
            .map(|w| {
                w.replace("%I", "site-a")
                    .replace("\"$ARCHIVE\"", "/a")
                    .replace("${ARCHIVE}", "/a")
            })
            .collect();
        assert!(words[0].ends_with("blat"), "{file}: {command}");
        if let Err(e) = blat::cli::Cli::try_parse_from(&words) {
            panic!("{file}: `{command}` is not a valid blat command line: {e}");
        }
    }
}

#[test]
fn a_watch_too_long_to_hold_is_a_usage_error_not_a_panic() {
    let w = world();
    for watch in ["9999999999999999999", "36501d", "18446744073709551615s"] {
        let out = w.blat(&["fast", "--all", "--watch", watch]);
        assert_exit(&out, 2);
        assert!(
            stderr(&out).contains(&format!(
                "invalid value '{watch}' for '--watch <DURATION>': invalid duration '{watch}': expected at most 36500d (100 years)"
            )),
            "{}",
            stderr(&out)
        );
    }
    // The same limit for age --local's durations.
    let out = w.blat(&[
        "age",
        "--local",
        "--archive",
        w.archive().to_str().unwrap(),
        "--grace",
        "9999999999999999999",
    ]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("expected at most 36500d (100 years)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_missing_source_archive_fails_fast_and_leaves_the_tags_alone() {
    let w = world();
    w.local_target("site", "projects = [\"P\"]\ntag_retries = 1\n");
    assert_exit(&w.blat(&["tag", "p", "1.0"]), 0);
    let moved = w.path().join("archive.unmounted");
    fs::rename(w.archive(), &moved).unwrap();
    let out = w.blat(&["fast", "--all"]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains(&format!(
            "site: fast failed: source archive {} does not exist (`archive` in blat.toml)",
            w.archive().display()
        )),
        "{}",
        stderr(&out)
    );
    // Not counted as an attempt (tag_retries = 1 would have rejected it).
    assert_eq!(waiting(&w, "site"), ["p::1.0"]);
    assert!(!tags(&w, "site").join(".rejected").exists());
    fs::rename(&moved, w.archive()).unwrap();
    assert_exit(&w.blat(&["fast", "--all"]), 0);
    assert!(waiting(&w, "site").is_empty());
    same_tree(&w, "site", "p/1.0");
}
