//! The target's file system is untrusted (docs/security.md): symlinks
//! planted where blat's own directories or packages are, names in other
//! forms. blat and its receiver never read, write or delete outside the
//! target archive, and a symlink that resolves to a version protects it.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Output};

use crate::common::{self, assert_exit, stderr, stdout, World};

const T0: i64 = 1_700_000_000;

fn world(extra: &str) -> World {
    let w = World::new();
    w.release("a", "1.0", T0);
    w.release("a", "2.0", T0 + 1);
    w.release("b", "1.0", T0);
    w.write_global("");
    w.write_rm(&[("P/R1", "open", 0, &["a/1.0", "a/2.0", "b/1.0"])]);
    w.local_target("site", &format!("projects = [\"P\"]\n{extra}"));
    w
}

/// A directory outside the archive, with a file someone cares about.
fn victim(w: &World) -> std::path::PathBuf {
    let v = w.path().join("victim");
    fs::create_dir_all(v.join("a/1.0")).unwrap();
    fs::write(v.join("precious"), "precious").unwrap();
    fs::write(v.join("a/1.0/descpkg"), "not yours").unwrap();
    v
}

/// Runs the embedded receiver on `archive`, as the local transport does.
fn receiver(archive: &Path, args: &[&str]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(blat::target::RECEIVER)
        .arg("blat-receiver")
        .arg("-a")
        .arg(archive)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_symlinked_dpkg_archive_is_refused_everywhere() {
    let w = world("");
    assert_exit(&w.blat(&["sync", "--all"]), 0);
    let t = w.target_dir("site");
    let v = victim(&w);
    let before = common::snapshot(&v);
    fs::remove_dir_all(t.join(".dpkg_archive")).unwrap();
    symlink(&v, t.join(".dpkg_archive")).unwrap();

    // sync: the PackageList is not written through it.
    let out = w.blat(&["sync", "--all"]);
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        said.contains(".dpkg_archive is a symlink: refused"),
        "{said}"
    );
    // index and age --local on the target: refused, naming it.
    for args in [
        vec!["index", "--archive"],
        vec![
            "age",
            "--local",
            "--after",
            "0s",
            "--grace",
            "0s",
            "--archive",
        ],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_blat"))
            .args(["-c", "/nonexistent"])
            .args(&args)
            .arg(&t)
            .output()
            .unwrap();
        assert_ne!(out.status.code(), Some(0), "{args:?}");
        assert!(
            stderr(&out).contains("is a symlink: refused"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert_eq!(
        common::snapshot(&v),
        before,
        "nothing outside the archive changed"
    );
}

#[test]
fn a_planted_symlink_in_place_of_the_packagelist_is_replaced_not_followed() {
    let w = world("");
    assert_exit(&w.blat(&["sync", "--all"]), 0);
    let t = w.target_dir("site");
    let v = victim(&w);
    let list = t.join(".dpkg_archive/packagelist.txt");
    fs::remove_file(&list).unwrap();
    symlink(v.join("precious"), &list).unwrap();
    assert_exit(&w.blat(&["sync", "--all"]), 0);
    assert_eq!(fs::read_to_string(v.join("precious")).unwrap(), "precious");
    assert!(fs::read_to_string(&list).unwrap().contains("a 2.0"));
    // The same for the content index and its cache.
    for name in ["dpkg_archive_list.txt", "dpkg_archive_list.cache"] {
        let p = t.join(".dpkg_archive").join(name);
        let _ = fs::remove_file(&p);
        symlink(v.join("precious"), &p).unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_blat"))
        .args(["-c", "/nonexistent", "index", "--archive"])
        .arg(&t)
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert_eq!(fs::read_to_string(v.join("precious")).unwrap(), "precious");
}

#[test]
fn a_symlinked_package_directory_is_never_written_or_deleted_through() {
    let w = world("[aging]\nmethod = \"immediate\"\n");
    let t = w.target_dir("site");
    fs::create_dir_all(&t).unwrap();
    let v = victim(&w);
    symlink(&v, t.join("a")).unwrap();
    let before = common::snapshot(&v);
    let out = w.blat(&["sync", "--all", "--json"]);
    assert_exit(&out, 3);
    assert!(
        stdout(&out).contains("is a symlink: refused"),
        "{}",
        stdout(&out)
    );
    assert_eq!(common::snapshot(&v), before);
    assert!(t.join("b/1.0/descpkg").is_file(), "the others arrive");
    // The receiver's own commands refuse it too, whatever the master asks.
    for args in [
        &["delete", "a", "1.0"][..],
        &["link", "a", "cur", "1.0"],
        &["stat", "a"],
    ] {
        let out = receiver(&t, args);
        assert_eq!(common::snapshot(&v), before, "{args:?}");
        if args[0] != "stat" {
            assert_eq!(out.status.code(), Some(1), "{args:?}");
            assert!(
                stderr(&out).contains("is a symlink: refused"),
                "{}",
                stderr(&out)
            );
        } else {
            assert!(out.stdout.is_empty(), "stat lists nothing through a link");
        }
    }
}

/// A symlink in any form that resolves to a version protects it from
/// aging; deleting a version removes every symlink that resolves to it.
#[test]
fn aliases_in_every_form_protect_their_version() {
    let w = world("[aging]\nmethod = \"immediate\"\n");
    w.release("c", "1.0", T0);
    w.release("c", "2.0", T0);
    w.release("c", "3.0", T0);
    w.release("c", "4.0", T0);
    w.write_rm(&[(
        "P/R1",
        "open",
        0,
        &[
            "a/1.0", "a/2.0", "b/1.0", "c/1.0", "c/2.0", "c/3.0", "c/4.0",
        ],
    )]);
    assert_exit(&w.blat(&["sync", "--all"]), 0);
    let t = w.target_dir("site");
    common::make_writable(&t.join("c"));
    symlink("1.0/", t.join("c/slash")).unwrap();
    symlink("../c/2.0", t.join("c/up")).unwrap();
    symlink(t.join("c/3.0"), t.join("c/abs")).unwrap();
    // The release shrinks to a and b: c's versions are excess, but three
    // are aliased on the target; 4.0 is not.
    w.write_rm(&[("P/R1", "open", 0, &["a/1.0", "a/2.0", "b/1.0"])]);
    let later = (T0 + 100 * 86400).to_string();
    let out = w.blat_env(&["sync", "--all", "--json"], &[("BLAT_NOW", &later)]);
    assert_exit(&out, 0);
    for kept in ["1.0", "2.0", "3.0"] {
        assert!(
            t.join("c").join(kept).join("descpkg").is_file(),
            "c/{kept} kept"
        );
    }
    assert!(!t.join("c/4.0").exists(), "c/4.0 deleted");
    // The receiver's delete takes the aliases with their version.
    let out = receiver(&t, &["delete", "c", "2.0"]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("alias\tc\tup"), "{}", stdout(&out));
    assert!(fs::symlink_metadata(t.join("c/up")).is_err());
    assert!(fs::symlink_metadata(t.join("c/slash")).is_ok());
}

/// A setuid or setgid file in a package arrives without those bits, even on
/// a target written as root (the local transport run as root).
#[test]
fn setuid_and_setgid_bits_are_stripped() {
    use std::os::unix::fs::PermissionsExt;
    let w = World::new();
    let dir = w.build("s", "1.0", T0, &[("bin/su", "x"), ("bin/sg", "y")]);
    fs::set_permissions(dir.join("bin/su"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::set_permissions(dir.join("bin/sg"), fs::Permissions::from_mode(0o2755)).unwrap();
    fs::set_permissions(dir.join("bin"), fs::Permissions::from_mode(0o2755)).unwrap();
    common::set_mtime(&dir.join("bin"), T0);
    common::make_read_only(&dir);
    w.write_global("");
    w.write_rm(&[("P/R1", "open", 0, &["s/1.0"])]);
    w.local_target("site", "projects = [\"P\"]\n");
    assert_exit(&w.blat(&["sync", "--all"]), 0);
    let t = w.target_dir("site").join("s/1.0");
    let mode =
        |root: &Path, p: &str| fs::metadata(root.join(p)).unwrap().permissions().mode() & 0o7777;
    for p in ["bin/su", "bin/sg", "bin"] {
        assert_ne!(mode(&dir, p) & 0o6000, 0, "the source has them: {p}");
        assert_eq!(mode(&t, p), mode(&dir, p) & !0o6000, "{p}");
    }
}

/// A local target whose path is the source archive, inside it or around it
/// is a configuration error (aging would delete from the source), and
/// `age --local` refuses to run on this machine's master archive.
#[test]
fn a_target_overlapping_the_source_archive_is_refused() {
    let w = world("");
    let before = common::snapshot(&w.archive());
    for path in [w.archive(), w.archive().join("a"), w.path().to_path_buf()] {
        w.write_target(
            "site",
            &format!(
                "kind = \"archive\"\ntransport = \"local\"\npath = \"{}\"\nprojects = [\"P\"]\n[aging]\nmethod = \"immediate\"\n",
                path.display()
            ),
        );
        let out = w.blat(&["sync", "--all"]);
        assert_exit(&out, 2);
        assert!(
            stderr(&out).contains("site.conf:3:8: path"),
            "{}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains("overlaps the source archive"),
            "{}",
            stderr(&out)
        );
    }
    // age --local on the source archive, with this world's configuration.
    let age_local_on_source = || {
        w.blat(&[
            "age",
            "--local",
            "--after",
            "0s",
            "--grace",
            "0s",
            "--archive",
            w.archive().to_str().unwrap(),
        ])
    };
    let out = age_local_on_source();
    // A configuration that does not load tells age --local nothing; with
    // no PackageList there, it ages nothing and writes nothing. With a
    // valid configuration the master archive is refused outright.
    assert_exit(&out, 0);
    assert_eq!(common::snapshot(&w.archive()), before, "nothing written");
    w.local_target("site", "projects = [\"P\"]\n");
    let out = age_local_on_source();
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("overlaps the source archive"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        common::snapshot(&w.archive()),
        before,
        "the source is untouched"
    );
}

/// The same hostile target over SSH, the receiver running as an
/// unprivileged user: a planted symlink as a package directory and as
/// `.dpkg_archive` is never written through, a victim the target user owns
/// stays as it was, and aliases in other forms protect their versions.
#[test]
fn a_hostile_ssh_target_is_never_written_through() {
    use crate::sshd::{give_to, Sshd};
    let Some(sshd) = Sshd::start() else { return };
    let w = World::new();
    w.release("a", "1.0", T0);
    w.release("b", "1.0", T0);
    w.release("c", "1.0", T0);
    w.release("c", "2.0", T0);
    w.write_global("");
    w.write_rm(&[("P/R1", "open", 0, &["a/1.0", "b/1.0", "c/1.0", "c/2.0"])]);
    sshd.write_target(
        &w,
        "site",
        "projects = [\"P\"]\n[aging]\nmethod = \"immediate\"\n",
    );
    let t = sshd.archive();
    assert_exit(&w.blat(&["sync", "--all"]), 0);
    // The target user's own files outside the archive: a victim.
    let v = sshd.home.join("victim");
    fs::create_dir_all(v.join("1.0")).unwrap();
    fs::write(v.join("precious"), "precious").unwrap();
    give_to(&sshd.user, &v);
    let before = common::snapshot(&v);
    // a/ becomes a link to the victim; .dpkg_archive too; c/2.0 gets an
    // alias in the ../c/V form, then the release drops c.
    Command::new("rm")
        .arg("-rf")
        .arg(t.join("a"))
        .arg(t.join(".dpkg_archive"))
        .status()
        .unwrap();
    symlink(&v, t.join("a")).unwrap();
    symlink(&v, t.join(".dpkg_archive")).unwrap();
    common::make_writable(&t.join("c"));
    symlink("../c/2.0", t.join("c/up")).unwrap();
    give_to(&sshd.user, &t);
    w.write_rm(&[("P/R1", "open", 0, &["a/1.0", "b/1.0"])]);
    let later = (T0 + 100 * 86400).to_string();
    let out = w.blat_env(&["sync", "--all"], &[("BLAT_NOW", &later)]);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert_ne!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("is a symlink: refused"), "{said}");
    assert_eq!(
        common::snapshot(&v),
        before,
        "nothing written or deleted through a link"
    );
    assert!(t.join("b/1.0/descpkg").is_file());
    assert!(
        t.join("c/2.0/descpkg").is_file(),
        "aliased as ../c/2.0: kept"
    );
    assert!(!t.join("c/1.0").exists(), "not aliased: aged");
}
