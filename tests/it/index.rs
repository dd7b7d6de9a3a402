//! `blat index`: the content index against an independent walk of the
//! archive, incremental re-runs (new, changed, removed package-versions),
//! damaged caches, no configuration on a target, atomic replacement.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::common::*;

fn list_path(archive: &Path) -> std::path::PathBuf {
    archive.join(".dpkg_archive/dpkg_archive_list.txt")
}

fn cache_path(archive: &Path) -> std::path::PathBuf {
    archive.join(".dpkg_archive/dpkg_archive_list.cache")
}

/// What the index must hold, computed independently: every path below the
/// archive, minus names starting with '.' at depth 1 and 2, sorted by bytes.
fn expected(archive: &Path) -> String {
    let mut paths: Vec<Vec<u8>> = walk(archive)
        .into_iter()
        .skip(1)
        .map(|p| p.strip_prefix(archive).unwrap().to_path_buf())
        .filter(|rel| {
            !rel.iter()
                .take(2)
                .any(|c| c.to_string_lossy().starts_with('.'))
        })
        .map(|rel| rel.to_string_lossy().as_bytes().to_vec())
        .collect();
    paths.sort();
    let mut text = String::new();
    for p in paths {
        text.push_str(std::str::from_utf8(&p).unwrap());
        text.push('\n');
    }
    text
}

fn read_list(archive: &Path) -> String {
    fs::read_to_string(list_path(archive)).unwrap()
}

/// Runs `blat index --archive` (no configuration) with `--json`.
fn index(w: &World, extra: &[&str]) -> serde_json::Value {
    let archive = w.archive();
    let mut args = vec!["index", "--json", "--archive", archive.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = w.blat(&args);
    assert_exit(&out, 0);
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    // The frame every command reports in: the archive in the target's place.
    assert_eq!(json["command"], "index", "{json}");
    assert_eq!(
        json["targets"][0]["target"],
        archive.to_str().unwrap(),
        "{json}"
    );
    assert_eq!(json["exit_code"], 0, "{json}");
    json["targets"][0]["report"].clone()
}

/// An archive with what real ones hold: released versions, aliases, a
/// version still being built, a directory that is no package-version,
/// loose files, blat's own hidden files and a leftover temporary.
fn world() -> World {
    let w = World::new();
    w.release("alpha", "1.0", 1_700_000_000);
    w.release("alpha", "1.0.1", 1_700_000_100);
    w.release_with(
        "alpha",
        "1.0+b",
        1_700_000_200,
        &[("a.x", "x"), ("a/b", "y"), ("a/.hidden", "h")],
    );
    w.alias("alpha", "current", "1.0.1");
    w.release("beta", "2", 1_700_000_300);
    w.build("gamma", "0.1", 1_700_000_400, DEFAULT_FILES);
    fs::create_dir_all(w.archive().join("gamma/notes/deep")).unwrap();
    fs::write(w.archive().join("gamma/notes/deep/n.txt"), "n").unwrap();
    fs::write(w.archive().join("README"), "r").unwrap();
    fs::create_dir_all(w.archive().join("not a package/x")).unwrap();
    fs::create_dir_all(w.archive().join(".dpkg_archive")).unwrap();
    fs::write(
        w.archive().join(".dpkg_archive/packagelist.txt"),
        "alpha 1.0\n",
    )
    .unwrap();
    fs::create_dir_all(w.archive().join("beta/.blat-tmp-abc-3/sub")).unwrap();
    w
}

#[test]
fn full_index_lists_every_path_sorted_by_bytes() {
    let w = world();
    let r = index(&w, &[]);
    let text = read_list(&w.archive());
    assert_eq!(text, expected(&w.archive()));
    // Byte order, not tree order: '+' and '.' sort before '/'.
    let pos = |line: &str| {
        text.lines()
            .position(|l| l == line)
            .unwrap_or_else(|| panic!("{line} missing:\n{text}"))
    };
    assert!(
        pos("alpha/1.0") < pos("alpha/1.0+b")
            && pos("alpha/1.0.1/descpkg") < pos("alpha/1.0/descpkg")
    );
    assert!(pos("alpha/1.0+b/a.x") < pos("alpha/1.0+b/a/b"));
    // Aliases and symlinks are lines of their own, never followed.
    pos("alpha/current");
    pos("alpha/1.0/lib/libx.so");
    assert!(!text.contains("alpha/current/"));
    // Hidden names: left out at the top two levels, listed inside a version.
    assert!(!text.contains(".dpkg_archive") && !text.contains(".blat-tmp"));
    pos("alpha/1.0+b/a/.hidden");
    assert_eq!(r["paths"].as_u64().unwrap() as usize, text.lines().count());
    assert_eq!(r["versions"], 4, "{r}");
    assert_eq!(
        r["walked"], 7,
        "4 released versions, gamma/0.1, gamma/notes, 'not a package': {r}"
    );
    assert!(
        r["full_rebuild"].as_str().unwrap().contains("no cache yet"),
        "{r}"
    );
    assert_eq!(
        fs::read_dir(w.archive().join(".dpkg_archive"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(".blat"))
            .count(),
        0,
        "no temporaries left"
    );
}

#[test]
fn rerun_walks_only_what_changed() {
    let w = world();
    index(&w, &[]);
    let first_inode = fs::metadata(list_path(&w.archive())).unwrap().ino();

    // Nothing changed: the list is left as it is; only what cannot be
    // cached (a version being built, other directories) is looked at.
    let r = index(&w, &[]);
    assert_eq!(r["reused"], 4, "{r}");
    assert_eq!(r["walked"], 3, "{r}");
    assert_eq!(read_list(&w.archive()), expected(&w.archive()));

    // A new version, a changed one (new descpkg mtime, new content), a
    // removed one, a new alias.
    w.release("delta", "1", 1_700_000_500);
    let changed = w.archive().join("beta/2");
    make_writable(&changed);
    fs::write(changed.join("added.txt"), "new").unwrap();
    set_mtime(&changed.join("descpkg"), 1_700_000_999);
    make_read_only(&changed);
    let removed = w.archive().join("alpha/1.0");
    make_writable(&removed);
    fs::remove_dir_all(&removed).unwrap();
    w.alias("beta", "latest", "2");
    let r = index(&w, &[]);
    assert_eq!(read_list(&w.archive()), expected(&w.archive()));
    assert!(read_list(&w.archive()).contains("beta/2/added.txt\n"));
    assert_eq!(r["reused"], 2, "alpha/1.0.1 and alpha/1.0+b: {r}");
    assert_eq!(
        r["walked"], 5,
        "delta/1, beta/2 and the three uncacheable: {r}"
    );
    assert_eq!(r["dropped"], 1, "{r}");
    assert_eq!(r["unchanged"], false);
    assert!(r.get("full_rebuild").is_none(), "{r}");
    assert_ne!(
        fs::metadata(list_path(&w.archive())).unwrap().ino(),
        first_inode,
        "replaced by a rename"
    );

    // Only released versions: a re-run finds nothing to do and leaves the
    // very same file.
    make_writable(&w.archive().join("gamma"));
    fs::remove_dir_all(w.archive().join("gamma")).unwrap();
    fs::remove_dir_all(w.archive().join("not a package")).unwrap();
    index(&w, &[]);
    let inode = fs::metadata(list_path(&w.archive())).unwrap().ino();
    let r = index(&w, &[]);
    assert_eq!(r["unchanged"], true, "{r}");
    assert_eq!(r["walked"], 0, "{r}");
    assert_eq!(fs::metadata(list_path(&w.archive())).unwrap().ino(), inode);
    assert_eq!(read_list(&w.archive()), expected(&w.archive()));
}

#[test]
fn damaged_or_stale_cache_means_a_full_rebuild() {
    let w = world();
    index(&w, &[]);
    let good = read_list(&w.archive());

    // Garbage in the cache.
    fs::write(cache_path(&w.archive()), "garbage\n").unwrap();
    let r = index(&w, &[]);
    assert!(
        r["full_rebuild"]
            .as_str()
            .unwrap()
            .contains("not a cache file"),
        "{r}"
    );
    assert_eq!(read_list(&w.archive()), good);

    // The list edited by hand: the cache no longer describes it.
    fs::write(list_path(&w.archive()), "edited\n").unwrap();
    let r = index(&w, &[]);
    assert!(
        r["full_rebuild"]
            .as_str()
            .unwrap()
            .contains("changed since the cache was written"),
        "{r}"
    );
    assert_eq!(read_list(&w.archive()), good);

    // A cache that matches the list's fingerprint but points at the wrong
    // places (swapped offsets): caught while copying, then walked afresh.
    let text = fs::read_to_string(cache_path(&w.archive())).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let blocks: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with("B "))
        .collect();
    let field = |l: &str, i: usize| l.split(' ').nth(i).unwrap().to_string();
    let (a, b) = (blocks[0], blocks[1]);
    let swapped_a = lines[a].replacen(
        &format!(" {} {} ", field(&lines[a], 3), field(&lines[a], 4)),
        &format!(" {} {} ", field(&lines[b], 3), field(&lines[b], 4)),
        1,
    );
    let swapped_b = lines[b].replacen(
        &format!(" {} {} ", field(&lines[b], 3), field(&lines[b], 4)),
        &format!(" {} {} ", field(&lines[a], 3), field(&lines[a], 4)),
        1,
    );
    lines[a] = swapped_a;
    lines[b] = swapped_b;
    // A changed package-version forces a rewrite, so the cache is used.
    w.release("delta", "1", 1_700_000_500);
    fs::write(cache_path(&w.archive()), lines.join("\n") + "\n").unwrap();
    let r = index(&w, &[]);
    assert!(
        r["full_rebuild"]
            .as_str()
            .unwrap()
            .contains("does not match"),
        "{r}"
    );
    assert_eq!(read_list(&w.archive()), expected(&w.archive()));

    // The cache removed.
    fs::remove_file(cache_path(&w.archive())).unwrap();
    let r = index(&w, &[]);
    assert_eq!(r["walked"], 8, "{r}");
    assert_eq!(read_list(&w.archive()), expected(&w.archive()));
}

#[test]
fn runs_without_configuration_or_from_the_configured_archive() {
    let w = world();
    // `index --archive` reads no configuration: this World has no blat.toml.
    assert!(!w.config().join("blat.toml").exists());
    let out = w.blat(&["index", "--archive", w.archive().to_str().unwrap()]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("index done: "), "{}", stdout(&out));

    // Without --archive: the configuration's archive.
    fs::remove_dir_all(w.archive().join(".dpkg_archive")).unwrap();
    let out = w.blat(&["index"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("blat.toml"), "{}", stderr(&out));
    w.write_global("");
    w.write_rm(&[]);
    let out = w.blat(&["index", "-q"]);
    assert_exit(&out, 0);
    assert_eq!(read_list(&w.archive()), expected(&w.archive()));
}

#[test]
fn dry_run_writes_nothing_and_bad_archive_is_usage() {
    let w = world();
    let out = w.blat(&[
        "--dry-run",
        "index",
        "--archive",
        w.archive().to_str().unwrap(),
    ]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out)
            .contains("would write .dpkg_archive/dpkg_archive_list.txt (7 package-versions walked"),
        "{}",
        stdout(&out)
    );
    assert!(!list_path(&w.archive()).exists());
    assert!(!w.archive().join(".dpkg_archive/locks").exists());

    let missing = w.path().join("nowhere");
    let out = w.blat(&["index", "--archive", missing.to_str().unwrap()]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains(&format!(
            "cannot index {}: no such directory",
            missing.display()
        )),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_held_lock_stops_the_run() {
    let w = world();
    let _held =
        blat::lock::TargetLock::acquire(&w.archive().join(".dpkg_archive"), "index").unwrap();
    let out = w.blat(&["index", "--archive", w.archive().to_str().unwrap()]);
    assert_exit(&out, 4);
    let busy = format!("{} (blat index) is busy", w.archive().display());
    assert!(stderr(&out).contains(&busy), "{}", stderr(&out));
    assert!(!list_path(&w.archive()).exists());
}
