//! Writers never destroy each other's work: two masters syncing one target
//! path at once, with `blat index` and `blat age --local` running on the
//! target meanwhile. A watcher walks the target the whole time: every
//! visible version is complete and equal to the source, or absent. No run
//! fails spuriously, and all converge.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use crate::common::{self, assert_exit, World};

const T0: i64 = 1_700_000_000;

/// Every version directory visible under `target` (depth 2, a name not
/// starting with ".") either has exactly the source's tree or vanished
/// while it was looked at (a swap or a deletion in flight, never partial).
fn check_visible(source: &Path, target: &Path) -> Result<(), String> {
    let Ok(packages) = fs::read_dir(target) else {
        return Ok(());
    };
    for p in packages.flatten() {
        let pname = p.file_name().to_string_lossy().to_string();
        if pname.starts_with('.') || !p.path().is_dir() {
            continue;
        }
        let Ok(versions) = fs::read_dir(p.path()) else {
            continue;
        };
        for v in versions.flatten() {
            let vname = v.file_name().to_string_lossy().to_string();
            let meta = match fs::symlink_metadata(v.path()) {
                Ok(m) => m,
                Err(_) => continue,
            };
            if vname.starts_with('.') || !meta.is_dir() {
                continue;
            }
            let want = common::snapshot(&source.join(&pname).join(&vname));
            // A tree walked while it is renamed away reads as vanished.
            let Some(got) = snapshot_if_stable(&v.path()) else {
                continue;
            };
            if got != want {
                return Err(format!(
                    "{pname}/{vname} visible but not equal to the source:\n{got:?}\n{want:?}"
                ));
            }
        }
    }
    Ok(())
}

/// `common::snapshot`, or None when part of the tree vanished meanwhile.
fn snapshot_if_stable(dir: &Path) -> Option<Vec<String>> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < todo.len() {
        let p = todo[i].clone();
        i += 1;
        let m = fs::symlink_metadata(&p).ok()?;
        let rel = p.strip_prefix(dir).unwrap().display().to_string();
        out.push(if m.file_type().is_symlink() {
            format!("{rel} -> {}", fs::read_link(&p).ok()?.display())
        } else if m.is_dir() {
            let mut children: Vec<_> = fs::read_dir(&p)
                .ok()?
                .map(|e| e.map(|e| e.path()))
                .collect::<Result<_, _>>()
                .ok()?;
            children.sort();
            todo.extend(children);
            format!("{rel}/ {:o} {}", m.mode() & 0o7777, m.mtime())
        } else {
            format!("{rel} {:o} {} {}", m.mode() & 0o7777, m.mtime(), m.len())
        });
    }
    // Walked in the same order as common::snapshot (breadth first, sorted).
    dir.is_dir().then_some(out)
}

#[test]
fn two_masters_and_target_side_jobs_never_destroy_each_others_work() {
    // Two masters: two configurations (own state, own target name) over
    // one source archive and one target path.
    let w = World::new();
    let mut set = Vec::new();
    for p in 0..12 {
        for v in 0..4 {
            let (pkg, ver) = (format!("p{p}"), format!("{v}.0"));
            let files: Vec<(String, String)> = (0..5)
                .map(|i| {
                    (
                        format!("d{i}/f{i}"),
                        format!("{pkg} {ver} {i}").repeat(50 * (i + 1)),
                    )
                })
                .collect();
            let refs: Vec<(&str, &str)> = files
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect();
            w.release_with(&pkg, &ver, T0 + v, &refs);
            set.push(format!("{pkg}/{ver}"));
        }
    }
    // Excess on the target, for age --local to delete meanwhile.
    for p in 0..4 {
        w.release(&format!("gone{p}"), "1.0", T0);
    }
    w.alias("p0", "cur", "3.0");
    let refs: Vec<&str> = set.iter().map(String::as_str).collect();
    w.write_global("");
    let target = w.target_dir("shared");
    let second = World::new();
    for (world, name) in [(&w, "one"), (&second, "two")] {
        if world.path() != w.path() {
            let text = fs::read_to_string(w.config().join("blat.toml"))
                .unwrap()
                .replace(
                    &w.state().display().to_string(),
                    &world.state().display().to_string(),
                );
            fs::write(world.config().join("blat.toml"), text).unwrap();
        }
        w.write_rm(&[("P/R1", "open", 0, &refs)]);
        world.write_target(
            name,
            &format!(
                "kind = \"archive\"\ntransport = \"local\"\npath = \"{}\"\nprojects = [\"P\"]\npackages = [\"p0/cur\"]\nparallel = 4\ncompression = \"none\"\n[aging]\nmethod = \"target\"\n",
                target.display()
            ),
        );
    }
    // The excess packages arrive first (a release that then leaves).
    let gone: Vec<String> = (0..4).map(|p| format!("gone{p}/1.0")).collect();
    let gone_refs: Vec<&str> = gone.iter().map(String::as_str).collect();
    let before = w.path().join("rm-before.sql");
    fs::write(&before, common::rm_sql(&[("P/R1", "open", 0, &gone_refs)])).unwrap();
    let rm = w.path().join("rm.sql");
    let current = fs::read(&rm).unwrap();
    fs::copy(&before, &rm).unwrap();
    assert_exit(&w.blat(&["sync", "--all"]), 0);
    fs::write(&rm, &current).unwrap();

    let done = AtomicBool::new(false);
    let source = w.archive();
    thread::scope(|s| {
        // Set when the workers are done, or when one of them failed.
        let stop = common::SetOnDrop(&done);
        let watcher = s.spawn(|| {
            let mut rounds = 0;
            while !done.load(Ordering::Relaxed) {
                check_visible(&source, &target).unwrap_or_else(|e| panic!("{e}"));
                rounds += 1;
            }
            rounds
        });
        let masters: Vec<_> = [(&w, "one"), (&second, "two")]
            .into_iter()
            .map(|(world, name)| {
                s.spawn(move || {
                    for _ in 0..3 {
                        let out = world.blat(&["sync", "--target", name]);
                        assert_exit(&out, 0);
                    }
                })
            })
            .collect();
        let target_jobs = s.spawn(|| {
            for _ in 0..3 {
                let out = std::process::Command::new(env!("CARGO_BIN_EXE_blat"))
                    .args(["-c", "/nonexistent", "index", "--archive"])
                    .arg(&target)
                    .output()
                    .unwrap();
                assert_exit(&out, 0);
                let out = std::process::Command::new(env!("CARGO_BIN_EXE_blat"))
                    .args([
                        "-c",
                        "/nonexistent",
                        "age",
                        "--local",
                        "--after",
                        "0s",
                        "--archive",
                    ])
                    .arg(&target)
                    .output()
                    .unwrap();
                assert_exit(&out, 0);
            }
        });
        for m in masters {
            m.join().unwrap();
        }
        target_jobs.join().unwrap();
        drop(stop);
        assert!(
            watcher.join().unwrap() > 0,
            "the watcher looked at least once"
        );
    });

    // Quiet again: one more round converges to the current set exactly.
    // Aging marks the excess first and deletes it at a later pass, once it
    // is older than the default grace (1h) on the target: judged hours later.
    assert_exit(&w.blat(&["sync", "--all"]), 0);
    let age_later = |secs: i64| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_blat"))
            .env("BLAT_NOW", (chrono_now() + secs).to_string())
            .args([
                "-c",
                "/nonexistent",
                "age",
                "--local",
                "--after",
                "0s",
                "--json",
                "--archive",
            ])
            .arg(&target)
            .output()
            .unwrap();
        assert_exit(&out, 0);
        out
    };
    age_later(7200);
    let out = age_later(7260);
    let age_report = common::stdout(&out);
    for pv in &set {
        assert_eq!(
            common::snapshot(&source.join(pv)),
            common::snapshot(&target.join(pv)),
            "{pv}"
        );
    }
    for pv in &gone {
        assert!(!target.join(pv).exists(), "{pv} aged out: {age_report}");
    }
    assert_eq!(
        fs::read_link(target.join("p0/cur")).unwrap().to_str(),
        Some("3.0")
    );
    common::assert_no_leftovers(&target);
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `fast` shares sync's send path: tags for many versions of packages new
/// to the target, sent over concurrent batches, all arrive in one pass.
#[test]
fn fast_delivers_every_tagged_version_of_new_packages() {
    let w = World::new();
    let mut pvs = Vec::new();
    for p in 0..10 {
        for v in 0..6 {
            let (pkg, ver) = (format!("q{p}"), format!("{v}.1"));
            w.release_with(&pkg, &ver, T0 + v, &[("f", "x"), ("d/g", "y")]);
            pvs.push(format!("{pkg}/{ver}"));
        }
    }
    w.write_global("");
    w.write_rm(&[("P/R1", "open", 0, &[])]);
    w.local_target("site", "parallel = 8\ncompression = \"none\"\n");
    for pv in &pvs {
        let (p, v) = pv.split_once('/').unwrap();
        assert_exit(&w.blat(&["tag", p, v]), 0);
    }
    let out = w.blat(&["fast", "--all"]);
    assert_exit(&out, 0);
    let t = w.target_dir("site");
    for pv in &pvs {
        assert_eq!(
            common::snapshot(&w.archive().join(pv)),
            common::snapshot(&t.join(pv)),
            "{pv}"
        );
    }
    let left: Vec<_> = fs::read_dir(w.path().join("tags/site"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| !n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(left.is_empty(), "every tag consumed: {left:?}");
    common::assert_no_leftovers(&t);
}
