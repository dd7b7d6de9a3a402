//! Model-based randomized end-to-end test of `blat sync`.
//!
//! Each case is generated from one seed ([`common::Rng`]): a source archive
//! (1–30 versions per package, 0–60 entries per version, sizes 0 B–2 MiB,
//! nested and empty directories, symlinks inside packages, relative and
//! dangling, file names up to 255 bytes, names at the edges of the name
//! rule, aliases in every form, versions still being built), a Release
//! Manager database, and a target (local, or SSH through the sshd fixture)
//! with random releases, projects, pins, `parallel` (1–64), compression and
//! grace. After each `blat sync` the target must be exactly what a model of
//! the contract (docs/archive.md, docs/aging.md) predicts: which
//! package-versions are there with which content, modes (setuid/setgid
//! stripped), mtimes and links; which aliases; the PackageList, line for
//! line (with its `# unanswered:` line); what the JSON report says was sent,
//! skipped, linked and deleted; the exit code; and nothing named `.blat-*`
//! anywhere. Then the case mutates the world (new versions, versions
//! dropped from releases, releases closed, new descpkg mtimes, rebuilt
//! versions, finished builds, versions and aliases removed from the
//! archive, aliases repointed, time passing, aging `immediate` switched on
//! with a random `max_delete`) and syncs and checks again, 2–4 syncs a case.
//! Arrival times (the receiver reports the descpkg's ctime) are the
//! kernel's: the model reads them before each sync.
//!
//! Batches close at 64 packages or 64 MiB (constants in `src/transfer.rs`,
//! no knob): cases hold up to a few hundred package-versions, and the
//! senders fill their batches from one queue at once, so a first sync
//! spreads a package's versions over batches that run concurrently.
//!
//! Seeds: by default 200 cases, seeds 1..=200 (every tenth over SSH), spread
//! over shards that cargo runs in parallel, the worlds on a scratch tmpfs
//! when one can be mounted. `BLAT_SEED=N` replays one case, `BLAT_SOAK=N`
//! runs N cases from `BLAT_SEED_BASE` (default: random, printed).
//! `BLAT_KEEP=1` keeps the world of a failing case; `BLAT_TEST_PARALLEL=N`
//! overrides every case's `parallel` (triage: does a failure need
//! concurrent batches?); `BLAT_MODEL_TIMING=1` prints the time of each sync
//! and check (with `--nocapture`).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Instant;

use crate::common::{self, Entry, Rng, World};
use crate::sshd::Sshd;

const T0: i64 = 1_700_000_000;
const DEFAULT_CASES: u64 = 200;
const LOCAL_SHARDS: u64 = 4;
const SSH_SHARDS: u64 = 2;

type Pv = (String, String);

// ------------------------------------------------------------ the model

#[derive(Clone, Debug)]
struct Version {
    /// Still being built: the version directory has a write bit.
    writable: bool,
    descpkg_mtime: i64,
    dir_mtime: i64,
    /// What the source holds, as written.
    picture: Vec<Entry>,
}

impl Version {
    /// Newest mtime of the directory and its descpkg (SPEC §1).
    fn since(&self) -> i64 {
        self.dir_mtime.max(self.descpkg_mtime)
    }
}

#[derive(Clone, Debug, Default)]
struct Package {
    versions: BTreeMap<String, Version>,
    /// Alias → the version it names (the link text takes any form).
    aliases: BTreeMap<String, String>,
}

#[derive(Clone, Debug)]
struct Release {
    project: String,
    name: String,
    closed: bool,
    /// `package/version` rows, as the database holds them.
    content: Vec<Pv>,
}

#[derive(Clone, Debug)]
struct Conf {
    releases: Vec<(String, String)>,
    projects: Vec<String>,
    pins: Vec<Pv>,
    parallel: u64,
    compression: &'static str,
    grace: i64,
    immediate: bool,
    max_delete: usize,
    force: bool,
}

/// What the target holds, as the model sees it.
#[derive(Clone, Debug, Default)]
struct TargetModel {
    /// Package-version → (descpkg mtime, picture it must have).
    versions: BTreeMap<Pv, (i64, Vec<Entry>)>,
    /// (package, alias) → version.
    aliases: BTreeMap<Pv, String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Src {
    Missing,
    Version { mtime: i64, since: Option<i64> },
}

/// The current set, as `src/current.rs` must build it.
#[derive(Debug, Default)]
struct Current {
    releases: Vec<(String, String)>,
    versions: BTreeMap<Pv, Src>,
    /// (package, alias, version).
    aliases: BTreeSet<(String, String, String)>,
    protected: BTreeSet<Pv>,
    /// What the Release Manager answered nothing for (`release P/R`,
    /// `project P`, `its releases`): aging then deletes nothing.
    unanswered: Vec<String>,
}

/// The PackageList a sync must leave, past its header line.
fn plist_body(exp: &Expect) -> Vec<String> {
    let mut body = vec![exp.releases_line.clone()];
    body.extend(exp.unanswered_line.clone());
    body.extend(exp.alias_lines.iter().cloned());
    body.extend(exp.packagelist.iter().cloned());
    body
}

/// What one sync must do and leave.
#[derive(Debug, Default)]
struct Expect {
    sent: BTreeSet<String>,
    skipped: BTreeSet<String>,
    linked: BTreeSet<String>,
    deleted: BTreeSet<String>,
    refused: bool,
    exit: i32,
    packagelist: Vec<String>,
    releases_line: String,
    unanswered_line: Option<String>,
    /// `# alias: package alias version`, sorted.
    alias_lines: Vec<String>,
    /// Would be excess but arrived within the grace.
    kept_by_arrival: usize,
}

/// What a shard's cases exercised, printed with its summary line: proof
/// that the interesting paths are taken, not only generated.
#[derive(Default)]
struct Stats {
    rounds: usize,
    sent: usize,
    deleted: usize,
    linked: usize,
    writable_skipped: usize,
    not_in_archive: usize,
    refused: usize,
    unanswered: usize,
    kept_by_arrival: usize,
}

impl Stats {
    fn add(&mut self, exp: &Expect) {
        self.rounds += 1;
        self.sent += exp.sent.len();
        self.deleted += exp.deleted.len();
        self.linked += exp.linked.len();
        self.writable_skipped += exp
            .skipped
            .iter()
            .filter(|s| s.ends_with(":writable"))
            .count();
        self.not_in_archive += exp
            .skipped
            .iter()
            .filter(|s| s.ends_with(":not_in_archive"))
            .count();
        self.refused += usize::from(exp.refused);
        self.unanswered += usize::from(exp.unanswered_line.is_some());
        self.kept_by_arrival += exp.kept_by_arrival;
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} syncs: {} sent, {} deleted, {} aliases linked, {} writable skipped, {} not in the archive, {} deletions refused, {} with unanswered releases, {} kept by arrival",
            self.rounds,
            self.sent,
            self.deleted,
            self.linked,
            self.writable_skipped,
            self.not_in_archive,
            self.refused,
            self.unanswered,
            self.kept_by_arrival
        )
    }
}

struct Case {
    rng: Rng,
    world: World,
    /// The target archive (a local directory, or the sshd's archive).
    target: PathBuf,
    /// The SSH target lines (`Sshd::target_conf`), or local.
    ssh_conf: Option<String>,
    pkgs: BTreeMap<String, Package>,
    releases: Vec<Release>,
    conf: Conf,
    now: i64,
    model: TargetModel,
    /// When each version arrived on the target (its descpkg's ctime, the
    /// kernel's clock), read before each sync.
    arrivals: BTreeMap<Pv, i64>,
    /// Case-level switches for the rarer edges.
    long_versions: bool,
    set_id_bits: bool,
    log: Vec<String>,
    /// The PackageList's lines past its header and when a sync wrote them:
    /// a sync that would write the same lines leaves the list as it is.
    plist: Option<(Vec<String>, i64)>,
}

fn pv_text(pv: &Pv) -> String {
    format!("{}/{}", pv.0, pv.1)
}

// ------------------------------------------------------------ names

const NAME_FIRST: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_";
const NAME_REST: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._+~-";

/// A name of exactly `len` characters that matches the name rule.
fn rule_name(rng: &mut Rng, len: usize) -> String {
    let mut s = String::new();
    s.push(*rng.pick(NAME_FIRST) as char);
    while s.len() < len {
        s.push(*rng.pick(NAME_REST) as char);
    }
    s
}

fn package_name(rng: &mut Rng, i: usize) -> String {
    match rng.below(100) {
        0..=49 => format!("p{i}"),
        50..=57 => (*rng.pick(NAME_FIRST) as char).to_string(),
        58..=63 => rule_name(rng, 255),
        64..=71 => format!("_{}{i}", rng.pick(&["._+~-", ".", "-", "+", "~", "__"])),
        72..=85 => format!(
            "lib{}",
            rng.pick(&["", ".x", "-x", "+x", "_x", "~x", "x", ".", "-"])
        ),
        86..=93 => {
            let len = rng.range(1, 40) as usize;
            format!("{}-{i}", rule_name(rng, len))
        }
        _ => format!("{i}.{}", rng.pick(&["0", "a-b", "x+y", "z~"])),
    }
}

fn version_name(rng: &mut Rng, i: usize, long: bool) -> String {
    match rng.below(100) {
        0..=49 => format!("{}.{}.{}", i / 10, i % 10, rng.below(3)),
        50..=59 => format!("{i}"),
        60..=69 => format!(
            "{i}.0-rc{}+b{}~{}",
            rng.below(9),
            rng.below(99),
            rng.below(9)
        ),
        70..=75 => (*rng.pick(NAME_FIRST) as char).to_string(),
        76..=80 => format!("_{i}"),
        81..=89 => {
            let len = rng.range(20, 200) as usize;
            format!("{i}.{}", rule_name(rng, len))
        }
        90..=94 if long => rule_name(rng, 255),
        _ => format!("v{i}-{}", rng.pick(&["x", "._+~-", "1.2.3", "a"])),
    }
}

fn alias_name(rng: &mut Rng) -> String {
    match rng.below(10) {
        0..=5 => rng
            .pick(&["current", "latest", "jats2_current", "stable~1", "c", "_"])
            .to_string(),
        6..=8 => {
            let len = rng.range(1, 30) as usize;
            rule_name(rng, len)
        }
        _ => rule_name(rng, 255),
    }
}

/// A file name inside a package: mostly plain, sometimes anything a file
/// system allows (spaces, quotes, glob characters, leading dashes and dots,
/// UTF-8, bytes that are not UTF-8, a newline, 255 bytes).
fn file_name(rng: &mut Rng) -> OsString {
    let bytes: Vec<u8> = match rng.below(100) {
        0..=59 => format!(
            "{}{}{}",
            rng.pick(&["f", "lib", "tool", "README", "x", "data", "Makefile"]),
            rng.below(1000),
            rng.pick(&["", ".txt", ".so.1", ".h", ".tar.gz", ".sh"])
        )
        .into_bytes(),
        60..=69 => rng
            .pick(&[
                "my file (1).txt",
                "it's \"quoted\"",
                "*?[a-z]",
                "-rf",
                "--",
                "~tilde",
                "#hash#",
                "$HOME",
                "back\\slash",
                "semi;colon|pipe&amp",
                " lead",
                "trail ",
                "\ttab",
            ])
            .as_bytes()
            .to_vec(),
        70..=74 => format!(".hidden{}", rng.below(100)).into_bytes(),
        75..=77 => b"..dots".to_vec(),
        78..=83 => "über-ñ-文件-Ωmega".as_bytes().to_vec(),
        84..=91 => {
            let len = rng.range(100, 255) as usize;
            let mut s = rng.bytes(len, false);
            for b in s.iter_mut() {
                if *b == b'/' || *b == 0 || *b == b'\n' {
                    *b = b'_';
                }
            }
            s
        }
        92..=93 => "λ".repeat(127).into_bytes(), // 254 bytes of 2-byte characters
        94..=95 => b"new\nline".to_vec(),
        96..=97 => vec![b'x', 0xff, 0xfe, b'y'],
        _ => b"descpkg".to_vec(), // fine below the top level
    };
    OsString::from_vec(bytes)
}

// ------------------------------------------------------------ generating versions

enum Node {
    Dir { mode: u32 },
    File { data: Vec<u8>, mode: u32 },
    Link { target: OsString },
}

/// The entries of a version (paths relative to it, parents first).
fn gen_tree(
    rng: &mut Rng,
    writable: bool,
    set_id: bool,
    budget: &mut u64,
) -> Vec<(PathBuf, Node, i64)> {
    let count = match rng.below(100) {
        0..=44 => rng.range(0, 3),
        45..=79 => rng.range(3, 12),
        80..=94 => rng.range(12, 30),
        _ => rng.range(30, 60),
    };
    let mut out: Vec<(PathBuf, Node, i64)> = Vec::new();
    let mut dirs: Vec<(PathBuf, usize)> = vec![(PathBuf::new(), 0)];
    let mut used: BTreeSet<PathBuf> = BTreeSet::new();
    let mut files: Vec<PathBuf> = Vec::new();
    let mtime = |rng: &mut Rng| T0 - rng.below(100_000_000) as i64 + rng.below(1_000_000) as i64;
    let mut made = 0;
    let mut tries = 0;
    while made < count && tries < 500 {
        tries += 1;
        let (parent, depth) = rng.pick(&dirs).clone();
        let name = file_name(rng);
        if parent.as_os_str().is_empty()
            && (name == "descpkg" || name.as_bytes().starts_with(b".blat"))
        {
            continue;
        }
        if name.as_bytes().starts_with(b".blat") {
            continue;
        }
        let rel = parent.join(&name);
        if used.contains(&rel) {
            continue;
        }
        used.insert(rel.clone());
        let roll = rng.below(100);
        if roll < 15 && depth < 4 {
            let mode = if writable {
                *rng.pick(&[0o755, 0o775, 0o700, 0o777, 0o750])
            } else {
                *rng.pick(&[0o555, 0o555, 0o500, 0o550, 0o1555])
            };
            let mode = if set_id && rng.chance(20) {
                mode | 0o2000
            } else {
                mode
            };
            out.push((rel.clone(), Node::Dir { mode }, mtime(rng)));
            dirs.push((rel, depth + 1));
        } else if roll < 27 {
            let target: OsString = match rng.below(6) {
                0 | 1 if !files.is_empty() => {
                    // A relative link to a file of the version, from here.
                    let to = rng.pick(&files).clone();
                    let mut up = PathBuf::new();
                    for _ in 0..depth {
                        up.push("..");
                    }
                    up.join(to).into_os_string()
                }
                2 => "missing/dangling".into(),
                3 => "/nonexistent/absolute".into(),
                4 => OsString::from_vec(
                    format!("../{}", "d/".repeat(rng.range(1, 120) as usize)).into_bytes(),
                ),
                _ => file_name(rng),
            };
            out.push((rel, Node::Link { target }, 0));
            made += 1;
        } else {
            let size = match rng.below(1000) {
                0..=399 => rng.range(0, 16),
                400..=799 => rng.range(17, 512),
                800..=949 => rng.range(513, 8 << 10),
                950..=996 => rng.range(8 << 10, 64 << 10),
                _ => rng.range(64 << 10, 2 << 20),
            };
            let size = size.min(*budget);
            *budget -= size;
            let noise = rng.chance(50);
            let data = rng.bytes(size as usize, noise);
            let mode = if writable {
                *rng.pick(&[0o644, 0o755, 0o600, 0o666, 0o640, 0o700])
            } else {
                *rng.pick(&[0o444, 0o555, 0o400, 0o500, 0o440])
            };
            let mode = if set_id && rng.chance(15) {
                mode | *rng.pick(&[0o4000, 0o2000, 0o6000])
            } else {
                mode
            };
            files.push(rel.clone());
            out.push((rel, Node::File { data, mode }, mtime(rng)));
            made += 1;
        }
    }
    out
}

/// Writes a version directory and returns its picture.
fn write_version(
    dir: &Path,
    tree: &[(PathBuf, Node, i64)],
    descpkg: &[u8],
    descpkg_mtime: i64,
    dir_mtime: i64,
    writable: bool,
) -> Vec<Entry> {
    fs::create_dir_all(dir).unwrap();
    for (rel, node, _) in tree {
        let p = dir.join(rel);
        match node {
            Node::Dir { .. } => fs::create_dir(&p).unwrap(),
            Node::File { data, .. } => fs::write(&p, data).unwrap(),
            Node::Link { target } => std::os::unix::fs::symlink(target, &p).unwrap(),
        }
    }
    fs::write(dir.join("descpkg"), descpkg).unwrap();
    let set = |p: &Path, mode: Option<u32>, mtime: i64| {
        if let Some(mode) = mode {
            fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
        }
        common::set_mtime(p, mtime);
    };
    for (rel, node, mtime) in tree {
        if let Node::File { mode, .. } = node {
            set(&dir.join(rel), Some(*mode), *mtime);
        }
    }
    set(
        &dir.join("descpkg"),
        Some(if writable { 0o644 } else { 0o444 }),
        descpkg_mtime,
    );
    // Directories deepest first: their own changes are done by then.
    let mut dirs: Vec<&(PathBuf, Node, i64)> = tree
        .iter()
        .filter(|(_, n, _)| matches!(n, Node::Dir { .. }))
        .collect();
    dirs.sort_by_key(|(rel, _, _)| std::cmp::Reverse(rel.components().count()));
    for (rel, node, mtime) in dirs {
        if let Node::Dir { mode } = node {
            set(&dir.join(rel), Some(*mode), *mtime);
        }
    }
    set(dir, Some(if writable { 0o755 } else { 0o555 }), dir_mtime);
    common::picture(dir).unwrap()
}

impl Case {
    fn new(seed: u64, ssh: Option<&Sshd>, base: &Path) -> Case {
        let mut rng = Rng::new(seed);
        let world = World::new_in(base);
        let target = match ssh {
            Some(s) => s.archive(),
            None => world.target_dir("site"),
        };
        let long_versions = rng.chance(10);
        let set_id_bits = rng.chance(10);
        // Mostly a fixed past, where arrival times (real ctimes, years
        // later) are not believed; sometimes the real clock, where they are.
        let now = if rng.chance(30) {
            blat::clock::now()
        } else {
            T0 + rng.below(1_000_000) as i64
        };
        let conf = Conf {
            releases: Vec::new(),
            projects: Vec::new(),
            pins: Vec::new(),
            parallel: 1,
            compression: "gzip",
            grace: *rng.pick(&[0, 60, 3600, 3600, 6 * 3600]),
            immediate: false,
            max_delete: 50,
            force: false,
        };
        let mut case = Case {
            rng,
            world,
            target,
            ssh_conf: ssh.map(|s| s.target_conf(s.port, "")),
            pkgs: BTreeMap::new(),
            releases: Vec::new(),
            conf,
            now,
            model: TargetModel::default(),
            arrivals: BTreeMap::new(),
            long_versions,
            set_id_bits,
            log: Vec::new(),
            plist: None,
        };
        case.generate();
        case
    }

    fn version_dir(&self, p: &str, v: &str) -> PathBuf {
        self.world.archive().join(p).join(v)
    }

    /// Adds a new version of `package` (written to the archive).
    fn add_version(&mut self, package: &str, i: usize, budget: &mut u64) -> Option<String> {
        let mut rng = self.rng.fork();
        let mut name = version_name(&mut rng, i, self.long_versions);
        for _ in 0..20 {
            let pkg = self.pkgs.get(package);
            let taken = pkg
                .is_some_and(|p| p.versions.contains_key(&name) || p.aliases.contains_key(&name));
            if !taken {
                break;
            }
            let other = i + rng.below(10_000) as usize;
            name = version_name(&mut rng, other, self.long_versions);
        }
        if self
            .pkgs
            .get(package)
            .is_some_and(|p| p.versions.contains_key(&name) || p.aliases.contains_key(&name))
        {
            return None;
        }
        let writable = rng.chance(8);
        let grace = self.conf.grace;
        let (descpkg_mtime, dir_mtime) = if writable {
            let age = *rng.pick(&[10, grace - 1, grace, grace + 1, 3 * grace, 2 * grace]);
            let since = self.now - age;
            match rng.below(3) {
                0 => (since, since),
                1 => (since - rng.range(1, 1000) as i64, since),
                _ => (since, since - rng.range(1, 1000) as i64),
            }
        } else if rng.chance(15) {
            let m = self.now - rng.below(grace as u64 + 10) as i64;
            (m, m - rng.below(100) as i64)
        } else {
            let m = self.now - rng.range(grace as u64 + 60, 400 * 86400) as i64;
            (m, m - rng.below(100_000) as i64)
        };
        let tree = gen_tree(&mut rng, writable, self.set_id_bits, budget);
        let descpkg = format!(
            "Package: {package}\nVersion: {name}\nBuild: {}\n",
            rng.next_u64()
        );
        let dir = self.version_dir(package, &name);
        let picture = write_version(
            &dir,
            &tree,
            descpkg.as_bytes(),
            descpkg_mtime,
            dir_mtime,
            writable,
        );
        self.pkgs
            .entry(package.to_string())
            .or_default()
            .versions
            .insert(
                name.clone(),
                Version {
                    writable,
                    descpkg_mtime,
                    dir_mtime,
                    picture,
                },
            );
        Some(name)
    }

    fn add_alias(&mut self, package: &str) {
        let Some(pkg) = self.pkgs.get(package) else {
            return;
        };
        let versions: Vec<String> = pkg.versions.keys().cloned().collect();
        if versions.is_empty() {
            return;
        }
        let name = alias_name(&mut self.rng);
        if pkg.versions.contains_key(&name) {
            return;
        }
        let to = self.rng.pick(&versions).clone();
        self.set_alias(package, &name, &to);
    }

    fn set_alias(&mut self, package: &str, alias: &str, to: &str) {
        // Every form the alias rule takes (docs/archive.md).
        let text = match self.rng.below(10) {
            0 => format!("./{to}"),
            1 => format!("{to}/"),
            2 => format!("../{package}/{to}"),
            3 => format!("{}/{package}/{to}", self.world.archive().display()),
            _ => to.to_string(),
        };
        let link = self.world.archive().join(package).join(alias);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&text, &link).unwrap();
        self.pkgs
            .get_mut(package)
            .unwrap()
            .aliases
            .insert(alias.to_string(), to.to_string());
    }

    fn all_pvs(&self) -> Vec<Pv> {
        self.pkgs
            .iter()
            .flat_map(|(p, pkg)| pkg.versions.keys().map(move |v| (p.clone(), v.clone())))
            .collect()
    }

    fn all_aliases(&self) -> Vec<Pv> {
        self.pkgs
            .iter()
            .flat_map(|(p, pkg)| pkg.aliases.keys().map(move |a| (p.clone(), a.clone())))
            .collect()
    }

    /// A package-version the archive does not have.
    fn ghost(&mut self) -> Pv {
        let pkgs: Vec<String> = self.pkgs.keys().cloned().collect();
        if !pkgs.is_empty() && self.rng.chance(50) {
            (self.rng.pick(&pkgs).clone(), "no.such.version".into())
        } else {
            ("ghost".into(), format!("{}", self.rng.below(5)))
        }
    }

    fn generate(&mut self) {
        // Bytes of file content in all: most files are tiny, a few big.
        let mut budget: u64 = 3 << 20;
        let npkgs = match self.rng.below(10) {
            0 => self.rng.range(1, 2),
            1..=7 => self.rng.range(3, 12),
            _ => self.rng.range(12, 18),
        } as usize;
        let mut names = BTreeSet::new();
        let mut i = 0;
        while names.len() < npkgs && i < 200 {
            let n = package_name(&mut self.rng, i);
            i += 1;
            if n != "ghost" {
                names.insert(n);
            }
        }
        for p in &names {
            let nver = match self.rng.below(10) {
                0..=2 => self.rng.range(1, 3),
                3..=6 => self.rng.range(4, 15),
                _ => self.rng.range(16, 30),
            } as usize;
            for j in 0..nver {
                self.add_version(p, j, &mut budget);
            }
            for _ in 0..self.rng.below(3) {
                if self.rng.chance(50) {
                    self.add_alias(p);
                }
            }
        }
        // The Release Manager.
        let nproj = self.rng.range(1, 3);
        for pj in 0..nproj {
            for r in 0..self.rng.range(1, 3) {
                self.releases.push(Release {
                    project: format!("P{pj}"),
                    name: format!("R{r}.{}", self.rng.below(10)),
                    closed: self.rng.chance(25),
                    content: Vec::new(),
                });
            }
        }
        // Release names must be unique within a project.
        let mut seen = BTreeSet::new();
        self.releases
            .retain(|r| seen.insert((r.project.clone(), r.name.clone())));
        let pvs = self.all_pvs();
        let aliases = self.all_aliases();
        for ri in 0..self.releases.len() {
            let density = self.rng.range(30, 95);
            let mut content: Vec<Pv> = pvs
                .iter()
                .filter(|_| self.rng.chance(density))
                .cloned()
                .collect();
            for a in &aliases {
                if self.rng.chance(25) {
                    content.push(a.clone());
                }
            }
            if self.rng.chance(20) {
                content.push(self.ghost());
            }
            content.sort();
            content.dedup();
            self.releases[ri].content = content;
        }
        // The target's selection.
        let mut releases = Vec::new();
        for r in &self.releases {
            if self.rng.chance(30) {
                releases.push((r.project.clone(), r.name.clone()));
            }
        }
        let projects: Vec<String> = (0..nproj)
            .map(|p| format!("P{p}"))
            .filter(|_| self.rng.chance(50))
            .collect();
        self.conf.releases = releases;
        self.conf.projects = projects;
        if self.conf.releases.is_empty() && self.conf.projects.is_empty() && self.rng.chance(90) {
            self.conf.projects.push("P0".into());
        }
        self.conf.pins = self.random_pins();
        self.conf.parallel = match self.rng.below(10) {
            0 => 1,
            1..=6 => self.rng.range(2, 8),
            _ => self.rng.range(9, 64),
        };
        self.conf.compression = self.random_compression();
    }

    fn random_pins(&mut self) -> Vec<Pv> {
        let mut pins = Vec::new();
        let pvs = self.all_pvs();
        let aliases = self.all_aliases();
        for _ in 0..self.rng.below(4) {
            match self.rng.below(100) {
                0..=59 if !pvs.is_empty() => pins.push(self.rng.pick(&pvs).clone()),
                60..=84 if !aliases.is_empty() => pins.push(self.rng.pick(&aliases).clone()),
                _ => {
                    let g = self.ghost();
                    pins.push(g)
                }
            }
        }
        pins.sort();
        pins.dedup();
        pins
    }

    fn random_compression(&mut self) -> &'static str {
        // The slow levels rarely: the test binary is a debug build, and
        // gzip -6 or zstd -19 are 2-10 times slower than the rest there.
        const SLOW: [&str; 2] = ["gzip:9", "zstd:19"];
        const FAST: [&str; 4] = ["none", "gzip:1", "zstd", "zstd:3"];
        match self.rng.below(100) {
            0..=1 => SLOW[self.rng.below(2) as usize],
            2..=11 => "gzip",
            _ => FAST[self.rng.below(4) as usize],
        }
    }

    // -------------------------------------------------------- writing the world

    fn write_world(&self) {
        let releases: Vec<(String, &'static str, i32, Vec<String>)> = self
            .releases
            .iter()
            .map(|r| {
                (
                    format!("{}/{}", r.project, r.name),
                    if r.closed { "closed" } else { "open" },
                    0,
                    r.content.iter().map(pv_text).collect(),
                )
            })
            .collect();
        let content: Vec<Vec<&str>> = releases
            .iter()
            .map(|r| r.3.iter().map(String::as_str).collect())
            .collect();
        let rows: Vec<(&str, &str, i32, &[&str])> = releases
            .iter()
            .zip(&content)
            .map(|(r, c)| (r.0.as_str(), r.1, r.2, c.as_slice()))
            .collect();
        self.world.write_rm(&rows);
        self.world.write_global("");
        let c = &self.conf;
        let list = |items: Vec<String>| {
            items
                .iter()
                .map(|s| format!("\"{s}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        // Triage knob: BLAT_TEST_PARALLEL=1 tells concurrency bugs from others.
        let parallel = env_u64("BLAT_TEST_PARALLEL").unwrap_or(c.parallel);
        let mut extra = format!(
            "releases = [{}]\nprojects = [{}]\npackages = [{}]\nparallel = {}\ncompression = \"{}\"\nwritable_grace = \"{}s\"\n",
            list(c.releases.iter().map(|(p, r)| format!("{p}/{r}")).collect()),
            list(c.projects.clone()),
            list(c.pins.iter().map(pv_text).collect()),
            parallel,
            c.compression,
            c.grace
        );
        if c.immediate {
            extra.push_str(&format!(
                "[aging]\nmethod = \"immediate\"\nmax_delete = {}\n",
                c.max_delete
            ));
        }
        match &self.ssh_conf {
            None => self.world.local_target("site", &extra),
            Some(lines) => self.world.write_target("site", &format!("{lines}{extra}")),
        }
    }
}

// ------------------------------------------------------------ what must happen

enum Lookup {
    Alias(String),
    Found(Src),
}

impl Case {
    fn lookup(&self, pv: &Pv) -> Lookup {
        let Some(pkg) = self.pkgs.get(&pv.0) else {
            return Lookup::Found(Src::Missing);
        };
        if let Some(to) = pkg.aliases.get(&pv.1) {
            return Lookup::Alias(to.clone());
        }
        match pkg.versions.get(&pv.1) {
            None => Lookup::Found(Src::Missing),
            Some(v) => Lookup::Found(Src::Version {
                mtime: v.descpkg_mtime,
                since: v.writable.then(|| v.since()),
            }),
        }
    }

    /// The current set: the selected releases (named ones, and the open
    /// releases of the named projects) and the pins, aliases followed.
    fn current(&self) -> Current {
        let mut cur = Current::default();
        let mut releases = self.conf.releases.clone();
        for p in &self.conf.projects {
            releases.extend(
                self.releases
                    .iter()
                    .filter(|r| &r.project == p && !r.closed)
                    .map(|r| (r.project.clone(), r.name.clone())),
            );
        }
        releases.sort();
        releases.dedup();
        let mut wanted: Vec<(Pv, bool)> = Vec::new();
        for (p, r) in &releases {
            let rel = self
                .releases
                .iter()
                .find(|x| &x.project == p && &x.name == r)
                .unwrap();
            wanted.extend(rel.content.iter().map(|pv| (pv.clone(), false)));
        }
        // Answered: a release with rows; a project with rows in any
        // selected release of it; with neither list, any rows at all.
        let rows = |p: &str, r: &str| {
            self.releases
                .iter()
                .find(|x| x.project == p && x.name == r)
                .map_or(0, |x| x.content.len())
        };
        for (p, r) in &self.conf.releases {
            if rows(p, r) == 0 {
                cur.unanswered.push(format!("release {p}/{r}"));
            }
        }
        for project in &self.conf.projects {
            let n: usize = releases
                .iter()
                .filter(|(p, _)| p == project)
                .map(|(p, r)| rows(p, r))
                .sum();
            if n == 0 {
                cur.unanswered.push(format!("project {project}"));
            }
        }
        if self.conf.releases.is_empty() && self.conf.projects.is_empty() {
            cur.unanswered.push("its releases".into());
        }
        wanted.extend(self.conf.pins.iter().map(|pv| (pv.clone(), true)));
        cur.releases = releases;
        for (pv, pinned) in wanted {
            if cur.versions.contains_key(&pv) {
                if pinned {
                    cur.protected.insert(pv);
                }
                continue;
            }
            match self.lookup(&pv) {
                Lookup::Alias(to) => {
                    let target = (pv.0.clone(), to.clone());
                    let entry = match self.lookup(&target) {
                        Lookup::Found(s) => s,
                        Lookup::Alias(_) => Src::Missing,
                    };
                    cur.aliases.insert((pv.0.clone(), pv.1.clone(), to));
                    cur.protected.insert(target.clone());
                    cur.versions.entry(target).or_insert(entry);
                }
                Lookup::Found(src) => {
                    if pinned {
                        cur.protected.insert(pv.clone());
                    }
                    cur.versions.insert(pv, src);
                }
            }
        }
        cur
    }

    fn expect(&self, cur: &Current) -> Expect {
        let mut exp = Expect::default();
        let grace = self.conf.grace;
        for (pv, src) in &cur.versions {
            let on_target = self.model.versions.get(pv).map(|x| x.0);
            match src {
                Src::Missing => {
                    exp.skipped
                        .insert(format!("{}:not_in_archive", pv_text(pv)));
                }
                Src::Version { mtime, since } => {
                    if on_target == Some(*mtime) {
                        continue;
                    }
                    // A zero grace sends writable versions at once.
                    if grace > 0 && since.is_some_and(|s| self.now - s <= grace) {
                        exp.skipped.insert(format!("{}:writable", pv_text(pv)));
                        continue;
                    }
                    exp.sent.insert(pv_text(pv));
                }
            }
        }
        for (p, a, v) in &cur.aliases {
            let key = (p.clone(), a.clone());
            let there = self.model.versions.contains_key(&(p.clone(), v.clone()))
                || exp.sent.contains(&format!("{p}/{v}"));
            if self.model.aliases.get(&key) != Some(v) && there {
                exp.linked.insert(format!("{p}/{a} -> {v}"));
            }
        }
        if !cur.versions.is_empty() && cur.unanswered.is_empty() {
            let aliased: BTreeSet<Pv> = self
                .model
                .aliases
                .iter()
                .map(|((p, _), v)| (p.clone(), v.clone()))
                .chain(cur.aliases.iter().map(|(p, _, v)| (p.clone(), v.clone())))
                .collect();
            let excess: Vec<&Pv> = self
                .model
                .versions
                .iter()
                .filter(|(pv, (mtime, _))| {
                    !cur.versions.contains_key(*pv)
                        && !cur.protected.contains(*pv)
                        && !aliased.contains(*pv)
                        && self.now - mtime > grace
                })
                .map(|(pv, _)| pv)
                .collect();
            let before = excess.len();
            let excess: Vec<&Pv> = excess
                .into_iter()
                .filter(|pv| !self.arrived_young(pv))
                .collect();
            exp.kept_by_arrival = before - excess.len();
            if self.conf.immediate {
                if excess.len() > self.conf.max_delete && !self.conf.force {
                    exp.refused = true;
                } else {
                    exp.deleted = excess.iter().map(|pv| pv_text(pv)).collect();
                }
            }
        }
        exp.exit = match (exp.refused, exp.sent.is_empty() && exp.linked.is_empty()) {
            (false, _) => 0,
            (true, true) => 1,
            (true, false) => 3,
        };
        exp.packagelist = cur
            .versions
            .keys()
            .map(|(p, v)| format!("{p} {v}"))
            .collect();
        exp.unanswered_line = (!cur.unanswered.is_empty())
            .then(|| format!("# unanswered: {}", cur.unanswered.join(", ")));
        exp.alias_lines = cur
            .aliases
            .iter()
            .map(|(p, a, v)| format!("# alias: {p} {a} {v}"))
            .collect();
        exp.releases_line = format!(
            "# releases: {}",
            cur.releases
                .iter()
                .map(|(p, r)| format!("{p}/{r}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        exp
    }

    /// The model after a sync that did what `exp` says.
    fn apply(&mut self, exp: &Expect) {
        let body = plist_body(exp);
        if self.plist.as_ref().is_none_or(|(was, _)| *was != body) {
            self.plist = Some((body, self.now));
        }
        for text in &exp.sent {
            let (p, v) = text.split_once('/').unwrap();
            let src = &self.pkgs[p].versions[v];
            let picture = src
                .picture
                .iter()
                .map(|e| Entry {
                    mode: e.mode & !0o6000,
                    ..e.clone()
                })
                .collect();
            self.model
                .versions
                .insert((p.into(), v.into()), (src.descpkg_mtime, picture));
        }
        for text in &exp.linked {
            let (pa, v) = text.split_once(" -> ").unwrap();
            let (p, a) = pa.split_once('/').unwrap();
            self.model.aliases.insert((p.into(), a.into()), v.into());
        }
        for text in &exp.deleted {
            let (p, v) = text.split_once('/').unwrap();
            self.model.versions.remove(&(p.to_string(), v.to_string()));
            self.model
                .aliases
                .retain(|(ap, _), av| !(ap == p && av == v));
        }
    }

    /// Reads when each version the model holds arrived on the target.
    fn read_arrivals(&mut self) {
        use std::os::unix::fs::MetadataExt;
        self.arrivals = self
            .model
            .versions
            .keys()
            .filter_map(|(p, v)| {
                let m = fs::symlink_metadata(self.target.join(p).join(v).join("descpkg")).ok()?;
                Some(((p.clone(), v.clone()), m.ctime()))
            })
            .collect();
    }

    /// Arrived within the grace (and not implausibly far in the future):
    /// never excess, `fast` may have sent it before the release lists it.
    fn arrived_young(&self, pv: &Pv) -> bool {
        let grace = self.conf.grace;
        self.arrivals
            .get(pv)
            .is_some_and(|&a| self.now - a <= grace && a - self.now <= grace)
    }

    /// The receiver's index (docs/protocol.md, *The index*), read as the
    /// receiver reads it, claims exactly the model's versions (with their
    /// descpkg mtimes) and aliases.
    fn check_index(&self, path: &Path) -> Result<(), String> {
        let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let base: usize = text
            .lines()
            .next()
            .and_then(|h| h.strip_prefix("blat-index 2 "))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("the index has no header: {text:.200}"))?;
        let mut versions: BTreeMap<Pv, i64> = BTreeMap::new();
        let mut aliases: BTreeMap<Pv, String> = BTreeMap::new();
        // The base: as many V and A records as the header says, keys
        // strictly increasing.
        let body: Vec<&str> = text.lines().skip(1).collect();
        if body.len() < base {
            return Err(format!("the index holds less than its {base} base lines"));
        }
        let mut last = String::new();
        for (i, line) in body[..base].iter().enumerate() {
            let key: String = line.splitn(4, '\t').take(3).collect::<Vec<_>>().join("\t");
            if !(line.starts_with("V\t") || line.starts_with("A\t")) || (i > 0 && key <= last) {
                return Err(format!("invalid base line {line:?} after {last:?}"));
            }
            last = key;
        }
        for line in body.iter().filter(|l| !l.is_empty()) {
            let f: Vec<&str> = line.split('\t').collect();
            let key = (f[1].to_string(), f.get(2).unwrap_or(&"").to_string());
            match f.as_slice() {
                ["V", _, _, m, _, "."] => {
                    versions.insert(key, m.parse().map_err(|_| format!("index: {line}"))?);
                }
                ["-V", _, _, "."] => {
                    versions.remove(&key);
                }
                ["A", _, _, to, "."] => {
                    aliases.insert(key, to.to_string());
                }
                ["-A", _, _, "."] => {
                    aliases.remove(&key);
                }
                _ => return Err(format!("invalid index line {line:?}")),
            }
        }
        let want: BTreeMap<Pv, i64> = self
            .model
            .versions
            .iter()
            .map(|(pv, (m, _))| (pv.clone(), *m))
            .collect();
        if versions != want || aliases != self.model.aliases {
            let show = |v: &BTreeMap<Pv, i64>, a: &BTreeMap<Pv, String>| -> Vec<String> {
                v.iter()
                    .map(|((p, v), m)| format!("{p}/{v} {m}"))
                    .chain(a.iter().map(|((p, a), v)| format!("{p}/{a} -> {v}")))
                    .collect()
            };
            return Err(format!(
                "the index differs from the target:\n{}",
                common::diff(
                    &show(&want, &self.model.aliases),
                    &show(&versions, &aliases),
                    12
                )
            ));
        }
        Ok(())
    }

    fn expected_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let mut pkgs = BTreeSet::new();
        for ((p, v), (_, picture)) in &self.model.versions {
            pkgs.insert(p.clone());
            let prefix = format!("{p}/{v}");
            lines.extend(picture.iter().map(|e| e.line(&prefix)));
        }
        for ((p, a), v) in &self.model.aliases {
            pkgs.insert(p.clone());
            lines.push(format!("{p}/{a} -> {v}"));
        }
        lines.extend(pkgs.iter().map(|p| format!("{p}/")));
        lines.sort();
        lines
    }
}

/// The target as lines comparable with [`Case::expected_lines`].
fn target_lines(root: &Path) -> Result<Vec<String>, String> {
    let sorted = |dir: &Path| -> Result<Vec<OsString>, String> {
        let mut names: Vec<OsString> = fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        Ok(names)
    };
    let mut lines = Vec::new();
    if !root.exists() {
        return Ok(lines);
    }
    for name in sorted(root)? {
        if name == ".dpkg_archive" {
            continue;
        }
        let n = common::escape(&name);
        let path = root.join(&name);
        let meta = fs::symlink_metadata(&path).map_err(|e| e.to_string())?;
        if !meta.is_dir() {
            lines.push(format!("{n} ?not a package directory"));
            continue;
        }
        lines.push(format!("{n}/"));
        for child in sorted(&path)? {
            let c = common::escape(&child);
            let cpath = path.join(&child);
            let cmeta = fs::symlink_metadata(&cpath).map_err(|e| e.to_string())?;
            if cmeta.file_type().is_symlink() {
                let to = fs::read_link(&cpath).map_err(|e| e.to_string())?;
                lines.push(format!("{n}/{c} -> {}", common::escape(to.as_os_str())));
            } else if cmeta.is_dir() {
                let prefix = format!("{n}/{c}");
                lines.extend(common::picture(&cpath)?.iter().map(|e| e.line(&prefix)));
            } else {
                lines.push(format!("{n}/{c} ?not a version directory"));
            }
        }
    }
    lines.sort();
    Ok(lines)
}

fn set_of(list: &serde_json::Value, f: impl Fn(&serde_json::Value) -> String) -> BTreeSet<String> {
    list.as_array()
        .map(|a| a.iter().map(f).collect())
        .unwrap_or_default()
}

fn pv_of(v: &serde_json::Value) -> String {
    format!(
        "{}/{}",
        v["package"].as_str().unwrap_or("?"),
        v["version"].as_str().unwrap_or("?")
    )
}

fn compare(what: &str, want: &BTreeSet<String>, got: &BTreeSet<String>) -> Result<(), String> {
    if want == got {
        return Ok(());
    }
    let w: Vec<String> = want.iter().cloned().collect();
    let g: Vec<String> = got.iter().cloned().collect();
    Err(format!("{what} differs:\n{}", common::diff(&w, &g, 10)))
}

impl Case {
    fn sync(&self) -> Output {
        let mut args = vec!["sync", "--target", "site", "--json"];
        if self.conf.force {
            args.push("--force");
        }
        self.world
            .blat_env(&args, &[("BLAT_NOW", &self.now.to_string())])
    }

    /// Everything one sync must have done and left.
    fn check(&self, out: &Output, exp: &Expect) -> Result<(), String> {
        let err = common::stderr(out);
        let tail = |s: &str| -> String {
            let lines: Vec<&str> = s.lines().collect();
            let from = lines.len().saturating_sub(15);
            lines[from..]
                .iter()
                .map(|l| l.chars().take(400).collect::<String>())
                .collect::<Vec<_>>()
                .join("\n")
        };
        if out.status.code() != Some(exp.exit) {
            let failed = serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .map(|j| {
                    let list = set_of(&j["targets"][0]["report"]["failed"], |f| {
                        format!(
                            "{}: {}",
                            f["item"].as_str().unwrap_or("?"),
                            f["error"].as_str().unwrap_or("?")
                        )
                    });
                    let n = list.len();
                    let first: Vec<String> = list
                        .into_iter()
                        .take(6)
                        .map(|l| l.chars().take(300).collect())
                        .collect();
                    format!("{n} failed:\n  {}", first.join("\n  "))
                })
                .unwrap_or_default();
            return Err(format!(
                "exit code {:?}, expected {}; {failed}\n--- stderr (last lines)\n{}",
                out.status.code(),
                exp.exit,
                tail(&err)
            ));
        }
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("--json output does not parse: {e}\n{}", common::stdout(out)))?;
        let frame = &json["targets"][0];
        if let Some(e) = frame["error"].as_str() {
            return Err(format!("the pass failed: {e}"));
        }
        let r = &frame["report"];
        let failed = set_of(&r["failed"], |f| {
            format!(
                "{}: {}",
                f["item"].as_str().unwrap_or("?"),
                f["error"].as_str().unwrap_or("?")
            )
        });
        let failed_items = set_of(&r["failed"], |f| {
            f["item"].as_str().unwrap_or("?").to_string()
        });
        let want_failed: BTreeSet<String> = if exp.refused {
            ["aging".to_string()].into()
        } else {
            BTreeSet::new()
        };
        if failed_items != want_failed {
            let first: Vec<String> = failed.iter().take(8).cloned().collect();
            return Err(format!(
                "{} failed (expected {:?}):\n  {}",
                failed.len(),
                want_failed,
                first.join("\n  ")
            ));
        }
        compare("sent", &exp.sent, &set_of(&r["sent"], pv_of))?;
        compare(
            "skipped",
            &exp.skipped,
            &set_of(&r["skipped"], |s| {
                format!(
                    "{}:{}",
                    pv_of(&s["pv"]),
                    s["reason"].as_str().unwrap_or("?")
                )
            }),
        )?;
        compare(
            "linked",
            &exp.linked,
            &set_of(&r["linked"], |a| {
                format!(
                    "{}/{} -> {}",
                    a["package"].as_str().unwrap_or("?"),
                    a["alias"].as_str().unwrap_or("?"),
                    a["version"].as_str().unwrap_or("?")
                )
            }),
        )?;
        if self.conf.immediate {
            compare(
                "deleted",
                &exp.deleted,
                &set_of(&r["aging"]["deleted"], pv_of),
            )?;
        } else if !r["aging"].is_null() {
            return Err(format!(
                "aging ran although its method is none: {}",
                r["aging"]
            ));
        }
        let left = common::blat_names(&self.target);
        if !left.is_empty() {
            return Err(format!("left on the target: {left:?}"));
        }
        let want = self.expected_lines();
        let got = target_lines(&self.target)?;
        if want != got {
            return Err(format!(
                "the target differs from the model:\n{}",
                common::diff(&want, &got, 12)
            ));
        }
        // The PackageList and the receiver's index, and nothing else in
        // .dpkg_archive/; the index says exactly what the target holds.
        let dpkg = self.target.join(".dpkg_archive");
        let mut names: Vec<String> = fs::read_dir(&dpkg)
            .map_err(|e| format!("{}: {e}", dpkg.display()))?
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        if names != ["blat-index.txt", "packagelist.txt"] {
            return Err(format!(".dpkg_archive holds {names:?}"));
        }
        self.check_index(&dpkg.join("blat-index.txt"))?;
        let text = fs::read_to_string(dpkg.join("packagelist.txt")).map_err(|e| e.to_string())?;
        let written = self.plist.as_ref().map_or(self.now, |(_, at)| *at);
        let mut want = vec![format!(
            "# blat packagelist written {}",
            blat::clock::rfc3339(written)
        )];
        want.extend(plist_body(exp));
        let got: Vec<String> = text.lines().map(String::from).collect();
        if want != got {
            return Err(format!(
                "packagelist.txt differs:\n{}",
                common::diff(&want, &got, 10)
            ));
        }
        Ok(())
    }

    // -------------------------------------------------------- mutations

    fn mutate(&mut self) {
        let mut budget: u64 = 1 << 20;
        let grace = self.conf.grace;
        let step = *self
            .rng
            .pick(&[0, 1, grace / 2, grace, grace + 1, 3 * grace, 2 * 86400]);
        self.now += step;
        self.log.push(format!("time +{step}s"));
        // New versions, of known and of new packages, most in a release.
        if self.rng.chance(70) {
            for k in 0..self.rng.range(1, 4) {
                let known: Vec<String> = self.pkgs.keys().cloned().collect();
                let package = if !known.is_empty() && self.rng.chance(70) {
                    self.rng.pick(&known).clone()
                } else {
                    package_name(&mut self.rng, 500 + k as usize)
                };
                if package == "ghost" {
                    continue;
                }
                let base = self.pkgs.get(&package).map_or(0, |p| p.versions.len()) + 100;
                for j in 0..self.rng.range(1, 6) {
                    let Some(v) = self.add_version(&package, base + j as usize, &mut budget) else {
                        continue;
                    };
                    self.log.push(format!("add {package}/{v}"));
                    if !self.releases.is_empty() && self.rng.chance(75) {
                        let ri = self.rng.below(self.releases.len() as u64) as usize;
                        self.releases[ri].content.push((package.clone(), v));
                    }
                }
            }
        }
        // Versions dropped from releases.
        if self.rng.chance(50) {
            let pct = self.rng.range(5, 60);
            for ri in 0..self.releases.len() {
                let before = self.releases[ri].content.len();
                let mut rng = self.rng.fork();
                self.releases[ri].content.retain(|_| !rng.chance(pct));
                let dropped = before - self.releases[ri].content.len();
                self.log
                    .push(format!("drop {dropped} rows of release {ri}"));
            }
        }
        // A release closed or reopened.
        if self.rng.chance(20) && !self.releases.is_empty() {
            let ri = self.rng.below(self.releases.len() as u64) as usize;
            self.releases[ri].closed = !self.releases[ri].closed;
            self.log
                .push(format!("release {ri} closed: {}", self.releases[ri].closed));
        }
        // New descpkg mtimes: touched, or rebuilt with other content.
        if self.rng.chance(50) {
            let pvs = self.all_pvs();
            for _ in 0..self.rng.range(1, 6) {
                if pvs.is_empty() {
                    break;
                }
                let (p, v) = self.rng.pick(&pvs).clone();
                let dir = self.version_dir(&p, &v);
                if self.rng.chance(50) {
                    let delta = self.rng.range(1, 100_000) as i64;
                    let m = if self.rng.chance(30) {
                        self.now - self.rng.below(grace as u64 + 1) as i64
                    } else {
                        self.pkgs[&p].versions[&v].descpkg_mtime - delta
                    };
                    common::set_mtime(&dir.join("descpkg"), m);
                    let ver = self.pkgs.get_mut(&p).unwrap().versions.get_mut(&v).unwrap();
                    ver.descpkg_mtime = m;
                    ver.picture = common::picture(&dir).unwrap();
                    self.log.push(format!("touch {p}/{v} descpkg to {m}"));
                } else {
                    common::remove_tree(&dir);
                    self.pkgs.get_mut(&p).unwrap().versions.remove(&v);
                    self.rebuild(&p, &v, &mut budget);
                    self.log.push(format!("rebuild {p}/{v}"));
                }
            }
        }
        // Builds finished: the write bits go, mtimes stay.
        if self.rng.chance(50) {
            let writable: Vec<Pv> = self
                .all_pvs()
                .into_iter()
                .filter(|(p, v)| self.pkgs[p].versions[v].writable)
                .collect();
            for (p, v) in writable {
                if self.rng.chance(60) {
                    let dir = self.version_dir(&p, &v);
                    common::make_read_only(&dir);
                    let ver = self.pkgs.get_mut(&p).unwrap().versions.get_mut(&v).unwrap();
                    ver.writable = false;
                    ver.picture = common::picture(&dir).unwrap();
                    self.log.push(format!("finish {p}/{v}"));
                }
            }
        }
        // A version removed from the archive (releases may still list it),
        // or an alias.
        if self.rng.chance(15) {
            let pvs = self.all_pvs();
            if !pvs.is_empty() {
                let (p, v) = self.rng.pick(&pvs).clone();
                let aliased = self.pkgs[&p].aliases.values().any(|to| *to == v);
                if !aliased {
                    common::remove_tree(&self.version_dir(&p, &v));
                    self.pkgs.get_mut(&p).unwrap().versions.remove(&v);
                    self.log.push(format!("remove {p}/{v} from the archive"));
                }
            }
        }
        if self.rng.chance(10) {
            let aliases = self.all_aliases();
            if !aliases.is_empty() {
                let (p, a) = self.rng.pick(&aliases).clone();
                fs::remove_file(self.world.archive().join(&p).join(&a)).unwrap();
                self.pkgs.get_mut(&p).unwrap().aliases.remove(&a);
                self.log
                    .push(format!("remove alias {p}/{a} from the archive"));
            }
        }
        // Aliases repointed, or new ones.
        if self.rng.chance(50) {
            for (p, a) in self.all_aliases() {
                if self.rng.chance(50) {
                    let versions: Vec<String> = self.pkgs[&p].versions.keys().cloned().collect();
                    if versions.is_empty() {
                        continue;
                    }
                    let to = self.rng.pick(&versions).clone();
                    self.set_alias(&p, &a, &to);
                    self.log.push(format!("alias {p}/{a} -> {to}"));
                }
            }
            if self.rng.chance(30) {
                let known: Vec<String> = self.pkgs.keys().cloned().collect();
                if !known.is_empty() {
                    let p = self.rng.pick(&known).clone();
                    self.add_alias(&p);
                }
            }
        }
        if self.rng.chance(60) {
            self.conf.immediate = true;
            self.conf.max_delete = *self.rng.pick(&[1, 5, 20, 100, 1000]);
            self.conf.force = self.rng.chance(30);
            self.log.push(format!(
                "aging immediate, max_delete {}, force {}",
                self.conf.max_delete, self.conf.force
            ));
        }
        if self.rng.chance(40) {
            self.conf.parallel = self.rng.range(1, 64);
            self.conf.compression = self.random_compression();
        }
        if self.rng.chance(20) {
            self.conf.pins = self.random_pins();
        }
    }

    /// Writes `package/version` anew (another build, another descpkg mtime).
    fn rebuild(&mut self, package: &str, version: &str, budget: &mut u64) {
        let mut rng = self.rng.fork();
        let m = self.now - rng.range(0, 30 * 86400) as i64;
        let tree = gen_tree(&mut rng, false, self.set_id_bits, budget);
        let descpkg = format!(
            "Package: {package}\nVersion: {version}\nRebuilt: {}\n",
            rng.next_u64()
        );
        let dir = self.version_dir(package, version);
        let picture = write_version(&dir, &tree, descpkg.as_bytes(), m, m, false);
        self.pkgs.get_mut(package).unwrap().versions.insert(
            version.to_string(),
            Version {
                writable: false,
                descpkg_mtime: m,
                dir_mtime: m,
                picture,
            },
        );
    }

    fn describe(&self) -> String {
        let pvs = self.all_pvs().len();
        format!(
            "{} packages, {pvs} package-versions, {} aliases, {} releases, parallel {}, compression {}, grace {}s, {}{}{}",
            self.pkgs.len(),
            self.all_aliases().len(),
            self.releases.len(),
            self.conf.parallel,
            self.conf.compression,
            self.conf.grace,
            if self.ssh_conf.is_some() { "ssh" } else { "local" },
            if self.long_versions { ", 255-character versions" } else { "" },
            if self.set_id_bits { ", setuid/setgid bits" } else { "" },
        )
    }
}

// ------------------------------------------------------------ running cases

fn run_case(seed: u64, sshd: Option<&Sshd>, base: &Path, stats: &mut Stats) -> Result<(), String> {
    let t = Instant::now();
    let mut case = Case::new(seed, sshd, base);
    if std::env::var("BLAT_MODEL_TIMING").is_ok() {
        eprintln!(
            "seed {seed}: generated in {:.2}s",
            t.elapsed().as_secs_f64()
        );
    }
    let rounds = match case.rng.below(100) {
        0..=49 => 2,
        50..=84 => 3,
        _ => 4,
    };
    let mut result = Ok(());
    for round in 0..rounds {
        if round > 0 {
            case.mutate();
        }
        case.write_world();
        case.read_arrivals();
        let cur = case.current();
        let exp = case.expect(&cur);
        let t0 = Instant::now();
        let out = case.sync();
        let t1 = Instant::now();
        case.apply(&exp);
        stats.add(&exp);
        let checked = case.check(&out, &exp);
        if std::env::var("BLAT_MODEL_TIMING").is_ok() {
            eprintln!(
                "seed {seed} round {round}: sync {:.2}s check {:.2}s",
                (t1 - t0).as_secs_f64(),
                t1.elapsed().as_secs_f64()
            );
        }
        if let Err(e) = checked {
            let changes = if round > 0 {
                format!("\n  changes before it: {}", case.log.join("; "))
            } else {
                String::new()
            };
            result = Err(format!(
                "round {round} of {rounds} ({}; {} to send){changes}\n{e}",
                case.describe(),
                exp.sent.len()
            ));
            break;
        }
        case.log.clear();
    }
    if result.is_err() && std::env::var("BLAT_KEEP").is_ok_and(|v| v == "1") {
        let Case { world, .. } = case;
        let kept = world.dir.keep();
        eprintln!("seed {seed}: world kept in {}", kept.display());
    }
    result
}

fn is_ssh(seed: u64) -> bool {
    seed.is_multiple_of(10)
}

fn shard_of(seed: u64) -> u64 {
    if is_ssh(seed) {
        (seed / 10) % SSH_SHARDS
    } else {
        // Counted among the local seeds only, so that shards are even.
        (seed - seed / 10) % LOCAL_SHARDS
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// The seeds of this run: `BLAT_SEED`, or `BLAT_SOAK` many from
/// `BLAT_SEED_BASE` (random unless set), or 1..=200.
fn seeds() -> Vec<u64> {
    if let Some(seed) = env_u64("BLAT_SEED") {
        return vec![seed];
    }
    if let Some(n) = env_u64("BLAT_SOAK") {
        static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let base = *BASE.get_or_init(|| {
            let base = env_u64("BLAT_SEED_BASE").unwrap_or_else(|| {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap();
                (t.as_nanos() as u64 % 1_000_000_000) * 1000
            });
            eprintln!("model: soak of {n} cases from BLAT_SEED_BASE={base}");
            base
        });
        return (base..base + n).collect();
    }
    (1..=DEFAULT_CASES).collect()
}

fn run_shard(ssh: bool, shard: u64) {
    let mine: Vec<u64> = seeds()
        .into_iter()
        .filter(|s| is_ssh(*s) == ssh && shard_of(*s) == shard)
        .collect();
    if mine.is_empty() {
        return;
    }
    let sshd = if ssh {
        match Sshd::start() {
            Some(s) => Some(s),
            None => return,
        }
    } else {
        None
    };
    // The worlds on a tmpfs when we may mount one (root, as in CI): on
    // ext4, creating files right after deleting thousands costs seconds.
    // (Not with BLAT_KEEP=1: a kept world must outlive the shard.)
    let keep = std::env::var("BLAT_KEEP").is_ok_and(|v| v == "1");
    let scratch = if keep {
        None
    } else {
        common::Tmpfs::scratch("4g")
    };
    let base = match &scratch {
        Some((_, dir)) => dir.path().to_path_buf(),
        None => std::env::temp_dir(),
    };
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut stats = Stats::default();
    for &seed in &mine {
        if let Some(s) = &sshd {
            common::empty_dir(&s.archive());
        }
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_case(seed, sshd.as_ref(), &base, &mut stats)
        }));
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(p) => Some(format!(
                "panicked: {}",
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            )),
        };
        if let Some(f) = failure {
            eprintln!("model seed {seed} FAILED: {f}\n");
            failures.push((seed, f));
        }
    }
    eprintln!(
        "model: {} {} cases (shard {shard}) in {:.1}s, {} failed; {stats}",
        mine.len(),
        if ssh { "ssh" } else { "local" },
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    if !failures.is_empty() {
        let seeds: Vec<String> = failures.iter().map(|(s, _)| s.to_string()).collect();
        let (seed, first) = &failures[0];
        panic!(
            "{} of {} model cases failed, seeds {}\nreplay one: BLAT_SEED={seed} cargo test --all-features --test it -- model::\nfirst failure (seed {seed}): {first}",
            failures.len(),
            mine.len(),
            seeds.join(" ")
        );
    }
}

#[test]
fn model_local_0() {
    run_shard(false, 0);
}

#[test]
fn model_local_1() {
    run_shard(false, 1);
}

#[test]
fn model_local_2() {
    run_shard(false, 2);
}

#[test]
fn model_local_3() {
    run_shard(false, 3);
}

#[test]
fn model_ssh_0() {
    run_shard(true, 0);
}

#[test]
fn model_ssh_1() {
    run_shard(true, 1);
}

// ------------------------------------------------------------ fixed cases

/// The failure the model found first, as a fixed case: a first sync to an
/// empty target with packages whose versions are spread over batches that
/// run at once (`parallel = 4`). Every version must arrive.
#[test]
fn a_first_sync_delivers_packages_whose_versions_span_concurrent_batches() {
    let w = World::new();
    let mut content = Vec::new();
    for v in 0..150 {
        let version = format!("1.{v}");
        w.release_with("many", &version, T0 + v, &[("f", &version)]);
        content.push(format!("many/{version}"));
    }
    for p in 0..20 {
        for v in 0..4 {
            let package = format!("few{p:02}");
            w.release_with(&package, &format!("{v}"), T0, &[("g", "x")]);
            content.push(format!("{package}/{v}"));
        }
    }
    let content: Vec<&str> = content.iter().map(String::as_str).collect();
    w.write_global("");
    w.write_rm(&[("P/R1", "open", 0, &content)]);
    w.local_target("site", "projects = [\"P\"]\nparallel = 4\n");
    let out = w.blat(&["sync", "--all"]);
    let t = w.target_dir("site");
    let missing: Vec<&&str> = content
        .iter()
        .filter(|pv| !t.join(pv).join("descpkg").is_file())
        .collect();
    assert!(
        missing.is_empty() && out.status.code() == Some(0),
        "exit {:?}, {} of {} package-versions missing on the target (first: {:?})\n{}",
        out.status.code(),
        missing.len(),
        content.len(),
        missing.iter().take(5).collect::<Vec<_>>(),
        common::stderr(&out)
            .lines()
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
    for pv in &content {
        assert_eq!(
            common::picture(&w.archive().join(pv)),
            common::picture(&t.join(pv)),
            "{pv}"
        );
    }
    assert!(
        common::blat_names(&t).is_empty(),
        "{:?}",
        common::blat_names(&t)
    );
}

/// A name of exactly `len` characters from `chars`, starting with `first`.
fn edge_name(first: char, chars: &str, len: usize) -> String {
    let mut s = String::from(first);
    s.extend(chars.chars().cycle().take(len - 1));
    s
}

/// Names at the edges of `^[A-Za-z0-9_][A-Za-z0-9._+~-]{0,254}$`: one
/// character, 255 characters, all the punctuation, as packages, versions
/// and aliases; new to the target, added to a known package, replaced
/// (new descpkg mtime) and deleted by aging. One sender, so that only the
/// names are on trial.
#[test]
fn names_at_the_edges_of_the_rule_go_everywhere_a_name_goes() {
    let w = World::new();
    let long_p = edge_name('P', "x._+~-", 255);
    let long_v = edge_name('9', "._+~-v", 255);
    let long_v2 = edge_name('_', "v2.+~-", 255);
    let long_a = edge_name('a', "l_i+a~s.", 255);
    let packages = ["a", "_", "0", "_._+~-", long_p.as_str()];
    for p in packages {
        w.release_with(p, "1", T0, common::DEFAULT_FILES);
        w.release_with(p, &long_v, T0 + 1, common::DEFAULT_FILES);
    }
    w.write_global("");
    let release = |w: &World, versions: &[&str]| {
        let content: Vec<String> = packages
            .iter()
            .flat_map(|p| versions.iter().map(move |v| format!("{p}/{v}")))
            .collect();
        let content: Vec<&str> = content.iter().map(String::as_str).collect();
        w.write_rm(&[("P/R1", "open", 0, &content)]);
    };
    let conf = |aging: &str| {
        format!("projects = [\"P\"]\nparallel = 1\npackages = [\"{long_p}/{long_a}\"]\n{aging}")
    };
    let t = w.target_dir("site");
    let same = |pv: &str| {
        assert_eq!(
            common::picture(&w.archive().join(pv)),
            common::picture(&t.join(pv)),
            "{pv}"
        );
    };
    let sync_at = |what: &str, now: Option<i64>| {
        let now = now.map(|n| n.to_string());
        let env: Vec<(&str, &str)> = now.iter().map(|n| ("BLAT_NOW", n.as_str())).collect();
        let out = w.blat_env(&["sync", "--all"], &env);
        assert!(
            out.status.code() == Some(0),
            "{what}: exit {:?}\n{}",
            out.status.code(),
            common::stderr(&out)
                .lines()
                .map(|l| l.chars().take(600).collect::<String>())
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert!(
            common::blat_names(&t).is_empty(),
            "{what}: {:?}",
            common::blat_names(&t)
        );
    };
    let sync = |what: &str| sync_at(what, None);

    // New packages, with a 255-character alias pinned.
    w.alias(&long_p, &long_a, "1");
    release(&w, &["1", &long_v]);
    w.local_target("site", &conf(""));
    sync("first sync (new packages)");
    for p in packages {
        same(&format!("{p}/1"));
        same(&format!("{p}/{long_v}"));
    }
    assert_eq!(
        fs::read_link(t.join(&long_p).join(&long_a))
            .unwrap()
            .to_str(),
        Some("1")
    );

    // New versions of known packages, the alias repointed to one of them.
    for p in packages {
        w.release_with(p, "_", T0 + 2, common::DEFAULT_FILES);
        w.release_with(p, &long_v2, T0 + 3, common::DEFAULT_FILES);
    }
    w.alias(&long_p, &long_a, &long_v2);
    release(&w, &["1", &long_v, "_", &long_v2]);
    sync("versions added to known packages");
    for p in packages {
        same(&format!("{p}/_"));
        same(&format!("{p}/{long_v2}"));
    }
    assert_eq!(
        fs::read_link(t.join(&long_p).join(&long_a))
            .unwrap()
            .to_str(),
        Some(long_v2.as_str())
    );

    // A new build of the 255-character versions: swapped in place.
    for p in packages {
        let dir = w.archive().join(p).join(&long_v);
        common::make_writable(&dir);
        fs::remove_dir_all(&dir).unwrap();
        w.release_with(p, &long_v, T0 + 100, &[("rebuilt", "yes")]);
    }
    sync("versions replaced");
    for p in packages {
        same(&format!("{p}/{long_v}"));
    }

    // Aging deletes them once no release holds them (two hours on: they
    // arrived just now, and an arrival within the grace protects them).
    release(&w, &["1", "_"]);
    w.local_target("site", &conf("[aging]\nmethod = \"immediate\"\n"));
    sync_at("versions aged out", Some(blat::clock::now() + 2 * 3600));
    for p in packages {
        assert!(
            !t.join(p).join(&long_v).exists(),
            "{p}/{long_v} not deleted"
        );
        same(&format!("{p}/1"));
    }
    // The pinned alias keeps its version.
    same(&format!("{long_p}/{long_v2}"));
}

/// SPEC §4: modes are kept exactly, except that setuid and setgid bits are
/// stripped (files and directories).
#[test]
fn setuid_and_setgid_bits_are_stripped_on_the_target() {
    let w = World::new();
    let dir = w.build(
        "s",
        "1",
        T0,
        &[
            ("bin/su", "x"),
            ("bin/sg", "y"),
            ("bin/both", "z"),
            ("share/f", "f"),
        ],
    );
    for (rel, mode) in [
        ("bin/su", 0o4755),
        ("bin/sg", 0o2755),
        ("bin/both", 0o6755),
        ("share", 0o2755),
    ] {
        fs::set_permissions(dir.join(rel), fs::Permissions::from_mode(mode)).unwrap();
    }
    common::set_mtime(&dir, T0);
    common::make_read_only(&dir);
    w.write_global("");
    w.write_rm(&[("P/R1", "open", 0, &["s/1"])]);
    w.local_target("site", "projects = [\"P\"]\n");
    common::assert_exit(&w.blat(&["sync", "--all"]), 0);
    let t = w.target_dir("site").join("s/1");
    let mode = |rel: &str| {
        use std::os::unix::fs::MetadataExt;
        fs::symlink_metadata(t.join(rel)).unwrap().mode() & 0o7777
    };
    let got: Vec<(&str, String)> = ["bin/su", "bin/sg", "bin/both", "share"]
        .into_iter()
        .map(|r| (r, format!("{:04o}", mode(r))))
        .collect();
    assert_eq!(
        got,
        [
            ("bin/su", "0555".to_string()),
            ("bin/sg", "0555".to_string()),
            ("bin/both", "0555".to_string()),
            ("share", "0555".to_string())
        ],
        "setuid/setgid bits must be stripped"
    );
}
