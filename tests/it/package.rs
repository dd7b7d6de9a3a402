//! The Debian package's description (`[package.metadata.deb]` in Cargo.toml,
//! `contrib/debian/`) against the tree, cheaply: every asset it names is
//! there, every man page, completion and unit is packaged, the maintainer
//! scripts are valid sh. scripts/deb-check builds and installs the real thing.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `[package.metadata.deb]` as TOML.
fn metadata() -> toml::Table {
    let text = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let manifest: toml::Table = text.parse().unwrap();
    manifest["package"]["metadata"]["deb"]
        .as_table()
        .expect("[package.metadata.deb]")
        .clone()
}

/// (source, dest) of each asset that is a file (not a created symlink).
fn assets() -> Vec<(String, String)> {
    metadata()["assets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| match a {
            toml::Value::Array(a) => Some((
                a[0].as_str().unwrap().to_string(),
                a[1].as_str().unwrap().to_string(),
            )),
            toml::Value::Table(t) => Some((
                t.get("source")?.as_str().unwrap().to_string(),
                t["dest"].as_str().unwrap().to_string(),
            )),
            _ => None,
        })
        .collect()
}

/// Whether `name` matches a one-component glob (`*`, `?`, `[0-9]`).
fn matches(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => (0..=n.len()).any(|i| go(rest, &n[i..])),
            Some((b'?', rest)) => !n.is_empty() && go(rest, &n[1..]),
            Some((b'[', rest)) => {
                let Some(end) = rest.iter().position(|&c| c == b']') else {
                    return false;
                };
                let class = &rest[..end];
                let hit = n.first().is_some_and(|&c| {
                    class
                        .windows(3)
                        .any(|w| w[1] == b'-' && w[0] <= c && c <= w[2])
                        || class.contains(&c)
                });
                hit && go(&rest[end + 1..], &n[1..])
            }
            Some((c, rest)) => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

/// The files a source pattern names (`**` = any depth), relative to the root.
fn expand(pattern: &str) -> Vec<PathBuf> {
    let mut paths = vec![PathBuf::new()];
    for part in pattern.split('/') {
        let mut next = Vec::new();
        for p in &paths {
            let dir = root().join(p);
            if part == "**" {
                next.extend(crate::common::walk(&dir).into_iter().filter_map(|d| {
                    d.is_dir()
                        .then(|| d.strip_prefix(root()).unwrap().to_path_buf())
                }));
            } else if part.contains(['*', '?', '[']) {
                for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                    if matches(part, &e.file_name().to_string_lossy()) {
                        next.push(p.join(e.file_name()));
                    }
                }
            } else {
                next.push(p.join(part));
            }
        }
        paths = next;
    }
    paths
        .into_iter()
        .filter(|p| root().join(p).is_file())
        .collect()
}

#[test]
fn every_asset_is_in_the_tree_and_every_piece_is_packaged() {
    let assets = assets();
    let mut packaged: Vec<PathBuf> = Vec::new();
    for (source, dest) in &assets {
        if source.starts_with("target/release/") {
            assert_eq!(dest, "usr/bin/", "{source}");
            continue;
        }
        let found = expand(source);
        assert!(!found.is_empty(), "asset {source} matches no file");
        packaged.extend(found);
    }
    // Every man page, and every file of contrib/ but the maintainer scripts
    // (completions, units, cron, prometheus, and whatever comes next).
    let must: Vec<PathBuf> = ["man", "contrib"]
        .iter()
        .flat_map(|dir| crate::common::walk(&root().join(dir)))
        .filter(|p| p.is_file() && !p.starts_with(root().join("contrib/debian")))
        .map(|p| p.strip_prefix(root()).unwrap().to_path_buf())
        .chain([
            PathBuf::from("receiver/blat-receiver"),
            PathBuf::from("examples/release_manager.sql"),
            PathBuf::from("examples/config/blat.toml"),
            PathBuf::from("examples/archive/jats/2.1.0/descpkg"),
        ])
        .collect();
    for file in must {
        assert!(
            packaged.contains(&file),
            "{} is not packaged",
            file.display()
        );
    }
    // The example alias is a symlink asset, not a second copy of 2.1.0.
    assert!(
        !packaged
            .iter()
            .any(|p| p.starts_with("examples/archive/jats/jats2_current")),
        "the alias is packaged as a copy"
    );
    let meta = metadata();
    assert!(meta["depends"].as_str().unwrap().contains("adduser"));
    assert_eq!(meta["maintainer-scripts"].as_str(), Some("contrib/debian/"));
}

#[test]
fn maintainer_scripts_are_executable_sh() {
    use std::os::unix::fs::PermissionsExt;
    for script in ["postinst", "prerm", "postrm"] {
        let path = root().join("contrib/debian").join(script);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o111, 0o111, "{script} is not executable");
        let out = Command::new("sh").arg("-n").arg(&path).output().unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("#!/bin/sh\n") && text.contains("set -e"),
            "{script}"
        );
    }
    let postinst = std::fs::read_to_string(root().join("contrib/debian/postinst")).unwrap();
    assert!(
        postinst.contains("adduser --system"),
        "postinst creates the user"
    );
    assert!(
        !postinst.contains("systemctl enable"),
        "postinst must enable no unit"
    );
}
