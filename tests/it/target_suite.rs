//! The shared `Target` suite: every transport must pass every case here.
//! `target_suite!(harness)` instantiates every case for one transport, where
//! `harness` builds a fresh [`Harness`] (or `None` when the transport's
//! server is missing: a skip, a failure under `CI=true`). The local harness
//! is below; the SSH one, on a real sshd, in `ssh.rs`. The case list exists
//! once, in the macro: a case function it does not name is dead code, which
//! this module denies.
#![deny(dead_code)]

use std::fs;
use std::path::PathBuf;

use blat::archive::{Alias, Name, PackageVersion, SourceArchive};
use blat::config::Compression;
use blat::target::receiver::ReceiverTarget;
use blat::target::{pack, RunOutput, Target, Transport};

use crate::common::{self, World};
use crate::sshd::Sshd;

/// Runs the receiver with raw arguments (to test its own validation) and
/// optional stdin bytes.
pub type RawFn = Box<dyn Fn(&[&str], Option<&[u8]>) -> anyhow::Result<RunOutput>>;

/// One transport under test, on a fresh world.
pub struct Harness {
    pub world: World,
    pub target: Box<dyn Target>,
    pub raw: RawFn,
    /// The target archive as seen from this machine.
    pub root: PathBuf,
    /// The server the transport talks to, if any: dropped after the target.
    _server: Option<Sshd>,
}

impl Harness {
    /// A harness whose target and raw calls each get a transport of their
    /// own from `open`.
    pub fn new<T: Transport + 'static>(
        name: &str,
        world: World,
        root: PathBuf,
        open: impl Fn() -> T,
        server: Option<Sshd>,
    ) -> Harness {
        let target = ReceiverTarget::new(name, open());
        let raw_transport = open();
        let raw: RawFn = Box::new(move |args, input| {
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            match input {
                None => raw_transport.run(&args, None),
                Some(bytes) => {
                    let bytes = bytes.to_vec();
                    let mut feed = move |w: &mut dyn std::io::Write| -> anyhow::Result<()> {
                        // A cut stream may make the receiver stop reading: ignore EPIPE.
                        let _ = w.write_all(&bytes);
                        Ok(())
                    };
                    raw_transport.run(&args, Some(&mut feed))
                }
            }
        });
        Harness {
            world,
            target: Box::new(target),
            raw,
            root,
            _server: server,
        }
    }
}

pub fn pv(p: &str, v: &str) -> PackageVersion {
    PackageVersion::new(p, v).unwrap()
}

fn alias(p: &str, a: &str, v: &str) -> Alias {
    Alias {
        package: Name::new(p).unwrap(),
        alias: Name::new(a).unwrap(),
        version: Name::new(v).unwrap(),
    }
}

/// Sends package-versions from the world's archive in one batch.
fn send(
    h: &Harness,
    pvs: &[PackageVersion],
    compression: Compression,
) -> Vec<blat::target::Received> {
    let source = SourceArchive::new(h.world.archive());
    let batch: Vec<_> = pvs
        .iter()
        .map(|p| pack::scan(&source, p).unwrap())
        .collect();
    h.target
        .receive(&source, &batch, compression, &|_| {})
        .unwrap()
}

/// The tree of one package-version, for comparing source and target.
fn tree(root: &std::path::Path, p: &PackageVersion) -> Vec<String> {
    common::snapshot(&root.join(p.package.as_str()).join(p.version.as_str()))
}

pub fn list_empty(h: Harness) {
    let l = h.target.list().unwrap();
    assert!(l.versions.is_empty() && l.aliases.is_empty(), "{l:?}");
    let info = h.target.version().unwrap();
    assert_eq!(info.protocol, "1");
    assert!(info.decompressors.contains(&"gzip".to_string()), "{info:?}");
}

pub fn receive_keeps_modes_mtimes_links(h: Harness) {
    h.world.release("a", "1.0", 1_600_000_000);
    h.world.release_with(
        "b",
        "2.0",
        1_600_000_100,
        &[("deep/er/x.txt", "x"), ("run.sh", "->deep/er/x.txt")],
    );
    for compression in [
        Compression::Gzip(6),
        Compression::None,
        Compression::Zstd(3),
    ] {
        let results = send(&h, &[pv("a", "1.0"), pv("b", "2.0")], compression);
        assert!(
            results.iter().all(|r| r.result.is_ok()),
            "{compression:?}: {results:?}"
        );
        for p in [pv("a", "1.0"), pv("b", "2.0")] {
            assert_eq!(
                tree(&h.world.archive(), &p),
                tree(&h.root, &p),
                "{compression:?} {p}"
            );
        }
    }
    let l = h.target.list().unwrap();
    let mtime = |p| l.versions.get(&p).map(|on| on.mtime);
    assert_eq!(mtime(pv("a", "1.0")), Some(1_600_000_000));
    assert_eq!(mtime(pv("b", "2.0")), Some(1_600_000_100));
    common::assert_no_leftovers(&h.root);
    let one = h.target.stat(&Name::new("b").unwrap()).unwrap();
    assert_eq!(one.versions.len(), 1);
}

pub fn replace_swaps_whole_version(h: Harness) {
    let dir = h
        .world
        .release_with("a", "1.0", 1_600_000_000, &[("old.txt", "old")]);
    assert!(send(&h, &[pv("a", "1.0")], Compression::Gzip(1))[0]
        .result
        .is_ok());
    common::make_writable(&dir);
    fs::remove_dir_all(&dir).unwrap();
    h.world
        .release_with("a", "1.0", 1_600_000_500, &[("new.txt", "new")]);
    assert!(send(&h, &[pv("a", "1.0")], Compression::Gzip(1))[0]
        .result
        .is_ok());
    assert_eq!(
        tree(&h.world.archive(), &pv("a", "1.0")),
        tree(&h.root, &pv("a", "1.0"))
    );
    assert!(!h.root.join("a/1.0/old.txt").exists());
    assert_eq!(
        h.target.list().unwrap().versions[&pv("a", "1.0")].mtime,
        1_600_000_500
    );
    common::assert_no_leftovers(&h.root);
}

pub fn link_and_repoint(h: Harness) {
    h.world.release("j", "1", 100);
    h.world.release("j", "2", 200);
    // An alias to a version that is not on the target is refused.
    let err = h.target.link(&alias("j", "cur", "1")).unwrap_err();
    assert!(format!("{err:#}").contains("cur"), "{err:#}");
    assert!(fs::symlink_metadata(h.root.join("j/cur")).is_err());
    send(&h, &[pv("j", "1"), pv("j", "2")], Compression::Gzip(1));
    h.target.link(&alias("j", "cur", "1")).unwrap();
    assert_eq!(
        fs::read_link(h.root.join("j/cur")).unwrap(),
        PathBuf::from("1")
    );
    h.target.link(&alias("j", "cur", "2")).unwrap();
    assert_eq!(
        fs::read_link(h.root.join("j/cur")).unwrap(),
        PathBuf::from("2")
    );
    let l = h.target.list().unwrap();
    assert_eq!(l.aliases, vec![alias("j", "cur", "2")]);
    // A real version directory is never replaced by an alias.
    assert!(h.target.link(&alias("j", "1", "2")).is_err());
    assert!(h.root.join("j/1/descpkg").is_file());
}

pub fn delete_removes_aliases_first(h: Harness) {
    h.world.release("j", "1", 100);
    h.world.release("j", "2", 200);
    send(&h, &[pv("j", "1"), pv("j", "2")], Compression::Gzip(1));
    h.target.link(&alias("j", "cur", "1")).unwrap();
    h.target.link(&alias("j", "keep", "2")).unwrap();
    let deleted = h.target.delete(&pv("j", "1")).unwrap();
    assert_eq!(deleted.aliases, vec![Name::new("cur").unwrap()]);
    assert!(deleted.bytes > 0);
    assert!(!h.root.join("j/1").exists() && fs::symlink_metadata(h.root.join("j/cur")).is_err());
    assert!(h.root.join("j/2/descpkg").is_file());
    // Deleting an alias removes only the link.
    h.target.delete(&pv("j", "keep")).unwrap();
    assert!(fs::symlink_metadata(h.root.join("j/keep")).is_err() && h.root.join("j/2").is_dir());
    // The last version takes its package directory with it.
    h.target.delete(&pv("j", "2")).unwrap();
    assert!(!h.root.join("j").exists());
    assert!(
        h.target.delete(&pv("j", "2")).is_err(),
        "deleting what is absent is an error"
    );
    common::assert_no_leftovers(&h.root);
}

pub fn put_is_atomic_file(h: Harness) {
    h.target.put("packagelist.txt", b"# header\na 1\n").unwrap();
    h.target.put("packagelist.txt", b"# header\nb 2\n").unwrap();
    assert_eq!(
        fs::read_to_string(h.root.join(".dpkg_archive/packagelist.txt")).unwrap(),
        "# header\nb 2\n"
    );
    assert!(h.target.put("../escape", b"x").is_err());
    assert!(!h.root.join("escape").exists());
    let names: Vec<_> = fs::read_dir(h.root.join(".dpkg_archive"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "no temporary left: {names:?}");
}

pub fn df_reports_space(h: Harness) {
    assert!(h.target.df().unwrap() > 0);
}

pub fn gc_removes_leftovers(h: Harness) {
    h.world.release("a", "1.0", 100);
    send(&h, &[pv("a", "1.0")], Compression::Gzip(1));
    // What a killed receiver leaves: read-only temp trees beside versions,
    // named after their writer's PID, which is gone. A live writer's
    // temporaries (this test's own PID stands for one) are never touched.
    let src = h.world.archive().join("a/1.0");
    let dead = common::dead_pid();
    let live = std::process::id();
    let dead_tmp = format!("a/.blat-tmp-{dead}-tok1-0");
    let dead_del = format!("a/.blat-del-{dead}-tok2-3");
    let live_tmp = format!("a/.blat-tmp-{live}-tok3-0");
    for leftover in [&dead_tmp, &dead_del, &live_tmp] {
        let out = std::process::Command::new("cp")
            .arg("-a")
            .arg(&src)
            .arg(h.root.join(leftover))
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    fix_owner(&h);
    let removed = h.target.gc().unwrap();
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert_eq!(
        common::leftovers(&h.root),
        [h.root.join(&live_tmp).display().to_string()]
    );
    assert!(
        h.root.join("a/1.0/descpkg").is_file(),
        "gc never touches real versions"
    );
}

pub fn cut_stream_leaves_nothing(h: Harness) {
    let big: String = (0..200_000)
        .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
        .collect();
    h.world
        .release_with("a", "1.0", 100, &[("big.bin", &big), ("small", "s")]);
    let source = SourceArchive::new(h.world.archive());
    let outgoing = pack::scan(&source, &pv("a", "1.0")).unwrap();
    let mut stream = Vec::new();
    pack::stream(
        &source,
        std::slice::from_ref(&outgoing),
        "cut1",
        Compression::None,
        &mut stream,
        &|_| {},
    )
    .unwrap();
    let files = outgoing.files.to_string();
    let bytes = outgoing.bytes.to_string();
    let args = [
        "receive",
        "none",
        "cut1",
        "a",
        "1.0",
        files.as_str(),
        bytes.as_str(),
    ];
    let out = (h.raw)(&args, Some(&stream[..stream.len() / 2])).unwrap();
    assert_ne!(out.status, 0, "a cut stream must fail");
    assert!(!h.root.join("a/1.0").exists(), "no partial package visible");
    common::assert_no_leftovers(&h.root);
    // A wrong declared count is a per-package failure (exit 3 when others arrive).
    h.world.release("b", "1", 100);
    let ob = pack::scan(&source, &pv("b", "1")).unwrap();
    let mut stream = Vec::new();
    pack::stream(
        &source,
        &[outgoing.clone(), ob.clone()],
        "cnt1",
        Compression::Gzip(1),
        &mut stream,
        &|_| {},
    )
    .unwrap();
    let wrong = (outgoing.files + 1).to_string();
    let bf = ob.files.to_string();
    let bb = ob.bytes.to_string();
    let args = [
        "receive",
        "gzip",
        "cnt1",
        "a",
        "1.0",
        wrong.as_str(),
        bytes.as_str(),
        "b",
        "1",
        bf.as_str(),
        bb.as_str(),
    ];
    let out = (h.raw)(&args, Some(&stream)).unwrap();
    assert_eq!(out.status, 3, "{out:?}");
    assert!(out.stdout.contains("fail\ta\t1.0"), "{out:?}");
    assert!(!h.root.join("a/1.0").exists());
    assert!(h.root.join("b/1/descpkg").is_file());
    common::assert_no_leftovers(&h.root);
}

pub fn invalid_names_refused(h: Harness) {
    let cases: &[&[&str]] = &[
        &["stat", "../etc"],
        &["stat", ".hidden"],
        &["link", "p", "a/b", "1"],
        &["link", "p", "cur", ".."],
        &["delete", "..", "x"],
        &["delete", "p", "-rf"],
        &["put", "../x"],
        &["receive", "gzip", "tok", "p", "../1", "1", "1"],
        &["receive", "gzip", "../tok", "p", "1", "1", "1"],
        &["receive", "rar", "tok", "p", "1", "1", "1"],
        &["receive", "gzip", "tok", "p", "1", "x", "1"],
        &["gc", "soon"],
        &["frobnicate"],
    ];
    for args in cases {
        let out = (h.raw)(args, None).unwrap();
        assert_eq!(out.status, 2, "{args:?}: {out:?}");
        assert!(
            out.stderr.starts_with("blat-receiver: "),
            "{args:?}: {out:?}"
        );
    }
    assert!(
        fs::read_dir(&h.root).unwrap().next().is_none(),
        "nothing created"
    );
}

/// After planting files as the test user, give them to the target user.
fn fix_owner(h: &Harness) {
    use std::os::unix::fs::MetadataExt;
    let owner = fs::metadata(&h.root).unwrap();
    let _ = std::process::Command::new("chown")
        .arg("-hR")
        .arg(format!("{}:{}", owner.uid(), owner.gid()))
        .arg(&h.root)
        .status();
}

/// Instantiates every case of the suite for one transport: `$harness` is a
/// `fn() -> Option<Harness>`.
#[macro_export]
macro_rules! target_suite {
    ($harness:path) => {
        $crate::suite_tests!($harness; target_suite;
            list_empty
            receive_keeps_modes_mtimes_links
            replace_swaps_whole_version
            link_and_repoint
            delete_removes_aliases_first
            put_is_atomic_file
            df_reports_space
            gc_removes_leftovers
            cut_stream_leaves_nothing
            invalid_names_refused
        );
    };
}

/// The suite on the local transport.
mod local {
    use super::*;
    use blat::target::local::LocalTransport;

    fn harness() -> Option<Harness> {
        let world = World::new();
        let root = world.target_dir("local");
        fs::create_dir_all(&root).unwrap();
        let open = || LocalTransport::new(root.clone());
        Some(Harness::new("local", world, root.clone(), open, None))
    }

    crate::target_suite!(harness);
}
