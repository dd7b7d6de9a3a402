//! `blat fast`'s delivery of the wanted tags' packages to one target: ask
//! the target what it holds, send what it lacks, link aliases, consume the
//! tags whose package is in place.

use std::collections::{BTreeMap, BTreeSet};

use super::{open_target, Poller, Wanted};
use crate::archive::{Name, PackageVersion};
use crate::target::Target;

/// What `deliver`'s first steps learnt, for its last step (`settle_tags`).
struct Delivered<'d> {
    listings: &'d BTreeMap<Name, crate::target::Listing>,
    stat_errors: &'d BTreeMap<Name, String>,
    send_errors: &'d BTreeMap<PackageVersion, String>,
    to_send: &'d [PackageVersion],
}

impl Poller<'_> {
    /// Asks the target about the wanted packages, sends what it lacks, links
    /// aliases, and consumes the tags whose package is in place.
    pub(super) fn deliver(&mut self, wanted: Vec<Wanted>) {
        let dest = match self.dest.take() {
            Some(d) => d,
            None => match open_target(self.reporter, self.dry_run, self.target) {
                Ok(d) => d,
                Err(e) => {
                    let e = format!("{e:#}");
                    for w in &wanted {
                        self.fail(&w.tag, &e);
                    }
                    return;
                }
            },
        };
        let (listings, stat_errors) = self.stat_packages(dest.as_ref(), &wanted);
        let mut healthy = stat_errors.is_empty();
        let to_send = self.outdated(&wanted, &listings);
        let send_errors = self.send(dest.as_ref(), &to_send, &listings);
        let delivered = Delivered {
            listings: &listings,
            stat_errors: &stat_errors,
            send_errors: &send_errors,
            to_send: &to_send,
        };
        healthy &= self.settle_tags(dest.as_ref(), wanted, &delivered);
        // A target that failed may have a broken connection: open it afresh.
        if healthy && send_errors.is_empty() {
            self.dest = Some(dest);
        }
    }

    /// The target's listing of each wanted package, one stat per package
    /// whatever the number of its tags; the packages it could not list map
    /// to their error. Apart from `deliver` as its first step.
    fn stat_packages(
        &self,
        dest: &dyn Target,
        wanted: &[Wanted],
    ) -> (
        BTreeMap<Name, crate::target::Listing>,
        BTreeMap<Name, String>,
    ) {
        let packages: BTreeSet<&Name> = wanted.iter().map(|w| &w.pv.package).collect();
        let mut listings = BTreeMap::new();
        let mut stat_errors = BTreeMap::new();
        for package in packages {
            match dest.stat(package) {
                Ok(l) => {
                    for bad in &l.rejected {
                        self.reporter.warn(
                            self.name(),
                            &format!("target listing line ignored (invalid name): {bad}"),
                        );
                    }
                    listings.insert(package.clone(), l);
                }
                Err(e) => {
                    stat_errors.insert(
                        package.clone(),
                        format!("cannot ask the target about {package}: {e:#}"),
                    );
                }
            }
        }
        (listings, stat_errors)
    }

    /// The wanted package-versions the target lacks or holds with another
    /// descpkg mtime, in order: apart from `deliver` as its second step.
    fn outdated(
        &self,
        wanted: &[Wanted],
        listings: &BTreeMap<Name, crate::target::Listing>,
    ) -> Vec<PackageVersion> {
        let mut to_send = BTreeSet::new();
        for w in wanted {
            let Some(listing) = listings.get(&w.pv.package) else {
                continue;
            };
            match listing.versions.get(&w.pv).map(|on| on.mtime) {
                Some(m) if m == w.descpkg_mtime => {}
                Some(m) => {
                    self.detail(&format!(
                        "send {} (descpkg mtime {m} on target, {} here)",
                        w.pv, w.descpkg_mtime
                    ));
                    to_send.insert(w.pv.clone());
                }
                None => {
                    self.detail(&format!("send {} (missing)", w.pv));
                    to_send.insert(w.pv.clone());
                }
            }
        }
        to_send.into_iter().collect()
    }

    /// Sends `to_send` (against the delta bases the target holds), counts
    /// what went; the package-versions that failed map to their error.
    /// Apart from `deliver` as its third step.
    fn send(
        &mut self,
        dest: &dyn Target,
        to_send: &[PackageVersion],
        listings: &BTreeMap<Name, crate::target::Listing>,
    ) -> BTreeMap<PackageVersion, String> {
        let bases = if to_send.is_empty() {
            crate::delta::Bases::off()
        } else {
            let on_target: BTreeMap<PackageVersion, crate::target::OnTarget> = listings
                .values()
                .flat_map(|l: &crate::target::Listing| l.versions.clone())
                .collect();
            crate::delta::Bases::for_target(
                self.reporter,
                self.target,
                self.archive_cfg,
                &self.config.state_dir,
                &on_target,
                self.dry_run,
            )
        };
        let results = crate::transfer::send_packages(
            self.reporter,
            self.target,
            self.archive_cfg,
            &self.source,
            dest,
            to_send,
            &bases,
            self.dry_run,
        );
        let mut send_errors = BTreeMap::new();
        for (pv, bytes, result) in results {
            match result {
                Ok(()) => {
                    self.report.bytes_sent += bytes;
                    self.report.sent.push(pv);
                }
                Err(e) => {
                    send_errors.insert(pv, e);
                }
            }
        }
        send_errors
    }

    /// Links the aliases the target lacks and consumes each tag whose
    /// package is now in place, failing the others; false when a link
    /// failed (the connection may be broken). Apart from `deliver` as its
    /// last step.
    fn settle_tags(&mut self, dest: &dyn Target, wanted: Vec<Wanted>, done: &Delivered) -> bool {
        let mut healthy = true;
        let mut linked = BTreeSet::new();
        for w in wanted {
            if let Some(e) = done.stat_errors.get(&w.pv.package) {
                self.fail(&w.tag, e);
                continue;
            }
            if let Some(e) = done.send_errors.get(&w.pv) {
                self.fail(&w.tag, &format!("{} not sent: {e}", w.pv));
                continue;
            }
            if let Some(alias) = &w.alias {
                let there = done
                    .listings
                    .get(&alias.package)
                    .is_some_and(|l| l.aliases.contains(alias));
                if !there && !linked.contains(alias) {
                    if let Err(e) = dest.link(alias) {
                        healthy = false;
                        self.fail(&w.tag, &format!("{e:#}"));
                        continue;
                    }
                    self.detail(&format!("linked {alias}"));
                    self.report.linked.push(alias.clone());
                    linked.insert(alias.clone());
                }
            }
            if !done.to_send.contains(&w.pv) && w.alias.as_ref().is_none_or(|a| !linked.contains(a))
            {
                self.report.up_to_date.push(w.tag.clone());
            }
            self.consume(&w.tag);
        }
        healthy
    }
}
