//! Version 2 of the receiver's index (docs/protocol.md, *The index*): a
//! sorted base and a journal of appended records. A listing from it is
//! exactly what a scan of the target finds; a version 1 index is read and
//! rewritten; a base that is out of order, repeats an entry, holds a
//! removal or fewer lines than its header says, or a cut journal line, is
//! never trusted, even once lines are out (`I restart`); writers fold the
//! journal into a new base past its threshold; a list reads the index as
//! it was under the lock, whatever is appended meanwhile.

use std::fs;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{claims_hold, drift, index_file, receiver, sync, sync_distrusts_the_index, world, T0};
use crate::common::{self, World};

/// The V and A lines of a listing, sorted: what it claims.
fn claimed(out: &str) -> Vec<String> {
    let mut lines: Vec<String> = out
        .lines()
        .filter(|l| l.starts_with("V\t") || l.starts_with("A\t"))
        .map(String::from)
        .collect();
    lines.sort();
    lines
}

/// What a scan of the target finds (read-only: the index is left alone).
fn truth(t: &std::path::Path) -> Vec<String> {
    let (code, out) = receiver(t, &["list", "--full", "--read-only"]);
    assert_eq!(code, 0, "{out}");
    claimed(&out)
}

/// A listing line as an index record.
fn record(line: &str) -> String {
    format!("{line}\t.")
}

/// A version 2 index: the header with `count` base lines, the base lines
/// as given, then the journal appended as writers append.
fn write_index(t: &std::path::Path, count: usize, base: &[String], journal: &[String]) {
    let mut text = format!("blat-index 2 {count}\n");
    for line in base {
        text.push_str(line);
        text.push('\n');
    }
    for line in journal {
        text.push('\n');
        text.push_str(line);
    }
    fs::write(index_file(t), text).unwrap();
}

/// The index a writer or a rebuild leaves for this listing: its records
/// sorted as the base, no journal.
fn compacted(listing: &[String]) -> String {
    let mut records: Vec<String> = listing.iter().map(|l| record(l)).collect();
    records.sort();
    format!("blat-index 2 {}\n{}\n", records.len(), records.join("\n"))
}

/// A full check, which rebuilds the index from the scan.
fn rebuild(t: &std::path::Path) {
    let (code, out) = receiver(t, &["list", "--full"]);
    assert!(code == 0 && out.ends_with("I\tindexed\n"), "{out}");
}

/// A listing from the index, which must say it came from there.
fn from_index(t: &std::path::Path, args: &[&str]) -> Vec<String> {
    let (code, out) = receiver(t, args);
    assert_eq!(code, 0, "{out}");
    // A read-only one may add that a plain list would tidy the index.
    let body = out.strip_suffix("I\ttidy\n").unwrap_or(&out);
    assert!(
        body.ends_with("I\tindex\n") && !out.contains("I\trestart"),
        "{out}"
    );
    claimed(&out)
}

#[test]
fn a_journal_over_the_base_lists_exactly_what_a_scan_finds() {
    let w = world("");
    let t = w.target_dir("site");
    sync(&w, &[]);
    common::remove_tree(&t.join("p/5"));
    std::os::unix::fs::symlink("2", t.join("q/old")).unwrap();
    let truth = truth(&t);
    let line = |key: &str| {
        truth
            .iter()
            .find(|l| l.starts_with(&format!("{key}\t")))
            .unwrap_or_else(|| panic!("{key} in {truth:?}"))
            .clone()
    };
    // The base: p/4 with another mtime, p/5 (not on the target), the alias
    // q/cur with another target, an alias q/gone that is not there; p/2
    // and the alias q/old missing.
    let mut base: Vec<String> = truth
        .iter()
        .filter(|l| !l.starts_with("V\tp\t2\t") && !l.starts_with("A\tq\told\t"))
        .map(|l| record(l))
        .collect();
    base.retain(|l| !l.starts_with("V\tp\t4\t") && !l.starts_with("A\tq\tcur\t"));
    base.extend([
        format!("V\tp\t4\t{}\t{T0}\t.", T0 + 444),
        format!("V\tp\t5\t{}\t{T0}\t.", T0 + 5),
        "A\tq\tcur\t2\t.".to_string(),
        "A\tq\tgone\t1\t.".to_string(),
    ]);
    base.sort();
    // The journal puts every one right: removals, a change, re-additions,
    // an entry added and removed again, an older record overridden.
    let journal = vec![
        "-V\tp\t5\t.".to_string(),
        record(&line("V\tp\t4")),
        "-V\tp\t3\t.".to_string(),
        record(&line("V\tp\t3")),
        "V\tp\t1\t1\t1\t.".to_string(),
        record(&line("V\tp\t1")),
        "-A\tq\tcur\t.".to_string(),
        record(&line("A\tq\tcur")),
        "-A\tq\tgone\t.".to_string(),
        record(&line("A\tq\told")),
        record(&line("V\tp\t2")),
        "V\tp\t9\t1\t1\t.".to_string(),
        "-V\tp\t9\t.".to_string(),
        "-A\tp\tnever\t.".to_string(),
    ];
    write_index(&t, base.len(), &base, &journal);
    let text = fs::read_to_string(index_file(&t)).unwrap();
    assert_eq!(from_index(&t, &["list", "--read-only"]), truth);
    assert_eq!(from_index(&t, &["list"]), truth);
    assert_eq!(
        fs::read_to_string(index_file(&t)).unwrap(),
        text,
        "a short journal stays"
    );
    // A writer's records go on top, and the listing follows.
    let (code, out) = receiver(&t, &["link", "q", "old", "1"]);
    assert_eq!(code, 0, "{out}");
    let truth = self::truth(&t);
    assert!(truth.contains(&"A\tq\told\t1".to_string()), "{truth:?}");
    assert_eq!(from_index(&t, &["list", "--read-only"]), truth);
    assert_eq!(claims_hold(&t), Ok(6));
    assert_eq!(drift(&t), Vec::<String>::new());
}

#[test]
fn a_version_1_index_is_read_and_rewritten_as_version_2() {
    let w = world("");
    let t = w.target_dir("site");
    sync(&w, &[]);
    let truth = truth(&t);
    let idx = index_file(&t);
    rebuild(&t);
    assert_eq!(
        fs::read_to_string(&idx).unwrap(),
        compacted(&truth),
        "a scan's"
    );
    // What an older receiver wrote: records in any order, removals.
    let mut v1 = String::from("blat-index 1\nV\tgone\t1\t1\t1\t.\n");
    for line in truth.iter().rev() {
        v1.push_str(&format!("\n{}", record(line)));
    }
    v1.push_str("\n-V\tgone\t1\t.");
    fs::write(&idx, &v1).unwrap();
    assert_eq!(from_index(&t, &["list", "--read-only"]), truth);
    assert_eq!(fs::read_to_string(&idx).unwrap(), v1, "read-only");
    // ... and says a plain list would rewrite it.
    let (code, out) = receiver(&t, &["list", "--read-only"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.ends_with("I\tindex\nI\ttidy\n"), "{out}");
    assert_eq!(from_index(&t, &["list"]), truth);
    assert_eq!(fs::read_to_string(&idx).unwrap(), compacted(&truth));
    let (_, out) = receiver(&t, &["list", "--read-only"]);
    assert!(!out.contains("I\ttidy"), "{out}");
    // A writer rewrites one too.
    fs::write(&idx, &v1).unwrap();
    let (code, out) = receiver(&t, &["link", "q", "cur", "1"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(fs::read_to_string(&idx).unwrap(), compacted(&truth));
    assert_eq!(from_index(&t, &["list", "--read-only"]), truth);
    // So does a sync with nothing to do (its first listing is read-only:
    // told to tidy, it lists again), and a dry run leaves it alone.
    fs::write(&idx, &v1).unwrap();
    let out = w.blat(&["sync", "--all", "--dry-run"]);
    common::assert_exit(&out, 0);
    assert_eq!(fs::read_to_string(&idx).unwrap(), v1, "dry run");
    sync(&w, &[]);
    assert_eq!(fs::read_to_string(&idx).unwrap(), compacted(&truth));
}

#[test]
fn a_broken_base_or_journal_is_never_trusted() {
    let w = world("");
    let t = w.target_dir("site");
    sync(&w, &[]);
    common::remove_tree(&t.join("p/5"));
    let truth = truth(&t);
    let p5 = format!("V\tp\t5\t{}\t{T0}\t.", T0 + 5);
    // Every planted index claims p/5, no longer on the target, early in
    // its base: a listing that streams it out and then finds the index
    // invalid must restart.
    let mut base: Vec<String> = truth.iter().map(|l| record(l)).collect();
    base.push(p5.clone());
    base.sort();
    let n = base.len();
    let moved = {
        let mut b = base.clone();
        let first = b.remove(0);
        assert!(first.starts_with("A\t"), "{first}");
        b.push(first);
        b
    };
    let plus = |extra: &str| {
        let mut b = base.clone();
        b.push(extra.to_string());
        b
    };
    let last_key = base
        .last()
        .unwrap()
        .rsplitn(4, '\t')
        .last()
        .unwrap()
        .to_string();
    type Case = (&'static str, String, Vec<String>, Vec<String>, bool);
    let cases: Vec<Case> = vec![
        ("out of order", n.to_string(), moved, vec![], true),
        (
            "an entry twice",
            (n + 1).to_string(),
            plus(&format!("{last_key}\t1\t1\t.")),
            vec![],
            true,
        ),
        (
            "a removal in the base",
            (n + 1).to_string(),
            plus("-V\tq\t9\t."),
            vec![],
            true,
        ),
        (
            "fewer lines",
            (n + 2).to_string(),
            base.clone(),
            vec![],
            true,
        ),
        (
            "a journal line counted as base",
            (n + 1).to_string(),
            base.clone(),
            vec!["-V\tp\t0\t.".to_string()],
            true,
        ),
        (
            "a cut journal line",
            n.to_string(),
            base.clone(),
            vec![format!("V\tp\t4\t{T0}")],
            false,
        ),
        (
            "a count that is no number",
            "0x8".into(),
            base.clone(),
            vec![],
            false,
        ),
        ("no count", String::new(), base.clone(), vec![], false),
    ];
    for (what, count, lines, journal, restart) in cases {
        let mut text = format!("blat-index 2 {count}\n");
        for l in &lines {
            text.push_str(&format!("{l}\n"));
        }
        for l in &journal {
            text.push_str(&format!("\n{l}"));
        }
        fs::write(index_file(&t), &text).unwrap();
        let (code, out) = receiver(&t, &["list", "--read-only"]);
        assert_eq!(code, 0, "{what}: {out}");
        assert_eq!(out.contains("I\trestart\n"), restart, "{what}: {out}");
        let (before, after) = out.split_once("I\trestart\n").unwrap_or(("", &out));
        if restart {
            assert!(
                before.contains(&format!("{}\n", &p5[..p5.len() - 2])),
                "{what}: {out}"
            );
            let p = out.lines().next().unwrap();
            assert!(
                p.starts_with("P\t") && after.starts_with(&format!("{p}\n")),
                "{what}: {out}"
            );
        }
        assert!(
            after
                .lines()
                .last()
                .unwrap()
                .starts_with("I\tscan\tinvalid index: "),
            "{what}: {out}"
        );
        assert_eq!(claimed(after), truth, "{what}");
        // The master takes the scan only: p/5 is sent again.
        sync_distrusts_the_index(&w, &t, what);
        common::remove_tree(&t.join("p/5"));
    }
}

#[test]
fn writers_fold_a_long_journal_into_a_new_base() {
    let w = world("");
    let t = w.target_dir("site");
    sync(&w, &[]);
    let idx = index_file(&t);
    let truth = truth(&t);
    rebuild(&t);
    let scanned = fs::read_to_string(&idx).unwrap();
    assert_eq!(scanned, compacted(&truth));
    // Records that cancel out: PAIRS * 2 journal lines.
    let noise = |pairs: usize| -> String {
        (0..pairs)
            .map(|i| format!("\nV\tgone\t{i}\t1\t1\t.\n-V\tgone\t{i}\t."))
            .collect()
    };
    // 800 lines: below the threshold, kept.
    fs::write(&idx, format!("{scanned}{}", noise(400))).unwrap();
    let (code, out) = receiver(&t, &["link", "q", "cur", "1"]);
    assert_eq!(code, 0, "{out}");
    let text = fs::read_to_string(&idx).unwrap();
    assert!(
        text.starts_with(&format!("{scanned}{}", noise(400))),
        "kept"
    );
    assert_eq!(from_index(&t, &["list", "--read-only"]), truth);
    // 1,200: past it, folded by link, then by delete.
    fs::write(&idx, format!("{scanned}{}", noise(600))).unwrap();
    let (code, out) = receiver(&t, &["link", "q", "new", "1"]);
    assert_eq!(code, 0, "{out}");
    let truth = self::truth(&t);
    assert_eq!(fs::read_to_string(&idx).unwrap(), compacted(&truth));
    let now = fs::read_to_string(&idx).unwrap();
    fs::write(&idx, format!("{now}{}", noise(600))).unwrap();
    let (code, out) = receiver(&t, &["delete", "p", "0"]);
    assert_eq!(code, 0, "{out}");
    let truth = self::truth(&t);
    assert!(!truth.iter().any(|l| l.starts_with("V\tp\t0\t")));
    assert_eq!(fs::read_to_string(&idx).unwrap(), compacted(&truth));
    assert_eq!(from_index(&t, &["list", "--read-only"]), truth);
    assert_eq!(claims_hold(&t), Ok(6));
    assert_eq!(drift(&t), Vec::<String>::new());
}

/// A list reads the index as it was when it held the lock: a writer that
/// appends meanwhile (half a record, a pause, the rest, all under the
/// exclusive lock, as writers do) is never read halfway.
#[test]
fn a_list_reads_the_index_as_it_was_under_the_lock() {
    let w = World::new();
    let t = w.path().join("target");
    fs::create_dir_all(t.join(".dpkg_archive")).unwrap();
    let base: Vec<String> = (0..30_000)
        .map(|i| format!("V\tp{i:05}\t1\t{T0}\t{T0}\t."))
        .collect();
    write_index(&t, base.len(), &base, &[]);
    let stop = AtomicBool::new(false);
    let outs = std::thread::scope(|s| {
        s.spawn(|| {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let dir = fs::File::open(t.join(".dpkg_archive")).unwrap();
                dir.lock().unwrap();
                let mut f = fs::OpenOptions::new()
                    .append(true)
                    .open(index_file(&t))
                    .unwrap();
                f.write_all(format!("\nV\tz\t{n}\t{T0}").as_bytes())
                    .unwrap();
                std::thread::sleep(std::time::Duration::from_millis(3));
                f.write_all(format!("\t{T0}\t.").as_bytes()).unwrap();
                drop(f);
                drop(dir);
                n += 1;
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        });
        // Checked once the writer has stopped: a failure must not leave it
        // running (the scope waits for it).
        let outs: Vec<(i32, String)> = (0..8)
            .map(|_| receiver(&t, &["list", "--read-only"]))
            .collect();
        stop.store(true, Ordering::Relaxed);
        outs
    });
    for (code, out) in outs {
        assert_eq!(code, 0, "{out:.300}");
        let tail = &out[out.len().saturating_sub(300)..];
        assert!(
            out.ends_with("I\tindex\n") && !out.contains("I\trestart"),
            "{tail}"
        );
        assert_eq!(out.matches("V\tp").count(), 30_000, "{tail}");
    }
    let appended = fs::read_to_string(index_file(&t))
        .unwrap()
        .matches("\nV\tz\t")
        .count();
    assert!(appended > 8, "the writer ran: {appended}");
}
