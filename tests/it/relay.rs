//! Relays (docs/archive.md, "Relays"): a site that received packages serves
//! further sites. A second blat whose `archive` is site A's archive and
//! whose release source is A's PackageList (`kind = "packagelist"`) syncs
//! site B with A's current set, aliases included, and with every guard of a
//! Release Manager: no list, an empty one, one that does not parse or one
//! behind a symlink sends nothing, deletes nothing and ages nothing.
//! Time is fixed with BLAT_NOW.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::*;

/// Package mtimes; the chain runs from NOW on.
const T0: i64 = 1_700_000_000;
const NOW: i64 = T0 + 10 * DAY;
const HOUR: i64 = 3600;
const DAY: i64 = 86400;

/// The master's archive and Release Manager: P/R1 holds the alias
/// `jats/current` (-> 2.1.0), lib 1.0 and tool 2.0; lib 1.1 waits.
fn master() -> World {
    let m = World::new();
    m.release("jats", "2.0", T0);
    m.release("jats", "2.1.0", T0 + 1);
    m.alias("jats", "current", "2.1.0");
    m.release("lib", "1.0", T0 + 2);
    m.release("lib", "1.1", T0 + 3);
    m.release("tool", "2.0", T0 + 4);
    m.write_global("");
    m.write_rm(&[("P/R1", "open", 0, &["jats/current", "lib/1.0", "tool/2.0"])]);
    m
}

/// The next release: tool leaves, lib moves to 1.1.
fn next_release(m: &World) {
    m.write_rm(&[("P/R1", "open", 0, &["jats/current", "lib/1.1"])]);
}

/// A relay configuration in `r`: its source archive is the site `site`,
/// its release source that site's PackageList.
fn write_relay(r: &World, site: &Path) {
    let text = format!(
        "archive = \"{}\"\nstate_dir = \"{}\"\ntag_dir = \"{}\"\n[release_manager]\nkind = \"packagelist\"\n",
        site.display(),
        r.state().display(),
        r.path().join("tags").display(),
    );
    fs::write(r.config().join("blat.toml"), text).unwrap();
}

fn at(w: &World, now: i64, args: &[&str]) -> Output {
    w.blat_env(args, &[("BLAT_NOW", &now.to_string())])
}

/// `sync --target NAME --json` at `now`, which must exit with `code`; its report.
#[track_caller]
fn sync(w: &World, target: &str, now: i64, code: i32) -> serde_json::Value {
    let out = at(w, now, &["sync", "--target", target, "--json"]);
    assert_exit(&out, code);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(&out), stderr(&out)));
    j["targets"][0]["report"].clone()
}

fn pvs(list: &serde_json::Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|p| {
            let p = if p["pv"].is_object() { &p["pv"] } else { p };
            format!(
                "{}/{}",
                p["package"].as_str().unwrap(),
                p["version"].as_str().unwrap()
            )
        })
        .collect()
}

/// The packages of an archive, comparable between sites: every version's
/// tree (modes, mtimes, sizes, links) and every alias; `.dpkg_archive` and
/// the package directories' own modes and mtimes left out.
fn packages(root: &Path) -> Vec<String> {
    snapshot(root)
        .into_iter()
        .filter_map(|line| {
            let path = line.split(' ').next().unwrap().to_string();
            if path == "/" || path.starts_with(".dpkg_archive") {
                None
            } else if path.ends_with('/') && path.matches('/').count() == 1 {
                Some(path)
            } else {
                Some(line)
            }
        })
        .collect()
}

/// The versions (`package/version`) and aliases (`package/alias -> v`) of an archive.
fn held(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for line in packages(root) {
        let path = line.split(' ').next().unwrap();
        if path.matches('/').count() == 2 && path.ends_with('/') {
            out.push(path.trim_end_matches('/').to_string());
        } else if line.contains(" -> ") && path.matches('/').count() == 1 {
            out.push(line);
        }
    }
    out
}

/// The PackageList of an archive without its first (`written`) line.
fn listed(root: &Path) -> Vec<String> {
    let text = fs::read_to_string(root.join(".dpkg_archive/packagelist.txt")).unwrap();
    assert!(text.starts_with("# blat packagelist written "), "{text}");
    text.lines().skip(1).map(String::from).collect()
}

const FIRST_SET: [&str; 5] = [
    "# releases: P/R1",
    "# alias: jats current 2.1.0",
    "jats 2.1.0",
    "lib 1.0",
    "tool 2.0",
];

/// How the master ages A.
const A_AGING: &str = "[aging]\nmethod = \"master\"\nafter = \"1d\"\n";

/// Master -> A -> B, all local, B aged `immediate` by the relay (the
/// harshest: a guard that failed would delete at once).
struct Chain {
    m: World,
    r: World,
}

impl Chain {
    fn new() -> Chain {
        let m = master();
        m.local_target("a", &format!("projects = [\"P\"]\n{A_AGING}"));
        let r = World::new();
        write_relay(&r, &m.target_dir("a"));
        r.local_target("b", "[aging]\nmethod = \"immediate\"\nmax_delete = 10\n");
        sync(&m, "a", NOW, 0);
        let report = sync(&r, "b", NOW, 0);
        assert_eq!(
            pvs(&report["sent"]),
            ["jats/2.1.0", "lib/1.0", "tool/2.0"],
            "{report}"
        );
        let c = Chain { m, r };
        c.assert_b_equals_a();
        assert_eq!(listed(&c.b()), FIRST_SET);
        c
    }

    fn a(&self) -> PathBuf {
        self.m.target_dir("a")
    }

    fn b(&self) -> PathBuf {
        self.r.target_dir("b")
    }

    fn list(&self) -> PathBuf {
        self.a().join(".dpkg_archive/packagelist.txt")
    }

    #[track_caller]
    fn assert_b_equals_a(&self) {
        assert_eq!(packages(&self.a()), packages(&self.b()));
        assert_eq!(listed(&self.a()), listed(&self.b()));
    }

    /// A relay run with A's list as it now is must change nothing on B:
    /// `sync` and `age` both fail naming the list, B stays as it was.
    #[track_caller]
    fn refused(&self, why: &str) {
        let before = snapshot(&self.b());
        for args in [["sync", "--target", "b"], ["age", "--target", "b"]] {
            let out = at(&self.r, NOW + 30 * DAY, &args);
            assert_exit(&out, 1);
            assert!(stderr(&out).contains(why), "{args:?}: {}", stderr(&out));
        }
        assert_eq!(snapshot(&self.b()), before, "B changed");
    }
}

#[test]
fn a_relay_syncs_the_sites_current_set_with_its_aliases() {
    let c = Chain::new();
    assert_eq!(
        held(&c.b()),
        ["jats/2.1.0", "jats/current -> 2.1.0", "lib/1.0", "tool/2.0"]
    );
    // A second run has nothing to do.
    let report = sync(&c.r, "b", NOW, 0);
    assert!(pvs(&report["sent"]).is_empty(), "{report}");
    assert_eq!(report["up_to_date"], 3, "{report}");
    // `check` knows a relay has no releases to check.
    let out = c.r.blat(&["check"]);
    assert_exit(&out, 0);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        text.contains(&format!(
            "release manager: reachable: the PackageList {} answers",
            c.list().display()
        )) && text.contains(
            "b: releases: a relay: the whole PackageList, 3 package-versions and 1 aliases, and 0 `packages` pins"
        ),
        "{text}"
    );
}

#[test]
fn a_missing_empty_unreadable_or_linked_packagelist_changes_nothing_downstream() {
    let c = Chain::new();
    let list = c.list();
    let saved = fs::read_to_string(&list).unwrap();

    fs::remove_file(&list).unwrap();
    c.refused(&format!(
        "no PackageList at {}: a relay passes on the list its master sends",
        list.display()
    ));

    fs::write(&list, "# blat packagelist written x\n# releases: P/R1\n").unwrap();
    c.refused(&format!("{} lists no package-version", list.display()));
    fs::write(&list, "").unwrap();
    c.refused(&format!("{} lists no package-version", list.display()));

    fs::write(&list, "jats 2.1.0\nlib 1.0 tool\n").unwrap();
    c.refused(&format!("{}:2: expected 'package version'", list.display()));
    fs::write(&list, "jats 2.1.0\n../../etc passwd\n").unwrap();
    c.refused(&format!("{}:2: invalid name '../../etc'", list.display()));

    // A list that would make B lose everything but jats, behind a symlink.
    let decoy = c.m.path().join("decoy.txt");
    fs::write(&decoy, "# releases: P/R1\njats 2.1.0\n").unwrap();
    fs::remove_file(&list).unwrap();
    std::os::unix::fs::symlink(&decoy, &list).unwrap();
    c.refused("is a symlink, not a regular file: refused");
    let dpkg = c.a().join(".dpkg_archive");
    let moved = c.m.path().join("dpkg-moved");
    fs::remove_file(&list).unwrap();
    fs::rename(&dpkg, &moved).unwrap();
    fs::write(moved.join("packagelist.txt"), "jats 2.1.0\n").unwrap();
    std::os::unix::fs::symlink(&moved, &dpkg).unwrap();
    c.refused("is a symlink, not a directory: refused");

    // The real list back: the relay works again and B is A.
    fs::remove_file(&dpkg).unwrap();
    fs::rename(&moved, &dpkg).unwrap();
    fs::write(&list, saved).unwrap();
    sync(&c.r, "b", NOW, 0);
    c.assert_b_equals_a();
}

/// What the master's Release Manager answered nothing for stays unanswered
/// down the chain: B's aging deletes nothing, and B's list says why.
#[test]
fn what_was_unanswered_upstream_blocks_aging_downstream() {
    let c = Chain::new();
    c.m.local_target("a", &format!("releases = [\"P/R1\", \"P/R2\"]\n{A_AGING}"));
    c.m.write_rm(&[
        ("P/R1", "open", 0, &["jats/current", "lib/1.1"]),
        ("P/R2", "open", 0, &[]),
    ]);
    let a = sync(&c.m, "a", NOW + HOUR, 0);
    assert_eq!(
        a["aging"]["skipped"].as_str().map(|s| s.contains("P/R2")),
        Some(true),
        "{a}"
    );
    let b = sync(&c.r, "b", NOW + HOUR, 0);
    assert_eq!(pvs(&b["sent"]), ["lib/1.1"], "{b}");
    assert!(
        b["aging"]["skipped"]
            .as_str()
            .is_some_and(|s| s.contains("answered nothing for release P/R2")),
        "{b}"
    );
    assert!(
        c.b().join("tool/2.0/descpkg").exists(),
        "immediate aging ran"
    );
    assert_eq!(
        listed(&c.b()),
        [
            "# releases: P/R1 P/R2",
            "# unanswered: release P/R2",
            "# alias: jats current 2.1.0",
            "jats 2.1.0",
            "lib 1.1",
        ]
    );
    c.assert_b_equals_a();
}

/// A version the site's list names but the site lacks is skipped as the
/// master skips a version its archive lacks; the rest goes through.
#[test]
fn a_listed_version_the_site_lacks_is_skipped_like_a_missing_release_row() {
    let c = Chain::new();
    c.m.write_rm(&[(
        "P/R1",
        "open",
        0,
        &["jats/current", "lib/1.0", "tool/2.0", "ghost/1.0"],
    )]);
    let a = sync(&c.m, "a", NOW, 0);
    let b = sync(&c.r, "b", NOW, 0);
    for report in [&a, &b] {
        assert_eq!(pvs(&report["skipped"]), ["ghost/1.0"], "{report}");
        assert_eq!(report["skipped"][0]["reason"], "not_in_archive", "{report}");
    }
    assert!(listed(&c.b()).contains(&"ghost 1.0".to_string()));
    c.assert_b_equals_a();
}

/// The source itself (the ReleaseSource contract, for a relay): the whole
/// list at once, read when opened; no releases to ask for. The release
/// suite's fixture is a database's, which a PackageList cannot hold.
#[test]
fn the_packagelist_source_answers_with_the_whole_list_and_no_releases() {
    use blat::release::{packagelist::PackageListSource, ReleaseSource};
    let c = Chain::new();
    let mut source = PackageListSource::open(&c.a()).unwrap();
    assert_eq!(
        source.describe(),
        format!("the PackageList {}", c.list().display())
    );
    let set = source.relayed().unwrap().expect("a relay answers whole");
    let mut text = vec![format!(
        "# releases: {}",
        set.releases
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    )];
    text.extend(
        set.aliases
            .iter()
            .map(|a| format!("# alias: {} {} {}", a.package, a.alias, a.version)),
    );
    text.extend(set.package_list());
    assert_eq!(text, FIRST_SET);
    let release = blat::config::ReleaseName::parse("P/R1").unwrap();
    for e in [
        source.release_rows(&release).map(|_| ()).unwrap_err(),
        source.open_releases("P").map(|_| ()).unwrap_err(),
        source.s3_releases().map(|_| ()).unwrap_err(),
    ] {
        assert!(
            e.to_string()
                .ends_with("has no releases of its own: its targets take the whole list"),
            "{e}"
        );
    }
    // Read once: a list replaced after opening does not change this run.
    fs::write(c.list(), "other 1\n").unwrap();
    assert_eq!(
        source.relayed().unwrap().unwrap().package_list(),
        set.package_list()
    );
    assert!(
        PackageListSource::open(&c.a())
            .unwrap()
            .relayed()
            .unwrap()
            .unwrap()
            .package_list()
            == ["other 1"]
    );
}

/// A site's package or version directory that is a symlink is never
/// followed: whatever it points at (a directory with a descpkg, a path
/// outside), the version is skipped as not in the archive, and the rest of
/// the list goes through.
#[test]
fn a_symlinked_package_or_version_on_the_site_is_never_sent_on() {
    let c = Chain::new();
    let outside = c.m.path().join("outside");
    for v in ["1.0", "9.9"] {
        fs::create_dir_all(outside.join(v)).unwrap();
        fs::write(outside.join(v).join("descpkg"), "not from the master\n").unwrap();
        fs::write(outside.join(v).join("secret"), "secret\n").unwrap();
    }
    std::os::unix::fs::symlink(&outside, c.a().join("evil")).unwrap();
    std::os::unix::fs::symlink(outside.join("9.9"), c.a().join("lib/9.9")).unwrap();
    let list = c.list();
    let text = fs::read_to_string(&list).unwrap();
    fs::write(&list, format!("{text}evil 1.0\nlib 9.9\n")).unwrap();
    let b = sync(&c.r, "b", NOW, 0);
    assert!(pvs(&b["sent"]).is_empty(), "{b}");
    assert_eq!(pvs(&b["skipped"]), ["evil/1.0", "lib/9.9"], "{b}");
    for s in b["skipped"].as_array().unwrap() {
        assert_eq!(s["reason"], "not_in_archive", "{b}");
    }
    assert!(!c.b().join("evil").exists());
    assert!(!c.b().join("lib/9.9").exists());
    assert!(listed(&c.b()).contains(&"evil 1.0".to_string()));
}

#[test]
fn relay_configuration_errors_name_the_key() {
    let r = World::new();
    write_relay(&r, &r.archive());
    r.local_target("b", "releases = [\"P/R1\"]\n");
    let out = r.blat(&["sync", "--target", "b"]);
    assert_exit(&out, 2);
    let conf = r.config().join("targets/b.conf");
    assert!(
        stderr(&out).contains(&format!("{}:4:", conf.display()))
            && stderr(&out).contains("`releases` needs a Release Manager: under release_manager kind = \"packagelist\" (a relay) every target gets the site's whole PackageList"),
        "{}",
        stderr(&out)
    );
    r.local_target("b", "projects = [\"P\"]\n");
    let out = r.blat(&["sync", "--target", "b"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("`projects` needs a Release Manager"),
        "{}",
        stderr(&out)
    );

    r.local_target("b", "");
    let global = r.config().join("blat.toml");
    let text = fs::read_to_string(&global).unwrap();
    fs::write(&global, format!("{text}path = \"rm.db\"\n")).unwrap();
    let out = r.blat(&["sync", "--target", "b"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("`path` is for kind = \"sqlite\": a relay reads <archive>/.dpkg_archive/packagelist.txt"),
        "{}",
        stderr(&out)
    );
}

/// `age --local` refuses the master's own archive, but a relay's archive is
/// a site: on that machine the site still ages itself.
#[test]
fn age_local_runs_on_the_site_a_relay_reads() {
    let c = Chain::new();
    let a = c.a();
    let out = at(
        &c.r,
        NOW,
        &[
            "age",
            "--local",
            "--archive",
            a.to_str().unwrap(),
            "--after",
            "1d",
        ],
    );
    assert_exit(&out, 0);
    assert!(!stderr(&out).contains("refusing"), "{}", stderr(&out));
}

mod over_ssh {
    use super::*;
    use crate::sshd::{give_to, Sshd};

    /// master -> A -> B over a real sshd; B is aged `master` with A's rules.
    #[test]
    fn a_chain_over_ssh_keeps_b_equal_to_a_and_ages_b_as_a() {
        let Some(sshd) = Sshd::start() else { return };
        let aging = A_AGING;
        let m = master();
        sshd.write_target(&m, "a", &format!("projects = [\"P\"]\n{aging}"));
        let site_b = sshd.home.join("site-b");
        fs::create_dir(&site_b).unwrap();
        give_to(&sshd.user, &site_b);
        let r = World::new();
        write_relay(&r, &sshd.archive());
        sshd.write_target(
            &r,
            "b",
            &format!("remote_archive = \"{}\"\n{aging}", site_b.display()),
        );
        let a = sshd.archive();
        let same = || {
            assert_eq!(packages(&a), packages(&site_b));
            assert_eq!(listed(&a), listed(&site_b));
        };

        sync(&m, "a", NOW, 0);
        let b = sync(&r, "b", NOW, 0);
        assert_eq!(
            pvs(&b["sent"]),
            ["jats/2.1.0", "lib/1.0", "tool/2.0"],
            "{b}"
        );
        assert_eq!(pvs(&b["linked"]).len(), 1, "{b}");
        same();
        assert_eq!(listed(&site_b), FIRST_SET);
        assert_eq!(
            fs::read_link(site_b.join("jats/current")).unwrap(),
            Path::new("2.1.0")
        );

        // tool leaves the release: marked on A, then on B; still on both.
        next_release(&m);
        let t1 = NOW + HOUR;
        let a_run = sync(&m, "a", t1, 0);
        assert_eq!(
            pvs(&a_run["aging"]["marked"]),
            ["lib/1.0", "tool/2.0"],
            "{a_run}"
        );
        let b_run = sync(&r, "b", t1, 0);
        assert_eq!(pvs(&b_run["sent"]), ["lib/1.1"], "{b_run}");
        assert_eq!(
            pvs(&b_run["aging"]["marked"]),
            ["lib/1.0", "tool/2.0"],
            "{b_run}"
        );
        same();
        assert!(site_b.join("tool/2.0/descpkg").exists());

        // Within `after`: kept on both.
        sync(&m, "a", t1 + 12 * HOUR, 0);
        sync(&r, "b", t1 + 12 * HOUR, 0);
        same();
        assert!(site_b.join("tool/2.0/descpkg").exists());
        assert!(site_b.join("lib/1.0/descpkg").exists());

        // A's list gone: nothing changes on B, even long past `after`.
        let list = a.join(".dpkg_archive/packagelist.txt");
        let saved = fs::read(&list).unwrap();
        fs::remove_file(&list).unwrap();
        let before = snapshot(&site_b);
        let out = at(&r, t1 + 30 * DAY, &["sync", "--target", "b"]);
        assert_exit(&out, 1);
        assert!(
            stderr(&out).contains("no PackageList at"),
            "{}",
            stderr(&out)
        );
        assert_exit(&at(&r, t1 + 30 * DAY, &["age", "--target", "b"]), 1);
        // An empty one neither.
        fs::write(&list, "").unwrap();
        assert_exit(&at(&r, t1 + 30 * DAY, &["sync", "--target", "b"]), 1);
        assert_eq!(snapshot(&site_b), before, "B changed");
        fs::write(&list, saved).unwrap();

        // Past `after`: A deletes, then B does, and B is A again.
        let t2 = t1 + DAY + HOUR;
        let a_run = sync(&m, "a", t2, 0);
        assert_eq!(
            pvs(&a_run["aging"]["deleted"]),
            ["lib/1.0", "tool/2.0"],
            "{a_run}"
        );
        let b_run = sync(&r, "b", t2, 0);
        assert_eq!(
            pvs(&b_run["aging"]["deleted"]),
            ["lib/1.0", "tool/2.0"],
            "{b_run}"
        );
        same();
        assert_eq!(
            held(&site_b),
            ["jats/2.1.0", "jats/current -> 2.1.0", "lib/1.1"]
        );
    }
}
