//! The receiver protocol (`docs/protocol.md`, its types in
//! [`super::protocol`]) spoken over any [`Transport`]: commands out,
//! tab-separated records back, every name in them validated before use.

use anyhow::{bail, Context, Result};

use super::limit::{Limited, RateLimit};
use super::pack;
use super::protocol::{self, Command, Exit, PackageFailure, Verdict};
use super::{
    Deleted, InputFn, ListHow, Listing, ListingSource, OnTarget, Outgoing, ProgressFn, Received,
    ReceiverInfo, RunOutput, Target, Transport,
};
use crate::archive::{alias_target, Alias, Name, PackageVersion, SourceArchive};
use crate::config::Compression;

pub struct ReceiverTarget<T: Transport> {
    name: String,
    transport: T,
    /// `bwlimit`: shared by every stream to this target.
    limit: Option<RateLimit>,
}

impl<T: Transport> ReceiverTarget<T> {
    pub fn new(name: &str, transport: T) -> ReceiverTarget<T> {
        ReceiverTarget {
            name: name.to_string(),
            transport,
            limit: None,
        }
    }

    /// Limits every stream to this target together to `rate` bytes per
    /// second (`None`: no limit).
    pub fn with_bwlimit(mut self, rate: Option<u64>) -> ReceiverTarget<T> {
        self.limit = rate.map(RateLimit::new);
        self
    }

    /// Runs one command, its input (if any) through the bandwidth limit:
    /// the one way every command reaches the transport.
    fn run(&self, command: &Command, feed: Option<InputFn>) -> Result<RunOutput> {
        let args = command.args();
        match (feed, &self.limit) {
            (Some(feed), Some(limit)) => {
                let mut limited = |w: &mut dyn std::io::Write| {
                    let mut w = Limited { inner: w, limit };
                    feed(&mut w)
                };
                self.transport.run(&args, Some(&mut limited))
            }
            (feed, _) => self.transport.run(&args, feed),
        }
    }

    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Runs a command without input that must succeed; its stderr becomes
    /// the error.
    fn call(&self, command: Command) -> Result<String> {
        let out = self.run(&command, None)?;
        check(&out, command)?;
        Ok(out.stdout)
    }
}

/// An error unless the receiver ended with [`Exit::Done`].
fn check(out: &RunOutput, command: Command) -> Result<()> {
    if Exit::of(out.status) != Exit::Done {
        let msg = protocol::message(out.stderr.trim());
        if msg.is_empty() {
            bail!(
                "receiver {} failed with exit code {}",
                command.name(),
                out.status
            );
        }
        bail!(
            "receiver {} failed: {}",
            command.name(),
            msg.replace('\n', "; ")
        );
    }
    Ok(())
}

/// A random token for this transfer's temporary names.
fn token() -> String {
    crate::atomic::token(12)
}

/// Parses `list`/`stat` output; lines with invalid names are kept aside.
/// A `V` line has the descpkg mtime and, from newer receivers, a fifth
/// field: the descpkg's ctime on the target (its arrival).
pub fn parse_listing(text: &str) -> Listing {
    let mut listing = Listing::default();
    // Collected, then sorted and built in bulk: a listing of 100,000
    // versions comes in hash order from the index, and one BTreeMap insert
    // per line costs several times more.
    let mut versions: Vec<(PackageVersion, OnTarget)> = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        // Up to six fields, without an allocation per line (a V line has
        // five): a seventh makes the line match nothing.
        let mut fields = [""; 7];
        let mut n = 0;
        for field in line.splitn(7, '\t') {
            fields[n] = field;
            n += 1;
        }
        let parsed = match &fields[..n] {
            ["V", package, version, mtime, arrived @ ..] if arrived.len() <= 1 => {
                version_line(package, version, mtime, arrived.first().copied())
                    .map(|(pv, on)| versions.push((pv, on)))
            }
            ["L", path] => {
                listing.leftovers.push(path.to_string());
                Some(())
            }
            // A listing from the index found invalid after it began:
            // everything before this line is void, the scan follows.
            ["I", "restart"] => {
                listing = Listing::default();
                versions.clear();
                Some(())
            }
            ["I", "index"] => {
                listing.source = ListingSource::Index;
                Some(())
            }
            ["I", "tidy"] => {
                listing.index_untidy = true;
                Some(())
            }
            ["I", "scan", why] => {
                listing.source = ListingSource::Scan {
                    why: one_line(why),
                    indexed: false,
                };
                Some(())
            }
            ["I", "indexed"] => match &mut listing.source {
                ListingSource::Scan { indexed, .. } => {
                    *indexed = true;
                    Some(())
                }
                _ => None,
            },
            ["I", "not indexed", _why] => Some(()),
            ["P", "body-sha256", sum] if is_sha256(sum) => {
                listing.packagelist_body = Some(sum.to_string());
                Some(())
            }
            ["D", kind @ ("missing" | "changed" | "unindexed" | "alias"), package, name] => {
                Name::new(package)
                    .ok()
                    .zip(Name::new(name).ok())
                    .map(|(p, n)| {
                        listing.drift.push(format!("{kind} {p} {n}"));
                    })
            }
            ["A", package, alias, target] => {
                alias_line(package, alias, target).map(|a| listing.aliases.push(a))
            }
            _ => None,
        };
        if parsed.is_none() {
            listing.rejected.push(line.escape_default().to_string());
        }
    }
    // Later lines win, as with inserts one by one (the bulk build sorts
    // stably and keeps the last of equal keys).
    listing.versions = versions.into_iter().collect();
    listing.aliases.sort();
    listing
}

/// A `V P V MTIME [ARRIVED]` line's package-version, descpkg mtime and
/// arrival, or `None` when a field is invalid: apart from `parse_listing`
/// to keep its one match readable.
fn version_line(
    package: &str,
    version: &str,
    mtime: &str,
    arrived: Option<&str>,
) -> Option<(PackageVersion, OnTarget)> {
    let arrived = match arrived {
        None => Some(None),
        Some(a) => a.parse::<i64>().ok().map(Some),
    };
    PackageVersion::new(package, version)
        .ok()
        .zip(mtime.parse::<i64>().ok())
        .zip(arrived)
        .map(|((pv, mtime), arrived)| (pv, OnTarget { mtime, arrived }))
}

/// An `A P ALIAS TARGET` line's alias, or `None` when a name is invalid
/// or the link's target is not a version of P: apart from `parse_listing`.
fn alias_line(package: &str, alias: &str, target: &str) -> Option<Alias> {
    let (package, alias) = Name::new(package).ok().zip(Name::new(alias).ok())?;
    let version = alias_target(&package, std::path::Path::new(target)).ok()?;
    Some(Alias {
        package,
        alias,
        version,
    })
}

/// 64 lowercase hex digits, as sha256sum prints them.
fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Parses `version`'s reply: `blat-receiver <protocol>`, `sha256 <hex>`,
/// `decompressors <name>...` lines; anything else is ignored.
pub fn parse_version_reply(text: &str) -> ReceiverInfo {
    let mut info = ReceiverInfo::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("blat-receiver") => info.protocol = words.collect::<Vec<_>>().join(" "),
            Some("sha256") => info.sha256 = words.next().unwrap_or("-").to_string(),
            Some("decompressors") => info.decompressors = words.map(String::from).collect(),
            _ => {}
        }
    }
    info
}

/// Parses `receive`'s report (`ok\tP\tV` or `fail\tP\tV\treason...` per
/// package) for the package-versions `sent`: a line naming a package-version
/// that is invalid is ignored; one not reported on did not arrive, its
/// reason the receiver's stderr. Every reason is one non-empty line.
pub fn parse_receive_reply(stdout: &str, stderr: &str, sent: &[&PackageVersion]) -> Vec<Received> {
    let mut results: Vec<Received> = stdout
        .lines()
        .filter_map(Verdict::parse)
        .map(|verdict| match verdict {
            Verdict::Installed(pv) => Received {
                pv,
                result: Ok(()),
                stale_base: false,
            },
            Verdict::Failed(pv, why) => Received {
                pv,
                result: Err(PackageFailure::Refused(one_line(&why)).to_string()),
                stale_base: false,
            },
            Verdict::StaleBase(pv, why) => Received {
                pv,
                result: Err(PackageFailure::Refused(one_line(&why)).to_string()),
                stale_base: true,
            },
        })
        .collect();
    // Anything the receiver did not report on did not arrive.
    for pv in sent {
        if !results.iter().any(|r| r.pv == **pv) {
            results.push(Received {
                pv: (*pv).clone(),
                result: Err(PackageFailure::Unconfirmed(one_line(stderr)).to_string()),
                stale_base: false,
            });
        }
    }
    results
}

/// A message from the target as one printable line: lines joined by `; `,
/// other control characters made spaces, ends trimmed.
fn one_line(text: &str) -> String {
    let printable: String = text
        .lines()
        .map(|l| l.replace(|c: char| c.is_control(), " "))
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    printable.trim().to_string()
}

/// Parses `delete`'s reply: `alias\tP\tA` per alias removed with the
/// version, `deleted\tP\tV\tBYTES` (unreadable bytes count as 0).
pub fn parse_delete_reply(text: &str) -> Deleted {
    let mut deleted = Deleted::default();
    for line in text.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            ["alias", _, alias] => {
                if let Ok(a) = Name::new(alias) {
                    deleted.aliases.push(a);
                }
            }
            ["deleted", _, _, bytes] => deleted.bytes = bytes.parse().unwrap_or(0),
            _ => {}
        }
    }
    deleted
}

/// Parses `df`'s reply: the free bytes of its `avail\tN` line.
pub fn parse_df_reply(text: &str) -> Result<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("avail\t"))
        .and_then(|n| n.trim().parse().ok())
        .context("receiver df gave no free space figure")
}

impl<T: Transport> Target for ReceiverTarget<T> {
    fn describe(&self) -> String {
        format!("{} ({})", self.name, self.transport.describe())
    }

    fn version(&self) -> Result<ReceiverInfo> {
        Ok(parse_version_reply(&self.call(Command::Version)?))
    }

    fn list_as(&self, how: ListHow) -> Result<Listing> {
        Ok(parse_listing(&self.call(Command::List(how))?))
    }

    fn stat(&self, package: &Name) -> Result<Listing> {
        Ok(parse_listing(&self.call(Command::Stat(package))?))
    }

    fn receive(
        &self,
        archive: &SourceArchive,
        batch: &[Outgoing],
        compression: Compression,
        progress: ProgressFn,
    ) -> Result<Vec<Received>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let token = token();
        let command = Command::Receive {
            compression,
            token: &token,
            batch,
        };
        let has_delta = batch.iter().any(|o| o.delta.is_some());
        let mut feed = |w: &mut dyn std::io::Write| {
            if has_delta {
                crate::delta::write_manifest(batch, w)?;
            }
            pack::stream(archive, batch, &token, compression, w, progress)
        };
        let out = self.run(&command, Some(&mut feed))?;
        if Exit::of(out.status) != Exit::Partial {
            check(&out, command)?;
        }
        let sent: Vec<&PackageVersion> = batch.iter().map(|o| &o.pv).collect();
        Ok(parse_receive_reply(&out.stdout, &out.stderr, &sent))
    }

    fn link(&self, alias: &Alias) -> Result<()> {
        self.call(Command::Link(alias))
            .with_context(|| format!("cannot link {alias}"))?;
        Ok(())
    }

    fn delete(&self, pv: &PackageVersion) -> Result<Deleted> {
        let out = self
            .call(Command::Delete(pv))
            .with_context(|| format!("cannot delete {pv}"))?;
        Ok(parse_delete_reply(&out))
    }

    fn put(&self, name: &str, data: &[u8]) -> Result<()> {
        let command = Command::Put(name);
        let mut feed = |w: &mut dyn std::io::Write| -> Result<()> {
            w.write_all(data)?;
            Ok(())
        };
        let out = self.run(&command, Some(&mut feed))?;
        check(&out, command).with_context(|| format!("cannot write .dpkg_archive/{name}"))
    }

    fn df(&self) -> Result<u64> {
        parse_df_reply(&self.call(Command::Df)?)
    }

    fn gc(&self) -> Result<Vec<String>> {
        let out = self.call(Command::Gc)?;
        Ok(out
            .lines()
            .filter_map(|l| l.strip_prefix("removed\t"))
            .map(String::from)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_parses_and_rejects_bad_names() {
        let l = parse_listing("V\tp\t1.0\t1700000000\nA\tp\tcur\t1.0\nV\t..\tx\t1\nV\tp\t2.0\tnotanumber\nA\tp\tup\t../q/1\nL\tp/.blat-tmp-x-1\n");
        assert_eq!(l.leftovers, ["p/.blat-tmp-x-1"]);
        assert_eq!(l.versions.len(), 1);
        assert_eq!(
            l.versions[&PackageVersion::new("p", "1.0").unwrap()],
            OnTarget::at(1_700_000_000)
        );
        assert_eq!(l.aliases.len(), 1);
        assert_eq!(l.aliases[0].version.as_str(), "1.0");
        assert_eq!(l.rejected.len(), 3);
        assert!(
            l.versions.values().all(|on| on.arrived.is_none()),
            "old receivers report no arrival"
        );
    }

    #[test]
    fn listing_says_where_it_came_from_and_what_a_full_check_found() {
        let l = parse_listing("V\tp\t1\t5\t6\nI\tindex\n");
        assert_eq!(l.source, ListingSource::Index);
        assert!(!l.index_untidy);
        assert!(parse_listing("V\tp\t1\t5\t6\nI\tindex\nI\ttidy\n").index_untidy);
        let l = parse_listing(
            "V\tp\t1\t5\t6\nD\tmissing\tq\t2\nD\talias\tq\tcur\nD\tmissing\t..\tx\nD\tgone\tq\t1\nI\tscan\tfull check\nI\tindexed\n",
        );
        assert_eq!(
            l.source,
            ListingSource::Scan {
                why: "full check".into(),
                indexed: true
            }
        );
        assert_eq!(l.drift, ["missing q 2", "alias q cur"]);
        assert_eq!(l.rejected.len(), 2, "a bad name, an unknown kind");
        // Later lines win, in bulk as one by one.
        let l = parse_listing("V\tp\t1\t5\t6\nV\tp\t1\t7\t8\n");
        assert_eq!(
            l.versions[&PackageVersion::new("p", "1").unwrap()],
            OnTarget {
                mtime: 7,
                arrived: Some(8)
            }
        );
        assert_eq!(parse_listing("V\tp\t1\t5\n").source, ListingSource::Unknown);
    }

    #[test]
    fn a_restart_voids_what_came_before() {
        let l = parse_listing(&format!(
            "P\tbody-sha256\t{}\nV\tp\t1\t5\t6\nA\tp\tcur\t1\nL\tp/.blat-tmp-1-x\nV\tp\t..\t5\nI\trestart\nV\tp\t2\t7\t8\nI\tscan\tinvalid index: line 3\nI\tindexed\n",
            "a".repeat(64)
        ));
        let pv = |v| PackageVersion::new("p", v).unwrap();
        assert_eq!(l.versions.keys().collect::<Vec<_>>(), [&pv("2")]);
        assert_eq!(
            l.versions[&pv("2")],
            OnTarget {
                mtime: 7,
                arrived: Some(8)
            }
        );
        assert!(l.aliases.is_empty() && l.leftovers.is_empty() && l.rejected.is_empty());
        assert_eq!(l.packagelist_body, None);
        assert_eq!(
            l.source,
            ListingSource::Scan {
                why: "invalid index: line 3".into(),
                indexed: true
            }
        );
    }

    #[test]
    fn listing_takes_an_optional_arrival_time() {
        let l = parse_listing(
            "V\tp\t1.0\t1700000000\t1700000500\nV\tq\t2\t1700000000\nV\tr\t1\t5\tsoon\nV\ts\t1\t5\t6\t7\nV\tt\t1\t5\t\n",
        );
        let pv = |p: &str, v: &str| PackageVersion::new(p, v).unwrap();
        assert_eq!(
            l.versions.keys().cloned().collect::<Vec<_>>(),
            [pv("p", "1.0"), pv("q", "2")]
        );
        assert_eq!(
            l.versions[&pv("p", "1.0")],
            OnTarget {
                mtime: 1_700_000_000,
                arrived: Some(1_700_000_500)
            }
        );
        assert_eq!(l.versions[&pv("q", "2")], OnTarget::at(1_700_000_000));
        // A bad arrival, six fields, or an empty fifth field: the line is refused.
        assert_eq!(l.rejected.len(), 3, "{:?}", l.rejected);
    }

    #[test]
    fn listing_takes_the_packagelist_sum_only_as_a_sha256() {
        let sum = "0123456789abcdef".repeat(4);
        let l = parse_listing(&format!("V\tp\t1\t5\nP\tbody-sha256\t{sum}\n"));
        assert_eq!(l.packagelist_body.as_deref(), Some(sum.as_str()));
        for bad in [
            sum.to_uppercase(),
            sum[1..].to_string(),
            format!("{sum}0"),
            format!("{}../", &sum[3..]),
        ] {
            let l = parse_listing(&format!("P\tbody-sha256\t{bad}\n"));
            assert_eq!(l.packagelist_body, None, "{bad}");
            assert_eq!(l.rejected.len(), 1, "{bad}");
        }
    }
}
