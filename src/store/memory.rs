//! [`ObjectStore`] in memory: the contract's second implementation, so the
//! shared store suite (`tests/it/store_suite.rs`) proves the contract on two
//! stores and not on S3's quirks alone. It keeps what S3 keeps that blat
//! relies on: key order in listings, pages of 1,000 keys per list request,
//! user metadata, an entity tag that changes with the content, uploads in
//! parts that appear whole or not at all, and the request counts.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::Mutex;

use anyhow::{bail, Result};
use sha2::{Digest, Sha256};

use super::{
    Multipart, ObjectHead, ObjectInfo, ObjectStore, Put, RequestCounter, RequestKind, Requests,
    Stored,
};

/// A listing page, as S3 pages them.
const PAGE: usize = 1000;

#[derive(Clone)]
struct Object {
    body: Vec<u8>,
    etag: String,
    metadata: BTreeMap<String, String>,
    last_modified: i64,
}

/// A multipart upload not yet completed or aborted.
struct Upload {
    key: String,
    parts: Vec<Vec<u8>>,
}

#[derive(Default)]
struct Bucket {
    objects: BTreeMap<String, Object>,
    uploads: BTreeMap<String, Upload>,
}

/// A bucket in memory; parts are `part_size` bytes (`with_part_size`).
pub struct MemoryStore {
    bucket: Mutex<Bucket>,
    part_size: usize,
    counter: RequestCounter,
}

impl Default for MemoryStore {
    fn default() -> MemoryStore {
        MemoryStore::new()
    }
}

impl MemoryStore {
    /// An empty bucket with S3Store's default part size.
    pub fn new() -> MemoryStore {
        MemoryStore {
            bucket: Mutex::default(),
            part_size: super::s3::PART_SIZE,
            counter: RequestCounter::default(),
        }
    }

    /// Parts of `bytes` (at least 1) instead of the default.
    pub fn with_part_size(mut self, bytes: usize) -> MemoryStore {
        self.part_size = bytes.max(1);
        self
    }

    /// The multipart uploads open now (what S3's ListMultipartUploads shows).
    pub fn open_uploads(&self) -> usize {
        self.lock().uploads.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.bucket.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn create_multipart(&self, key: &str) -> String {
        self.counter.count(RequestKind::CreateMultipart);
        let id = crate::atomic::token(16);
        let upload = Upload {
            key: key.to_string(),
            parts: Vec::new(),
        };
        self.lock().uploads.insert(id.clone(), upload);
        id
    }

    fn upload_part(&self, upload_id: &str, data: Vec<u8>) -> Result<()> {
        self.counter.count(RequestKind::UploadPart);
        match self.lock().uploads.get_mut(upload_id) {
            Some(upload) => {
                upload.parts.push(data);
                Ok(())
            }
            None => bail!("{}: no upload {upload_id}", self.describe()),
        }
    }

    /// Stores `body` at `key` in one step; returns the new entity tag.
    fn store(&self, key: &str, body: Vec<u8>, etag: String, put: &Put) -> String {
        let object = Object {
            body,
            etag: etag.clone(),
            metadata: put
                .metadata
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect(),
            last_modified: crate::clock::now(),
        };
        self.lock().objects.insert(key.to_string(), object);
        etag
    }

    fn complete(&self, upload_id: &str, put: &Put) -> Result<Stored> {
        self.counter.count(RequestKind::CompleteMultipart);
        let Some(upload) = self.lock().uploads.remove(upload_id) else {
            bail!("{}: no upload {upload_id}", self.describe());
        };
        // S3's form: a hash of the parts' hashes, then the number of parts.
        let mut of_parts = Sha256::new();
        for part in &upload.parts {
            of_parts.update(Sha256::digest(part));
        }
        let etag = format!("{}-{}", short_hex(&of_parts.finalize()), upload.parts.len());
        let parts = upload.parts.len();
        let body = upload.parts.concat();
        let size = body.len() as u64;
        let etag = self.store(&upload.key, body, etag, put);
        Ok(Stored { size, etag, parts })
    }
}

/// 32 hex digits, as long as S3's MD5 entity tags.
fn short_hex(digest: &[u8]) -> String {
    hex::encode(&digest[..16])
}

impl ObjectStore for MemoryStore {
    fn describe(&self) -> String {
        "memory store".to_string()
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let listed: Vec<ObjectInfo> = self
            .lock()
            .objects
            .range(prefix.to_string()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, o)| ObjectInfo {
                key: key.clone(),
                size: o.body.len() as u64,
                etag: o.etag.clone(),
                last_modified: o.last_modified,
            })
            .collect();
        // One request per page, and one for an empty listing.
        for _ in 0..listed.len().div_ceil(PAGE).max(1) {
            self.counter.count(RequestKind::List);
        }
        Ok(listed)
    }

    fn head(&self, key: &str) -> Result<Option<ObjectHead>> {
        self.counter.count(RequestKind::Head);
        Ok(self.lock().objects.get(key).map(|o| ObjectHead {
            size: o.body.len() as u64,
            etag: o.etag.clone(),
            metadata: o.metadata.clone(),
        }))
    }

    fn get(&self, key: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        self.counter.count(RequestKind::Get);
        let Some(body) = self.lock().objects.get(key).map(|o| o.body.clone()) else {
            return Ok(None);
        };
        let len = body.len() as u64;
        if len > limit {
            bail!(
                "{}: '{key}' is {len} bytes, more than the {limit} expected",
                self.describe()
            );
        }
        Ok(Some(body))
    }

    fn put(&self, put: &Put, body: &mut dyn FnMut(&mut dyn Write) -> Result<()>) -> Result<Stored> {
        let mut sink = PartSink {
            store: self,
            put,
            buf: Vec::new(),
            upload: None,
            parts: 0,
        };
        if let Err(e) = body(&mut sink) {
            if let Some(id) = sink.upload.take() {
                self.abort_multipart(put.key, &id)?;
                (put.journal)(Multipart::Ended {
                    key: put.key,
                    upload_id: &id,
                });
            }
            return Err(e);
        }
        sink.finish()
    }

    fn delete(&self, key: &str) -> Result<()> {
        self.counter.count(RequestKind::Delete);
        self.lock().objects.remove(key);
        Ok(())
    }

    fn abort_multipart(&self, _key: &str, upload_id: &str) -> Result<()> {
        self.counter.count(RequestKind::AbortMultipart);
        self.lock().uploads.remove(upload_id);
        Ok(())
    }

    fn requests(&self) -> Requests {
        self.counter.snapshot()
    }
}

/// The body of one `put`: the first full part turns it into a multipart
/// upload (journaled), as on S3.
struct PartSink<'a> {
    store: &'a MemoryStore,
    put: &'a Put<'a>,
    buf: Vec<u8>,
    /// The open multipart upload's id.
    upload: Option<String>,
    parts: usize,
}

impl PartSink<'_> {
    fn send_part(&mut self) -> Result<()> {
        let id = match &self.upload {
            Some(id) => id.clone(),
            None => {
                let id = self.store.create_multipart(self.put.key);
                (self.put.journal)(Multipart::Started {
                    key: self.put.key,
                    upload_id: &id,
                });
                self.upload = Some(id.clone());
                id
            }
        };
        self.parts += 1;
        self.store.upload_part(&id, std::mem::take(&mut self.buf))
    }

    fn finish(mut self) -> Result<Stored> {
        let Some(id) = self.upload.clone() else {
            self.store.counter.count(RequestKind::Put);
            let size = self.buf.len() as u64;
            let etag = short_hex(&Sha256::digest(&self.buf));
            let body = std::mem::take(&mut self.buf);
            let etag = self.store.store(self.put.key, body, etag, self.put);
            return Ok(Stored {
                size,
                etag,
                parts: 0,
            });
        };
        if !self.buf.is_empty() {
            self.send_part()?;
        }
        let stored = self.store.complete(&id, self.put)?;
        (self.put.journal)(Multipart::Ended {
            key: self.put.key,
            upload_id: &id,
        });
        Ok(stored)
    }
}

impl Write for PartSink<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.store.part_size - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        (self.put.progress)(n as u64);
        if self.buf.len() == self.store.part_size {
            self.send_part()
                .map_err(|e| io::Error::other(format!("{e:#}")))?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
