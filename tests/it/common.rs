//! Shared fixtures: temporary archives, configurations, running the built
//! binary, and the rule for tests that need a server.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A package-version's files: (relative path, content); a content starting
/// with "->" makes a symlink to the rest.
pub type Files<'a> = &'a [(&'a str, &'a str)];

/// Default content of a package: a descpkg, a binary, a library and a link.
pub const DEFAULT_FILES: Files<'static> = &[
    ("bin/tool", "#!/bin/sh\necho tool\n"),
    ("lib/libx.so.1", "library bytes"),
    ("lib/libx.so", "->libx.so.1"),
    ("include/x.h", "/* header */\n"),
];

/// A scratch world: source archive, config dir, state dir, targets.
pub struct World {
    pub dir: tempfile::TempDir,
}

impl World {
    pub fn new() -> World {
        World::new_in(&std::env::temp_dir())
    }

    /// A world below `base` (a file system of the test's choosing).
    pub fn new_in(base: &Path) -> World {
        let dir = tempfile::Builder::new()
            .prefix("blat-test-")
            .tempdir_in(base)
            .unwrap();
        // Let an unprivileged target user (SSH tests) reach into the world.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let w = World { dir };
        fs::create_dir_all(w.archive()).unwrap();
        fs::create_dir_all(w.config().join("targets")).unwrap();
        w
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn archive(&self) -> PathBuf {
        self.path().join("archive")
    }
    pub fn config(&self) -> PathBuf {
        self.path().join("config")
    }
    pub fn state(&self) -> PathBuf {
        self.path().join("state")
    }
    pub fn target_dir(&self, name: &str) -> PathBuf {
        self.path().join("targets").join(name)
    }

    /// Adds a released (read-only) package-version with the given descpkg mtime.
    pub fn release(&self, package: &str, version: &str, mtime: i64) -> PathBuf {
        self.release_with(package, version, mtime, DEFAULT_FILES)
    }

    pub fn release_with(&self, package: &str, version: &str, mtime: i64, files: Files) -> PathBuf {
        let dir = self.build(package, version, mtime, files);
        make_read_only(&dir);
        dir
    }

    /// Adds a package-version that is still being built (writable).
    pub fn build(&self, package: &str, version: &str, mtime: i64, files: Files) -> PathBuf {
        let dir = self.archive().join(package).join(version);
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("descpkg"),
            format!("Package: {package}\nVersion: {version}\n"),
        )
        .unwrap();
        for (rel, content) in files {
            let path = dir.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            if let Some(target) = content.strip_prefix("->") {
                std::os::unix::fs::symlink(target, &path).unwrap();
            } else {
                fs::write(&path, content).unwrap();
                if rel.starts_with("bin/") {
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
                }
            }
        }
        set_mtime(&dir.join("descpkg"), mtime);
        set_mtime(&dir, mtime);
        dir
    }

    /// `<archive>/<package>/<alias> -> <version>`.
    pub fn alias(&self, package: &str, alias: &str, version: &str) {
        let link = self.archive().join(package).join(alias);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(version, link).unwrap();
    }

    /// Writes blat.toml with a SQLite (`.sql`) release manager.
    pub fn write_global(&self, extra: &str) {
        let text = format!(
            "archive = \"{}\"\nstate_dir = \"{}\"\ntag_dir = \"{}\"\n{extra}\n[release_manager]\nkind = \"sqlite\"\npath = \"{}\"\n",
            self.archive().display(),
            self.state().display(),
            self.path().join("tags").display(),
            self.path().join("rm.sql").display()
        );
        fs::write(self.config().join("blat.toml"), text).unwrap();
    }

    /// Writes the release database: `releases` as (PROJECT/RELEASE, state,
    /// s3sync, [package/version...]).
    pub fn write_rm(&self, releases: &[(&str, &str, i32, &[&str])]) {
        fs::write(self.path().join("rm.sql"), rm_sql(releases)).unwrap();
    }

    /// Writes `targets/<name>.conf`.
    pub fn write_target(&self, name: &str, text: &str) {
        fs::write(
            self.config().join("targets").join(format!("{name}.conf")),
            text,
        )
        .unwrap();
    }

    /// A local target conf with the given extra lines.
    pub fn local_target(&self, name: &str, extra: &str) {
        self.write_target(
            name,
            &format!(
                "kind = \"archive\"\ntransport = \"local\"\npath = \"{}\"\n{extra}\n",
                self.target_dir(name).display()
            ),
        );
    }

    /// Project P (a/1.0, and b/2.0 with a nested file and a symlink) and
    /// j/1 with the alias j/cur from `t0` on, the Release Manager holding
    /// P/R1: the packages the SSH and jump suites send.
    pub fn release_project_p(&self, t0: i64) {
        self.release("a", "1.0", t0);
        self.release_with(
            "b",
            "2.0",
            t0 + 20,
            &[("deep/er/x.txt", "x"), ("run.sh", "->deep/er/x.txt")],
        );
        self.release("j", "1", t0 + 40);
        self.alias("j", "cur", "1");
        self.write_global("");
        self.write_rm(&[("P/R1", "open", 0, &["a/1.0", "b/2.0"])]);
    }

    /// Runs the built blat with `-c <config>` and `args`.
    pub fn blat(&self, args: &[&str]) -> Output {
        self.blat_env(args, &[])
    }

    /// Starts the built blat in the background, its output piped: for the
    /// tests that watch a run while it goes (`fast --watch`, `--jobs`).
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        Command::new(env!("CARGO_BIN_EXE_blat"))
            .arg("-c")
            .arg(self.config())
            .args(args)
            .env_remove("BLAT_CONFIG")
            .env_remove("BLAT_NOW")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// A released package with one file of `size` bytes that do not
    /// compress: for the tests of big transfers (timeouts, slow links).
    pub fn big_package(&self, package: &str, version: &str, mtime: i64, size: usize) {
        let dir = self.build(package, version, mtime, &[]);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let data: Vec<u8> = (0..size)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        fs::write(dir.join("blob.bin"), data).unwrap();
        set_mtime(&dir, mtime);
        make_read_only(&dir);
    }

    /// Runs the built blat as an unprivileged user: `nobody` when the tests
    /// run as root (from a link to the binary inside the world, a path
    /// nobody can reach), else as ourselves.
    pub fn blat_unprivileged(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        use std::os::unix::process::CommandExt;
        let mut cmd = if is_root() {
            let blat = self.path().join("blat");
            if !blat.exists() && fs::hard_link(env!("CARGO_BIN_EXE_blat"), &blat).is_err() {
                fs::copy(env!("CARGO_BIN_EXE_blat"), &blat).unwrap();
            }
            let mut cmd = Command::new(&blat);
            let (uid, gid) = unprivileged_ids();
            cmd.uid(uid).gid(gid);
            cmd
        } else {
            Command::new(env!("CARGO_BIN_EXE_blat"))
        };
        cmd.arg("-c").arg(self.config()).args(args);
        cmd.env_remove("BLAT_CONFIG")
            .env_remove("BLAT_NOW")
            .env("HOME", self.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    pub fn blat_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_blat"));
        cmd.arg("-c").arg(self.config()).args(args);
        cmd.env_remove("BLAT_CONFIG").env_remove("BLAT_NOW");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }
}

/// The reference schema (docs/archive.md) with the given releases, as SQL.
pub fn rm_sql(releases: &[(&str, &str, i32, &[&str])]) -> String {
    let mut sql = String::from(
        "CREATE TABLE projects (project_id INTEGER PRIMARY KEY, name TEXT UNIQUE);
CREATE TABLE releases (release_id INTEGER PRIMARY KEY, project_id INTEGER, name TEXT, state TEXT, s3sync INTEGER);
CREATE TABLE packages (package_id INTEGER PRIMARY KEY, name TEXT UNIQUE);
CREATE TABLE package_versions (pv_id INTEGER PRIMARY KEY, package_id INTEGER, version TEXT);
CREATE TABLE release_content (release_id INTEGER, pv_id INTEGER);
",
    );
    let mut projects: Vec<String> = Vec::new();
    let mut packages: Vec<String> = Vec::new();
    let mut pvs: Vec<(String, String)> = Vec::new();
    for (rid, (name, state, s3, content)) in releases.iter().enumerate() {
        let (project, release) = name.split_once('/').unwrap();
        if !projects.iter().any(|p| p == project) {
            projects.push(project.to_string());
            sql.push_str(&format!(
                "INSERT INTO projects VALUES ({}, '{project}');\n",
                projects.len()
            ));
        }
        let pid = projects.iter().position(|p| p == project).unwrap() + 1;
        sql.push_str(&format!(
            "INSERT INTO releases VALUES ({}, {pid}, '{release}', '{state}', {s3});\n",
            rid + 1
        ));
        for pv in content.iter() {
            let (p, v) = pv.split_once('/').unwrap();
            if !packages.iter().any(|x| x == p) {
                packages.push(p.to_string());
                sql.push_str(&format!(
                    "INSERT INTO packages VALUES ({}, '{}');\n",
                    packages.len(),
                    p.replace('\'', "''")
                ));
            }
            let key = (p.to_string(), v.to_string());
            let pvid = match pvs.iter().position(|x| *x == key) {
                Some(i) => i + 1,
                None => {
                    pvs.push(key);
                    let pkid = packages.iter().position(|x| x == p).unwrap() + 1;
                    sql.push_str(&format!(
                        "INSERT INTO package_versions VALUES ({}, {pkid}, '{}');\n",
                        pvs.len(),
                        v.replace('\'', "''")
                    ));
                    pvs.len()
                }
            };
            sql.push_str(&format!(
                "INSERT INTO release_content VALUES ({}, {pvid});\n",
                rid + 1
            ));
        }
    }
    sql
}

/// Whether the tests run as root.
pub fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// The user [`World::blat_unprivileged`] runs as when we are root.
pub const UNPRIVILEGED: &str = "nobody";

/// Uid and gid of [`UNPRIVILEGED`].
pub fn unprivileged_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, UNPRIVILEGED])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no user {UNPRIVILEGED}"))
    };
    (id("-u"), id("-g"))
}

/// Gives `path` and everything below to the user of
/// [`World::blat_unprivileged`] (nothing to do when we are not root).
pub fn give_unprivileged(path: &Path) {
    if is_root() {
        let (uid, gid) = unprivileged_ids();
        for p in walk(path) {
            std::os::unix::fs::lchown(&p, Some(uid), Some(gid)).unwrap();
        }
    }
}

pub fn set_mtime(path: &Path, secs: i64) {
    filetime::set_symlink_file_times(
        path,
        filetime::FileTime::from_unix_time(secs, 0),
        filetime::FileTime::from_unix_time(secs, 0),
    )
    .unwrap();
}

/// Released packages are read-only: every directory 555, files without w.
pub fn make_read_only(dir: &Path) {
    for entry in walk(dir) {
        let meta = fs::symlink_metadata(&entry).unwrap();
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode() & !0o222;
        let mtime = filetime::FileTime::from_last_modification_time(&meta);
        fs::set_permissions(&entry, fs::Permissions::from_mode(mode)).unwrap();
        // The path-based call: set_file_mtime would open a FIFO and block.
        filetime::set_symlink_file_times(&entry, mtime, mtime).unwrap();
    }
}

/// Makes a tree writable again (so a test can change or remove it).
pub fn make_writable(dir: &Path) {
    for entry in walk(dir) {
        let meta = fs::symlink_metadata(&entry).unwrap();
        if !meta.file_type().is_symlink() {
            fs::set_permissions(
                &entry,
                fs::Permissions::from_mode(meta.permissions().mode() | 0o200),
            )
            .unwrap();
        }
    }
}

/// Every path below and including `dir`, parents first.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let p = out[i].clone();
        if fs::symlink_metadata(&p)
            .map(|m| m.is_dir())
            .unwrap_or(false)
        {
            let mut children: Vec<PathBuf> = fs::read_dir(&p)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            children.sort();
            out.extend(children);
        }
        i += 1;
    }
    out
}

/// A comparable picture of a tree: relative path, kind, mode, mtime (for
/// files and directories), size, link target.
pub fn snapshot(root: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    for p in walk(root) {
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        let m = fs::symlink_metadata(&p).unwrap();
        let line = if m.file_type().is_symlink() {
            format!("{rel} -> {}", fs::read_link(&p).unwrap().display())
        } else if m.is_dir() {
            format!("{rel}/ {:o} {}", m.mode() & 0o7777, m.mtime())
        } else {
            format!("{rel} {:o} {} {}", m.mode() & 0o7777, m.mtime(), m.len())
        };
        out.push(line);
    }
    out
}

/// Entries of a directory whose names start with `prefix` (leftover checks).
pub fn leftovers(root: &Path) -> Vec<String> {
    walk(root)
        .into_iter()
        .filter(|p| {
            let n = p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            n.starts_with(".blat-tmp-") || n.starts_with(".blat-del-")
        })
        .map(|p| p.display().to_string())
        .collect()
}

/// Asserts that no temporary is left below a target archive.
#[track_caller]
pub fn assert_no_leftovers(root: &Path) {
    let left = leftovers(root);
    assert!(left.is_empty(), "temporaries left: {left:?}");
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Asserts an exit code, showing the output when it differs.
#[track_caller]
pub fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "exit code\n--- stdout\n{}\n--- stderr\n{}",
        stdout(o),
        stderr(o)
    );
}

// ------------------------------------------------------------ shared suites

/// One `#[test]` per case of a shared suite (a module of `fn(Harness)`
/// cases), each on a fresh harness from `$harness`, a `fn() ->
/// Option<Harness>` whose `None` (its server is missing) skips:
/// `suite_tests!(harness; target_suite; case ...)`.
#[macro_export]
macro_rules! suite_tests {
    ($harness:path; $suite:ident; $($case:ident)*) => {
        $(
            #[test]
            fn $case() {
                if let Some(h) = $harness() {
                    $crate::$suite::$case(h);
                }
            }
        )*
    };
}

// ------------------------------------------------------------ --json answers

/// The `--json` answer on stdout; panics with stdout and stderr when it is
/// not JSON.
#[track_caller]
pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e})\n--- stdout\n{}\n--- stderr\n{}",
            stdout(o),
            stderr(o)
        )
    })
}

/// `package/version` of one package-version object in a JSON answer.
#[track_caller]
pub fn pv_of(v: &serde_json::Value) -> String {
    match (v["package"].as_str(), v["version"].as_str()) {
        (Some(p), Some(v)) => format!("{p}/{v}"),
        _ => panic!("not a package-version: {v}"),
    }
}

/// `package/version` of each package-version in a JSON list.
#[track_caller]
pub fn pvs(list: &serde_json::Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(pv_of)
        .collect()
}

/// For tests that need a server: `Some(value)` of the environment variable
/// naming it; when it is missing, panics under `CI=true` (a missing server
/// in CI is a failure, never a skip) and otherwise skips with a note.
pub fn require(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{what} is required under CI=true but ${var} is not set (run scripts/test)");
            }
            eprintln!("skipped: {what} not available (${var} unset; scripts/test sets it)");
            None
        }
    }
}

/// For tests that run an outside tool (promtool, mandoc, groff): its path
/// on `$PATH`; when it is missing, panics under `CI=true` (scripts/test-env
/// installs it from Debian package `package`) and otherwise skips with a
/// note.
pub fn require_tool(name: &str, package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{name} is required under CI=true but not on PATH (scripts/test-env installs Debian package {package})");
        }
        eprintln!(
            "skipped: {name} not on PATH (Debian package {package}; scripts/test installs it)"
        );
    }
    found
}

// ------------------------------------------------------------ randomized tests

/// A small seeded PRNG (SplitMix64) for the randomized tests: the same seed
/// gives the same case, on any machine, without a dependency.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x5851_f42d_4c95_7f2d)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// A derived generator, so that one part of a case does not shift the
    /// random choices of the next when it changes.
    pub fn fork(&mut self) -> Rng {
        Rng::new(self.next_u64())
    }

    /// `len` bytes: compressible text or incompressible noise.
    pub fn bytes(&mut self, len: usize, noise: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        if noise {
            while out.len() < len {
                out.extend_from_slice(&self.next_u64().to_le_bytes());
            }
            out.truncate(len);
        } else {
            const WORDS: &[&str] = &["lib", "bin ", "x86_64", "\n", "#include ", "0.1.2 ", "jats"];
            while out.len() < len {
                out.extend_from_slice(self.pick(WORDS).as_bytes());
            }
            out.truncate(len);
        }
        out
    }
}

/// One entry of a [`picture`]: everything blat must keep of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Relative path (bytes escaped); empty for the root itself.
    pub rel: String,
    /// `d`, `f`, `l`, or `?` for anything else.
    pub kind: char,
    pub mode: u32,
    /// Files and directories only (symlinks: 0).
    pub mtime: i64,
    pub size: u64,
    /// FNV-1a of a file's content.
    pub hash: u64,
    /// A symlink's target (bytes escaped).
    pub link: String,
}

impl Entry {
    /// The entry as one comparable line below `prefix`.
    pub fn line(&self, prefix: &str) -> String {
        let path = if self.rel.is_empty() {
            prefix.to_string()
        } else {
            format!("{prefix}/{}", self.rel)
        };
        match self.kind {
            'l' => format!("{path} -> {}", self.link),
            'd' => format!("{path}/ {:04o} {}", self.mode, self.mtime),
            'f' => format!(
                "{path} {:04o} {} {}B {:016x}",
                self.mode, self.mtime, self.size, self.hash
            ),
            _ => format!("{path} ? {:04o}", self.mode),
        }
    }
}

pub fn escape(name: &std::ffi::OsStr) -> String {
    use std::os::unix::ffi::OsStrExt;
    name.as_bytes().escape_ascii().to_string()
}

fn fnv(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A full picture of the tree at `root` (itself included, children sorted by
/// name bytes): kinds, modes, mtimes, sizes, content hashes, link targets.
/// An error (something vanished or cannot be read) is a message.
pub fn picture(root: &Path) -> Result<Vec<Entry>, String> {
    use std::os::unix::fs::MetadataExt;
    fn visit(path: &Path, rel: String, out: &mut Vec<Entry>) -> Result<(), String> {
        let m = fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let ft = m.file_type();
        let mut e = Entry {
            rel: rel.clone(),
            kind: '?',
            mode: m.mode() & 0o7777,
            mtime: 0,
            size: 0,
            hash: 0,
            link: String::new(),
        };
        if ft.is_symlink() {
            e.kind = 'l';
            e.mode = 0;
            let t = fs::read_link(path).map_err(|e| format!("{}: {e}", path.display()))?;
            e.link = escape(t.as_os_str());
            out.push(e);
        } else if ft.is_file() {
            e.kind = 'f';
            e.mtime = m.mtime();
            e.size = m.len();
            let data = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            e.hash = fnv(&data);
            out.push(e);
        } else if ft.is_dir() {
            e.kind = 'd';
            e.mtime = m.mtime();
            out.push(e);
            let mut names: Vec<std::ffi::OsString> = fs::read_dir(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .map(|d| d.map(|d| d.file_name()))
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            {
                use std::os::unix::ffi::OsStrExt;
                names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            }
            for name in names {
                let child_rel = if rel.is_empty() {
                    escape(&name)
                } else {
                    format!("{rel}/{}", escape(&name))
                };
                visit(&path.join(&name), child_rel, out)?;
            }
        } else {
            out.push(e);
        }
        Ok(())
    }
    let mut out = Vec::new();
    visit(root, String::new(), &mut out)?;
    Ok(out)
}

/// Every entry below `root` whose name starts with `.blat-` (temporaries of
/// any kind: `.blat-tmp-*`, `.blat-del-*`, staging directories), at any depth.
pub fn blat_names(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_name().to_string_lossy().starts_with(".blat-") {
                out.push(p.strip_prefix(root).unwrap_or(&p).display().to_string());
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The lines only in `want` (`- `) and only in `got` (`+ `), merged in
/// sorted order so that two versions of one path stand together; at most
/// `max` lines. For failure messages that show the difference, not dumps.
pub fn diff(want: &[String], got: &[String], max: usize) -> String {
    use std::collections::BTreeSet;
    let w: BTreeSet<&String> = want.iter().collect();
    let g: BTreeSet<&String> = got.iter().collect();
    let mut lines: Vec<(&String, char)> = w
        .difference(&g)
        .map(|l| (*l, '-'))
        .chain(g.difference(&w).map(|l| (*l, '+')))
        .collect();
    lines.sort();
    let missing = lines.iter().filter(|l| l.1 == '-').count();
    let mut text = format!(
        "  - expected, not found: {missing}; + found, not expected: {}\n",
        lines.len() - missing
    );
    for (l, sign) in lines.iter().take(max) {
        let l: String = l.chars().take(300).collect();
        text.push_str(&format!("  {sign} {l}\n"));
    }
    if lines.len() > max {
        text.push_str("  ...\n");
    }
    if lines.is_empty() && want != got {
        text.push_str("  same lines, other order or multiplicity\n");
    }
    text
}

// ------------------------------------------------------------ processes

/// Processes (pid, argv) whose argv satisfies `pred`, from /proc.
pub fn processes(pred: impl Fn(&[String]) -> bool) -> Vec<(i32, Vec<String>)> {
    let mut out = Vec::new();
    let me = std::process::id() as i32;
    let Ok(rd) = fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(raw) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if raw.is_empty() {
            continue; // a zombie or a kernel thread
        }
        let argv: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if pred(&argv) {
            out.push((pid, argv));
        }
    }
    out
}

/// `kill -9 pid`; false when it was already gone.
pub fn kill9(pid: i32) -> bool {
    // SAFETY: kill(2) with a pid we found in /proc; no memory is touched.
    unsafe { libc::kill(pid, libc::SIGKILL) == 0 }
}

/// Waits until no process satisfies `pred` (true), or `timeout` passed (false).
pub fn wait_gone(pred: impl Fn(&[String]) -> bool, timeout: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if processes(&pred).is_empty() {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// True when `argv` mentions `path` (as an argument or inside one).
pub fn mentions(argv: &[String], path: &Path) -> bool {
    let p = path.display().to_string();
    argv.iter().any(|a| a.contains(&p))
}

/// Removes a tree that may hold read-only directories.
pub fn remove_tree(path: &Path) {
    if fs::symlink_metadata(path).is_err() {
        return;
    }
    let _ = std::process::Command::new("chmod")
        .arg("-R")
        .arg("u+rwx")
        .arg(path)
        .status();
    let _ = fs::remove_dir_all(path);
}

/// Empties a directory (keeping it, its owner and its mode).
pub fn empty_dir(dir: &Path) {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&p);
            } else {
                let _ = fs::remove_file(&p);
            }
        }
    }
}

/// A tmpfs mounted for a test, unmounted on drop.
pub struct Tmpfs {
    pub path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (mount's syntax: `2m`) at `path`. `None`
    /// when that is not possible here: under `CI=true` that panics (CI runs
    /// as root and must be able to), otherwise the test skips with a note.
    pub fn mount(path: &Path, size: &str) -> Option<Tmpfs> {
        fs::create_dir_all(path).unwrap();
        let out = mount_tmpfs(path, size).output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs {
                path: path.to_path_buf(),
            }),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                    Err(e) => e.to_string(),
                };
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("cannot mount a tmpfs under CI=true (CI runs as root): {why}");
                }
                eprintln!("skipped: cannot mount a tmpfs (needs root): {why}");
                None
            }
        }
    }

    /// A tmpfs to run many small worlds on, when this machine allows it:
    /// no fallback needed, the tests run on the default temp directory
    /// otherwise, only slower (ext4 searches its recently deleted inodes
    /// on each file created after mass deletions).
    /// (Unmounted before its directory is removed: fields drop in order.)
    pub fn scratch(size: &str) -> Option<(Tmpfs, tempfile::TempDir)> {
        let dir = tempfile::Builder::new()
            .prefix("blat-scratch-")
            .tempdir()
            .ok()?;
        let ok = mount_tmpfs(dir.path(), size)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| {
            let fs = Tmpfs {
                path: dir.path().to_path_buf(),
            };
            (fs, dir)
        })
    }

    pub fn resize(&self, size: &str) {
        let st = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(
            st.success(),
            "cannot remount {} with size {size}",
            self.path.display()
        );
    }
}

/// `mount -t tmpfs` of `size` at `path`, to run.
fn mount_tmpfs(path: &Path, size: &str) -> std::process::Command {
    let mut mount = std::process::Command::new("mount");
    mount
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=755"),
            "tmpfs",
        ])
        .arg(path);
    mount
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

/// The PID of a process that has just ended: stands for the writer of a
/// leftover temporary that is provably gone.
pub fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// Sets its flag when dropped, also while a panic unwinds: a watcher thread
/// that loops until the flag is set then ends, and a scope whose workers
/// failed reports the failure instead of waiting for the watcher forever.
pub struct SetOnDrop<'a>(pub &'a std::sync::atomic::AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
