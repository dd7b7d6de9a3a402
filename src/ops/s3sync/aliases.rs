//! Alias objects: what each one in the bucket names (the state file, else
//! one GET), and writing those of the current set once their version is in
//! the bucket.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::Result;

use super::{Ledger, Pass, S3SyncReport};
use crate::archive::{Alias, Name, PackageVersion};
use crate::current::CurrentSet;
use crate::ops::{Context, Failure};
use crate::state::Upload;
use crate::store::keys::{alias_key, parse_key, KeyKind};
use crate::store::{ObjectInfo, ObjectStore, Put};

/// An alias object is one line; anything longer is not ours.
const ALIAS_LIMIT: u64 = 1024;

/// Writes the alias objects of the set (once their version is in the
/// bucket) and learns what every alias object in the bucket names; returns
/// those aliases, whose versions aging never removes, and the packages with
/// an alias object that names no version (not aged at all).
pub(super) fn aliases(
    pass: &Pass,
    set: &CurrentSet,
    listing: &BTreeMap<String, ObjectInfo>,
    known: &mut HashMap<String, Upload>,
    present: &BTreeSet<PackageVersion>,
    report: &mut S3SyncReport,
) -> Result<(Vec<Alias>, BTreeSet<Name>)> {
    let objects = AliasObjects {
        ctx: pass.ctx,
        name: &pass.target.name,
        prefix: &pass.s3.prefix,
        store: pass.store,
        ledger: &pass.ledger,
    };
    let found = objects.read(listing, known)?;
    objects.write(set, present, &found.names, report)?;
    Ok((found.aliases, found.unreadable))
}

/// What the alias steps of one pass share.
struct AliasObjects<'a> {
    ctx: &'a Context,
    /// The target's name.
    name: &'a str,
    prefix: &'a str,
    store: &'a dyn ObjectStore,
    ledger: &'a Ledger<'a>,
}

/// The alias objects in the bucket.
struct Found {
    aliases: Vec<Alias>,
    /// Packages with an alias object that names no version.
    unreadable: BTreeSet<Name>,
    /// Key → the version its object names.
    names: HashMap<String, Option<Name>>,
}

impl AliasObjects<'_> {
    /// What each alias object in the bucket names: the state, else one GET.
    fn read(
        &self,
        listing: &BTreeMap<String, ObjectInfo>,
        known: &mut HashMap<String, Upload>,
    ) -> Result<Found> {
        let mut found = Found {
            aliases: Vec::new(),
            unreadable: BTreeSet::new(),
            names: HashMap::new(),
        };
        for (key, listed) in listing {
            let Some(KeyKind::Alias { package, alias }) = parse_key(self.prefix, key) else {
                continue;
            };
            let version = match known.get(key) {
                Some(r) if r.etag == listed.etag && r.size == listed.size => {
                    Name::new(&r.version).ok()
                }
                _ => match self.fetch(key, &package, listed, known)? {
                    Some(version) => version,
                    None => continue, // gone since the listing
                },
            };
            match &version {
                Some(v) => found.aliases.push(Alias {
                    package: package.clone(),
                    alias,
                    version: v.clone(),
                }),
                None => {
                    self.ctx.reporter.warn(
                        self.name,
                        &format!(
                            "alias object {key} does not name a version: package {package} is not aged"
                        ),
                    );
                    found.unreadable.insert(package.clone());
                }
            }
            found.names.insert(key.clone(), version);
        }
        Ok(found)
    }

    /// One GET of an alias object the state cannot vouch for: `None` when
    /// it is gone, else the version it names (remembered), if it names one.
    fn fetch(
        &self,
        key: &str,
        package: &Name,
        listed: &ObjectInfo,
        known: &mut HashMap<String, Upload>,
    ) -> Result<Option<Option<Name>>> {
        let body = match self.store.get(key, ALIAS_LIMIT) {
            Ok(Some(body)) => body,
            Ok(None) => return Ok(None),
            Err(e) => {
                self.ctx.reporter.warn(self.name, &format!("{e:#}"));
                return Ok(Some(None));
            }
        };
        let Ok(version) = Name::new(String::from_utf8_lossy(&body).trim()) else {
            return Ok(Some(None));
        };
        let row = Upload {
            key: key.to_string(),
            package: package.to_string(),
            version: version.to_string(),
            descpkg_mtime: 0,
            size: listed.size,
            etag: listed.etag.clone(),
            uploaded: listed.last_modified,
        };
        self.ledger.record(&row)?;
        known.insert(key.to_string(), row);
        Ok(Some(Some(version)))
    }

    /// Writes each alias of the set whose object does not name its version
    /// yet, once that version is in the bucket.
    fn write(
        &self,
        set: &CurrentSet,
        present: &BTreeSet<PackageVersion>,
        names: &HashMap<String, Option<Name>>,
        report: &mut S3SyncReport,
    ) -> Result<()> {
        for alias in &set.aliases {
            let version = PackageVersion {
                package: alias.package.clone(),
                version: alias.version.clone(),
            };
            let key = alias_key(self.prefix, &alias.package, &alias.alias);
            if names
                .get(&key)
                .is_some_and(|v| v.as_ref() == Some(&alias.version))
            {
                continue;
            }
            if !present.contains(&version) && !self.ctx.dry_run {
                self.ctx.reporter.warn(
                    self.name,
                    &format!("alias {alias} not written: {version} is not in the bucket"),
                );
                continue;
            }
            match self.put(&key, alias) {
                Ok(()) => {
                    self.ctx
                        .reporter
                        .detail(self.name, &format!("wrote alias {alias}"));
                    report.aliases_written.push(alias.clone());
                }
                Err(e) => report.failed.push(Failure {
                    item: alias.to_string(),
                    error: format!("{e:#}"),
                }),
            }
        }
        Ok(())
    }

    /// Stores the alias object (the version, one line) and remembers it.
    fn put(&self, key: &str, alias: &Alias) -> Result<()> {
        let text = format!("{}\n", alias.version);
        let stored = self.store.put(
            &Put {
                key,
                metadata: &[],
                content_type: "text/plain",
                size_hint: text.len() as u64,
                journal: &|_| {},
                progress: &|_| {},
            },
            &mut |out| Ok(std::io::Write::write_all(out, text.as_bytes())?),
        )?;
        self.ledger.record(&Upload {
            key: key.to_string(),
            package: alias.package.to_string(),
            version: alias.version.to_string(),
            descpkg_mtime: 0,
            size: stored.size,
            etag: stored.etag,
            uploaded: crate::clock::now(),
        })
    }
}
