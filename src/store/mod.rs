//! Object stores: where `kind = "s3"` targets keep one ZIP per
//! package-version. [`ObjectStore`] is the small interface `s3sync` needs;
//! its doc comments are the contract every implementation keeps (S3 in
//! [`s3`], a bucket in memory in [`memory`]; the shared suite in
//! `tests/it/store_suite.rs` runs both, S3 against a real server). The ZIP
//! packaging lives beside it in [`zip`].

pub mod dryrun;
pub mod keys;
pub mod memory;
pub mod s3;
pub mod zip;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;
use serde::Serialize;

/// One object as a listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// The entity tag without quotes.
    pub etag: String,
    /// Seconds since the epoch.
    pub last_modified: i64,
}

/// What a HEAD tells about one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectHead {
    pub size: u64,
    /// The entity tag without quotes.
    pub etag: String,
    /// User metadata (`x-amz-meta-*`), keys lower-case without the prefix.
    pub metadata: BTreeMap<String, String>,
}

/// What a finished upload left in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub size: u64,
    /// The entity tag without quotes, as a later listing will show it.
    pub etag: String,
    /// 0 for a single PUT, else the number of parts.
    pub parts: usize,
}

/// A multipart upload began or ended; the caller keeps a journal of the open
/// ones so an upload interrupted by a crash is aborted by the next pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Multipart<'a> {
    Started {
        key: &'a str,
        upload_id: &'a str,
    },
    /// Completed or aborted: nothing is left behind.
    Ended {
        key: &'a str,
        upload_id: &'a str,
    },
}

/// One upload.
pub struct Put<'a> {
    pub key: &'a str,
    /// User metadata to store with the object (`x-amz-meta-<name>`).
    pub metadata: &'a [(&'a str, String)],
    pub content_type: &'a str,
    /// The expected size (may be off a little); picks the part size so that
    /// huge objects stay within the store's part-count limit.
    pub size_hint: u64,
    /// Told when a multipart upload starts and ends.
    pub journal: &'a dyn Fn(Multipart),
    /// Told how many bytes of the body went up, as they go.
    pub progress: &'a dyn Fn(u64),
}

/// The requests a store made, by kind (reports and benchmarks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Requests {
    pub list: u64,
    pub head: u64,
    pub get: u64,
    pub put: u64,
    pub create_multipart: u64,
    pub upload_part: u64,
    pub complete_multipart: u64,
    pub abort_multipart: u64,
    pub delete: u64,
}

impl Requests {
    pub fn total(&self) -> u64 {
        self.list
            + self.head
            + self.get
            + self.put
            + self.create_multipart
            + self.upload_part
            + self.complete_multipart
            + self.abort_multipart
            + self.delete
    }
}

/// Request counters an implementation bumps as it sends.
#[derive(Debug, Default)]
pub struct RequestCounter {
    counts: [AtomicU64; 9],
}

#[derive(Clone, Copy, Debug)]
pub enum RequestKind {
    List,
    Head,
    Get,
    Put,
    CreateMultipart,
    UploadPart,
    CompleteMultipart,
    AbortMultipart,
    Delete,
}

impl RequestCounter {
    pub fn count(&self, kind: RequestKind) {
        self.counts[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Requests {
        let c = |k: RequestKind| self.counts[k as usize].load(Ordering::Relaxed);
        Requests {
            list: c(RequestKind::List),
            head: c(RequestKind::Head),
            get: c(RequestKind::Get),
            put: c(RequestKind::Put),
            create_multipart: c(RequestKind::CreateMultipart),
            upload_part: c(RequestKind::UploadPart),
            complete_multipart: c(RequestKind::CompleteMultipart),
            abort_multipart: c(RequestKind::AbortMultipart),
            delete: c(RequestKind::Delete),
        }
    }
}

/// A flat key → object store (an S3 bucket). Calls block; implementations
/// are shared by the worker threads of a pass (`Send + Sync`) and bound the
/// requests they have in flight themselves. Every error is one readable line
/// that names the store and says what went wrong (no bucket, access denied,
/// unreachable), never a credential.
pub trait ObjectStore: Send + Sync {
    /// Where the objects are, for messages: `s3://bucket` (and endpoint).
    fn describe(&self) -> String;

    /// Every object whose key starts with `prefix`, in key order. Follows
    /// the store's pagination to the end (one request per page of up to
    /// 1,000 keys); never one request per object. A missing bucket or a
    /// refused access is an error, never an empty list.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>>;

    /// The object at `key`, or `None` when there is none.
    fn head(&self, key: &str) -> Result<Option<ObjectHead>>;

    /// The body of a small object, or `None` when there is none; a body
    /// longer than `limit` bytes is an error (it is not what was expected).
    fn get(&self, key: &str, limit: u64) -> Result<Option<Vec<u8>>>;

    /// Stores the bytes `body` writes at `put.key`, replacing any object
    /// there. The body is streamed: a small one goes up in one PUT, a large
    /// one in a multipart upload whose parts go up while `body` still writes
    /// (memory stays bounded by the part size × the requests in flight). The
    /// new object appears whole or not at all: when `body` or a request
    /// fails, an open multipart upload is aborted before this returns.
    fn put(&self, put: &Put, body: &mut dyn FnMut(&mut dyn Write) -> Result<()>) -> Result<Stored>;

    /// Removes the object at `key`; removing what is not there is not an error.
    fn delete(&self, key: &str) -> Result<()>;

    /// Aborts a multipart upload that a crashed pass left open; one that is
    /// already gone is not an error.
    fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()>;

    /// The requests made so far.
    fn requests(&self) -> Requests;
}
