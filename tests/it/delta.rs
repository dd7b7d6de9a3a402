//! New versions as deltas (`delta = "link" | "copy" | "off"`): the end
//! state on the target equals a full send, bit for bit with modes and
//! mtimes, over the local transport and the real sshd; a base that changed
//! on the target (descpkg mtime, a file's size) or that is hostile (a
//! symlink out, a file where a directory was) makes the receiver refuse the
//! delta and blat send the package in full in the same run.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::common::{self, Rng, World};
use crate::sshd::Sshd;

const T0: i64 = 1_700_000_000;

/// A version's tree: relative path → node, generated from a seed.
#[derive(Clone, Debug)]
enum Node {
    Dir {
        mode: u32,
        mtime: i64,
    },
    File {
        data: Vec<u8>,
        mode: u32,
        mtime: i64,
    },
    Link(String),
}

type Tree = Vec<(String, Node)>;

/// The old version: a few directories, files of all sizes (empty ones
/// too), read-only and writable modes, symlinks.
fn old_tree(rng: &mut Rng) -> Tree {
    let mut tree = vec![
        ("bin".to_string(), dir(rng)),
        ("lib".to_string(), dir(rng)),
        ("share".to_string(), dir(rng)),
        ("share/doc".to_string(), dir(rng)),
    ];
    let dirs = ["", "bin/", "lib/", "share/", "share/doc/"];
    for i in 0..rng.range(30, 60) {
        let d = rng.pick(&dirs);
        let size = match rng.below(10) {
            0 => 0,
            1 => rng.range(100_000, 400_000),
            _ => rng.range(1, 5000),
        } as usize;
        let mode = *rng.pick(&[0o444, 0o555, 0o644, 0o755, 0o400]);
        let noise = rng.chance(50);
        let data = rng.bytes(size, noise);
        let mtime = T0 - rng.range(1000, 100_000) as i64;
        tree.push((format!("{d}f{i}"), Node::File { data, mode, mtime }));
    }
    tree.push(("lib/link".into(), Node::Link("../bin".into())));
    tree.push(("share/dangling".into(), Node::Link("nowhere".into())));
    tree
}

fn dir(rng: &mut Rng) -> Node {
    Node::Dir {
        mode: *rng.pick(&[0o555, 0o755, 0o750]),
        mtime: T0 - rng.range(0, 1000) as i64,
    }
}

/// The new version: most files as they were, some changed (same size
/// sometimes), some with a new mtime or mode only, some removed, some
/// added, a symlink changed.
fn new_tree(rng: &mut Rng, old: &Tree) -> Tree {
    let mut tree = Vec::new();
    for (rel, node) in old {
        let node = match node.clone() {
            Node::File { data, mode, mtime } => match rng.below(20) {
                0 => continue,
                1 | 2 => {
                    let len = if rng.chance(50) {
                        data.len()
                    } else {
                        rng.range(0, 6000) as usize
                    };
                    let mut new = rng.bytes(len, true);
                    if new == data && !new.is_empty() {
                        new[0] ^= 1;
                    }
                    Node::File {
                        data: new,
                        mode,
                        mtime: T0 + 10,
                    }
                }
                3 => Node::File {
                    data,
                    mode,
                    mtime: T0 + 20,
                },
                4 => Node::File {
                    data,
                    mode: mode ^ 0o100,
                    mtime,
                },
                _ => Node::File { data, mode, mtime },
            },
            Node::Link(_) if rel == "lib/link" => Node::Link("../share".into()),
            other => other,
        };
        tree.push((rel.clone(), node));
    }
    for i in 0..rng.range(1, 5) {
        let len = rng.range(0, 3000) as usize;
        let data = rng.bytes(len, false);
        tree.push((
            format!("lib/new{i}"),
            Node::File {
                data,
                mode: 0o444,
                mtime: T0 + 30,
            },
        ));
    }
    tree
}

/// Writes a released version of `tree` into the world's archive.
fn write_version(w: &World, package: &str, version: &str, mtime: i64, tree: &Tree) -> PathBuf {
    let root = w.build(package, version, mtime, &[]);
    for (rel, node) in tree {
        let path = root.join(rel);
        match node {
            Node::Dir { .. } => fs::create_dir_all(&path).unwrap(),
            Node::File { data, .. } => fs::write(&path, data).unwrap(),
            Node::Link(to) => std::os::unix::fs::symlink(to, &path).unwrap(),
        }
    }
    // Modes and mtimes last, deepest first, so writing does not change them.
    for (rel, node) in tree.iter().rev() {
        let path = root.join(rel);
        match node {
            Node::Dir { mode, mtime } | Node::File { mode, mtime, .. } => {
                fs::set_permissions(&path, fs::Permissions::from_mode(*mode)).unwrap();
                common::set_mtime(&path, *mtime);
            }
            Node::Link(_) => {}
        }
    }
    common::set_mtime(&root.join("descpkg"), mtime);
    fs::set_permissions(root.join("descpkg"), fs::Permissions::from_mode(0o444)).unwrap();
    common::set_mtime(&root, mtime);
    fs::set_permissions(&root, fs::Permissions::from_mode(0o555)).unwrap();
    root
}

fn lines(root: &Path) -> Vec<String> {
    common::picture(root)
        .unwrap()
        .iter()
        .map(|e| e.line(""))
        .collect()
}

/// Regular files of `new` that share their inode with a file of `old`.
fn shared_inodes(old: &Path, new: &Path) -> usize {
    let inodes: std::collections::HashSet<u64> = common::walk(old)
        .iter()
        .filter_map(|p| fs::symlink_metadata(p).ok())
        .filter(|m| m.is_file())
        .map(|m| m.ino())
        .collect();
    common::walk(new)
        .iter()
        .filter_map(|p| fs::symlink_metadata(p).ok())
        .filter(|m| m.is_file() && inodes.contains(&m.ino()))
        .count()
}

/// A world with p/1.0 and p/2.0 (seeded) whose release first holds 1.0.
fn world(seed: u64) -> World {
    let w = World::new();
    let mut rng = Rng::new(seed);
    let old = old_tree(&mut rng);
    let new = new_tree(&mut rng, &old);
    write_version(&w, "p", "1.0", T0, &old);
    write_version(&w, "p", "2.0", T0 + 100, &new);
    w.write_global("");
    w.write_rm(&[("P/R1", "open", 0, &["p/1.0"])]);
    w
}

fn sync(w: &World, target: &str) -> String {
    let out = w.blat(&["sync", "-v", "--target", target]);
    common::assert_exit(&out, 0);
    common::stderr(&out) + &common::stdout(&out)
}

/// Sends 1.0, then 2.0, to targets with delta link, copy and off: all
/// three end states equal the source's 2.0 (what a full send gives), only
/// `link` shares inodes with 1.0, and removing 1.0 leaves 2.0 intact.
#[test]
fn delta_end_state_equals_full_send_local() {
    for seed in [1, 2, 3] {
        let w = world(seed);
        for (name, delta) in [("link", "link"), ("copy", "copy"), ("off", "off")] {
            w.local_target(name, &format!("projects = [\"P\"]\ndelta = \"{delta}\""));
            sync(&w, name);
        }
        w.write_rm(&[("P/R1", "open", 0, &["p/1.0", "p/2.0"])]);
        let want = lines(&w.archive().join("p/2.0"));
        for name in ["link", "copy", "off"] {
            let log = sync(&w, name);
            let got = lines(&w.target_dir(name).join("p/2.0"));
            assert_eq!(
                got,
                want,
                "seed {seed}, delta = {name}:\n{}",
                common::diff(&want, &got, 10)
            );
            let from_base = log.contains("of it from 1.0");
            assert_eq!(from_base, name != "off", "seed {seed} {name}: {log}");
            let shared = shared_inodes(
                &w.target_dir(name).join("p/1.0"),
                &w.target_dir(name).join("p/2.0"),
            );
            assert_eq!(
                shared > 0,
                name == "link",
                "seed {seed} {name}: {shared} shared"
            );
            assert!(common::blat_names(&w.target_dir(name)).is_empty());
        }
        // Aging the base away never harms the new version.
        w.write_rm(&[("P/R1", "open", 0, &["p/2.0"])]);
        for name in ["link", "copy"] {
            w.write_target(
                name,
                &format!(
                    "kind = \"archive\"\ntransport = \"local\"\npath = \"{}\"\nprojects = [\"P\"]\nwritable_grace = \"0\"\n[aging]\nmethod = \"immediate\"\n",
                    w.target_dir(name).display()
                ),
            );
            // A second on: with writable_grace 0, a version that arrived in
            // this very second is still young (plan::excess), and 1.0 may
            // have arrived in the second the test runs in.
            let later = (std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                + 2)
            .to_string();
            let out = w.blat_env(
                &["sync", "-v", "--target", name],
                &[("BLAT_NOW", later.as_str())],
            );
            common::assert_exit(&out, 0);
            assert!(!w.target_dir(name).join("p/1.0").exists());
            assert_eq!(
                lines(&w.target_dir(name).join("p/2.0")),
                want,
                "{name} after aging"
            );
        }
    }
}

/// The same over SSH, into the real sshd's archive.
#[test]
fn delta_end_state_equals_full_send_ssh() {
    let Some(sshd) = Sshd::start() else { return };
    let w = world(7);
    sshd.write_target(&w, "site", "projects = [\"P\"]\n");
    sync(&w, "site");
    w.write_rm(&[("P/R1", "open", 0, &["p/1.0", "p/2.0"])]);
    let log = sync(&w, "site");
    assert!(log.contains("of it from 1.0"), "{log}");
    let want = lines(&w.archive().join("p/2.0"));
    let got = lines(&sshd.archive().join("p/2.0"));
    assert_eq!(got, want, "{}", common::diff(&want, &got, 10));
    assert!(shared_inodes(&sshd.archive().join("p/1.0"), &sshd.archive().join("p/2.0")) > 0);
    assert!(common::blat_names(&sshd.archive()).is_empty());
}

/// Picks a file of the target's 1.0 that 2.0 reuses (same path, same
/// content in the source).
fn reused_file(w: &World) -> String {
    let old = w.archive().join("p/1.0");
    let new = w.archive().join("p/2.0");
    let mut names: Vec<String> = common::walk(&new)
        .iter()
        .filter(|p| fs::symlink_metadata(p).unwrap().is_file())
        .map(|p| p.strip_prefix(&new).unwrap().to_string_lossy().into_owned())
        .filter(|rel| rel != "descpkg" && rel.contains('/'))
        .filter(|rel| {
            let a = fs::read(old.join(rel));
            a.is_ok() && a.unwrap() == fs::read(new.join(rel)).unwrap()
        })
        .collect();
    names.sort();
    names.into_iter().next().expect("a reused file")
}

/// Changes the target's base after blat has listed it is not possible from
/// outside a run, so the file-level checks are provoked by changing base
/// files (the listing only knows descpkg mtimes): the receiver refuses the
/// delta ("base"), blat sends 2.0 in full in the same run, the end state is
/// right and nothing outside the base was followed.
#[test]
fn a_changed_or_hostile_base_means_a_full_send() {
    let outside = tempfile::tempdir().unwrap();
    type Tamper = fn(&Path, &str, &Path);
    let cases: [(&str, Tamper); 3] = [
        ("size", |base, rel, _| {
            let p = base.join(rel);
            fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
            let mut data = fs::read(&p).unwrap();
            data.push(b'x');
            fs::write(&p, data).unwrap();
        }),
        ("symlink out", |base, rel, outside| {
            let p = base.join(rel);
            let len = fs::metadata(&p).unwrap().len() as usize;
            let secret = outside.join("secret");
            fs::write(&secret, vec![b's'; len]).unwrap();
            fs::remove_file(&p).unwrap();
            std::os::unix::fs::symlink(&secret, &p).unwrap();
        }),
        ("file where a directory was", |base, rel, _| {
            let top = base.join(rel.split('/').next().unwrap());
            common::remove_tree(&top);
            fs::write(&top, "not a directory").unwrap();
        }),
    ];
    for (what, tamper) in cases {
        let w = world(11);
        w.local_target("site", "projects = [\"P\"]");
        sync(&w, "site");
        let base = w.target_dir("site").join("p/1.0");
        let rel = reused_file(&w);
        common::make_writable(&base);
        tamper(&base, &rel, outside.path());
        w.write_rm(&[("P/R1", "open", 0, &["p/1.0", "p/2.0"])]);
        let log = sync(&w, "site");
        assert!(log.contains("sending it in full"), "{what}: {log}");
        let want = lines(&w.archive().join("p/2.0"));
        let got = lines(&w.target_dir("site").join("p/2.0"));
        assert_eq!(got, want, "{what}: {}", common::diff(&want, &got, 10));
        assert_eq!(shared_inodes(&base, &w.target_dir("site").join("p/2.0")), 0);
        assert!(
            common::blat_names(&w.target_dir("site")).is_empty(),
            "{what}"
        );
        if let Ok(m) = fs::metadata(outside.path().join("secret")) {
            assert_eq!(m.nlink(), 1, "{what}: the outside file was linked");
        }
    }
}

/// The receiver's own check of the base's descpkg mtime: a delta planned
/// against a listing that is stale by the time it arrives is refused with
/// `base` (nothing installed, nothing left), and the send path then
/// delivers the package in full.
#[test]
fn a_base_descpkg_changed_after_the_listing_is_refused() {
    use blat::archive::{PackageVersion, SourceArchive};
    use blat::config::{Compression, DeltaMode};
    use blat::delta::Bases;
    use blat::target::local::LocalTransport;
    use blat::target::receiver::ReceiverTarget;
    use blat::target::{pack, Target};

    let w = world(5);
    w.local_target("site", "projects = [\"P\"]");
    sync(&w, "site");
    let root = w.target_dir("site");
    let target = ReceiverTarget::new("site", LocalTransport::new(root.clone()));
    let source = SourceArchive::new(w.archive());
    let listing = target.list().unwrap();
    let pv = PackageVersion::new("p", "2.0").unwrap();
    let mtimes = listing
        .versions
        .iter()
        .map(|(pv, on)| (pv.clone(), on.mtime));
    let bases = Bases::new(DeltaMode::Link, mtimes.collect(), None);
    let mut outgoing = pack::scan(&source, &pv).unwrap();
    bases.plan(&source, &mut outgoing).unwrap();
    assert!(outgoing.delta.is_some(), "2.0 is planned as a delta of 1.0");
    // The base changes after the listing.
    common::set_mtime(&root.join("p/1.0/descpkg"), T0 + 5);
    let got = target
        .receive(&source, &[outgoing.clone()], Compression::Gzip(1), &|_| {})
        .unwrap();
    assert_eq!(got.len(), 1);
    assert!(got[0].stale_base, "{got:?}");
    let why = got[0].result.clone().unwrap_err();
    assert!(why.contains("descpkg mtime"), "{why}");
    assert!(!root.join("p/2.0").exists());
    assert!(common::blat_names(&root).is_empty());
    // The full send of the same package arrives.
    let got = target
        .receive(
            &source,
            &[outgoing.without_delta()],
            Compression::Gzip(1),
            &|_| {},
        )
        .unwrap();
    assert_eq!(got[0].result, Ok(()));
    assert_eq!(
        lines(&root.join("p/2.0")),
        lines(&w.archive().join("p/2.0"))
    );
}

/// `kill -9` of blat, then of the receiver's shell, while a delta's
/// temporary directory is filled and its stream is under way (slowed by
/// bwlimit): the new version is never visible in part, and the next sync
/// converges with nothing left behind.
#[test]
fn a_kill_mid_delta_leaves_no_partial_package() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    for victim in ["blat", "receiver"] {
        let w = world(13);
        // A big changed file, so the stream takes seconds at 1 MiB/s.
        let new = w.archive().join("p/2.0");
        common::make_writable(&new);
        let mut rng = Rng::new(99);
        fs::write(new.join("share/big"), rng.bytes(4 << 20, true)).unwrap();
        common::set_mtime(&new.join("share"), T0);
        common::set_mtime(&new, T0 + 100);
        common::make_read_only(&new);
        w.local_target("site", "projects = [\"P\"]\nbwlimit = \"1m\"");
        sync(&w, "site");
        w.write_rm(&[("P/R1", "open", 0, &["p/1.0", "p/2.0"])]);
        let root = w.target_dir("site");
        // The receiver's own temporaries (the delta manifest, a delta's work
        // files) live with its writer marker, which gc removes once the
        // writer is dead: a SIGKILL leaves none of them in TMPDIR. Only
        // tar's error log stays there (the archive's file system may be
        // full, and then its words are the message).
        let tmp = w.path().join("tmp");
        fs::create_dir_all(&tmp).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_blat"))
            .env("TMPDIR", &tmp)
            .arg("-c")
            .arg(w.config())
            .args(["sync", "--target", "site"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The delta's temporary directory appears once the base is checked.
        let deadline = Instant::now() + Duration::from_secs(30);
        while common::blat_names(&root.join("p")).is_empty() {
            assert!(Instant::now() < deadline, "{victim}: no temporary appeared");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(300));
        let is_receiver = |a: &[String]| {
            a.first().is_some_and(|c| c == "sh")
                && a.iter().any(|x| x == "receive")
                && common::mentions(a, &root)
        };
        if victim == "blat" {
            assert!(common::kill9(child.id() as i32));
        } else {
            let procs = common::processes(is_receiver);
            assert!(!procs.is_empty(), "no receiver running");
            for (pid, _) in procs {
                common::kill9(pid);
            }
        }
        let _ = child.wait();
        assert!(common::wait_gone(is_receiver, Duration::from_secs(30)));
        assert!(
            !root.join("p/2.0").exists()
                || lines(&root.join("p/2.0")) == lines(&w.archive().join("p/2.0")),
            "{victim}: a partial p/2.0 is visible"
        );
        sync(&w, "site");
        assert_eq!(
            lines(&root.join("p/2.0")),
            lines(&w.archive().join("p/2.0")),
            "{victim}"
        );
        assert!(common::blat_names(&root).is_empty(), "{victim}: leftovers");
        let in_tmp: Vec<String> = fs::read_dir(&tmp)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with("blat-receiver-tar-errors."))
            .collect();
        assert!(in_tmp.is_empty(), "{victim}: left in TMPDIR: {in_tmp:?}");
    }
}

/// `bwlimit` holds for all parallel sends to a target together: two
/// packages of 512 KiB of noise at 256 KiB/s (a plain number is KiB/s,
/// as rsync's) take four seconds at least, and arrive whole.
#[test]
fn bwlimit_holds_for_all_sends_to_a_target_together() {
    let w = World::new();
    let mut rng = Rng::new(3);
    for p in ["a", "b"] {
        let dir = w.build(p, "1", T0, &[]);
        fs::write(dir.join("blob"), rng.bytes(512 << 10, true)).unwrap();
        common::make_read_only(&dir);
    }
    w.write_global("");
    w.write_rm(&[("P/R1", "open", 0, &["a/1", "b/1"])]);
    w.local_target(
        "site",
        "projects = [\"P\"]\nparallel = 2\ncompression = \"none\"\nbwlimit = 256",
    );
    let started = std::time::Instant::now();
    sync(&w, "site");
    let secs = started.elapsed().as_secs_f64();
    assert!(secs >= 3.9, "1 MiB at 256 KiB/s took {secs:.2}s");
    for p in ["a", "b"] {
        let want = lines(&w.archive().join(p).join("1"));
        assert_eq!(lines(&w.target_dir("site").join(p).join("1")), want);
    }
}

/// `fast` takes the same path: a tagged new version arrives as a delta of
/// the version the target holds, equal to the source.
#[test]
fn fast_sends_a_tagged_new_version_as_a_delta() {
    let w = world(17);
    w.local_target("site", "projects = [\"P\"]");
    sync(&w, "site");
    common::assert_exit(&w.blat(&["tag", "p", "2.0", "--target", "site"]), 0);
    let out = w.blat(&["fast", "-v", "--target", "site"]);
    common::assert_exit(&out, 0);
    let log = common::stderr(&out) + &common::stdout(&out);
    assert!(log.contains("of it from 1.0"), "{log}");
    let want = lines(&w.archive().join("p/2.0"));
    let got = lines(&w.target_dir("site").join("p/2.0"));
    assert_eq!(got, want, "{}", common::diff(&want, &got, 10));
    assert!(
        shared_inodes(
            &w.target_dir("site").join("p/1.0"),
            &w.target_dir("site").join("p/2.0")
        ) > 0
    );
}

/// Over SSH, a base file whose size changed on the target: the receiver
/// refuses the delta and blat sends the package in full in the same run.
#[test]
fn a_changed_base_over_ssh_means_a_full_send() {
    let Some(sshd) = Sshd::start() else { return };
    let w = world(19);
    sshd.write_target(&w, "site", "projects = [\"P\"]\n");
    sync(&w, "site");
    let base = sshd.archive().join("p/1.0");
    let rel = reused_file(&w);
    common::make_writable(&base);
    let mut data = fs::read(base.join(&rel)).unwrap();
    data.extend_from_slice(b"more");
    fs::write(base.join(&rel), data).unwrap();
    w.write_rm(&[("P/R1", "open", 0, &["p/1.0", "p/2.0"])]);
    let log = sync(&w, "site");
    assert!(log.contains("sending it in full"), "{log}");
    let want = lines(&w.archive().join("p/2.0"));
    let got = lines(&sshd.archive().join("p/2.0"));
    assert_eq!(got, want, "{}", common::diff(&want, &got, 10));
    assert!(common::blat_names(&sshd.archive()).is_empty());
}
