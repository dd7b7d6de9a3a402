//! The plan of a sync: current set × target listing → what to send, link,
//! skip, and what is excess. A pure function, no I/O, unit-tested here.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;

use crate::archive::{past_grace, Alias, PackageVersion, SourceEntry};
use crate::current::CurrentSet;
use crate::target::Listing;

#[derive(Clone, Debug, Default, Serialize)]
pub struct Plan {
    /// Package-versions to send, sorted.
    pub send: Vec<Send>,
    /// Aliases to create or repoint once their version is on the target.
    pub links: Vec<Alias>,
    /// Wanted but not sent this time, with the reason.
    pub skipped: Vec<Skipped>,
    /// Wanted and already on the target with the same descpkg mtime.
    pub up_to_date: usize,
    /// On the target but not wanted, not protected, not young: for aging.
    pub excess: Vec<PackageVersion>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Send {
    pub pv: PackageVersion,
    #[serde(flatten)]
    pub reason: SendReason,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "lowercase")]
pub enum SendReason {
    /// Not on the target.
    Missing,
    /// On the target with another descpkg mtime.
    Changed {
        target_mtime: i64,
        source_mtime: i64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub pv: PackageVersion,
    #[serde(flatten)]
    pub reason: SkipReason,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum SkipReason {
    /// Still being built: writable, and not yet for longer than the grace.
    Writable { since: i64 },
    /// The release lists it but the source archive has no such package.
    NotInArchive,
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::Writable { since } => {
                write!(
                    f,
                    "still writable (since {})",
                    crate::clock::rfc3339(*since)
                )
            }
            SkipReason::NotInArchive => f.write_str("not in the source archive"),
        }
    }
}

/// Decides what a sync does. `now` and `grace` judge writable packages on the
/// master and young packages on the target (never excess: `fast` may have sent
/// them before the Release Manager lists them).
pub fn plan(set: &CurrentSet, listing: &Listing, now: i64, grace: Duration) -> Plan {
    let mut plan = Plan::default();
    // Both maps are in key order: one walk through the listing alongside,
    // instead of a search per package-version.
    let mut listed = Cursor::new(&listing.versions);
    for (pv, entry) in &set.versions {
        let on_target = listed.get(pv).map(|o| o.mtime);
        match entry {
            SourceEntry::Missing | SourceEntry::Alias(_) => {
                plan.skipped.push(Skipped {
                    pv: pv.clone(),
                    reason: SkipReason::NotInArchive,
                });
            }
            SourceEntry::Version {
                descpkg_mtime,
                writable_since,
            } => {
                if on_target == Some(*descpkg_mtime) {
                    plan.up_to_date += 1;
                    continue;
                }
                if let Some(since) = writable_since {
                    if !past_grace(*since, now, grace) {
                        plan.skipped.push(Skipped {
                            pv: pv.clone(),
                            reason: SkipReason::Writable { since: *since },
                        });
                        continue;
                    }
                }
                let reason = match on_target {
                    None => SendReason::Missing,
                    Some(t) => SendReason::Changed {
                        target_mtime: t,
                        source_mtime: *descpkg_mtime,
                    },
                };
                plan.send.push(Send {
                    pv: pv.clone(),
                    reason,
                });
            }
        }
    }
    for alias in &set.aliases {
        let current = listing
            .aliases
            .iter()
            .find(|a| a.package == alias.package && a.alias == alias.alias);
        if current.map(|a| &a.version) != Some(&alias.version) {
            plan.links.push(alias.clone());
        }
    }
    plan.excess = excess(set, listing, now, grace);
    plan
}

/// Package-versions on the target that aging may remove. Empty when the
/// set says aging is blocked (empty, or a release or project the Release
/// Manager answered nothing for): an empty answer never deletes anything. Never
/// excess: the current set, pins, aliased versions, and a package-version
/// that is young: its descpkg mtime is within `grace` of `now` (or later),
/// or its arrival on the target (when the listing has it) is within `grace`
/// of `now`. A package built long ago but just delivered by `fast`, before
/// the Release Manager lists it, is thus kept for `grace` after it arrived.
/// An arrival is the descpkg's ctime, which nobody sets by hand: one ahead
/// of `now` is the target's clock running ahead, believed up to `grace`
/// (a skew of minutes still protects); one further ahead is a clock gone
/// wrong (or a test's `BLAT_NOW` in the past) and is not believed.
pub fn excess(
    set: &CurrentSet,
    listing: &Listing,
    now: i64,
    grace: Duration,
) -> Vec<PackageVersion> {
    if set.aging_blocked().is_some() {
        return Vec::new();
    }
    // Versions that any alias on the target, or any wanted alias, points to.
    let aliased: BTreeSet<(&str, &str)> = listing
        .aliases
        .iter()
        .chain(set.aliases.iter())
        .map(|a| (a.package.as_str(), a.version.as_str()))
        .collect();
    let grace = crate::config::units::secs_i64(grace);
    let young = |t: i64| now.saturating_sub(t) <= grace;
    let arrived_young = |t: i64| young(t) && t.saturating_sub(now) <= grace;
    let mut wanted = Cursor::new(&set.versions);
    listing
        .versions
        .iter()
        .filter(|(pv, on)| {
            wanted.get(pv).is_none()
                && !set.protected.contains(*pv)
                && !aliased.contains(&(pv.package.as_str(), pv.version.as_str()))
                && !young(on.mtime)
                && !on.arrived.is_some_and(arrived_young)
        })
        .map(|(pv, _)| pv.clone())
        .collect()
}

/// Looks keys up in a map in ascending order, in one walk through it: for
/// keys that come in order themselves (another map's), linear instead of a
/// search per key.
struct Cursor<'a, K, V> {
    entries: std::iter::Peekable<std::collections::btree_map::Iter<'a, K, V>>,
}

impl<'a, K: Ord, V> Cursor<'a, K, V> {
    fn new(map: &'a std::collections::BTreeMap<K, V>) -> Self {
        Cursor {
            entries: map.iter().peekable(),
        }
    }

    /// The value of `key`; keys asked for must not decrease.
    fn get(&mut self, key: &K) -> Option<&'a V> {
        while let Some((k, v)) = self.entries.peek() {
            match (*k).cmp(key) {
                std::cmp::Ordering::Less => {
                    self.entries.next();
                }
                std::cmp::Ordering::Equal => return Some(v),
                std::cmp::Ordering::Greater => return None,
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::Name;
    use crate::target::OnTarget;

    fn pv(p: &str, v: &str) -> PackageVersion {
        PackageVersion::new(p, v).unwrap()
    }

    fn released(mtime: i64) -> SourceEntry {
        SourceEntry::Version {
            descpkg_mtime: mtime,
            writable_since: None,
        }
    }

    const NOW: i64 = 1_000_000;
    const GRACE: Duration = Duration::from_secs(3600);

    #[test]
    fn missing_changed_and_up_to_date() {
        let mut set = CurrentSet::default();
        set.versions.insert(pv("a", "1"), released(100));
        set.versions.insert(pv("b", "1"), released(200));
        set.versions.insert(pv("c", "1"), released(300));
        let mut listing = Listing::default();
        listing.versions.insert(pv("b", "1"), OnTarget::at(200));
        listing.versions.insert(pv("c", "1"), OnTarget::at(299));
        let p = plan(&set, &listing, NOW, GRACE);
        assert_eq!(
            p.send,
            vec![
                Send {
                    pv: pv("a", "1"),
                    reason: SendReason::Missing
                },
                Send {
                    pv: pv("c", "1"),
                    reason: SendReason::Changed {
                        target_mtime: 299,
                        source_mtime: 300
                    }
                },
            ]
        );
        assert_eq!(p.up_to_date, 1);
        assert!(p.skipped.is_empty());
    }

    #[test]
    fn writable_waits_for_the_grace() {
        let mut set = CurrentSet::default();
        set.versions.insert(
            pv("w", "1"),
            SourceEntry::Version {
                descpkg_mtime: 5,
                writable_since: Some(NOW - 10),
            },
        );
        set.versions.insert(
            pv("old", "1"),
            SourceEntry::Version {
                descpkg_mtime: 5,
                writable_since: Some(NOW - 7200),
            },
        );
        set.versions.insert(pv("gone", "1"), SourceEntry::Missing);
        let p = plan(&set, &Listing::default(), NOW, GRACE);
        assert_eq!(p.send.len(), 1);
        assert_eq!(p.send[0].pv, pv("old", "1"));
        assert_eq!(
            p.skipped,
            vec![
                Skipped {
                    pv: pv("gone", "1"),
                    reason: SkipReason::NotInArchive
                },
                Skipped {
                    pv: pv("w", "1"),
                    reason: SkipReason::Writable { since: NOW - 10 }
                },
            ]
        );
        // A writable package already on the target with the same mtime is up to date.
        let mut listing = Listing::default();
        listing.versions.insert(pv("w", "1"), OnTarget::at(5));
        assert_eq!(plan(&set, &listing, NOW, GRACE).up_to_date, 1);
    }

    #[test]
    fn aliases_link_only_when_they_differ() {
        let alias = |v: &str| Alias {
            package: Name::new("j").unwrap(),
            alias: Name::new("cur").unwrap(),
            version: Name::new(v).unwrap(),
        };
        let mut set = CurrentSet::default();
        set.versions.insert(pv("j", "2"), released(1));
        set.aliases.insert(alias("2"));
        let mut listing = Listing::default();
        listing.versions.insert(pv("j", "2"), OnTarget::at(1));
        listing.aliases.push(alias("1"));
        assert_eq!(plan(&set, &listing, NOW, GRACE).links, vec![alias("2")]);
        listing.aliases = vec![alias("2")];
        assert!(plan(&set, &listing, NOW, GRACE).links.is_empty());
    }

    #[test]
    fn excess_guards() {
        let mut set = CurrentSet::default();
        let mut listing = Listing::default();
        listing.versions.insert(pv("old", "1"), OnTarget::at(10));
        // Empty current set: nothing is excess.
        assert!(plan(&set, &listing, NOW, GRACE).excess.is_empty());
        set.versions.insert(pv("keep", "1"), released(1));
        listing.versions.insert(pv("keep", "1"), OnTarget::at(1));
        listing
            .versions
            .insert(pv("young", "1"), OnTarget::at(NOW - 60));
        listing.versions.insert(pv("pinned", "1"), OnTarget::at(10));
        set.protected.insert(pv("pinned", "1"));
        listing.versions.insert(pv("j", "1"), OnTarget::at(10));
        listing.aliases.push(Alias {
            package: Name::new("j").unwrap(),
            alias: Name::new("cur").unwrap(),
            version: Name::new("1").unwrap(),
        });
        assert_eq!(
            plan(&set, &listing, NOW, GRACE).excess,
            vec![pv("old", "1")]
        );
    }

    #[test]
    fn a_recent_arrival_is_young_whatever_its_descpkg_mtime() {
        let mut set = CurrentSet::default();
        set.versions.insert(pv("keep", "1"), released(1));
        let mut listing = Listing::default();
        for p in ["fresh", "edge", "stale", "unknown"] {
            listing.versions.insert(pv(p, "1"), OnTarget::at(10));
        }
        // Delivered (by fast) a minute ago; exactly `grace` ago; long ago;
        // and an old receiver that does not say.
        listing.versions.get_mut(&pv("fresh", "1")).unwrap().arrived = Some(NOW - 60);
        listing.versions.get_mut(&pv("edge", "1")).unwrap().arrived = Some(NOW - 3600);
        listing.versions.get_mut(&pv("stale", "1")).unwrap().arrived = Some(NOW - 3601);
        assert_eq!(
            excess(&set, &listing, NOW, GRACE),
            vec![pv("stale", "1"), pv("unknown", "1")]
        );
        // Either time being young is enough: a young descpkg that arrived long ago.
        listing.versions.get_mut(&pv("stale", "1")).unwrap().mtime = NOW - 10;
        assert_eq!(excess(&set, &listing, NOW, GRACE), vec![pv("unknown", "1")]);
        // An arrival ahead of now (the target's clock ahead) is young up to
        // the grace; further ahead it is not believed.
        listing
            .versions
            .get_mut(&pv("unknown", "1"))
            .unwrap()
            .arrived = Some(NOW + 3600);
        assert!(excess(&set, &listing, NOW, GRACE).is_empty());
        listing
            .versions
            .get_mut(&pv("unknown", "1"))
            .unwrap()
            .arrived = Some(NOW + 3601);
        assert_eq!(excess(&set, &listing, NOW, GRACE), vec![pv("unknown", "1")]);
    }

    /// The walk alongside the listing matches a search per key, whatever
    /// interleaving the set and the listing have (seeded shapes).
    #[test]
    fn walking_alongside_equals_searching() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..200 {
            let mut set = CurrentSet::default();
            let mut listing = Listing::default();
            for _ in 0..next(40) {
                let key = pv(&format!("p{}", next(8)), &format!("{}", next(6)));
                set.versions.insert(key, released(next(3) as i64));
            }
            for _ in 0..next(40) {
                let key = pv(&format!("p{}", next(8)), &format!("{}", next(6)));
                listing
                    .versions
                    .insert(key.clone(), OnTarget::at(next(3) as i64));
                if next(2) == 0 {
                    listing.versions.get_mut(&key).unwrap().arrived = Some(next(3) as i64);
                }
            }
            let plan = plan(&set, &listing, NOW, GRACE);
            let searched = set
                .versions
                .iter()
                .filter(|(pv, e)| {
                    matches!(e, SourceEntry::Version { descpkg_mtime, .. }
                        if listing.versions.get(*pv).map(|o| &o.mtime) == Some(descpkg_mtime))
                })
                .count();
            assert_eq!(plan.up_to_date, searched);
            let sent: Vec<&PackageVersion> = plan.send.iter().map(|s| &s.pv).collect();
            let missing: Vec<&PackageVersion> = set
                .versions
                .iter()
                .filter(|(pv, e)| {
                    matches!(e, SourceEntry::Version { descpkg_mtime, .. }
                        if listing.versions.get(*pv).map(|o| &o.mtime) != Some(descpkg_mtime))
                })
                .map(|(pv, _)| pv)
                .collect();
            assert_eq!(sent, missing);
            let excess_searched: Vec<PackageVersion> = listing
                .versions
                .keys()
                .filter(|pv| !set.versions.contains_key(*pv) && !set.is_empty())
                .cloned()
                .collect();
            // Every time is long before NOW: nothing is young. An empty set
            // blocks aging.
            assert_eq!(excess(&set, &listing, NOW, GRACE), excess_searched);
        }
    }
}
