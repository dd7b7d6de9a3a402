//! The shared `ObjectStore` contract: every store must pass every case here
//! (restic's backend suite is the model). `store_suite!(harness)`
//! instantiates every case for one store, where `harness` gives a fresh,
//! empty one (or `None` when its server is missing: a skip, a failure under
//! `CI=true`). The in-memory store is below; S3 on a real server in
//! `s3.rs`. The case list exists once, in the macro: a case function it
//! does not name is dead code, which this module denies.
#![deny(dead_code)]

use std::sync::{Arc, Mutex};

use blat::store::{Multipart, ObjectStore, Put, Stored};

/// One store under test, empty, with parts of 5 MiB (S3's smallest).
pub struct StoreHarness {
    pub store: Arc<dyn ObjectStore>,
    /// The multipart uploads open in the store, as the test sees them by
    /// its own means (not through the interface under test).
    pub open_uploads: Box<dyn Fn() -> usize>,
}

/// The part size every harness sets.
pub const PART: usize = 5 << 20;

/// Stores `body` at `key` in one call.
pub fn put_bytes(s: &dyn ObjectStore, key: &str, body: &[u8], meta: &[(&str, String)]) -> Stored {
    s.put(
        &Put {
            key,
            metadata: meta,
            content_type: "application/octet-stream",
            size_hint: body.len() as u64,
            journal: &|_| {},
            progress: &|_| {},
        },
        &mut |out| Ok(out.write_all(body)?),
    )
    .unwrap()
}

/// Bytes that do not compress (xorshift), so sizes stay what they say.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn lists_every_page_heads_gets_and_deletes(h: StoreHarness) {
    let s = &*h.store;
    // 1,005 objects, stored out of order: more than one page of 1,000.
    let keys: Vec<String> = (0..1005).map(|i| format!("p/k{i:04}")).collect();
    let next = Mutex::new(keys.iter().rev());
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| loop {
                let Some(key) = next.lock().unwrap().next() else {
                    return;
                };
                put_bytes(s, key, key.as_bytes(), &[]);
            });
        }
    });
    put_bytes(s, "q/outside", b"x", &[]);
    put_bytes(s, "o/before", b"x", &[]);
    let before = s.requests();
    let listed = s.list("p/").unwrap();
    assert_eq!(
        s.requests().list - before.list,
        2,
        "one request per page of 1,000"
    );
    assert_eq!(
        listed.iter().map(|o| o.key.clone()).collect::<Vec<_>>(),
        keys,
        "every key under the prefix, in key order"
    );
    assert!(listed
        .iter()
        .all(|o| o.size == 7 && !o.etag.is_empty() && !o.etag.contains('"')));
    assert_eq!(s.list("none/").unwrap(), []);

    let stored = put_bytes(s, "p/meta", b"hello", &[("descpkg-mtime", "123".into())]);
    assert_eq!((stored.size, stored.parts), (5, 0));
    let head = s.head("p/meta").unwrap().unwrap();
    assert_eq!((head.size, head.etag.as_str()), (5, stored.etag.as_str()));
    assert_eq!(
        head.metadata.get("descpkg-mtime").map(String::as_str),
        Some("123")
    );
    assert_eq!(s.head("p/none").unwrap(), None);
    assert_eq!(
        s.get("p/meta", 100).unwrap().as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(s.get("p/none", 100).unwrap(), None);
    let err = format!("{:#}", s.get("p/meta", 3).unwrap_err());
    assert!(err.contains("more than the 3 expected"), "{err}");

    s.delete("p/meta").unwrap();
    s.delete("p/meta").unwrap(); // not there: not an error
    assert_eq!(s.head("p/meta").unwrap(), None);
    s.abort_multipart("p/none", "no-such-upload").unwrap();
}

pub fn put_replaces_the_whole_object(h: StoreHarness) {
    let s = &*h.store;
    let first = put_bytes(s, "k", b"first body", &[("descpkg-mtime", "1".into())]);
    let same = put_bytes(s, "k", b"first body", &[("descpkg-mtime", "1".into())]);
    assert_eq!(first.etag, same.etag, "the same content, the same tag");
    let second = put_bytes(s, "k", b"second", &[("descpkg-mtime", "2".into())]);
    assert_ne!(first.etag, second.etag, "new content, a new tag");
    let listed = s.list("k").unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].size, listed[0].etag.as_str()),
        (6, second.etag.as_str()),
        "the listing shows what the put returned"
    );
    let head = s.head("k").unwrap().unwrap();
    assert_eq!(
        head.metadata.get("descpkg-mtime").map(String::as_str),
        Some("2")
    );
    assert_eq!(s.get("k", 100).unwrap().as_deref(), Some(&b"second"[..]));
    // An object that went up in parts is replaced whole by a small one.
    let big = noise(PART + 1, 3);
    assert_eq!(put_bytes(s, "k", &big, &[]).parts, 2);
    put_bytes(s, "k", b"small", &[]);
    assert_eq!(s.get("k", 100).unwrap().as_deref(), Some(&b"small"[..]));
    assert_eq!((h.open_uploads)(), 0);
}

pub fn multipart_upload_streams_parts_and_aborts_on_failure(h: StoreHarness) {
    let s = &*h.store;
    let body = noise(2 * PART + (2 << 20), 7);
    let events = Mutex::new(Vec::new());
    let journal = |e: Multipart| events.lock().unwrap().push(format!("{e:?}"));
    let put = Put {
        key: "big",
        metadata: &[("descpkg-mtime", "9".into())],
        content_type: "application/zip",
        size_hint: body.len() as u64,
        journal: &journal,
        progress: &|_| {},
    };
    let stored = s.put(&put, &mut |out| Ok(out.write_all(&body)?)).unwrap();
    assert_eq!((stored.size, stored.parts), (body.len() as u64, 3));
    let requests = s.requests();
    assert_eq!(
        (
            requests.create_multipart,
            requests.upload_part,
            requests.complete_multipart,
            requests.put
        ),
        (1, 3, 1, 0)
    );
    let listed = s.list("big").unwrap();
    assert_eq!(
        (listed[0].size, listed[0].etag.as_str()),
        (body.len() as u64, stored.etag.as_str())
    );
    assert_eq!(s.get("big", 64 << 20).unwrap().unwrap(), body);
    assert_eq!(
        s.head("big")
            .unwrap()
            .unwrap()
            .metadata
            .get("descpkg-mtime")
            .map(String::as_str),
        Some("9")
    );
    {
        let events = events.lock().unwrap();
        assert_eq!(events.len(), 2);
        assert!(
            events[0].starts_with("Started") && events[1].starts_with("Ended"),
            "{events:?}"
        );
    }

    // A body that fails after two parts went up: nothing is left behind.
    events.lock().unwrap().clear();
    let put = Put {
        key: "broken",
        ..put
    };
    let err = s
        .put(&put, &mut |out| {
            out.write_all(&body[..2 * PART + 1])?;
            anyhow::bail!("the package vanished")
        })
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("the package vanished"),
        "{err:#}"
    );
    assert_eq!(s.head("broken").unwrap(), None);
    assert_eq!((h.open_uploads)(), 0, "the interrupted upload is aborted");
    let events = events.lock().unwrap();
    assert!(
        events.len() == 2 && events[1].starts_with("Ended"),
        "{events:?}"
    );
}

pub fn an_upload_a_crash_left_open_is_aborted_by_its_id(h: StoreHarness) {
    let s = &*h.store;
    let body = noise(PART, 5);
    let started = Mutex::new(None);
    let journal = |e: Multipart| {
        if let Multipart::Started { upload_id, .. } = e {
            *started.lock().unwrap() = Some(upload_id.to_string());
        }
    };
    let put = Put {
        key: "left",
        metadata: &[],
        content_type: "application/zip",
        size_hint: 2 * PART as u64,
        journal: &journal,
        progress: &|_| {},
    };
    // The pass dies after a part went up (a crash, not an error): nothing
    // aborts the upload, only the journal knows it.
    let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = s.put(&put, &mut |out| {
            out.write_all(&body)?;
            panic!("the pass died (this panic is the test's)")
        });
    }));
    assert!(crashed.is_err());
    assert_eq!(s.head("left").unwrap(), None, "nothing visible");
    assert_eq!((h.open_uploads)(), 1, "the upload is left open");
    let id = started
        .lock()
        .unwrap()
        .clone()
        .expect("the start is journaled");
    s.abort_multipart("left", &id).unwrap();
    assert_eq!((h.open_uploads)(), 0);
    s.abort_multipart("left", &id).unwrap(); // already gone: not an error
    assert_eq!(s.list("").unwrap(), []);
}

/// Instantiates every case of the suite for one store: `$harness` is a
/// `fn() -> Option<StoreHarness>`.
#[macro_export]
macro_rules! store_suite {
    ($harness:path) => {
        $crate::suite_tests!($harness; store_suite;
            lists_every_page_heads_gets_and_deletes
            put_replaces_the_whole_object
            multipart_upload_streams_parts_and_aborts_on_failure
            an_upload_a_crash_left_open_is_aborted_by_its_id
        );
    };
}

/// The suite on the in-memory store.
mod memory {
    use super::*;
    use blat::store::memory::MemoryStore;

    fn harness() -> Option<StoreHarness> {
        let store = Arc::new(MemoryStore::new().with_part_size(PART));
        let seen = store.clone();
        Some(StoreHarness {
            store,
            open_uploads: Box::new(move || seen.open_uploads()),
        })
    }

    crate::store_suite!(harness);
}
