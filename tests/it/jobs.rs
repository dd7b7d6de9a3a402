//! Many targets at once (`--jobs`, `jobs`) and one state file per target:
//! a target that hangs holds up only itself, every target gets one summary
//! line, `--jobs 1` is the old one-after-another, each target's state is
//! its own file (no target's writes wait on another's), and the single
//! `blat.db` of earlier versions is split on first use.

use std::fs;
use std::time::{Duration, Instant};

use crate::common::{assert_exit, stderr, stdout, World};

const T0: i64 = 1_700_000_000;

/// Local targets `names`, each wanting the release P/R1 (a/1, b/1).
fn world(names: &[&str], global: &str) -> World {
    let w = World::new();
    w.release("a", "1", T0);
    w.release("b", "1", T0 + 10);
    w.write_global(global);
    w.write_rm(&[("P/R1", "open", 0, &["a/1", "b/1"])]);
    for name in names {
        w.local_target(name, "projects = [\"P\"]\n");
    }
    w
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
}

/// The targets of a `--json` report, in its order, with their outcome.
fn outcomes(json: &serde_json::Value) -> Vec<(String, String)> {
    json["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["target"].as_str().unwrap().to_string(),
                t["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The summary (or error) lines of `command` in `text`, from the target
/// name on (without a log line's time stamp and `error: `), in order.
fn summary_lines(text: &str, command: &str) -> Vec<String> {
    let marker = format!(": {command} ");
    text.lines()
        .filter_map(|l| {
            let at = l.find(&marker)?;
            let start = l[..at].rfind(' ').map_or(0, |i| i + 1);
            Some(l[start..].to_string())
        })
        .collect()
}

#[test]
fn every_target_is_synced_and_gets_one_line_and_its_own_state_file() {
    let names = ["s1", "s2", "s3", "s4", "s5"];
    let w = world(&names, "jobs = 3");
    let out = w.blat(&["sync", "--all"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    let mut lines = summary_lines(&text, "sync");
    assert_eq!(lines.len(), names.len(), "{text}");
    lines.sort();
    for (line, name) in lines.iter().zip(names) {
        assert!(
            line.starts_with(&format!("{name}: sync done: 2 sent")),
            "{line}"
        );
        assert!(w.target_dir(name).join("b/1/descpkg").exists());
    }
    let mut files: Vec<String> = fs::read_dir(w.state().join("targets"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".db"))
        .collect();
    files.sort();
    assert_eq!(files, names.map(|n| format!("{n}.db")));
    assert!(!w.state().join("blat.db").exists());
    // Each file holds its own target's run, and status finds them all.
    let out = w.blat(&["status", "--json"]);
    assert_exit(&out, 0);
    let status = json(&out);
    for (i, name) in names.iter().enumerate() {
        assert_eq!(status[i]["target"], *name, "{status}");
        assert_eq!(status[i]["runs"][0]["command"], "sync", "{status}");
        assert_eq!(status[i]["runs"][0]["outcome"], "done", "{status}");
    }
    // Nothing to do the second time, whatever the number of jobs.
    let out = w.blat(&["sync", "--all", "--jobs", "5", "--json"]);
    assert_exit(&out, 0);
    let j = json(&out);
    assert_eq!(
        outcomes(&j),
        names.map(|n| (n.to_string(), "done".to_string())),
        "the report lists the targets in their order: {j}"
    );
    for t in j["targets"].as_array().unwrap() {
        assert_eq!(t["report"]["up_to_date"], 2, "{t}");
    }
}

#[test]
fn jobs_one_works_on_one_target_after_another() {
    let names = ["s1", "s2", "s3"];
    let w = world(&names, "jobs = 8");
    // s2 fails (its path is a file), the others go on; lines in order.
    w.write_target(
        "s2",
        &format!(
            "kind = \"archive\"\ntransport = \"local\"\npath = \"{}\"\nprojects = [\"P\"]\n",
            w.path().join("rm.sql").display()
        ),
    );
    let out = w.blat(&["sync", "--all", "--jobs", "1", "-q"]);
    assert_exit(&out, 1);
    let all = format!("{}{}", stdout(&out), stderr(&out));
    let lines = summary_lines(&all, "sync");
    assert_eq!(lines.len(), 3, "{all}");
    assert!(lines[0].starts_with("s1: sync done: 2 sent"), "{all}");
    assert!(lines[1].starts_with("s3: sync done: 2 sent"), "{all}");
    // The error line goes to stderr, the summaries to stdout.
    let err = summary_lines(&stderr(&out), "sync");
    assert_eq!(err.len(), 1, "{all}");
    assert!(err[0].starts_with("s2: sync failed: "), "{all}");
    let state = blat::state::State::open_target(&w.state(), "s2").unwrap();
    assert_eq!(
        state.last_runs("s2").unwrap()[0].outcome.as_deref(),
        Some("failed")
    );
}

#[test]
fn jobs_out_of_range_is_bad_usage() {
    let w = world(&["s1"], "");
    for bad in ["0", "257", "many"] {
        let out = w.blat(&["sync", "--all", "--jobs", bad]);
        assert_exit(&out, 2);
    }
    let out = w.blat(&["age", "--local", "--archive", "/tmp", "--jobs", "2"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("--jobs"), "{}", stderr(&out));
    let w = world(&["s1"], "jobs = 0");
    let out = w.blat(&["sync", "--all"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("blat.toml:4:8: invalid jobs: expected 1 to 256"),
        "{}",
        stderr(&out)
    );
}

/// A write held on one target's state file does not stop another target's
/// run from recording its own (with one shared file it waited for the
/// busy timeout, 30 s, and then lost the record).
#[test]
fn a_write_held_on_one_targets_state_does_not_hold_up_another() {
    let w = world(&["s1", "s2"], "");
    assert_exit(&w.blat(&["sync", "--all"]), 0);
    let held = rusqlite::Connection::open(w.state().join("targets/s1.db")).unwrap();
    held.execute_batch(
        "BEGIN IMMEDIATE; INSERT INTO runs (target, command, started) VALUES ('s1', 'x', 1);",
    )
    .unwrap();
    let started = Instant::now();
    let out = w.blat(&["sync", "--target", "s2"]);
    let took = started.elapsed();
    assert_exit(&out, 0);
    assert!(!stderr(&out).contains("cannot record"), "{}", stderr(&out));
    // s2's second run is in its file while s1's is still locked.
    let s2 = blat::state::State::open_target(&w.state(), "s2").unwrap();
    let n: usize = s2
        .last_runs("s2")
        .unwrap()
        .iter()
        .filter(|r| r.outcome.as_deref() == Some("done"))
        .count();
    assert_eq!(n, 1);
    assert!(
        took < Duration::from_secs(25),
        "waited on another target's state: {took:?}"
    );
    held.execute_batch("ROLLBACK").unwrap();
}

/// The state file of blat before per-target files (schema 3, as its
/// migrations left it), with a sync of `s1` and `s2` at `synced` and an
/// aging mark on `s1`.
fn legacy_state(w: &World, synced: i64) {
    fs::create_dir_all(w.state()).unwrap();
    let conn = rusqlite::Connection::open(w.state().join("blat.db")).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.execute_batch(LEGACY_SCHEMA).unwrap();
    conn.pragma_update(None, "user_version", 3).unwrap();
    for t in ["s1", "s2"] {
        conn.execute(
            "INSERT INTO runs (target, command, started, finished, outcome, summary, seconds, behind)
             VALUES (?1, 'sync', ?2, ?2, 'done', 'legacy run of ' || ?1, 1.5, 0)",
            rusqlite::params![t, synced],
        )
        .unwrap();
    }
    conn.execute(
        "INSERT INTO marks VALUES ('s1', 'old', '1', ?1)",
        rusqlite::params![synced - 100],
    )
    .unwrap();
}

/// Schema 1 to 3 of the single state file, as blat wrote it before per-target files.
const LEGACY_SCHEMA: &str = "
CREATE TABLE runs (id INTEGER PRIMARY KEY, target TEXT NOT NULL, command TEXT NOT NULL,
    started INTEGER NOT NULL, finished INTEGER, outcome TEXT, summary TEXT, error TEXT);
CREATE INDEX runs_by_target ON runs (target, command, id);
CREATE TABLE tags (target TEXT NOT NULL, tag TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT, PRIMARY KEY (target, tag));
CREATE TABLE marks (target TEXT NOT NULL, package TEXT NOT NULL, version TEXT NOT NULL,
    first_seen INTEGER NOT NULL, PRIMARY KEY (target, package, version));
CREATE TABLE uploads (target TEXT NOT NULL, key TEXT NOT NULL, package TEXT NOT NULL,
    version TEXT NOT NULL, descpkg_mtime INTEGER NOT NULL, size INTEGER NOT NULL,
    etag TEXT NOT NULL, uploaded INTEGER NOT NULL, PRIMARY KEY (target, key));
CREATE TABLE multipart_uploads (target TEXT NOT NULL, key TEXT NOT NULL, upload_id TEXT NOT NULL,
    started INTEGER NOT NULL, PRIMARY KEY (target, upload_id));
ALTER TABLE runs ADD COLUMN seconds REAL;
ALTER TABLE runs ADD COLUMN sent INTEGER;
ALTER TABLE runs ADD COLUMN bytes_sent INTEGER;
ALTER TABLE runs ADD COLUMN failed INTEGER;
ALTER TABLE runs ADD COLUMN behind INTEGER;
ALTER TABLE runs ADD COLUMN aging_refused INTEGER;
ALTER TABLE runs ADD COLUMN problem TEXT;
CREATE TABLE free_space (target TEXT PRIMARY KEY, bytes INTEGER NOT NULL, seen INTEGER NOT NULL);
";

#[test]
fn the_state_file_of_an_earlier_blat_is_split_by_the_first_runs() {
    let w = world(&["s1", "s2"], "");
    // s1 and s2 ages master: the mark carried over decides a deletion.
    for name in ["s1", "s2"] {
        w.local_target(
            name,
            "projects = [\"P\"]\nsync_interval = \"1h\"\n[aging]\nmethod = \"master\"\nafter = \"1d\"\n",
        );
    }
    let now = blat::clock::now();
    legacy_state(&w, now - 60);
    // Before any run that may write, status reads the old file.
    let out = w.blat(&["status", "--json"]);
    assert_exit(&out, 0);
    let status = json(&out);
    assert_eq!(
        status[0]["runs"][0]["summary"], "legacy run of s1",
        "{status}"
    );
    assert_eq!(status[0]["marked"][0]["package"], "old", "{status}");
    assert!(
        !w.state().join("targets").exists(),
        "status created nothing"
    );

    // Two first runs at once, one per target: both see their old runs
    // (--due: synced a minute ago, so not due).
    let one = w.spawn(&["sync", "--target", "s1", "--due"]);
    let two = w.spawn(&["sync", "--target", "s2", "--due"]);
    for (child, name) in [(one, "s1"), (two, "s2")] {
        let out = child.wait_with_output().unwrap();
        assert_exit(&out, 0);
        assert!(
            stdout(&out).contains(&format!("{name}: sync skipped: not due")),
            "{}{}",
            stdout(&out),
            stderr(&out)
        );
    }
    assert!(!w.state().join("blat.db").exists());
    assert!(w.state().join("blat.db.migrated").exists());
    assert!(!w.state().join("blat.db.migrated.1").exists(), "split once");
    for name in ["s1", "s2"] {
        let state = blat::state::State::open_target(&w.state(), name).unwrap();
        assert_eq!(state.last_success(name, "sync").unwrap(), Some(now - 60));
        let other = if name == "s1" { "s2" } else { "s1" };
        assert!(
            state.last_runs(other).unwrap().is_empty(),
            "only its own rows"
        );
    }
    // The mark, first seen 100 s before the old sync, carries on: a day
    // later `old/1` (on s1 only) is deleted by the first age.
    fs::create_dir_all(w.target_dir("s1").join("old/1")).unwrap();
    fs::write(w.target_dir("s1").join("old/1/descpkg"), "x").unwrap();
    crate::common::set_mtime(&w.target_dir("s1").join("old/1/descpkg"), T0);
    let later = (now + 86_400).to_string();
    let out = w.blat_env(&["age", "--all", "--json"], &[("BLAT_NOW", &later)]);
    assert_exit(&out, 0);
    let j = json(&out);
    assert_eq!(
        j["targets"][0]["report"]["deleted"][0]["package"], "old",
        "{j}"
    );
    assert!(!w.target_dir("s1").join("old/1").exists());
    let out = w.blat(&["status", "--json"]);
    assert_exit(&out, 0);
    let status = json(&out);
    let sync = status[1]["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["command"] == "sync")
        .unwrap_or_else(|| panic!("{status}"));
    assert_eq!(sync["summary"], "legacy run of s2", "{status}");
    assert_eq!(status[1]["last_sync"], now - 60, "{status}");
}

mod ssh {
    use super::*;
    use crate::sshd::{Fault, Proxy, Sshd};

    /// A target that accepts the connection and then says nothing costs
    /// only its own connect_timeout: the others, local and over SSH, are
    /// synced meanwhile by the other jobs. The exit status says failure.
    #[test]
    fn a_frozen_target_holds_up_only_itself() {
        let Some(sshd) = Sshd::start() else { return };
        let w = world(&["l1", "l2", "l3"], "jobs = 3");
        sshd.write_target(&w, "site", "projects = [\"P\"]\n");
        let frozen = Proxy::start(sshd.port, Fault::Freeze, 0);
        // First in the order, so it takes a job from the start.
        w.write_target(
            "a-frozen",
            &sshd.target_conf(
                frozen.port,
                "projects = [\"P\"]\nconnect_timeout = \"30s\"\n",
            ),
        );
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        w.write_target(
            "b-closed",
            &sshd.target_conf(closed, "projects = [\"P\"]\n"),
        );
        let started = Instant::now();
        let mut child = w.spawn(&["sync", "--all", "--json"]);
        // An ordering, not a stopwatch: every other target is synced while
        // the run still waits on the frozen one.
        let mut served = vec![sshd.archive().join("b/1/descpkg")];
        served.extend(["l1", "l2", "l3"].map(|n| w.target_dir(n).join("b/1/descpkg")));
        while !served.iter().all(|p| p.exists()) {
            assert!(
                started.elapsed() < Duration::from_secs(28),
                "the other targets waited for the frozen one"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run still waits on the frozen target"
        );
        let out = child.wait_with_output().unwrap();
        assert!(
            started.elapsed() >= Duration::from_secs(29),
            "connect_timeout"
        );
        assert_exit(&out, 1);
        let j = json(&out);
        let want: Vec<(String, String)> = [
            ("a-frozen", "failed"),
            ("b-closed", "failed"),
            ("l1", "done"),
            ("l2", "done"),
            ("l3", "done"),
            ("site", "done"),
        ]
        .iter()
        .map(|(n, o)| (n.to_string(), o.to_string()))
        .collect();
        assert_eq!(outcomes(&j), want, "{j}");
        // One line per target on stderr (--json), the frozen one last.
        let lines = summary_lines(&stderr(&out), "sync");
        assert_eq!(lines.len(), 6, "{}", stderr(&out));
        assert!(lines[5].starts_with("a-frozen: sync failed: "), "{lines:?}");
    }

    /// `--jobs 1` is one target after another: a target after a frozen
    /// one waits for the frozen one's connect_timeout.
    #[test]
    fn jobs_one_waits_for_each_target_in_turn() {
        let Some(sshd) = Sshd::start() else { return };
        let w = world(&["l1"], "");
        let frozen = Proxy::start(sshd.port, Fault::Freeze, 0);
        w.write_target(
            "a-frozen",
            &sshd.target_conf(
                frozen.port,
                "projects = [\"P\"]\nconnect_timeout = \"3s\"\n",
            ),
        );
        let mut child = w.spawn(&["sync", "--all", "--jobs", "1"]);
        let started = Instant::now();
        let l1 = w.target_dir("l1").join("b/1/descpkg");
        while !l1.exists() && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(started.elapsed() >= Duration::from_secs(3), "l1 waited");
        let out = child.wait_with_output().unwrap();
        assert_exit(&out, 1);
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert!(l1.exists(), "{all}");
        let lines = summary_lines(&stderr(&out), "sync");
        assert_eq!(lines.len(), 1, "{all}");
        assert!(lines[0].starts_with("a-frozen: sync failed: "), "{all}");
        assert!(stdout(&out).starts_with("l1: sync done: 2 sent"), "{all}");
    }
}
