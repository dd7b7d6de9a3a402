//! `--dry-run` for an object store: reads go through, every change is
//! printed as a `would …` line instead (the same wrapper idea as
//! `target::dryrun` for archive targets).

use anyhow::Result;

use super::{ObjectInfo, ObjectStore, Put, Requests, Stored};
use crate::config::units::human_bytes;
use crate::report::Reporter;

/// Under `--dry-run`: reads go to the store, changes only print the plan.
/// The body of a put is never produced, so nothing is zipped.
pub struct DryRun<'a, S> {
    pub inner: S,
    pub target: &'a str,
    pub reporter: &'a Reporter,
}

impl<S: ObjectStore> ObjectStore for DryRun<'_, S> {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.inner.list(prefix)
    }
    fn head(&self, key: &str) -> Result<Option<super::ObjectHead>> {
        self.inner.head(key)
    }
    fn get(&self, key: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        self.inner.get(key, limit)
    }
    fn put(
        &self,
        put: &Put,
        _body: &mut dyn FnMut(&mut dyn std::io::Write) -> Result<()>,
    ) -> Result<Stored> {
        self.reporter.plan_line(
            self.target,
            &format!("would upload {} ({})", put.key, human_bytes(put.size_hint)),
        );
        Ok(Stored {
            size: 0,
            etag: String::new(),
            parts: 0,
        })
    }
    fn delete(&self, key: &str) -> Result<()> {
        self.reporter
            .plan_line(self.target, &format!("would delete {key}"));
        Ok(())
    }
    fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        self.reporter.plan_line(
            self.target,
            &format!("would abort the interrupted upload of {key} ({upload_id})"),
        );
        Ok(())
    }
    fn requests(&self) -> Requests {
        self.inner.requests()
    }
}
