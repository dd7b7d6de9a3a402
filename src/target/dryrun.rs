//! `--dry-run` as a wrapper: reads pass through to the real target, every
//! change is reported as "would …" and not made. No `if dry_run` elsewhere.

use anyhow::Result;

use super::{Deleted, ListHow, Listing, Outgoing, ProgressFn, Received, ReceiverInfo, Target};
use crate::archive::{Alias, Name, PackageVersion, SourceArchive};
use crate::config::Compression;
use crate::report::Reporter;

pub struct DryRun<'a> {
    inner: Box<dyn Target>,
    reporter: &'a Reporter,
    target: String,
}

impl<'a> DryRun<'a> {
    pub fn new(inner: Box<dyn Target>, target: &str, reporter: &'a Reporter) -> DryRun<'a> {
        DryRun {
            inner,
            reporter,
            target: target.to_string(),
        }
    }

    fn would(&self, what: String) {
        self.reporter
            .plan_line(&self.target, &format!("would {what}"));
    }
}

impl Target for DryRun<'_> {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn version(&self) -> Result<ReceiverInfo> {
        self.inner.version()
    }
    fn list_as(&self, how: ListHow) -> Result<Listing> {
        self.inner.list_as(ListHow {
            read_only: true,
            ..how
        })
    }
    fn stat(&self, package: &Name) -> Result<Listing> {
        self.inner.stat(package)
    }
    fn receive(
        &self,
        _archive: &SourceArchive,
        batch: &[Outgoing],
        _compression: Compression,
        _progress: ProgressFn,
    ) -> Result<Vec<Received>> {
        Ok(batch
            .iter()
            .map(|o| {
                self.would(format!("send {}", o.pv));
                Received {
                    pv: o.pv.clone(),
                    result: Ok(()),
                    stale_base: false,
                }
            })
            .collect())
    }
    fn link(&self, alias: &Alias) -> Result<()> {
        self.would(format!("link {alias}"));
        Ok(())
    }
    fn delete(&self, pv: &PackageVersion) -> Result<Deleted> {
        self.would(format!("delete {pv}"));
        Ok(Deleted::default())
    }
    fn put(&self, name: &str, data: &[u8]) -> Result<()> {
        self.would(format!(
            "write .dpkg_archive/{name} ({} lines)",
            data.iter().filter(|&&b| b == b'\n').count()
        ));
        Ok(())
    }
    fn df(&self) -> Result<u64> {
        self.inner.df()
    }
    fn gc(&self) -> Result<Vec<String>> {
        self.would("remove leftover temporaries".into());
        Ok(Vec::new())
    }
}
