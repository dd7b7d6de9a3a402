//! The receiver's index of what is installed
//! (`.dpkg_archive/blat-index.txt`, docs/protocol.md, *The index*): a
//! no-change sync reads it instead of walking the target; every receive,
//! link and delete keeps it true, also when several writers run at once;
//! a change made by hand on the target is found by `sync --verify` and by
//! every `verify_every`-th sync; a hostile index is never trusted.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::common::{self, assert_exit, stderr, stdout, World};

const T0: i64 = 1_700_000_000;

fn receiver_program() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("receiver/blat-receiver")
}

/// Runs the receiver program on `archive`: (exit code, stdout).
fn receiver(archive: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new("sh")
        .arg(receiver_program())
        .arg("-a")
        .arg(archive)
        .args(args)
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), stdout(&out))
}

/// Where the index is wrong (`D` lines of a read-only full check), sorted.
fn drift(archive: &Path) -> Vec<String> {
    let (code, out) = receiver(archive, &["list", "--full", "--read-only"]);
    assert_eq!(code, 0, "{out}");
    let mut d: Vec<String> = out
        .lines()
        .filter_map(|l| l.strip_prefix("D\t"))
        .map(|l| l.replace('\t', " "))
        .collect();
    d.sort();
    d
}

fn index_file(archive: &Path) -> PathBuf {
    archive.join(".dpkg_archive/blat-index.txt")
}

/// What the index claims: package-version → descpkg mtime, and aliases
/// → link target (later records win, as the receiver reads it).
type Claims = (
    BTreeMap<(String, String), i64>,
    BTreeMap<(String, String), String>,
);

fn claims(archive: &Path) -> Claims {
    let text = fs::read_to_string(index_file(archive)).unwrap_or_default();
    let (mut versions, mut aliases) = (BTreeMap::new(), BTreeMap::new());
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        let key = |i: usize| (f[1].to_string(), f[i].to_string());
        match f.as_slice() {
            ["V", _, _, m, _, "."] => {
                versions.insert(key(2), m.parse().unwrap());
            }
            ["-V", _, _, "."] => {
                versions.remove(&key(2));
            }
            ["A", _, _, to, "."] => {
                aliases.insert(key(2), to.to_string());
            }
            ["-A", _, _, "."] => {
                aliases.remove(&key(2));
            }
            _ => {}
        }
    }
    (versions, aliases)
}

/// Every version the index claims is on disk, whole, with that descpkg
/// mtime; every alias it claims is there with that target.
fn claims_hold(archive: &Path) -> Result<usize, String> {
    let (versions, aliases) = claims(archive);
    for ((p, v), m) in &versions {
        let dir = archive.join(p).join(v);
        let real = fs::symlink_metadata(&dir).is_ok_and(|d| d.is_dir());
        let descpkg = fs::symlink_metadata(dir.join("descpkg"));
        match descpkg {
            Ok(d) if real && d.is_file() && d.mtime() == *m => {}
            _ => return Err(format!("the index claims {p}/{v} (mtime {m}): {descpkg:?}")),
        }
    }
    for ((p, a), to) in &aliases {
        match fs::read_link(archive.join(p).join(a)) {
            Ok(t) if t == Path::new(to) => {}
            other => return Err(format!("the index claims alias {p}/{a} -> {to}: {other:?}")),
        }
    }
    Ok(versions.len())
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(out), stderr(out)))
}

fn report(out: &std::process::Output) -> serde_json::Value {
    json(out)["targets"][0]["report"].clone()
}

fn names(v: &serde_json::Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|p| match p.as_str() {
            Some(s) => s.to_string(),
            None => format!(
                "{}/{}",
                p["package"].as_str().unwrap(),
                p["version"].as_str().unwrap()
            ),
        })
        .collect()
}

/// Versions p/0..p/5 and q/1, q/2 (alias q/cur -> 1), released in P/R1.
fn world(extra: &str) -> World {
    let w = World::new();
    for i in 0..6 {
        w.release("p", &i.to_string(), T0 + i);
    }
    w.release("q", "1", T0 + 100);
    w.release("q", "2", T0 + 101);
    w.alias("q", "cur", "1");
    w.write_global("");
    w.write_rm(&[(
        "P/R1",
        "open",
        0,
        &["p/0", "p/1", "p/2", "p/3", "p/4", "p/5"],
    )]);
    w.local_target(
        "site",
        &format!("projects = [\"P\"]\npackages = [\"q/cur\"]\n{extra}"),
    );
    w
}

fn sync(w: &World, args: &[&str]) -> serde_json::Value {
    sync_at(w, args, &[])
}

fn sync_at(w: &World, args: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
    let mut all = vec!["sync", "--target", "site", "--json"];
    all.extend_from_slice(args);
    let out = w.blat_env(&all, env);
    assert_exit(&out, 0);
    report(&out)
}

/// A sync over a planted index that claims `p/5`, gone from the target:
/// it scans instead (the claim is not believed), sends `p/5` again and
/// leaves an index that agrees with a walk of the target.
fn sync_distrusts_the_index(w: &World, t: &Path, what: &str) {
    let r = sync(w, &[]);
    assert!(
        r["listing"]
            .as_str()
            .unwrap()
            .starts_with("scan: invalid index"),
        "{what}: {r}"
    );
    assert_eq!(names(&r, "sent"), ["p/5"], "{what}");
    assert_eq!(drift(t), Vec::<String>::new(), "{what}: rebuilt");
}

/// A minute from now (`BLAT_NOW`): what arrived by the last sync is no
/// longer young for aging, even with a zero `writable_grace`.
fn later() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    (now + 60).to_string()
}

#[test]
fn a_no_change_sync_trusts_the_index_and_verify_repairs_hand_drift() {
    let w = world("");
    let t = w.target_dir("site");
    let out = w.blat(&["--dry-run", "sync", "--target", "site"]);
    assert_exit(&out, 0);
    assert!(!t.exists(), "a dry run creates nothing");

    // The first sync of a target is a full check (none recorded yet): it
    // builds the index.
    let first = sync(&w, &[]);
    assert_eq!(first["listing"], "scan: full check", "{first}");
    assert_eq!(first["full_check"], true);
    assert_eq!(drift(&t), Vec::<String>::new());
    let second = sync(&w, &[]);
    assert_eq!(second["listing"], "index");
    assert_eq!(names(&second, "sent"), Vec::<String>::new());

    // By hand on the target: a version removed, a descpkg touched, the
    // alias removed.
    common::remove_tree(&t.join("p/2"));
    common::set_mtime(&t.join("p/3/descpkg"), T0 + 999);
    fs::remove_file(t.join("q/cur")).unwrap();

    // A plain sync reads the index, so it cannot notice: proof that it
    // does not walk the target.
    let plain = sync(&w, &[]);
    assert_eq!(plain["listing"], "index");
    assert_eq!(plain["full_check"], false);
    assert_eq!(names(&plain, "sent"), Vec::<String>::new());
    assert!(!t.join("p/2").exists());

    // --verify walks it, says what differed, repairs the index and sends.
    let verify = sync(&w, &["--verify"]);
    assert_eq!(verify["full_check"], true);
    assert_eq!(verify["listing"], "scan: full check");
    let mut found = names(&verify, "drift");
    found.sort();
    assert_eq!(found, ["alias q cur", "changed p 3", "missing p 2"]);
    assert_eq!(names(&verify, "sent"), ["p/2", "p/3"]);
    for pv in ["p/2", "p/3"] {
        assert_eq!(
            common::snapshot(&w.archive().join(pv)),
            common::snapshot(&t.join(pv)),
            "{pv}"
        );
    }
    assert_eq!(fs::read_link(t.join("q/cur")).unwrap(), Path::new("1"));
    assert_eq!(drift(&t), Vec::<String>::new(), "the index is true again");

    let after = sync(&w, &[]);
    assert_eq!(after["listing"], "index");
    assert_eq!(after["drift"], serde_json::Value::Null);
    assert_eq!(names(&after, "sent"), Vec::<String>::new());
}

/// The PackageList past its header line (the time it was written).
fn body(text: &str) -> &str {
    text.split_once('\n').map_or("", |(_, rest)| rest)
}

#[test]
fn the_packagelist_is_rewritten_only_when_its_content_differs() {
    let w = world("");
    let t = w.target_dir("site");
    let plist = t.join(".dpkg_archive/packagelist.txt");
    let first = sync(&w, &[]);
    assert_eq!(first["packagelist"], true);
    assert_eq!(first["packagelist_unchanged"], serde_json::Value::Null);
    let written = fs::read_to_string(&plist).unwrap();
    assert!(written.contains("\np 3\n"), "{written}");
    let inode = fs::metadata(&plist).unwrap().ino();

    // Same content: the file is left as it is (a put renames a new one in).
    let same = sync(&w, &[]);
    assert_eq!(same["packagelist"], true);
    assert_eq!(same["packagelist_unchanged"], true);
    assert_eq!(fs::metadata(&plist).unwrap().ino(), inode);
    assert_eq!(fs::read_to_string(&plist).unwrap(), written);

    // A line removed by hand: rewritten.
    fs::write(&plist, written.replace("\np 3\n", "\n")).unwrap();
    let fixed = sync(&w, &[]);
    assert_eq!(fixed["packagelist"], true);
    assert_eq!(fixed["packagelist_unchanged"], serde_json::Value::Null);
    assert_eq!(body(&fs::read_to_string(&plist).unwrap()), body(&written));

    // Removed by hand: written again.
    fs::remove_file(&plist).unwrap();
    let again = sync(&w, &[]);
    assert_eq!(again["packagelist_unchanged"], serde_json::Value::Null);
    assert_eq!(body(&fs::read_to_string(&plist).unwrap()), body(&written));

    // A symlink to a list of the same content is never read through: the
    // sync replaces the link by the list and leaves its target alone.
    let elsewhere = w.path().join("elsewhere.txt");
    let moved = fs::read_to_string(&plist).unwrap();
    fs::rename(&plist, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &plist).unwrap();
    let linked = sync(&w, &[]);
    assert_eq!(linked["packagelist_unchanged"], serde_json::Value::Null);
    assert!(fs::symlink_metadata(&plist).unwrap().is_file());
    assert_eq!(body(&fs::read_to_string(&plist).unwrap()), body(&written));
    assert_eq!(fs::read_to_string(&elsewhere).unwrap(), moved);

    // The current set changes: the list follows it.
    w.write_rm(&[("P/R1", "open", 0, &["p/0", "p/1", "p/2", "p/4", "p/5"])]);
    let changed = sync(&w, &[]);
    assert_eq!(changed["packagelist_unchanged"], serde_json::Value::Null);
    let now = fs::read_to_string(&plist).unwrap();
    assert!(!now.contains("\np 3\n") && now.contains("\np 4\n"), "{now}");
}

#[test]
fn every_receive_link_and_delete_keeps_the_index_exact() {
    let w = world("writable_grace = \"0\"\n[aging]\nmethod = \"immediate\"\n");
    let t = w.target_dir("site");
    sync(&w, &[]);
    assert_eq!(claims_hold(&t), Ok(7));
    assert_eq!(drift(&t), Vec::<String>::new());

    // p/0 and p/1 leave the release (deleted), p/4 is rebuilt (replaced),
    // the alias moves to q/2 (a new version, then the link repointed).
    w.write_rm(&[("P/R1", "open", 0, &["p/2", "p/3", "p/4", "p/5"])]);
    common::make_writable(&w.archive().join("p/4"));
    common::remove_tree(&w.archive().join("p/4"));
    w.release("p", "4", T0 + 444);
    w.alias("q", "cur", "2");
    let r = sync_at(&w, &[], &[("BLAT_NOW", &later())]);
    assert_eq!(r["listing"], "index");
    assert_eq!(names(&r, "sent"), ["p/4", "q/2"]);
    // q/1 stays for this pass: the target's alias still named it.
    assert_eq!(
        names(&r["aging"], "deleted"),
        ["p/0", "p/1"],
        "{}",
        r["aging"]
    );
    assert_eq!(drift(&t), Vec::<String>::new(), "index after the sync");
    let (versions, aliases) = claims(&t);
    let want: BTreeMap<(String, String), i64> = [
        ("p", "2", T0 + 2),
        ("p", "3", T0 + 3),
        ("p", "4", T0 + 444),
        ("p", "5", T0 + 5),
        ("q", "1", T0 + 100),
        ("q", "2", T0 + 101),
    ]
    .iter()
    .map(|(p, v, m)| ((p.to_string(), v.to_string()), *m))
    .collect();
    assert_eq!(versions, want);
    assert_eq!(
        aliases,
        BTreeMap::from([(("q".to_string(), "cur".to_string()), "2".to_string())])
    );
    assert_eq!(claims_hold(&t), Ok(6));
    // The next pass deletes q/1, which no alias names now.
    let r = sync_at(&w, &[], &[("BLAT_NOW", &later())]);
    assert_eq!(names(&r["aging"], "deleted"), ["q/1"], "{r}");
    assert_eq!(claims_hold(&t), Ok(5));
    assert_eq!(drift(&t), Vec::<String>::new());
}

#[test]
fn verify_every_makes_every_nth_sync_a_full_check() {
    let w = world("verify_every = 3\n");
    let t = w.target_dir("site");
    let full: Vec<bool> = (0..7)
        .map(|i| {
            if i == 1 {
                // Changed by hand after the first sync: found by the next
                // full check, not before.
                common::remove_tree(&t.join("p/5"));
            }
            let r = sync(&w, &[]);
            let sent = names(&r, "sent");
            match i {
                0 => assert_eq!(sent.len(), 7),
                3 => assert_eq!(sent, ["p/5"], "the full check repairs"),
                _ => assert_eq!(sent, Vec::<String>::new(), "sync {i}"),
            }
            r["full_check"] == true || r["listing"] != "index"
        })
        .collect();
    // The first sync had no index (a scan that built it), then every third.
    assert_eq!(full, [true, false, false, true, false, false, true]);
}

#[test]
fn a_dead_writers_leftovers_are_seen_through_the_index() {
    let w = world("");
    let t = w.target_dir("site");
    sync(&w, &[]);
    // What a receive killed mid-batch leaves: its marker and a temporary.
    let dead = common::dead_pid();
    fs::create_dir(t.join(format!(".dpkg_archive/.blat-tmp-{dead}-writer"))).unwrap();
    fs::create_dir_all(t.join(format!("p/.blat-tmp-{dead}-tok-0/x"))).unwrap();
    let r = sync(&w, &[]);
    assert_eq!(r["listing"], "index");
    assert_eq!(r["leftovers_removed"], 2, "{r}");
    assert_eq!(common::blat_names(&t), Vec::<String>::new());
    // A live writer's marker is no gc work.
    let live = std::process::id();
    let marker = t.join(format!(".dpkg_archive/.blat-tmp-{live}-writer"));
    fs::create_dir(&marker).unwrap();
    let r = sync(&w, &[]);
    assert_eq!(r["leftovers_removed"], 0, "{r}");
    assert!(marker.exists());
}

#[test]
fn a_hostile_index_is_never_trusted() {
    let w = world("");
    let t = w.target_dir("site");
    sync(&w, &[]);
    let idx = index_file(&t);
    let header = "blat-index 1\n";
    let lie = |p: &str, v: &str| format!("V\t{p}\t{v}\t{}\t{T0}\t.\n", T0 + 5);
    // Each planted index claims p/5 (removed from the target): a full scan
    // must see through it, so p/5 is sent again.
    let cases: Vec<(&str, String)> = vec![
        (
            "a path in a name",
            format!("{header}{}V\t..\tx\t1\t1\t.\n", lie("p", "5")),
        ),
        (
            "a cut line",
            format!("{header}{}V\tp\t4\t{T0}", lie("p", "5")),
        ),
        (
            "no final field",
            format!("{header}V\tp\t5\t{}\t{T0}\n", T0 + 5),
        ),
        ("no header", lie("p", "5")),
        ("another format", format!("blat-index 2\n{}", lie("p", "5"))),
        (
            "a control character",
            format!("{header}{}A\tq\tcur\t1\x07\t.\n", lie("p", "5")),
        ),
    ];
    for (what, text) in cases {
        common::remove_tree(&t.join("p/5"));
        let _ = fs::remove_file(&idx);
        fs::write(&idx, text).unwrap();
        sync_distrusts_the_index(&w, &t, what);
    }

    // A symlink as the index is not read, and is replaced, never written
    // through.
    let victim = w.path().join("victim");
    fs::write(&victim, format!("{header}{}", lie("p", "5"))).unwrap();
    common::remove_tree(&t.join("p/5"));
    fs::remove_file(&idx).unwrap();
    std::os::unix::fs::symlink(&victim, &idx).unwrap();
    let r = sync(&w, &[]);
    assert_eq!(r["listing"], "scan: no index", "{r}");
    assert_eq!(names(&r, "sent"), ["p/5"]);
    assert_eq!(
        fs::read_to_string(&victim).unwrap(),
        format!("{header}{}", lie("p", "5"))
    );
    assert!(fs::symlink_metadata(&idx).unwrap().is_file());

    // A directory there: the target is walked every time, and the sync works.
    fs::remove_file(&idx).unwrap();
    fs::create_dir(&idx).unwrap();
    for _ in 0..2 {
        let r = sync(&w, &[]);
        assert_eq!(r["listing"], "scan: no index", "{r}");
    }
    // The master may not overwrite it with put either.
    let (code, _) = receiver(&t, &["put", "blat-index.txt"]);
    assert_eq!(code, 2);
}

#[test]
fn a_plain_list_compacts_an_index_of_old_records() {
    let w = world("");
    let t = w.target_dir("site");
    sync(&w, &[]);
    let idx = index_file(&t);
    let mut text = fs::read_to_string(&idx).unwrap();
    for i in 0..3000 {
        text.push_str(&format!("\nV\tgone\t{i}\t1\t1\t.\n-V\tgone\t{i}\t."));
    }
    fs::write(&idx, &text).unwrap();
    let (code, _) = receiver(&t, &["list", "--read-only"]);
    assert_eq!(code, 0);
    assert_eq!(fs::read_to_string(&idx).unwrap(), text, "read-only");
    let (code, out) = receiver(&t, &["list"]);
    assert_eq!(code, 0);
    assert!(out.ends_with("I\tindex\n"), "{out}");
    let lines = fs::read_to_string(&idx).unwrap().lines().count();
    assert_eq!(lines, 1 + 8, "header, 7 versions and the alias");
    assert_eq!(drift(&t), Vec::<String>::new());
}

/// Two masters (two target names, one path) with aging `immediate` delete
/// each other's versions and send them again, concurrently, while a
/// watcher holding the index lock shared checks that every claim of the
/// index holds at that moment. At the end the index is exactly the disk.
#[test]
fn concurrent_writers_keep_the_index_true() {
    let w = World::new();
    let mut a = Vec::new();
    let mut b = Vec::new();
    for i in 0..16 {
        w.release("p", &i.to_string(), T0 + i);
        if i < 10 {
            a.push(format!("p/{i}"));
        }
        if i >= 6 {
            b.push(format!("p/{i}"));
        }
    }
    w.release("q", "1", T0 + 100);
    w.alias("q", "cur", "1");
    w.write_global("");
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let b: Vec<&str> = b.iter().map(String::as_str).collect();
    w.write_rm(&[("A/R", "open", 0, &a), ("B/R", "open", 0, &b)]);
    let path = w.path().join("shared");
    for (name, project) in [("a", "A"), ("b", "B")] {
        w.write_target(
            name,
            &format!(
                "kind = \"archive\"\ntransport = \"local\"\npath = \"{}\"\nprojects = [\"{project}\"]\npackages = [\"q/cur\"]\nwritable_grace = \"0\"\nparallel = 3\n[aging]\nmethod = \"immediate\"\nmax_delete = 1000\n",
                path.display()
            ),
        );
    }
    assert_exit(&w.blat(&["sync", "--target", "a"]), 0);

    let done = AtomicBool::new(false);
    let checks = AtomicUsize::new(0);
    let broken: Mutex<Vec<String>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        // Set when the masters are done, or when one of them failed.
        let _stop = common::SetOnDrop(&done);
        s.spawn(|| {
            let dpkg = path.join(".dpkg_archive");
            while !done.load(Ordering::Relaxed) {
                let dir = fs::File::open(&dpkg).unwrap();
                dir.lock_shared().unwrap();
                let held = claims_hold(&path);
                drop(dir);
                match held {
                    Ok(_) => checks.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        broken.lock().unwrap().push(e);
                        0
                    }
                };
            }
        });
        let masters: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|name| {
                let w = &w;
                s.spawn(move || {
                    for _ in 0..4 {
                        let out =
                            w.blat_env(&["sync", "--target", name], &[("BLAT_NOW", &later())]);
                        // The other master may delete what this one is
                        // about to link or delete: such items fail alone.
                        assert!(
                            matches!(out.status.code(), Some(0 | 1 | 3)),
                            "{name}: {}",
                            stderr(&out)
                        );
                        assert!(!stderr(&out).contains("index"), "{}", stderr(&out));
                    }
                })
            })
            .collect();
        for m in masters {
            m.join().unwrap();
        }
    });
    assert_eq!(broken.into_inner().unwrap(), Vec::<String>::new());
    assert!(checks.load(Ordering::Relaxed) > 0);
    assert_eq!(drift(&path), Vec::<String>::new());
    // And a last sync of each converges from the index alone.
    for name in ["a", "b"] {
        let out = w.blat_env(
            &["sync", "--target", name, "--json"],
            &[("BLAT_NOW", &later())],
        );
        assert_exit(&out, 0);
        let r = report(&out);
        assert_eq!(r["listing"], "index");
    }
    let on_disk: BTreeSet<String> = fs::read_dir(path.join("p"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    let want: BTreeSet<String> = b.iter().map(|pv| pv[2..].to_string()).collect();
    assert_eq!(on_disk, want, "b synced (and aged) last");
    assert_eq!(drift(&path), Vec::<String>::new());
}

/// Without flock(1) on the target no index is kept: `list` walks the
/// archive, builds nothing, and a change drops an index it finds (one made
/// while flock was there), so the index can never be stale.
#[test]
fn without_flock_the_receiver_keeps_no_index() {
    let w = world("");
    let t = w.target_dir("site");
    sync(&w, &[]);
    assert!(index_file(&t).is_file());
    // A PATH with every program of this machine but flock.
    let bin = w.path().join("bin");
    fs::create_dir(&bin).unwrap();
    for dir in ["/usr/local/bin", "/usr/bin", "/bin"] {
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = e.file_name();
            if name != "flock" && !bin.join(&name).exists() {
                std::os::unix::fs::symlink(e.path(), bin.join(&name)).unwrap();
            }
        }
    }
    let run = |args: &[&str]| {
        let out = Command::new("/bin/sh")
            .arg(receiver_program())
            .arg("-a")
            .arg(&t)
            .args(args)
            .env("PATH", &bin)
            .output()
            .unwrap();
        (out.status.code(), stdout(&out))
    };
    let (code, out) = run(&["list"]);
    assert_eq!(code, Some(0));
    assert!(
        out.ends_with("I\tscan\tno flock(1) on the target\n"),
        "{out}"
    );
    assert!(out.contains("V\tp\t3\t"), "{out}");
    assert!(index_file(&t).is_file(), "a list changes nothing");
    let (code, out) = run(&["delete", "p", "0"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(!index_file(&t).exists(), "the change dropped the index");
    let (code, out) = run(&["list"]);
    assert_eq!(code, Some(0));
    assert!(
        !out.contains("V\tp\t0\t") && !index_file(&t).exists(),
        "{out}"
    );
}

mod v2;
