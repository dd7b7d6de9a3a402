//! A target's current set: the package-versions it should hold (its releases
//! from the Release Manager plus its `packages` pins), resolved against the
//! source archive so that aliases bring their versions and links.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};

use crate::archive::{Alias, PackageVersion, SourceArchive, SourceEntry};
use crate::config::{ReleaseName, TargetConfig, TargetKind};
use crate::release::{self, ReleaseSource};

#[derive(Clone, Debug, Default)]
pub struct CurrentSet {
    /// The releases the set was built from.
    pub releases: Vec<ReleaseName>,
    /// Every wanted package-version (alias targets included) with what the
    /// source archive holds for it (`Version` or `Missing`).
    pub versions: BTreeMap<PackageVersion, SourceEntry>,
    /// Aliases to create or repoint on the target.
    pub aliases: BTreeSet<Alias>,
    /// Pins and alias targets: never excess, whatever the releases say.
    pub protected: BTreeSet<PackageVersion>,
    /// What the Release Manager answered nothing for (`release P/R`,
    /// `project P`): aging judges the answer, not the set after pins, so a
    /// pin never makes an empty answer look like a current set.
    pub unanswered: Vec<String>,
}

impl CurrentSet {
    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }

    /// Why aging must delete nothing from a target judged by this set, if
    /// it must not: an empty set, or a release or project the Release
    /// Manager answered nothing for (a wrong name, a database that lost
    /// its rows).
    pub fn aging_blocked(&self) -> Option<String> {
        if self.versions.is_empty() {
            Some("the current set is empty".into())
        } else if !self.unanswered.is_empty() {
            Some(format!(
                "the Release Manager answered nothing for {}",
                self.unanswered.join(", ")
            ))
        } else {
            None
        }
    }

    /// `package version` lines, sorted: the body of the PackageList (as
    /// `packagelist::text` writes it, without a string per line).
    pub fn package_list(&self) -> Vec<String> {
        self.versions
            .keys()
            .map(|pv| format!("{} {}", pv.package, pv.version))
            .collect()
    }
}

/// Builds the current set of `target`: asks the release source, then looks
/// each package-version up in the source archive (no walking of contents).
/// A source archive that is not there fails it: every package would look
/// missing, and alias pins would not resolve to the versions they protect.
pub fn load(
    target: &TargetConfig,
    source: &mut dyn ReleaseSource,
    archive: &SourceArchive,
) -> Result<CurrentSet> {
    archive.check()?;
    if let Some(listed) = source.relayed()? {
        return relay(target, listed, archive);
    }
    let s3 = matches!(target.kind, TargetKind::S3(_));
    let releases = release::selected_releases(source, &target.releases, &target.projects, s3)?;
    let mut set = CurrentSet {
        releases: releases.clone(),
        ..CurrentSet::default()
    };
    let mut answered: BTreeMap<&ReleaseName, usize> = BTreeMap::new();
    let mut wanted = Vec::new();
    for rel in &releases {
        let content = release::release_content(source, rel)?;
        answered.insert(rel, content.len());
        wanted.extend(content);
    }
    // Looked up in bulk, in the order the releases listed them (a version
    // in two releases is looked up twice: cheaper than sorting 100,000).
    let found = archive.inspect_all(&wanted);
    for (pv, entry) in wanted.into_iter().zip(found) {
        add_found(&mut set, archive, pv, false, Some(entry))?;
    }
    for rel in &target.releases {
        if answered.get(rel).copied().unwrap_or(0) == 0 {
            set.unanswered.push(format!("release {rel}"));
        }
    }
    for project in &target.projects {
        let rows: usize = answered
            .iter()
            .filter(|(r, _)| &r.project == project)
            .map(|(_, n)| n)
            .sum();
        if rows == 0 {
            set.unanswered.push(format!("project {project}"));
        }
    }
    if target.releases.is_empty()
        && target.projects.is_empty()
        && answered.values().sum::<usize>() == 0
    {
        set.unanswered.push("its releases".into());
    }
    for pin in &target.packages {
        add(&mut set, archive, pin.clone(), true)?;
    }
    Ok(set)
}

/// A relay's current set: the site's PackageList as it stands, each version
/// looked up in the site archive it describes ([`site_entry`]), its aliases
/// as listed, then the target's own pins.
fn relay(target: &TargetConfig, listed: CurrentSet, archive: &SourceArchive) -> Result<CurrentSet> {
    let mut set = CurrentSet {
        releases: listed.releases,
        unanswered: listed.unanswered,
        ..CurrentSet::default()
    };
    for pv in listed.versions.into_keys() {
        let entry = site_entry(archive, &pv)?;
        set.versions.insert(pv, entry);
    }
    set.protected = listed.protected;
    set.aliases = listed.aliases;
    for pin in &target.packages {
        add(&mut set, archive, pin.clone(), true)?;
    }
    Ok(set)
}

/// What a site archive holds for a version its list names. The site's files
/// are not trusted: a package directory or a version that is a symlink, or
/// not a directory, is missing (skipped as "not in the archive", as when the
/// Release Manager names a version the master's archive lacks), never
/// followed to whatever it points at.
fn site_entry(archive: &SourceArchive, pv: &PackageVersion) -> Result<SourceEntry> {
    for dir in [
        archive.root.join(pv.package.as_str()),
        archive.version_dir(pv),
    ] {
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Ok(SourceEntry::Missing),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(SourceEntry::Missing),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
        }
    }
    archive.inspect(pv)
}

/// Adds one package-version, following an alias to its version.
pub fn add(
    set: &mut CurrentSet,
    archive: &SourceArchive,
    pv: PackageVersion,
    pinned: bool,
) -> Result<()> {
    add_found(set, archive, pv, pinned, None)
}

/// [`add`], with what the archive holds for `pv` when it was looked up
/// already (`found`, [`SourceArchive::inspect_all`]).
fn add_found(
    set: &mut CurrentSet,
    archive: &SourceArchive,
    pv: PackageVersion,
    pinned: bool,
    found: Option<Result<SourceEntry>>,
) -> Result<()> {
    if set.versions.contains_key(&pv) {
        if pinned {
            set.protected.insert(pv);
        }
        return Ok(());
    }
    let entry = match found {
        Some(entry) => entry?,
        None => archive.inspect(&pv)?,
    };
    match entry {
        SourceEntry::Alias(version) => {
            let target = PackageVersion {
                package: pv.package.clone(),
                version: version.clone(),
            };
            let entry = match archive.inspect(&target)? {
                // An alias of an alias is not followed further: treat as missing.
                SourceEntry::Alias(_) => SourceEntry::Missing,
                other => other,
            };
            set.aliases.insert(Alias {
                package: pv.package.clone(),
                alias: pv.version.clone(),
                version,
            });
            set.protected.insert(target.clone());
            set.versions.entry(target).or_insert(entry);
        }
        entry => {
            if pinned {
                set.protected.insert(pv.clone());
            }
            set.versions.insert(pv, entry);
        }
    }
    Ok(())
}
