//! [`ObjectStore`] on S3 (and S3-compatible stores) with aws-sdk-s3.
//!
//! Credentials and, unless the target sets `region`, the region come only
//! from the standard AWS chain (environment, profile, SSO, instance role):
//! blat's config never holds a secret, and no message prints one. With
//! `endpoint` set (MinIO, Ceph, test servers) addressing is path-style.
//!
//! The SDK is async; blat's passes are threads. The store owns a small
//! tokio runtime and blocks on it per call; uploads of parts run as tasks on
//! it, so one package's parts go up while its ZIP is still being written.
//! A semaphore of `parallel` slots bounds the PUT and part requests in
//! flight across all packages, which also bounds the memory parts hold.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use aws_config::BehaviorVersion;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;

use super::{
    Multipart, ObjectHead, ObjectInfo, ObjectStore, Put, RequestCounter, RequestKind, Requests,
    Stored,
};
use crate::config::S3Target;
use crate::error::UsageError;

/// Parts are at least this big; an object that fits in one goes up in a
/// single PUT. (S3's minimum part is 5 MiB; 8 MiB is what awscli uses.)
pub const PART_SIZE: usize = 8 << 20;
/// S3 allows 10,000 parts; the part size grows for objects that need more.
const MAX_PARTS: u64 = 10_000;

pub struct S3Store {
    client: Client,
    runtime: Runtime,
    bucket: String,
    endpoint: Option<String>,
    part_size: usize,
    /// Bounds PUT and part requests in flight (and so part buffers).
    slots: Arc<Semaphore>,
    counter: Arc<RequestCounter>,
    /// The AWS chain's provider, for `blat check`.
    credentials: Option<aws_sdk_s3::config::SharedCredentialsProvider>,
}

impl S3Store {
    /// Connects to the target's bucket with `parallel` requests in flight at
    /// most. Makes no request: a wrong bucket or credentials show at the
    /// first listing.
    pub fn connect(target: &S3Target) -> Result<S3Store> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("blat-s3")
            .enable_all()
            .build()
            .context("cannot start the S3 client runtime")?;
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .read_timeout(Duration::from_secs(120))
                .build(),
        );
        if let Some(region) = &target.region {
            loader = loader.region(Region::new(region.clone()));
        }
        let shared = runtime.block_on(loader.load());
        let mut builder = aws_sdk_s3::config::Builder::from(&shared)
            // Checksums only where S3 requires them: S3-compatible stores
            // differ in which of the newer checksum headers they accept.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if shared.region().is_none() {
            if target.endpoint.is_none() {
                bail!(UsageError(format!(
                    "s3://{}: no AWS region: set `region` in the target or AWS_REGION",
                    target.bucket
                )));
            }
            // S3-compatible stores ignore the region but signing needs one.
            builder = builder.region(Region::new("us-east-1"));
        }
        if let Some(endpoint) = &target.endpoint {
            builder = builder.endpoint_url(endpoint).force_path_style(true);
        }
        Ok(S3Store {
            client: Client::from_conf(builder.build()),
            runtime,
            bucket: target.bucket.clone(),
            endpoint: target.endpoint.clone(),
            part_size: PART_SIZE,
            slots: Arc::new(Semaphore::new(target.parallel.max(1))),
            counter: Arc::new(RequestCounter::default()),
            credentials: shared.credentials_provider(),
        })
    }

    /// Overrides the (minimum) part size; tests use S3's 5 MiB minimum to
    /// exercise multipart uploads with small bodies.
    pub fn with_part_size(mut self, bytes: usize) -> S3Store {
        self.part_size = bytes.max(5 << 20);
        self
    }

    /// The part size for an object of about `size_hint` bytes.
    fn part_size_for(&self, size_hint: u64) -> usize {
        // 5% headroom: the hint is the package's size, deflate can add a little.
        let needed = (size_hint + size_hint / 20).div_ceil(MAX_PARTS);
        let mib = 1 << 20;
        (needed.div_ceil(mib) * mib).max(self.part_size as u64) as usize
    }

    /// `blat check`: the name of the AWS chain's provider that gave
    /// credentials (never a key), or why none did.
    pub fn credentials_source(&self) -> Result<String> {
        use aws_sdk_s3::config::ProvideCredentials;
        let provider = self
            .credentials
            .as_ref()
            .ok_or_else(|| anyhow!("{}: no AWS credentials provider", self.describe()))?;
        let creds = self
            .runtime
            .block_on(provider.provide_credentials())
            .map_err(|e| anyhow!("{}: no AWS credentials: {}", self.describe(), causes(&e)))?;
        // The provider's name is only in the Debug form (which redacts the secret).
        let debug = format!("{creds:?}");
        Ok(debug
            .split_once("provider_name: \"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map_or_else(|| "the AWS chain".to_string(), |(name, _)| name.to_string()))
    }

    /// `blat check`: one listing request for at most one key under
    /// `prefix`, so a missing bucket or a refused listing shows.
    pub fn list_one(&self, prefix: &str) -> Result<usize> {
        self.counter.count(RequestKind::List);
        let page = self
            .runtime
            .block_on(
                self.client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(prefix)
                    .max_keys(1)
                    .send(),
            )
            .map_err(|e| self.fail(&format!("cannot list '{prefix}'"), e))?;
        Ok(page.contents().len())
    }

    fn fail<E>(
        &self,
        what: &str,
        e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> anyhow::Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        describe_error(&self.describe(), &self.bucket, what, e)
    }
}

/// One line for a failed request: what was tried, and why it failed in the
/// words an operator acts on (bucket, credentials, network).
fn describe_error<E>(
    store: &str,
    bucket: &str,
    what: &str,
    e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = e.raw_response().map(|r| r.status().as_u16());
    let code = e.code().map(str::to_string);
    let message = e.message().unwrap_or_default().to_string();
    let why = match (&e, code.as_deref(), status) {
        (SdkError::ServiceError(_), Some("NoSuchBucket"), _) => {
            format!("bucket '{bucket}' does not exist")
        }
        (
            SdkError::ServiceError(_),
            Some(
                c @ ("AccessDenied"
                | "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "ExpiredToken"
                | "InvalidToken"
                | "TokenRefreshRequired"
                | "AllAccessDisabled"),
            ),
            _,
        ) => format!("access denied ({c}): check the AWS credentials and the bucket's policy"),
        (SdkError::ServiceError(_), None, Some(403)) => {
            "access denied (HTTP 403): check the AWS credentials and the bucket's policy"
                .to_string()
        }
        (SdkError::ServiceError(_), None, Some(404)) => {
            format!("not found (HTTP 404): does bucket '{bucket}' exist?")
        }
        (SdkError::ServiceError(_), Some(c), _) if message.is_empty() => c.to_string(),
        (SdkError::ServiceError(_), Some(c), _) => format!("{c}: {message}"),
        (SdkError::ServiceError(_), None, Some(s)) => format!("HTTP {s}"),
        (SdkError::DispatchFailure(d), ..) if d.is_io() || d.is_timeout() => {
            format!("cannot reach the store: {}", causes(&e))
        }
        (SdkError::TimeoutError(_), ..) => format!("no answer in time: {}", causes(&e)),
        // Missing credentials show up here, with the chain of providers tried.
        _ => causes(&e),
    };
    anyhow!("{store}: {what}: {}", why.replace('\n', " "))
}

/// The ETag of a 200 answer to CompleteMultipartUpload that the SDK could
/// not decode. moto 5.2.1 names the root element
/// `CompleteMultipartUploadResponse` (getmoto/moto#10055) and S3-compatible
/// servers vary; an answer that is not an `<Error>` and names the new
/// object's ETag means the upload did complete.
fn completed_anyway<E>(e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Option<String> {
    let SdkError::ServiceError(_) = e else {
        return None;
    };
    let raw = e.raw_response()?;
    if raw.status().as_u16() != 200 {
        return None;
    }
    let body = std::str::from_utf8(raw.body().bytes()?).ok()?;
    if body.contains("<Error>") || !body.contains("CompleteMultipartUpload") {
        return None;
    }
    let start = body.find("<ETag>")? + "<ETag>".len();
    let end = start + body[start..].find("</ETag>")?;
    Some(
        body[start..end]
            .replace("&quot;", "\"")
            .replace("&#34;", "\"")
            .trim_matches('"')
            .to_string(),
    )
}

/// The error and its causes, each said once, on one line (the SDK's own
/// rendering ends in a Debug dump nobody should have to read).
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        // Wrappers that add no meaning of their own.
        if !matches!(
            text.as_str(),
            "dispatch failure" | "other" | "io error" | ""
        ) && !parts.iter().any(|p| p.contains(&text))
        {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

fn unquote(etag: Option<&str>) -> String {
    etag.unwrap_or_default().trim_matches('"').to_string()
}

impl ObjectStore for S3Store {
    fn describe(&self) -> String {
        match &self.endpoint {
            Some(e) => format!("s3://{} at {e}", self.bucket),
            None => format!("s3://{}", self.bucket),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            self.counter.count(RequestKind::List);
            let page = self
                .runtime
                .block_on(
                    self.client
                        .list_objects_v2()
                        .bucket(&self.bucket)
                        .prefix(prefix)
                        .set_continuation_token(token.take())
                        .send(),
                )
                .map_err(|e| self.fail(&format!("cannot list '{prefix}'"), e))?;
            for o in page.contents() {
                let Some(key) = o.key() else { continue };
                out.push(ObjectInfo {
                    key: key.to_string(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    etag: unquote(o.e_tag()),
                    last_modified: o.last_modified().map_or(0, |t| t.secs()),
                });
            }
            match (page.is_truncated(), page.next_continuation_token()) {
                (Some(true), Some(next)) => token = Some(next.to_string()),
                (Some(true), None) => bail!(
                    "{}: listing of '{prefix}' is truncated without a continuation token",
                    self.describe()
                ),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn head(&self, key: &str) -> Result<Option<ObjectHead>> {
        self.counter.count(RequestKind::Head);
        match self.runtime.block_on(
            self.client
                .head_object()
                .bucket(&self.bucket)
                .key(key)
                .send(),
        ) {
            Ok(o) => Ok(Some(ObjectHead {
                size: o.content_length().unwrap_or(0).max(0) as u64,
                etag: unquote(o.e_tag()),
                metadata: o
                    .metadata()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                            .collect()
                    })
                    .unwrap_or_else(BTreeMap::new),
            })),
            // A 404 on HEAD has no body to say whether the bucket or the key is
            // missing; the listing before it has already proved the bucket.
            Err(SdkError::ServiceError(se)) if se.err().is_not_found() => Ok(None),
            Err(e) => Err(self.fail(&format!("cannot read '{key}'"), e)),
        }
    }

    fn get(&self, key: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        self.counter.count(RequestKind::Get);
        let out = match self.runtime.block_on(
            self.client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .send(),
        ) {
            Ok(o) => o,
            Err(SdkError::ServiceError(se)) if se.err().is_no_such_key() => return Ok(None),
            Err(e) => return Err(self.fail(&format!("cannot read '{key}'"), e)),
        };
        let len = out.content_length().unwrap_or(0).max(0) as u64;
        if len > limit {
            bail!(
                "{}: '{key}' is {len} bytes, more than the {limit} expected",
                self.describe()
            );
        }
        let body = self
            .runtime
            .block_on(out.body.collect())
            .with_context(|| format!("{}: cannot read '{key}'", self.describe()))?;
        Ok(Some(body.into_bytes().to_vec()))
    }

    fn put(&self, put: &Put, body: &mut dyn FnMut(&mut dyn Write) -> Result<()>) -> Result<Stored> {
        let mut sink = PartSink {
            store: self,
            put,
            part_size: self.part_size_for(put.size_hint),
            buf: Vec::new(),
            written: 0,
            upload: None,
            tasks: Vec::new(),
            failure: Arc::new(Mutex::new(None)),
        };
        sink.buf
            .reserve(sink.part_size.min(put.size_hint as usize + 4096));
        let result = body(&mut sink).and_then(|()| sink.finish());
        match result {
            Ok(stored) => Ok(stored),
            Err(e) => {
                // A failed part explains more than the write error it caused.
                let e = sink
                    .failure
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()
                    .unwrap_or(e);
                sink.abort();
                Err(e)
            }
        }
    }

    fn delete(&self, key: &str) -> Result<()> {
        self.counter.count(RequestKind::Delete);
        self.runtime
            .block_on(
                self.client
                    .delete_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .send(),
            )
            .map_err(|e| self.fail(&format!("cannot delete '{key}'"), e))?;
        Ok(())
    }

    fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        self.counter.count(RequestKind::AbortMultipart);
        match self.runtime.block_on(
            self.client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .send(),
        ) {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(se)) if se.err().is_no_such_upload() => Ok(()),
            Err(e) => Err(self.fail(&format!("cannot abort the upload of '{key}'"), e)),
        }
    }

    fn requests(&self) -> Requests {
        self.counter.snapshot()
    }
}

/// The body of one `put`: buffers up to a part; the first full part turns
/// the upload into a multipart one, and each full part goes up as a task.
struct PartSink<'a> {
    store: &'a S3Store,
    put: &'a Put<'a>,
    part_size: usize,
    buf: Vec<u8>,
    written: u64,
    /// The open multipart upload's id.
    upload: Option<String>,
    tasks: Vec<tokio::task::JoinHandle<Result<CompletedPart>>>,
    /// The first failed part, so the body stops early and the caller learns why.
    failure: Arc<Mutex<Option<anyhow::Error>>>,
}

impl PartSink<'_> {
    fn metadata(&self) -> HashMap<String, String> {
        self.put
            .metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn failed(&self) -> bool {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Sends the buffer as the next part (starting the upload if needed).
    fn send_part(&mut self) -> Result<()> {
        let store = self.store;
        let key = self.put.key;
        if self.upload.is_none() {
            store.counter.count(RequestKind::CreateMultipart);
            let out = store
                .runtime
                .block_on(
                    store
                        .client
                        .create_multipart_upload()
                        .bucket(&store.bucket)
                        .key(key)
                        .content_type(self.put.content_type)
                        .set_metadata(Some(self.metadata()))
                        .send(),
                )
                .map_err(|e| store.fail(&format!("cannot start the upload of '{key}'"), e))?;
            let id = out
                .upload_id()
                .context("the store started a multipart upload without an id")?
                .to_string();
            (self.put.journal)(Multipart::Started {
                key,
                upload_id: &id,
            });
            self.upload = Some(id);
        }
        let number = self.tasks.len() as u64 + 1;
        if number > MAX_PARTS {
            bail!(
                "{}: '{key}' needs more than {MAX_PARTS} parts",
                store.describe()
            );
        }
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(self.part_size));
        // Waiting for a slot here is the back-pressure that bounds memory.
        let permit = store
            .runtime
            .block_on(store.slots.clone().acquire_owned())
            .context("upload slots closed")?;
        let task = self.part_task(number, data, permit);
        self.tasks.push(store.runtime.spawn(task));
        Ok(())
    }

    /// The upload of part `number` (holding its slot until it ends); a
    /// failure is also kept aside so the body stops early and says why.
    fn part_task(
        &self,
        number: u64,
        data: Vec<u8>,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> impl std::future::Future<Output = Result<CompletedPart>> + Send + 'static {
        let store = self.store;
        let client = store.client.clone();
        let counter = store.counter.clone();
        let failure = self.failure.clone();
        let (bucket, key, id, name) = (
            store.bucket.clone(),
            self.put.key.to_string(),
            self.upload.clone().unwrap_or_default(),
            store.describe(),
        );
        async move {
            let _permit = permit;
            counter.count(RequestKind::UploadPart);
            let sent = client
                .upload_part()
                .bucket(&bucket)
                .key(&key)
                .upload_id(id)
                .part_number(number as i32)
                .body(ByteStream::from(data))
                .send()
                .await;
            match sent {
                Ok(o) => Ok(CompletedPart::builder()
                    .part_number(number as i32)
                    .set_e_tag(o.e_tag().map(str::to_string))
                    .build()),
                Err(e) => {
                    let e = describe_error(
                        &name,
                        &bucket,
                        &format!("cannot upload part {number} of '{key}'"),
                        e,
                    );
                    let text = format!("{e:#}");
                    failure
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(e);
                    Err(anyhow!(text))
                }
            }
        }
    }

    fn finish(&mut self) -> Result<Stored> {
        let store = self.store;
        let key = self.put.key;
        if self.upload.is_none() {
            let _permit = store
                .runtime
                .block_on(store.slots.acquire())
                .context("upload slots closed")?;
            store.counter.count(RequestKind::Put);
            let data = std::mem::take(&mut self.buf);
            let out = store
                .runtime
                .block_on(
                    store
                        .client
                        .put_object()
                        .bucket(&store.bucket)
                        .key(key)
                        .content_type(self.put.content_type)
                        .set_metadata(Some(self.metadata()))
                        .body(ByteStream::from(data))
                        .send(),
                )
                .map_err(|e| store.fail(&format!("cannot upload '{key}'"), e))?;
            return Ok(Stored {
                size: self.written,
                etag: unquote(out.e_tag()),
                parts: 0,
            });
        }
        if !self.buf.is_empty() {
            self.send_part()?;
        }
        let mut parts = Vec::with_capacity(self.tasks.len());
        // Every part ends before any error is acted on: an abort while parts
        // are still in flight could leave those parts behind.
        let ended: Vec<_> = std::mem::take(&mut self.tasks)
            .into_iter()
            .map(|task| store.runtime.block_on(task))
            .collect();
        for part in ended {
            parts.push(part.context("a part upload task failed")??);
        }
        let id = self.upload.clone().unwrap_or_default();
        store.counter.count(RequestKind::CompleteMultipart);
        let completed = store.runtime.block_on(
            store
                .client
                .complete_multipart_upload()
                .bucket(&store.bucket)
                .key(key)
                .upload_id(&id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts.clone()))
                        .build(),
                )
                .send(),
        );
        let etag = match completed {
            Ok(out) => unquote(out.e_tag()),
            Err(e) => match completed_anyway(&e) {
                Some(etag) => etag,
                None => {
                    return Err(store.fail(&format!("cannot complete the upload of '{key}'"), e))
                }
            },
        };
        self.upload = None;
        (self.put.journal)(Multipart::Ended {
            key,
            upload_id: &id,
        });
        Ok(Stored {
            size: self.written,
            etag,
            parts: parts.len(),
        })
    }

    /// After a failure: lets parts in flight end, then aborts the upload so
    /// no parts are left behind (and billed). If the abort fails too, the
    /// journal keeps the upload and the next pass aborts it.
    fn abort(&mut self) {
        for task in std::mem::take(&mut self.tasks) {
            let _ = self.store.runtime.block_on(task);
        }
        if let Some(id) = self.upload.take() {
            if self.store.abort_multipart(self.put.key, &id).is_ok() {
                (self.put.journal)(Multipart::Ended {
                    key: self.put.key,
                    upload_id: &id,
                });
            }
        }
    }
}

impl Write for PartSink<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.failed() {
            return Err(io::Error::other("an upload request failed"));
        }
        let room = self.part_size - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        self.written += n as u64;
        (self.put.progress)(n as u64);
        if self.buf.len() == self.part_size {
            self.send_part().map_err(|e| {
                let text = format!("{e:#}");
                self.failure
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert(e);
                io::Error::other(text)
            })?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
