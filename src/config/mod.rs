//! Configuration: `blat.toml` plus one `targets/<name>.conf` per target
//! (docs/configuration.md), parsed into a validated [`Config`] that the rest of blat uses.
//!
//! Every error names the file, line and column and says what was expected.
//! Relative paths in a config file are taken relative to the directory that
//! holds that file, so a configuration can be moved around as a whole.

mod ssh;
mod target;
pub mod units;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use toml::Spanned;

use crate::archive::PackageVersion;
use crate::error::UsageError;
pub use ssh::{JumpHost, SshClient, SshConfig};
use target::load_targets;
pub use target::DEFAULT_VERIFY_EVERY;

/// The whole, validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The configuration directory it was read from.
    pub dir: PathBuf,
    pub archive: PathBuf,
    pub state_dir: PathBuf,
    pub tag_dir: PathBuf,
    pub verbose: u8,
    pub log_file: Option<PathBuf>,
    pub fast_poll: Duration,
    /// Targets worked on at once by `sync`, `s3sync` and `age` (`--jobs`).
    pub jobs: usize,
    pub release_manager: ReleaseManagerConfig,
    /// All targets, sorted by name.
    pub targets: Vec<TargetConfig>,
}

#[derive(Clone, Debug)]
pub enum ReleaseManagerConfig {
    /// The reference schema in a SQLite file (a `.sql` file is loaded into
    /// memory at each run: handy for demos and fixtures).
    Sqlite { path: PathBuf },
    /// Any database with an ODBC driver (boxed: it is much larger).
    Odbc(Box<OdbcConfig>),
    /// A relay: `archive` is a site that a master syncs, and the PackageList
    /// the master writes there is the current set of every target.
    PackageList,
}

#[derive(Clone, Debug, Default)]
pub struct OdbcConfig {
    pub connection_string: Option<String>,
    pub dsn: Option<String>,
    pub user: Option<String>,
    /// Name of an environment variable holding the password.
    pub password_env: Option<String>,
    /// A file whose first line is the password.
    pub password_file: Option<PathBuf>,
    pub login_timeout: Duration,
    pub query_timeout: Duration,
    pub queries: Queries,
}

/// SQL overrides for the ODBC source; `None` means the reference-schema default.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Queries {
    pub release_exists: Option<String>,
    pub release_content: Option<String>,
    pub project_exists: Option<String>,
    pub open_releases: Option<String>,
    pub s3_releases: Option<String>,
}

/// A `PROJECT/RELEASE` name as used in config and output.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct ReleaseName {
    pub project: String,
    pub release: String,
}

impl ReleaseName {
    pub fn parse(text: &str) -> Result<ReleaseName, String> {
        match text.split_once('/') {
            Some((p, r)) if !p.is_empty() && !r.is_empty() && !r.contains('/') => Ok(ReleaseName {
                project: p.to_string(),
                release: r.to_string(),
            }),
            _ => Err(format!(
                "invalid release '{}': expected PROJECT/RELEASE",
                text.escape_default()
            )),
        }
    }
}

impl std::fmt::Display for ReleaseName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.project, self.release)
    }
}

#[derive(Clone, Debug)]
pub struct TargetConfig {
    pub name: String,
    pub file: PathBuf,
    pub kind: TargetKind,
    pub releases: Vec<ReleaseName>,
    pub projects: Vec<String>,
    /// `package/version` pins, always kept; an alias brings its version.
    pub packages: Vec<PackageVersion>,
    pub writable_grace: Duration,
    pub sync_interval: Duration,
    pub tag_retries: u32,
    pub aging: Aging,
}

impl TargetConfig {
    pub fn archive(&self) -> Option<&ArchiveTarget> {
        match &self.kind {
            TargetKind::Archive(a) => Some(a),
            TargetKind::S3(_) => None,
        }
    }
}

#[derive(Clone, Debug)]
pub enum TargetKind {
    Archive(ArchiveTarget),
    S3(S3Target),
}

#[derive(Clone, Debug)]
pub struct ArchiveTarget {
    pub transport: Transport,
    pub parallel: usize,
    pub compression: Compression,
    /// `compression` was set in the conf; else it is [`Compression::DEFAULT`],
    /// and a target without zstd gets gzip:1 without a warning.
    pub compression_set: bool,
    pub min_free: u64,
    /// How a new version reuses the unchanged files of an older one that
    /// the target already holds (`delta`).
    pub delta: DeltaMode,
    /// Bytes per second on the wire for all transfers to the target
    /// together (`bwlimit`); `None`: no limit.
    pub bwlimit: Option<u64>,
    /// Every this many syncs, the target's listing is a full check (a walk
    /// compared with its index) instead of its index; 0: only `--verify`.
    pub verify_every: u32,
}

/// `delta`: how the receiver takes a new version's unchanged files from
/// the base version on the target (docs/configuration.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeltaMode {
    /// Hard link where the file and its base are read-only with the same
    /// mode and mtime on one file system, copy otherwise (the default).
    Link,
    /// Always copy on the target.
    Copy,
    /// Send every file.
    Off,
}

impl DeltaMode {
    pub fn parse(text: &str) -> Result<DeltaMode, String> {
        match text {
            "link" => Ok(DeltaMode::Link),
            "copy" => Ok(DeltaMode::Copy),
            "off" => Ok(DeltaMode::Off),
            _ => Err(format!(
                "invalid delta '{text}': expected \"link\", \"copy\" or \"off\""
            )),
        }
    }

    /// The word the receiver protocol uses (`delta=...,HOW`).
    pub fn wire_name(self) -> &'static str {
        match self {
            DeltaMode::Link => "link",
            DeltaMode::Copy | DeltaMode::Off => "copy",
        }
    }
}

#[derive(Clone, Debug)]
pub enum Transport {
    Local { path: PathBuf },
    Ssh(SshConfig),
}

#[derive(Clone, Debug)]
pub struct S3Target {
    pub bucket: String,
    pub prefix: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub parallel: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Compression {
    None,
    Gzip(u32),
    Zstd(i32),
}

impl Compression {
    /// Without `compression`: zstd at level 1 shrinks text-like packages
    /// about as much as gzip -6 at a tenth of its CPU, so it wins on a slow
    /// link and costs nothing on a fast one (bench/ssh.sh, case text).
    pub const DEFAULT: Compression = Compression::Zstd(1);

    /// What a target without zstd gets instead of [`Compression::DEFAULT`].
    pub const DEFAULT_WITHOUT_ZSTD: Compression = Compression::Gzip(1);

    pub fn parse(text: &str) -> Result<Compression, String> {
        let bad = || {
            format!(
                "invalid compression '{text}': expected none, gzip, gzip:1-9, zstd or zstd:1-19"
            )
        };
        let (name, level) = match text.split_once(':') {
            Some((n, l)) => (n, Some(l.parse::<i64>().map_err(|_| bad())?)),
            None => (text, None),
        };
        match (name, level) {
            ("none", None) => Ok(Compression::None),
            ("gzip", None) => Ok(Compression::Gzip(6)),
            ("gzip", Some(l @ 1..=9)) => Ok(Compression::Gzip(l as u32)),
            ("zstd", None) => Ok(Compression::Zstd(3)),
            ("zstd", Some(l @ 1..=19)) => Ok(Compression::Zstd(l as i32)),
            _ => Err(bad()),
        }
    }

    /// The word the receiver protocol uses.
    pub fn wire_name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip(_) => "gzip",
            Compression::Zstd(_) => "zstd",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AgingMethod {
    None,
    Immediate,
    Master,
    Target,
}

#[derive(Clone, Debug)]
pub struct Aging {
    pub method: AgingMethod,
    pub after: Duration,
    pub max_delete: usize,
}

// ---- raw TOML schema -------------------------------------------------------

/// A duration as written in config: integer seconds or a string like `1h10m`.
#[derive(Clone, Copy, Debug)]
struct DurationValue(Duration);

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Text(String),
        }
        match Raw::deserialize(d).map_err(|_| {
            de::Error::custom("expected a duration: seconds or a string like \"1h10m\"")
        })? {
            Raw::Int(n) if n >= 0 => units::duration_from_secs(n.unsigned_abs(), &n.to_string())
                .map(DurationValue)
                .map_err(de::Error::custom),
            Raw::Int(n) => Err(de::Error::custom(format!(
                "invalid duration {n}: must not be negative"
            ))),
            Raw::Text(t) => units::parse_duration(&t)
                .map(DurationValue)
                .map_err(de::Error::custom),
        }
    }
}

/// A size as written in config: integer KiB or a string like `2g`.
#[derive(Clone, Copy, Debug)]
struct SizeValue(u64);

impl<'de> Deserialize<'de> for SizeValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Text(String),
        }
        match Raw::deserialize(d)
            .map_err(|_| de::Error::custom("expected a size: a number or a string like \"2g\""))?
        {
            Raw::Int(n) if n >= 0 => units::parse_size(&n.to_string())
                .map(SizeValue)
                .map_err(de::Error::custom),
            Raw::Int(n) => Err(de::Error::custom(format!(
                "invalid size {n}: must not be negative"
            ))),
            Raw::Text(t) => units::parse_size(&t)
                .map(SizeValue)
                .map_err(de::Error::custom),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGlobal {
    archive: Spanned<String>,
    state_dir: Spanned<String>,
    tag_dir: Option<Spanned<String>>,
    #[serde(default = "default_verbose")]
    verbose: u8,
    log_file: Option<Spanned<String>>,
    fast_poll: Option<DurationValue>,
    jobs: Option<Spanned<i64>>,
    ssh_client: Option<Spanned<String>>,
    release_manager: RawReleaseManager,
}

/// The most targets worked on at once (`jobs`, `--jobs`).
pub const MAX_JOBS: usize = 256;
/// `jobs` when blat.toml does not say.
pub const DEFAULT_JOBS: usize = 4;

fn default_verbose() -> u8 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReleaseManager {
    kind: Spanned<String>,
    path: Option<Spanned<String>>,
    connection_string: Option<String>,
    dsn: Option<String>,
    user: Option<String>,
    password_env: Option<String>,
    password_file: Option<Spanned<String>>,
    login_timeout: Option<DurationValue>,
    query_timeout: Option<DurationValue>,
    #[serde(default)]
    queries: Queries,
}

// ---- loading ---------------------------------------------------------------

/// One config file's text, for turning byte spans into `file:line:col`.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn at(&self, offset: usize) -> String {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!("{}:{line}:{col}", self.path.display())
    }

    fn error(
        &self,
        span: std::ops::Range<usize>,
        message: impl std::fmt::Display,
    ) -> anyhow::Error {
        UsageError(format!("{}: {message}", self.at(span.start))).into()
    }

    fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        toml::from_str(self.text).map_err(|e| {
            let place = match e.span() {
                Some(span) => self.at(span.start),
                None => format!("{}", self.path.display()),
            };
            UsageError(format!(
                "{place}: {}",
                e.message().trim().replace('\n', " ")
            ))
            .into()
        })
    }

    fn resolve(&self, value: &Spanned<String>) -> Result<PathBuf> {
        if value.get_ref().is_empty() {
            return Err(self.error(value.span(), "expected a path, found an empty string"));
        }
        let base = self.path.parent().unwrap_or(Path::new("."));
        Ok(base.join(value.get_ref()))
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| UsageError(format!("{}: cannot read: {e}", path.display())).into())
}

/// `path` as the file system resolves it: symlinks of its existing part
/// followed, the part that does not exist yet appended as it is.
pub fn real_path(path: &Path) -> PathBuf {
    let mut existing = path;
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(existing) {
            return rest.iter().rev().fold(real, |p, c| p.join(c));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// True when one of the two directories is the other or lies inside it.
pub fn paths_overlap(a: &Path, b: &Path) -> bool {
    let (a, b) = (real_path(a), real_path(b));
    a.starts_with(&b) || b.starts_with(&a)
}

impl Config {
    /// Reads `DIR/blat.toml` and every `DIR/targets/*.conf`, afresh.
    pub fn load(dir: &Path) -> Result<Config> {
        // Absolute, so that paths handed to the receiver mean the same thing
        // wherever it runs.
        let dir = &std::path::absolute(dir).map_err(|e| {
            UsageError(format!(
                "{}: bad configuration directory: {e}",
                dir.display()
            ))
        })?;
        let global_path = dir.join("blat.toml");
        let text = read(&global_path)?;
        let src = Source {
            path: &global_path,
            text: &text,
        };
        let raw: RawGlobal = src.parse()?;
        let archive = src.resolve(&raw.archive)?;
        let state_dir = src.resolve(&raw.state_dir)?;
        let tag_dir = match &raw.tag_dir {
            Some(t) => src.resolve(t)?,
            None => state_dir.join("tags"),
        };
        let log_file = raw.log_file.as_ref().map(|l| src.resolve(l)).transpose()?;
        let ssh_client = match &raw.ssh_client {
            None => SshClient::default(),
            Some(c) => SshClient::parse(c.get_ref()).map_err(|e| src.error(c.span(), e))?,
        };
        let release_manager = release_manager(&src, raw.release_manager)?;
        let relay = matches!(release_manager, ReleaseManagerConfig::PackageList);
        let jobs = match &raw.jobs {
            None => DEFAULT_JOBS,
            Some(j) if (1..=MAX_JOBS as i64).contains(j.get_ref()) => *j.get_ref() as usize,
            Some(j) => {
                return Err(src.error(j.span(), format!("invalid jobs: expected 1 to {MAX_JOBS}")))
            }
        };

        let targets = load_targets(dir, &archive, relay, ssh_client)?;
        Ok(Config {
            dir: dir.to_path_buf(),
            archive,
            state_dir,
            tag_dir,
            verbose: raw.verbose,
            log_file,
            fast_poll: raw.fast_poll.map_or(Duration::from_secs(5), |d| d.0),
            jobs,
            release_manager,
            targets,
        })
    }

    pub fn target(&self, name: &str) -> Option<&TargetConfig> {
        self.targets.iter().find(|t| t.name == name)
    }
}

fn release_manager(src: &Source, raw: RawReleaseManager) -> Result<ReleaseManagerConfig> {
    match raw.kind.get_ref().as_str() {
        "sqlite" => {
            let path = raw.path.as_ref().ok_or_else(|| {
                src.error(
                    raw.kind.span(),
                    "kind = \"sqlite\" needs `path` (the database file)",
                )
            })?;
            for (key, set) in [
                ("connection_string", raw.connection_string.is_some()),
                ("dsn", raw.dsn.is_some()),
            ] {
                if set {
                    return Err(
                        src.error(raw.kind.span(), format!("`{key}` is for kind = \"odbc\""))
                    );
                }
            }
            Ok(ReleaseManagerConfig::Sqlite {
                path: src.resolve(path)?,
            })
        }
        "odbc" => {
            if raw.connection_string.is_none() == raw.dsn.is_none() {
                return Err(src.error(
                    raw.kind.span(),
                    "kind = \"odbc\" needs exactly one of `connection_string` or `dsn`",
                ));
            }
            if let Some(p) = &raw.path {
                return Err(src.error(p.span(), "`path` is for kind = \"sqlite\""));
            }
            Ok(ReleaseManagerConfig::Odbc(Box::new(OdbcConfig {
                connection_string: raw.connection_string,
                dsn: raw.dsn,
                user: raw.user,
                password_env: raw.password_env,
                password_file: raw
                    .password_file
                    .as_ref()
                    .map(|p| src.resolve(p))
                    .transpose()?,
                login_timeout: raw.login_timeout.map_or(Duration::from_secs(15), |d| d.0),
                query_timeout: raw.query_timeout.map_or(Duration::from_secs(120), |d| d.0),
                queries: raw.queries,
            })))
        }
        "packagelist" => {
            if let Some(p) = &raw.path {
                return Err(src.error(
                    p.span(),
                    "`path` is for kind = \"sqlite\": a relay reads <archive>/.dpkg_archive/packagelist.txt, the list of the site `archive` names",
                ));
            }
            for (key, set) in [
                ("connection_string", raw.connection_string.is_some()),
                ("dsn", raw.dsn.is_some()),
            ] {
                if set {
                    return Err(
                        src.error(raw.kind.span(), format!("`{key}` is for kind = \"odbc\""))
                    );
                }
            }
            Ok(ReleaseManagerConfig::PackageList)
        }
        other => Err(src.error(
            raw.kind.span(),
            format!("unknown release_manager kind '{other}': expected \"sqlite\", \"odbc\" or \"packagelist\""),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_config(global: &str, targets: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("blat.toml"), global).unwrap();
        std::fs::create_dir(dir.path().join("targets")).unwrap();
        for (name, text) in targets {
            std::fs::write(dir.path().join("targets").join(name), text).unwrap();
        }
        dir
    }

    const GLOBAL: &str = "archive = \"/srv/a\"\nstate_dir = \"state\"\n[release_manager]\nkind = \"sqlite\"\npath = \"rm.db\"\n";

    fn load_err(global: &str, targets: &[(&str, &str)]) -> String {
        let dir = write_config(global, targets);
        format!("{:#}", Config::load(dir.path()).unwrap_err())
    }

    #[test]
    fn a_local_target_overlapping_the_source_archive_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let archive = root.path().join("a");
        std::fs::create_dir_all(archive.join("pkg")).unwrap();
        std::os::unix::fs::symlink(&archive, root.path().join("alias-of-a")).unwrap();
        let global = GLOBAL.replace("/srv/a", archive.to_str().unwrap());
        for path in [
            archive.clone(),
            archive.join("pkg"),
            archive.join("not/yet"),
            root.path().to_path_buf(),
            root.path().join("alias-of-a/sub"),
        ] {
            let site = format!(
                "kind = \"archive\"\ntransport = \"local\"\npath = \"{}\"\n",
                path.display()
            );
            let e = load_err(&global, &[("t.conf", &site)]);
            assert!(e.contains("t.conf:3:8: path"), "{e}");
            assert!(e.contains("overlaps the source archive"), "{e}");
        }
        let beside = format!(
            "kind = \"archive\"\ntransport = \"local\"\npath = \"{}\"\n",
            root.path().join("a2").display()
        );
        let dir = write_config(&global, &[("t.conf", &beside)]);
        Config::load(dir.path()).unwrap();
    }

    #[test]
    fn full_example_parses() {
        let site = r#"
kind      = "archive"
transport = "ssh"
host = "site-a.example.com"
port = 2222
user = "pkgadmin"
identity    = "/etc/blat/ssh/id_ed25519"
known_hosts = "/etc/blat/ssh/known_hosts"
remote_archive = "dpkg_archive"
releases = ["PROJ/R1.0"]
projects = ["PROJ"]
packages = ["jats/jats2_current"]
writable_grace = "1h"
sync_interval  = "4h"
parallel       = 4
compression    = "zstd:7"
min_free       = "2g"
delta          = "copy"
bwlimit        = "10m"
verify_every   = 12
tag_retries    = 10
[aging]
method     = "master"
after      = "14d"
max_delete = 50
"#;
        let bucket = "kind = \"s3\"\nbucket = \"b\"\nprefix = \"packages/\"\nregion = \"us-east-1\"\nendpoint = \"http://127.0.0.1:9000\"\n[aging]\nmethod = \"none\"\n";
        let dir = write_config(
            GLOBAL,
            &[
                ("site-a.conf", site),
                ("ci-bucket.conf", bucket),
                ("new.conf.new", "garbage ="),
            ],
        );
        let c = Config::load(dir.path()).unwrap();
        assert_eq!(c.jobs, DEFAULT_JOBS);
        assert_eq!(c.state_dir, dir.path().join("state"));
        assert_eq!(c.tag_dir, dir.path().join("state/tags"));
        assert_eq!(c.targets.len(), 2);
        let t = c.target("site-a").unwrap();
        let a = t.archive().unwrap();
        assert_eq!(a.compression, Compression::Zstd(7));
        assert_eq!(a.min_free, 2 << 30);
        assert_eq!(a.delta, DeltaMode::Copy);
        assert_eq!(a.bwlimit, Some(10 << 20));
        assert_eq!(a.verify_every, 12);
        assert_eq!(t.writable_grace, Duration::from_secs(3600));
        assert_eq!(t.aging.method, AgingMethod::Master);
        assert_eq!(t.aging.after, Duration::from_secs(14 * 86400));
        assert_eq!(t.packages[0].to_string(), "jats/jats2_current");
        assert_eq!(t.releases[0].to_string(), "PROJ/R1.0");
        match &a.transport {
            Transport::Ssh(s) => assert_eq!((s.port, s.user.as_str()), (2222, "pkgadmin")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            c.target("ci-bucket").unwrap().kind,
            TargetKind::S3(_)
        ));
    }

    #[test]
    fn ssh_client_per_target_over_the_global_default() {
        let ssh = "kind = \"archive\"\nhost = \"h\"\nuser = \"u\"\nidentity = \"/k\"\nknown_hosts = \"/kh\"\n";
        let client =
            |c: &Config, name: &str| match &c.target(name).unwrap().archive().unwrap().transport {
                Transport::Ssh(s) => s.client,
                other => panic!("{other:?}"),
            };
        let pinned = format!("{ssh}ssh_client = \"openssh\"\n");
        let dir = write_config(GLOBAL, &[("a.conf", ssh), ("b.conf", &pinned)]);
        let c = Config::load(dir.path()).unwrap();
        assert_eq!(client(&c, "a"), SshClient::Openssh, "the default");
        let a = c.target("a").unwrap().archive().unwrap();
        assert_eq!(
            (a.compression, a.compression_set),
            (Compression::Zstd(1), false)
        );
        let global = GLOBAL.replacen(
            "[release_manager]",
            "ssh_client = \"libssh2\"\n[release_manager]",
            1,
        );
        let dir = write_config(&global, &[("a.conf", ssh), ("b.conf", &pinned)]);
        let c = Config::load(dir.path()).unwrap();
        assert_eq!(client(&c, "a"), SshClient::Libssh2, "blat.toml's default");
        assert_eq!(client(&c, "b"), SshClient::Openssh, "the target's own");
        let e = load_err(
            GLOBAL,
            &[("c.conf", &format!("{ssh}ssh_client = \"putty\"\n"))],
        );
        assert!(
            e.contains("c.conf:6:14") && e.contains("expected \"openssh\" or \"libssh2\""),
            "{e}"
        );
        let local =
            "kind = \"archive\"\ntransport = \"local\"\npath = \"/t\"\nssh_client = \"openssh\"\n";
        let e = load_err(GLOBAL, &[("d.conf", local)]);
        assert!(e.contains("`ssh_client` is for transport = \"ssh\""), "{e}");
    }

    #[test]
    fn unknown_key_names_file_line_column() {
        let err = load_err(
            GLOBAL,
            &[(
                "x.conf",
                "kind = \"archive\"\ntransport = \"local\"\npath = \"/t\"\n  colour = 3\n",
            )],
        );
        assert!(err.contains("targets/x.conf:4:3:"), "{err}");
        assert!(err.contains("unknown field `colour`"), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }

    #[test]
    fn bad_values_name_their_place() {
        let cases = [
            (
                "writable_grace = \"5x\"\n",
                "x.conf:4:18:",
                "invalid duration '5x'",
            ),
            ("min_free = \"2t\"\n", "x.conf:4:12:", "invalid size '2t'"),
            ("bwlimit = \"10x\"\n", "x.conf:4:11:", "invalid size '10x'"),
            (
                "bwlimit = \"10MB/s\"\n",
                "x.conf:4:11:",
                "invalid size '10MB/s'",
            ),
            ("bwlimit = -5\n", "x.conf:4:11:", "must not be negative"),
            ("bwlimit = \"\"\n", "x.conf:4:11:", "invalid size ''"),
            (
                "delta = \"hardlink\"\n",
                "x.conf:4:9:",
                "invalid delta 'hardlink': expected \"link\", \"copy\" or \"off\"",
            ),
            (
                "compression = \"lz4\"\n",
                "x.conf:4:15:",
                "invalid compression 'lz4'",
            ),
            (
                "packages = [\"nopin\"]\n",
                "x.conf:4:13:",
                "expected package/version",
            ),
            (
                "releases = [\"R1\"]\n",
                "x.conf:4:13:",
                "expected PROJECT/RELEASE",
            ),
            ("parallel = 0\n", "x.conf:4:12:", "expected 1 to 64"),
            ("bucket = \"b\"\n", "x.conf:4:10:", "is for kind = \"s3\""),
            (
                "[aging]\nmethod = \"sometimes\"\n",
                "x.conf:5:10:",
                "unknown aging method",
            ),
            (
                "[aging]\nmethod = \"immediate\"\nafter = \"9999999999999999999\"\n",
                "x.conf:6:9:",
                "invalid duration '9999999999999999999': expected at most 36500d (100 years)",
            ),
            (
                "[aging]\nmethod = \"master\"\nafter = 9223372036854775807\n",
                "x.conf:6:9:",
                "invalid duration '9223372036854775807': expected at most 36500d (100 years)",
            ),
            (
                "sync_interval = \"36501d\"\n",
                "x.conf:4:17:",
                "expected at most 36500d (100 years)",
            ),
            (
                "min_free = \"17179869184g\"\n",
                "x.conf:4:12:",
                "invalid size '17179869184g': expected at most 8 EiB",
            ),
            (
                "min_free = 9223372036854775807\n",
                "x.conf:4:12:",
                "expected at most 8 EiB",
            ),
        ];
        for (extra, place, msg) in cases {
            let text = format!("kind = \"archive\"\ntransport = \"local\"\npath = \"/t\"\n{extra}");
            let err = load_err(GLOBAL, &[("x.conf", &text)]);
            assert!(
                err.contains(place) && err.contains(msg),
                "{extra:?} gave: {err}"
            );
        }
    }

    #[test]
    fn delta_and_bwlimit_defaults_and_units() {
        let cases = [
            ("", DeltaMode::Link, None),
            (
                "delta = \"off\"\nbwlimit = 2048\n",
                DeltaMode::Off,
                Some(2 << 20),
            ),
            (
                "delta = \"link\"\nbwlimit = \"512k\"\n",
                DeltaMode::Link,
                Some(512 << 10),
            ),
            ("bwlimit = \"2M\"\n", DeltaMode::Link, Some(2 << 20)),
            ("bwlimit = 0\n", DeltaMode::Link, None),
        ];
        for (extra, delta, bwlimit) in cases {
            let text = format!("kind = \"archive\"\ntransport = \"local\"\npath = \"/t\"\n{extra}");
            let dir = write_config(GLOBAL, &[("x.conf", &text)]);
            let c = Config::load(dir.path()).unwrap();
            let a = c.targets[0].archive().unwrap();
            assert_eq!((a.delta, a.bwlimit), (delta, bwlimit), "{extra:?}");
        }
    }

    #[test]
    fn global_errors() {
        let err = load_err("archive = \"/a\"\n", &[]);
        assert!(
            err.contains("blat.toml") && err.contains("missing field"),
            "{err}"
        );
        let err = load_err(
            "archive = \"/a\"\nstate_dir = \"/s\"\n[release_manager]\nkind = \"oracle\"\n",
            &[],
        );
        assert!(
            err.contains("blat.toml:4:8:") && err.contains("unknown release_manager kind"),
            "{err}"
        );
        // Before the [release_manager] table, or it would be one of its keys.
        let err = load_err(&format!("fast_poll = \"soon\"\n{GLOBAL}"), &[]);
        assert!(err.contains("invalid duration 'soon'"), "{err}");
        let dir = write_config(&format!("jobs = 256\n{GLOBAL}"), &[]);
        assert_eq!(Config::load(dir.path()).unwrap().jobs, 256);
        for bad in ["0", "-1", "257", "\"4\""] {
            let err = load_err(&format!("jobs = {bad}\n{GLOBAL}"), &[]);
            assert!(err.contains("blat.toml:1:8:"), "{bad}: {err}");
            assert!(
                err.contains("invalid jobs: expected 1 to 256") || err.contains("invalid type"),
                "{bad}: {err}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let err = format!("{:#}", Config::load(dir.path()).unwrap_err());
        assert!(err.contains("blat.toml: cannot read"), "{err}");
    }

    #[test]
    fn ssh_needs_its_keys() {
        let err = load_err(
            GLOBAL,
            &[(
                "s.conf",
                "kind = \"archive\"\ntransport = \"ssh\"\nhost = \"h\"\n",
            )],
        );
        assert!(
            err.contains("s.conf:2:13:") && err.contains("needs `user`"),
            "{err}"
        );
    }

    #[test]
    fn jump_chains_parse_with_defaults() {
        let hop = |user: &str, host: &str, port| JumpHost {
            user: user.into(),
            host: host.into(),
            port,
        };
        let ok = [
            ("ops@bastion:2222", vec![hop("ops", "bastion", 2222)]),
            ("bastion", vec![hop("pkgadmin", "bastion", 22)]),
            ("10.0.0.1:22", vec![hop("pkgadmin", "10.0.0.1", 22)]),
            (
                "a@h1:1, h2 ,b@h3",
                vec![
                    hop("a", "h1", 1),
                    hop("pkgadmin", "h2", 22),
                    hop("b", "h3", 22),
                ],
            ),
            ("u@[fe80::1]:2200", vec![hop("u", "fe80::1", 2200)]),
            ("[::1]", vec![hop("pkgadmin", "::1", 22)]),
        ];
        for (text, want) in ok {
            assert_eq!(JumpHost::parse_chain(text, "pkgadmin"), Ok(want), "{text}");
        }
        assert_eq!(hop("u", "h", 22).to_string(), "u@h:22");
        assert_eq!(hop("u", "::1", 22).to_string(), "u@[::1]:22");
        for (bad, why) in [
            ("", "empty"),
            (" ", "empty"),
            ("h1,,h2", "bad host ''"),
            ("h1,", "bad host ''"),
            ("@h", "bad user ''"),
            ("a@b@c", "bad host 'b@c'"),
            ("u@h:0", "bad port '0'"),
            ("u@h:65536", "bad port '65536'"),
            ("u@h:+22", "bad port '+22'"),
            ("u@h:", "bad port ''"),
            ("-oProxyCommand=x", "bad host '-oProxyCommand=x'"),
            ("-l@h", "bad user '-l'"),
            ("h h", "bad host 'h h'"),
            ("u@[::1", "'[' without ']'"),
            ("u@[::1]22", "expected :port after ]"),
            ("u@[x;y]", "bad address"),
            ("ssh://u@h", "bad user 'ssh://u'"),
            ("h;rm", "bad host 'h;rm'"),
        ] {
            let err = JumpHost::parse_chain(bad, "pkgadmin").unwrap_err();
            assert!(
                err.contains(why) && err.contains("expected [user@]host[:port]"),
                "{bad:?} gave: {err}"
            );
        }
    }

    #[test]
    fn jump_errors_name_their_place_and_belong_to_ssh() {
        let ssh = "kind = \"archive\"\nhost = \"h\"\nuser = \"u\"\nidentity = \"/k\"\nknown_hosts = \"/kh\"\n";
        let err = load_err(GLOBAL, &[("s.conf", &format!("{ssh}jump = \"ops@b:x\"\n"))]);
        assert!(
            err.contains("s.conf:6:8:") && err.contains("invalid jump 'ops@b:x': bad port 'x'"),
            "{err}"
        );
        let dir = write_config(
            GLOBAL,
            &[("s.conf", &format!("{ssh}jump = \"b1:2222,ops@b2\"\n"))],
        );
        let c = Config::load(dir.path()).unwrap();
        match &c.target("s").unwrap().archive().unwrap().transport {
            Transport::Ssh(s) => assert_eq!(
                s.jump.iter().map(|j| j.to_string()).collect::<Vec<_>>(),
                ["u@b1:2222", "ops@b2:22"]
            ),
            other => panic!("{other:?}"),
        }
        let err = load_err(
            GLOBAL,
            &[(
                "l.conf",
                "kind = \"archive\"\ntransport = \"local\"\npath = \"/t\"\njump = \"b\"\n",
            )],
        );
        assert!(
            err.contains("l.conf:4:8:") && err.contains("`jump` is for transport = \"ssh\""),
            "{err}"
        );
        let err = load_err(
            GLOBAL,
            &[("b.conf", "kind = \"s3\"\nbucket = \"b\"\njump = \"b\"\n")],
        );
        assert!(
            err.contains("b.conf:3:8:") && err.contains("`jump` is for kind = \"archive\""),
            "{err}"
        );
    }

    #[test]
    fn compression_forms() {
        assert_eq!(Compression::parse("gzip"), Ok(Compression::Gzip(6)));
        assert_eq!(Compression::parse("gzip:1"), Ok(Compression::Gzip(1)));
        assert_eq!(Compression::parse("zstd:19"), Ok(Compression::Zstd(19)));
        assert_eq!(Compression::parse("none"), Ok(Compression::None));
        for bad in [
            "gzip:0", "gzip:10", "zstd:20", "zstd:x", "none:1", "lz4", "",
        ] {
            assert!(Compression::parse(bad).is_err(), "{bad}");
        }
    }
}
