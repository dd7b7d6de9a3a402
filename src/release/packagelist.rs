//! A relay's release source (`kind = "packagelist"`): the PackageList that a
//! master wrote into a site archive is the current set this blat passes on
//! to further sites, with the site archive as the source archive
//! (docs/archive.md, "Relays"). The site holds no Release Manager, so the
//! set comes whole: its targets name no releases or projects.
//!
//! The guards of a Release Manager carry over: no list, an empty one or one
//! that does not parse is an error, so nothing is sent, deleted or aged
//! from it; what the master's Release Manager answered nothing for (the
//! list's `# unanswered:` line) stays unanswered here and blocks aging.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::ReleaseSource;
use crate::config::ReleaseName;
use crate::current::CurrentSet;
use crate::packagelist;

pub struct PackageListSource {
    path: PathBuf,
    listed: CurrentSet,
}

impl PackageListSource {
    /// Reads the PackageList of the site archive `archive` once: every
    /// target of one run is judged by the same list.
    pub fn open(archive: &Path) -> Result<PackageListSource> {
        let path = packagelist::site_path(archive);
        let Some(listed) = packagelist::read_site(archive)? else {
            bail!(
                "no PackageList at {}: a relay passes on the list its master sends, and there is none (has the master synced this site?); nothing is synced or aged",
                path.display()
            );
        };
        if listed.versions.is_empty() && listed.unanswered.is_empty() {
            bail!(
                "{} lists no package-version: a master never writes that, so nothing is synced or aged from it",
                path.display()
            );
        }
        Ok(PackageListSource { path, listed })
    }

    fn no_releases(&self) -> anyhow::Error {
        anyhow::anyhow!(
            "{} has no releases of its own: its targets take the whole list",
            self.describe()
        )
    }
}

impl ReleaseSource for PackageListSource {
    fn describe(&self) -> String {
        format!("the PackageList {}", self.path.display())
    }

    fn release_rows(&mut self, _release: &ReleaseName) -> Result<Vec<(String, String)>> {
        Err(self.no_releases())
    }

    fn open_releases(&mut self, _project: &str) -> Result<Vec<ReleaseName>> {
        Err(self.no_releases())
    }

    fn s3_releases(&mut self) -> Result<Vec<ReleaseName>> {
        Err(self.no_releases())
    }

    fn relayed(&mut self) -> Result<Option<CurrentSet>> {
        Ok(Some(self.listed.clone()))
    }
}
