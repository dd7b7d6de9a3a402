//! Whether each wanted ZIP is in the bucket as the archive has it: from the
//! listing and the state file alone where the state vouches for the object
//! (no request), else from one HEAD of its metadata; and the bucket as
//! aging sees it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::Result;
use serde::Serialize;

use crate::archive::{Alias, Name, PackageVersion};
use crate::state::Upload;
use crate::store::keys::{parse_key, zip_key, KeyKind, MTIME_META};
use crate::store::{ObjectInfo, ObjectStore};
use crate::target::Listing;

/// Why a ZIP goes up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum UploadReason {
    /// No object at its key.
    Missing,
    /// The object holds another descpkg mtime.
    Changed {
        stored_mtime: i64,
        source_mtime: i64,
    },
    /// The object carries no descpkg mtime blat can trust.
    Unknown,
}

impl std::fmt::Display for UploadReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UploadReason::Missing => f.write_str("missing"),
            UploadReason::Changed {
                stored_mtime,
                source_mtime,
            } => {
                write!(
                    f,
                    "descpkg mtime {stored_mtime} in the bucket, {source_mtime} here"
                )
            }
            UploadReason::Unknown => f.write_str("the object in the bucket has no descpkg mtime"),
        }
    }
}

/// What the listing and the state file say about one wanted ZIP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Judgement {
    UpToDate,
    /// The object is there but the state file does not vouch for it.
    AskStore,
    Upload(UploadReason),
}

/// Decides from the listing and the state file alone (no request).
pub fn judge(
    listed: Option<&ObjectInfo>,
    remembered: Option<&Upload>,
    source_mtime: i64,
) -> Judgement {
    let Some(listed) = listed else {
        return Judgement::Upload(UploadReason::Missing);
    };
    match remembered {
        Some(r) if r.etag == listed.etag && r.size == listed.size => {
            if r.descpkg_mtime == source_mtime {
                Judgement::UpToDate
            } else {
                Judgement::Upload(UploadReason::Changed {
                    stored_mtime: r.descpkg_mtime,
                    source_mtime,
                })
            }
        }
        // Unknown to the state, or replaced since: the object's metadata decides.
        _ => Judgement::AskStore,
    }
}

/// The bucket as aging sees it, for [`crate::plan::excess`] (the guards archive
/// targets use): its ZIPs with their descpkg mtime (from the state file, else
/// the upload time) and its alias objects. A package with an alias object
/// blat cannot read is left out: that alias could name any of its versions.
pub fn bucket_listing(
    prefix: &str,
    listing: &BTreeMap<String, ObjectInfo>,
    known: &HashMap<String, Upload>,
    aliases: Vec<Alias>,
    unreadable: &BTreeSet<Name>,
) -> Listing {
    let versions = listing
        .iter()
        .filter_map(|(key, o)| match parse_key(prefix, key) {
            Some(KeyKind::Zip(pv)) if !unreadable.contains(&pv.package) => {
                let mtime = known.get(key).map_or(o.last_modified, |r| r.descpkg_mtime);
                Some((pv, crate::target::OnTarget::at(mtime)))
            }
            _ => None,
        })
        .collect();
    Listing {
        versions,
        aliases,
        ..Listing::default()
    }
}

/// The HEADs of [`ask_store`] for many objects, `parallel` at a time (a
/// lost state file means one per object in the bucket).
pub(super) fn ask_store_all<'a>(
    store: &dyn ObjectStore,
    prefix: &str,
    parallel: usize,
    asks: &[(&'a PackageVersion, i64)],
) -> HashMap<&'a PackageVersion, Result<(Judgement, Option<Upload>)>> {
    crate::exec::drain(asks.iter(), parallel, |queue| {
        let mut answers = Vec::new();
        while let Some(&(pv, mtime)) = queue.next() {
            answers.push((pv, ask_store(store, &zip_key(prefix, pv), pv, mtime)));
        }
        answers
    })
    .into_iter()
    .collect()
}

/// One HEAD for an object the state file cannot vouch for; returns the
/// judgement and, when the object is current, the row to remember.
fn ask_store(
    store: &dyn ObjectStore,
    key: &str,
    pv: &PackageVersion,
    mtime: i64,
) -> Result<(Judgement, Option<Upload>)> {
    let Some(head) = store.head(key)? else {
        return Ok((Judgement::Upload(UploadReason::Missing), None));
    };
    let stored: Option<i64> = head
        .metadata
        .get(MTIME_META)
        .and_then(|m| m.trim().parse().ok());
    Ok(match stored {
        Some(m) if m == mtime => (
            Judgement::UpToDate,
            Some(Upload {
                key: key.to_string(),
                package: pv.package.to_string(),
                version: pv.version.to_string(),
                descpkg_mtime: m,
                size: head.size,
                etag: head.etag,
                uploaded: crate::clock::now(),
            }),
        ),
        Some(m) => (
            Judgement::Upload(UploadReason::Changed {
                stored_mtime: m,
                source_mtime: mtime,
            }),
            None,
        ),
        None => (Judgement::Upload(UploadReason::Unknown), None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::SourceEntry;
    use crate::current::CurrentSet;
    use crate::plan;
    use std::time::Duration;

    fn pv(p: &str, v: &str) -> PackageVersion {
        PackageVersion::new(p, v).unwrap()
    }

    fn info(key: &str, etag: &str, size: u64) -> ObjectInfo {
        ObjectInfo {
            key: key.into(),
            size,
            etag: etag.into(),
            last_modified: 0,
        }
    }

    fn row(key: &str, etag: &str, size: u64, mtime: i64) -> Upload {
        Upload {
            key: key.into(),
            package: "p".into(),
            version: "1".into(),
            descpkg_mtime: mtime,
            size,
            etag: etag.into(),
            uploaded: 0,
        }
    }

    #[test]
    fn judging_needs_no_request_when_the_state_vouches() {
        let l = info("k", "e1", 10);
        assert_eq!(
            judge(None, None, 5),
            Judgement::Upload(UploadReason::Missing)
        );
        assert_eq!(
            judge(None, Some(&row("k", "e1", 10, 5)), 5),
            Judgement::Upload(UploadReason::Missing)
        );
        assert_eq!(
            judge(Some(&l), Some(&row("k", "e1", 10, 5)), 5),
            Judgement::UpToDate
        );
        assert_eq!(
            judge(Some(&l), Some(&row("k", "e1", 10, 4)), 5),
            Judgement::Upload(UploadReason::Changed {
                stored_mtime: 4,
                source_mtime: 5
            })
        );
        // Unknown to the state file, or replaced behind its back: ask once.
        assert_eq!(judge(Some(&l), None, 5), Judgement::AskStore);
        assert_eq!(
            judge(Some(&l), Some(&row("k", "e2", 10, 5)), 5),
            Judgement::AskStore
        );
    }

    #[test]
    fn aging_sees_zips_and_aliases_but_not_packages_with_unreadable_aliases() {
        let mut listing = BTreeMap::new();
        for key in [
            "p/a/a_1.zip",
            "p/a/a_2.zip",
            "p/j/j_1.zip",
            "p/j/current.txt",
            "p/u/u_1.zip",
            "p/README",
        ] {
            let mut o = info(key, "e", 1);
            o.last_modified = 500;
            listing.insert(key.to_string(), o);
        }
        let known: HashMap<String, Upload> =
            [("p/a/a_1.zip".to_string(), row("p/a/a_1.zip", "e", 1, 42))].into();
        let j = Alias {
            package: Name::new("j").unwrap(),
            alias: Name::new("current").unwrap(),
            version: Name::new("1").unwrap(),
        };
        let unreadable: BTreeSet<Name> = [Name::new("u").unwrap()].into();
        let bucket = bucket_listing("p/", &listing, &known, vec![j.clone()], &unreadable);
        assert_eq!(
            bucket.versions,
            [(pv("a", "1"), 42), (pv("a", "2"), 500), (pv("j", "1"), 500)]
                .map(|(pv, mtime)| (pv, crate::target::OnTarget::at(mtime)))
                .into()
        );
        assert_eq!(bucket.aliases, vec![j]);
        // With the archive targets' guards: only a/2 is excess.
        let mut set = CurrentSet::default();
        set.versions.insert(pv("a", "1"), SourceEntry::Missing);
        assert_eq!(
            plan::excess(&set, &bucket, 1_000_000, Duration::from_secs(3600)),
            vec![pv("a", "2")]
        );
    }
}
