//! The Release Manager: which package-versions each release contains.
//!
//! [`ReleaseSource`] is the small interface every database backend
//! implements (SQLite here, ODBC behind the `odbc` feature); one shared test
//! suite (`tests/release_suite.rs`) holds each implementation to it. A relay
//! (`packagelist`) answers with a whole current set instead of releases.

pub mod packagelist;
pub mod sqlite;

use anyhow::{bail, Context, Result};

use crate::archive::PackageVersion;
use crate::config::{Config, ReleaseManagerConfig, ReleaseName};
use crate::current::CurrentSet;

/// Read-only access to the Release Manager.
pub trait ReleaseSource: Send {
    /// Where the data comes from, for messages (never with a password).
    fn describe(&self) -> String;

    /// The package-versions of one release, as raw `(package, version)` rows.
    /// A release that does not exist is an error, never an empty list.
    fn release_rows(&mut self, release: &ReleaseName) -> Result<Vec<(String, String)>>;

    /// The releases of `project` whose state is not `closed`.
    /// A project that does not exist is an error.
    fn open_releases(&mut self, project: &str) -> Result<Vec<ReleaseName>>;

    /// All releases flagged `s3sync = 1`.
    fn s3_releases(&mut self) -> Result<Vec<ReleaseName>>;

    /// A relay's whole current set (a site's PackageList: versions, aliases,
    /// what was unanswered upstream), not yet resolved against the archive;
    /// `None` for a Release Manager, which answers release by release.
    /// No default: a wrapper that forgot to forward it would turn a relay
    /// into an empty Release Manager.
    fn relayed(&mut self) -> Result<Option<CurrentSet>>;
}

/// Opens the source the configuration names.
pub fn open(config: &Config) -> Result<Box<dyn ReleaseSource>> {
    match &config.release_manager {
        ReleaseManagerConfig::Sqlite { path } => Ok(Box::new(sqlite::SqliteSource::open(path)?)),
        ReleaseManagerConfig::PackageList => Ok(Box::new(packagelist::PackageListSource::open(
            &config.archive,
        )?)),
        #[cfg(feature = "odbc")]
        ReleaseManagerConfig::Odbc(odbc) => {
            Ok(Box::new(crate::release::odbc::OdbcSource::connect(odbc)?))
        }
        #[cfg(not(feature = "odbc"))]
        ReleaseManagerConfig::Odbc(_) => Err(crate::error::UsageError(
            "release_manager kind \"odbc\" needs blat built with `--features odbc`".into(),
        )
        .into()),
    }
}

#[cfg(feature = "odbc")]
pub mod odbc;

/// The package-versions of one release, every name validated (docs/archive.md): a bad
/// row fails the whole release, naming the row.
pub fn release_content(
    source: &mut dyn ReleaseSource,
    release: &ReleaseName,
) -> Result<Vec<PackageVersion>> {
    let rows = source
        .release_rows(release)
        .with_context(|| format!("cannot read release {release} from {}", source.describe()))?;
    let mut out = Vec::with_capacity(rows.len());
    for (i, (package, version)) in rows.iter().enumerate() {
        match PackageVersion::new(package, version) {
            Ok(pv) => out.push(pv),
            Err(e) => bail!(
                "release {release}: row {} ('{}', '{}') from {}: {e}",
                i + 1,
                package.escape_default(),
                version.escape_default(),
                source.describe()
            ),
        }
    }
    Ok(out)
}

/// Which releases make up a target's current set: its `releases`, plus every
/// not-closed release of its `projects`; for S3 targets with neither, every
/// release flagged `s3sync`.
pub fn selected_releases(
    source: &mut dyn ReleaseSource,
    releases: &[ReleaseName],
    projects: &[String],
    s3_default: bool,
) -> Result<Vec<ReleaseName>> {
    let mut out: Vec<ReleaseName> = releases.to_vec();
    for project in projects {
        let open = source.open_releases(project).with_context(|| {
            format!(
                "cannot read releases of project {project} from {}",
                source.describe()
            )
        })?;
        out.extend(open);
    }
    if s3_default && releases.is_empty() && projects.is_empty() {
        out.extend(
            source.s3_releases().with_context(|| {
                format!("cannot read s3sync releases from {}", source.describe())
            })?,
        );
    }
    out.sort();
    out.dedup();
    Ok(out)
}
