//! S3 delivery against a real S3 server (moto on 127.0.0.1 in CI; any
//! S3-compatible server named by `BLAT_TEST_S3_ENDPOINT`): the shared
//! `ObjectStore` suite (`store_suite.rs`) on S3, what only S3 says (errors
//! of a missing bucket or an unreachable server), then `blat s3sync` end to
//! end. Every test works in its own fresh bucket. Without a server they
//! skip, except under `CI=true`, where they fail (`common::require`).

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use blat::config::S3Target;
use blat::store::s3::S3Store;
use blat::store::ObjectStore;
use serde_json::Value;

use crate::common::{
    self, assert_exit, make_read_only, make_writable, pvs, set_mtime, stderr, stdout, World,
};
use crate::store_suite::{noise, put_bytes};

const MTIME: i64 = 1_600_000_000;

/// A fresh bucket on the test server.
struct Bucket {
    endpoint: String,
    name: String,
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A plain SDK client for what the store interface does not do (make
/// buckets, list multipart uploads): the test's own view of the server.
pub fn sdk(endpoint: &str) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

fn bucket(test: &str) -> Option<Bucket> {
    let endpoint = common::require("BLAT_TEST_S3_ENDPOINT", "an S3 server")?;
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let name = format!(
        "blat-{test}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
    .replace('_', "-");
    runtime()
        .block_on(sdk(&endpoint).create_bucket().bucket(&name).send())
        .unwrap_or_else(|e| panic!("cannot create bucket {name} at {endpoint}: {e:?}"));
    Some(Bucket { endpoint, name })
}

fn store(b: &Bucket) -> S3Store {
    S3Store::connect(&S3Target {
        bucket: b.name.clone(),
        prefix: String::new(),
        region: Some("us-east-1".into()),
        endpoint: Some(b.endpoint.clone()),
        parallel: 4,
    })
    .unwrap()
}

fn open_multipart_uploads(b: &Bucket) -> usize {
    let out = runtime()
        .block_on(
            sdk(&b.endpoint)
                .list_multipart_uploads()
                .bucket(&b.name)
                .send(),
        )
        .unwrap();
    out.uploads().len()
}

// ---- the ObjectStore contract -------------------------------------------------

/// The shared store suite on a fresh bucket of the S3 server.
mod suite {
    use super::*;
    use crate::store_suite::{StoreHarness, PART};

    fn harness() -> Option<StoreHarness> {
        let b = bucket("suite")?;
        let store = std::sync::Arc::new(store(&b).with_part_size(PART));
        Some(StoreHarness {
            store,
            open_uploads: Box::new(move || open_multipart_uploads(&b)),
        })
    }

    crate::store_suite!(harness);
}

#[test]
fn store_errors_say_what_is_wrong() {
    let Some(b) = bucket("suite-errors") else {
        return;
    };
    let missing = S3Store::connect(&S3Target {
        bucket: format!("{}-absent", b.name),
        prefix: String::new(),
        region: Some("us-east-1".into()),
        endpoint: Some(b.endpoint.clone()),
        parallel: 1,
    })
    .unwrap();
    let err = format!("{:#}", missing.list("").unwrap_err());
    assert!(
        err.contains("bucket '") && err.contains("does not exist"),
        "{err}"
    );
    let nowhere = S3Store::connect(&S3Target {
        bucket: b.name.clone(),
        prefix: String::new(),
        region: Some("us-east-1".into()),
        endpoint: Some("http://127.0.0.1:9".into()),
        parallel: 1,
    })
    .unwrap();
    let err = format!("{:#}", nowhere.list("").unwrap_err());
    assert!(
        err.contains("cannot reach the store") && !err.contains('\n'),
        "{err}"
    );
}

// ---- blat s3sync ---------------------------------------------------------------

/// A world with a SQLite release manager and one S3 target `ci` on `b`.
fn s3_world(b: &Bucket, extra: &str) -> World {
    let w = World::new();
    w.write_global("");
    write_s3_target(&w, b, extra);
    w
}

fn write_s3_target(w: &World, b: &Bucket, extra: &str) {
    w.write_target(
        "ci",
        &format!("kind = \"s3\"\nbucket = \"{}\"\nprefix = \"packages/\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n{extra}\n", b.name, b.endpoint),
    );
}

/// Runs `blat --json s3sync --target ci ARGS`; returns the output and the
/// target's report.
fn s3sync(w: &World, args: &[&str], env: &[(&str, &str)]) -> (std::process::Output, Value) {
    let mut all = vec!["--json", "s3sync", "--target", "ci"];
    all.extend_from_slice(args);
    let out = w.blat_env(&all, env);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let report = json["targets"][0]["report"].clone();
    (out, report)
}

fn requests(report: &Value) -> BTreeMap<String, u64> {
    report["requests"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .filter(|(_, v)| *v > 0)
        .collect()
}

fn only(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// Keys and ETags in the bucket.
fn bucket_objects(b: &Bucket) -> BTreeMap<String, String> {
    store(b)
        .list("")
        .unwrap()
        .into_iter()
        .map(|o| (o.key, o.etag))
        .collect()
}

fn keys(b: &Bucket) -> Vec<String> {
    bucket_objects(b).into_keys().collect()
}

fn forget_state(w: &World) {
    let _ = fs::remove_dir_all(w.state().join("targets"));
}

#[test]
fn first_pass_uploads_the_flagged_set_then_nothing() {
    let Some(b) = bucket("flagged") else { return };
    let w = s3_world(&b, "");
    for (p, v) in [("a", "1"), ("b", "1"), ("c", "1")] {
        w.release(p, v, MTIME);
    }
    w.write_rm(&[
        ("P/R1", "open", 1, &["a/1", "b/1"]),
        ("P/R2", "open", 0, &["c/1"]),
    ]);

    let (out, r) = s3sync(&w, &[], &[]);
    assert_exit(&out, 0);
    assert_eq!(pvs(&r["uploaded"]), ["a/1", "b/1"]);
    assert_eq!(r["releases"], serde_json::json!(["P/R1"]));
    assert_eq!(keys(&b), ["packages/a/a_1.zip", "packages/b/b_1.zip"]);
    assert_eq!(requests(&r), only(&[("list", 1), ("put", 2)]));

    let (out, r) = s3sync(&w, &[], &[]);
    assert_exit(&out, 0);
    assert_eq!(pvs(&r["uploaded"]), Vec::<String>::new());
    assert_eq!(r["up_to_date"], 2);
    assert_eq!(
        requests(&r),
        only(&[("list", 1)]),
        "a no-change pass is one listing"
    );
}

#[test]
fn changed_descpkg_reuploads_exactly_that_zip() {
    let Some(b) = bucket("changed") else { return };
    let w = s3_world(&b, "");
    let a = w.release("a", "1", MTIME);
    w.release("b", "1", MTIME);
    w.write_rm(&[("P/R1", "open", 1, &["a/1", "b/1"])]);
    assert_exit(&s3sync(&w, &[], &[]).0, 0);
    let before = bucket_objects(&b);

    make_writable(&a);
    fs::write(a.join("descpkg"), "Package: a\nVersion: 1\nRebuilt: yes\n").unwrap();
    set_mtime(&a.join("descpkg"), MTIME + 100);
    make_read_only(&a);
    let (out, r) = s3sync(&w, &["-v"], &[]);
    assert_exit(&out, 0);
    assert_eq!(pvs(&r["uploaded"]), ["a/1"]);
    assert!(
        stderr(&out).contains(&format!(
            "upload a/1 (descpkg mtime {MTIME} in the bucket, {} here)",
            MTIME + 100
        )),
        "{}",
        stderr(&out)
    );
    assert_eq!(requests(&r), only(&[("list", 1), ("put", 1)]));
    let after = bucket_objects(&b);
    assert_ne!(before["packages/a/a_1.zip"], after["packages/a/a_1.zip"]);
    assert_eq!(before["packages/b/b_1.zip"], after["packages/b/b_1.zip"]);
}

#[test]
fn lost_state_file_costs_one_head_per_object_once() {
    let Some(b) = bucket("lost-state") else {
        return;
    };
    let w = s3_world(&b, "packages = [\"j/current\"]");
    w.release("a", "1", MTIME);
    w.release("b", "1", MTIME);
    w.release("j", "2", MTIME);
    w.alias("j", "current", "2");
    w.write_rm(&[("P/R1", "open", 1, &["a/1", "b/1"])]);
    let (out, r) = s3sync(&w, &[], &[]);
    assert_exit(&out, 0);
    assert_eq!(pvs(&r["uploaded"]), ["a/1", "b/1", "j/2"]);
    let objects = bucket_objects(&b);

    forget_state(&w);
    let (out, r) = s3sync(&w, &[], &[]);
    assert_exit(&out, 0);
    assert_eq!(
        pvs(&r["uploaded"]),
        Vec::<String>::new(),
        "nothing re-uploaded"
    );
    assert_eq!(r["adopted"], 3);
    // One HEAD per ZIP, one GET for the alias object, once.
    assert_eq!(requests(&r), only(&[("list", 1), ("head", 3), ("get", 1)]));
    assert_eq!(bucket_objects(&b), objects);

    let (out, r) = s3sync(&w, &[], &[]);
    assert_exit(&out, 0);
    assert_eq!(requests(&r), only(&[("list", 1)]));
}

/// `(path, kind, mode, content or link target)` of a tree, sorted.
fn tree(root: &Path) -> Vec<String> {
    common::walk(root)
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let m = fs::symlink_metadata(&p).unwrap();
            if m.file_type().is_symlink() {
                format!("{rel} -> {}", fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                format!("{rel}/ {:o}", m.permissions().mode() & 0o7777)
            } else {
                format!(
                    "{rel} {:o} {:?}",
                    m.permissions().mode() & 0o7777,
                    fs::read(&p).unwrap()
                )
            }
        })
        .collect()
}

#[test]
fn zip_unzips_to_exactly_the_package_and_is_deterministic() {
    let Some(b) = bucket("zip") else { return };
    let w = s3_world(&b, "");
    let files: common::Files = &[
        ("bin/tool", "#!/bin/sh\necho tool\n"),
        ("lib/libx.so.1", "library bytes"),
        ("lib/libx.so", "->libx.so.1"),
        ("share/doc/README", "read me\n"),
        ("share/empty.txt", ""),
        ("etc", "->share/doc"),
    ];
    let dir = w.release_with("a", "1", MTIME, files);
    w.write_rm(&[("P/R1", "open", 1, &["a/1"])]);
    assert_exit(&s3sync(&w, &[], &[]).0, 0);
    let zip = store(&b)
        .get("packages/a/a_1.zip", 1 << 20)
        .unwrap()
        .unwrap();

    // Unzipped by Info-ZIP into an empty archive root: the same package.
    let unzip_ok = Command::new("unzip")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    if unzip_ok {
        let out_dir = w.path().join("unzipped");
        fs::create_dir(&out_dir).unwrap();
        fs::write(w.path().join("a_1.zip"), &zip).unwrap();
        let o = Command::new("unzip")
            .arg("-q")
            .arg(w.path().join("a_1.zip"))
            .current_dir(&out_dir)
            .env("TZ", "Asia/Tokyo")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(tree(&out_dir.join("a/1")), tree(&dir));
        // The change key survives, whatever the time zone of the unzipper.
        let m = |p: &Path| fs::metadata(p).unwrap().modified().unwrap();
        assert_eq!(m(&out_dir.join("a/1/descpkg")), m(&dir.join("descpkg")));
        assert_eq!(
            fs::read_dir(&out_dir).unwrap().count(),
            1,
            "everything under a/1/"
        );
        make_writable(&out_dir);
    } else if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("unzip (Info-ZIP) is required under CI=true");
    } else {
        eprintln!("unzip not installed: checked with the zip reader only");
    }
    // Independently of unzip: entries, modes and links as a ZIP reader sees them.
    let mut z = ::zip::ZipArchive::new(std::io::Cursor::new(zip.clone())).unwrap();
    let names: Vec<String> = z.file_names().map(str::to_string).collect();
    assert!(names.iter().all(|n| n.starts_with("a/1/")), "{names:?}");
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries in sorted order");
    let mut link = z.by_name("a/1/lib/libx.so").unwrap();
    assert!(link.is_symlink());
    let mut target = String::new();
    link.read_to_string(&mut target).unwrap();
    assert_eq!(target, "libx.so.1");
    drop(link);
    assert_eq!(
        z.by_name("a/1/bin/tool").unwrap().unix_mode().unwrap() & 0o777,
        0o555
    );

    // Deterministic: another configuration and state, another run, the same bytes.
    let w2 = World::new();
    fs::copy(w.path().join("rm.sql"), w2.path().join("rm.sql")).unwrap();
    w2.write_global("");
    let global = w2.config().join("blat.toml");
    let text = fs::read_to_string(&global).unwrap();
    fs::write(
        &global,
        text.replace(
            &w2.archive().display().to_string(),
            &w.archive().display().to_string(),
        ),
    )
    .unwrap();
    write_s3_target(&w2, &b, "");
    let conf = w2.config().join("targets/ci.conf");
    fs::write(
        &conf,
        fs::read_to_string(&conf)
            .unwrap()
            .replace("prefix = \"packages/\"", "prefix = \"again/\""),
    )
    .unwrap();
    assert_exit(&s3sync(&w2, &[], &[]).0, 0);
    let again = store(&b).get("again/a/a_1.zip", 1 << 20).unwrap().unwrap();
    assert_eq!(again, zip, "the same package gives the same ZIP bytes");
    let objects = bucket_objects(&b);
    assert_eq!(objects["again/a/a_1.zip"], objects["packages/a/a_1.zip"]);
}

#[test]
fn large_package_goes_up_in_parts() {
    let Some(b) = bucket("large") else { return };
    let w = s3_world(&b, "parallel = 3");
    let dir = w.build("big", "1", MTIME, &[]);
    let body = noise(20 << 20, 11);
    fs::write(dir.join("blob.bin"), &body).unwrap();
    set_mtime(&dir.join("descpkg"), MTIME);
    make_read_only(&dir);
    w.release("small", "1", MTIME);
    w.write_rm(&[("P/R1", "open", 1, &["big/1", "small/1"])]);
    let (out, r) = s3sync(&w, &[], &[]);
    assert_exit(&out, 0);
    assert_eq!(pvs(&r["uploaded"]), ["big/1", "small/1"]);
    let req = requests(&r);
    assert_eq!(
        (
            req["create_multipart"],
            req["complete_multipart"],
            req["put"]
        ),
        (1, 1, 1)
    );
    assert!(req["upload_part"] >= 3, "{req:?}");
    assert_eq!(open_multipart_uploads(&b), 0);
    let zip = store(&b)
        .get("packages/big/big_1.zip", 64 << 20)
        .unwrap()
        .unwrap();
    let mut z = ::zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    let mut got = Vec::new();
    z.by_name("big/1/blob.bin")
        .unwrap()
        .read_to_end(&mut got)
        .unwrap();
    assert!(got == body, "the 20 MiB file comes back intact");
    // And a second pass does not send it again.
    let (out, r) = s3sync(&w, &[], &[]);
    assert_exit(&out, 0);
    assert_eq!(requests(&r), only(&[("list", 1)]));
}

#[test]
fn interrupted_multipart_upload_is_aborted_by_the_next_pass() {
    let Some(b) = bucket("interrupted") else {
        return;
    };
    let w = s3_world(&b, "");
    w.release("a", "1", MTIME);
    w.write_rm(&[("P/R1", "open", 1, &["a/1"])]);
    assert_exit(&s3sync(&w, &[], &[]).0, 0);
    // What a pass killed mid-upload leaves: an open upload, journaled.
    let rt = runtime();
    let started = rt
        .block_on(
            sdk(&b.endpoint)
                .create_multipart_upload()
                .bucket(&b.name)
                .key("packages/a/a_2.zip")
                .send(),
        )
        .unwrap();
    let state = blat::state::State::open_target(&w.state(), "ci").unwrap();
    state
        .multipart_started("ci", "packages/a/a_2.zip", started.upload_id().unwrap(), 1)
        .unwrap();
    drop(state);
    assert_eq!(open_multipart_uploads(&b), 1);
    let (out, r) = s3sync(&w, &[], &[]);
    assert_exit(&out, 0);
    assert_eq!(r["aborted_uploads"], 1);
    assert_eq!(open_multipart_uploads(&b), 0);
    let (_, r) = s3sync(&w, &[], &[]);
    assert_eq!(r["aborted_uploads"], 0, "the journal forgot it");
}

#[test]
fn alias_pin_gives_its_zip_and_a_pointer() {
    let Some(b) = bucket("alias") else { return };
    let w = s3_world(&b, "packages = [\"j/current\"]");
    w.release("j", "1", MTIME);
    w.release("j", "2", MTIME);
    w.alias("j", "current", "1");
    w.release("a", "1", MTIME);
    w.write_rm(&[("P/R1", "open", 1, &["a/1"])]);
    let (out, r) = s3sync(&w, &[], &[]);
    assert_exit(&out, 0);
    assert_eq!(pvs(&r["uploaded"]), ["a/1", "j/1"]);
    assert_eq!(
        keys(&b),
        [
            "packages/a/a_1.zip",
            "packages/j/current.txt",
            "packages/j/j_1.zip"
        ]
    );
    assert_eq!(
        store(&b)
            .get("packages/j/current.txt", 100)
            .unwrap()
            .unwrap(),
        b"1\n"
    );

    w.alias("j", "current", "2");
    let (out, r) = s3sync(&w, &[], &[]);
    assert_exit(&out, 0);
    assert_eq!(pvs(&r["uploaded"]), ["j/2"]);
    assert_eq!(r["aliases_written"][0]["version"], "2");
    assert_eq!(
        store(&b)
            .get("packages/j/current.txt", 100)
            .unwrap()
            .unwrap(),
        b"2\n"
    );
}

#[test]
fn writable_package_waits_for_the_grace() {
    let Some(b) = bucket("writable") else { return };
    let w = s3_world(&b, "writable_grace = \"1h\"");
    w.build("w", "1", MTIME, common::DEFAULT_FILES);
    w.write_rm(&[("P/R1", "open", 1, &["w/1"])]);
    let now = (MTIME + 60).to_string();
    let (out, r) = s3sync(&w, &[], &[("BLAT_NOW", &now)]);
    assert_exit(&out, 0);
    assert_eq!(r["skipped"][0]["reason"], "writable");
    assert!(keys(&b).is_empty());
    let later = (MTIME + 7200).to_string();
    let (out, r) = s3sync(&w, &[], &[("BLAT_NOW", &later)]);
    assert_exit(&out, 0);
    assert_eq!(pvs(&r["uploaded"]), ["w/1"]);
}

/// A bucket that held `a/1 keep/1 old/1 old/2 j/2 (+ j/current.txt)` and a
/// foreign object; the releases now want only `a/1` (+ pins).
fn aged_world(b: &Bucket, aging: &str) -> World {
    let w = s3_world(
        b,
        &format!("packages = [\"keep/1\", \"j/current\"]\n{aging}"),
    );
    for (p, v) in [
        ("a", "1"),
        ("keep", "1"),
        ("old", "1"),
        ("old", "2"),
        ("j", "2"),
    ] {
        w.release(p, v, MTIME);
    }
    w.alias("j", "current", "2");
    w.write_rm(&[("P/R1", "open", 1, &["a/1", "old/1", "old/2"])]);
    assert_exit(&s3sync(&w, &[], &[]).0, 0);
    put_bytes(&store(b), "packages/README.md", b"not a package", &[]);
    w.write_rm(&[("P/R1", "open", 1, &["a/1"]), ("P/EMPTY", "open", 1, &[])]);
    w
}

const ALL: [&str; 7] = [
    "packages/README.md",
    "packages/a/a_1.zip",
    "packages/j/current.txt",
    "packages/j/j_2.zip",
    "packages/keep/keep_1.zip",
    "packages/old/old_1.zip",
    "packages/old/old_2.zip",
];

#[test]
fn aging_immediate_removes_exactly_the_excess() {
    let Some(b) = bucket("immediate") else { return };
    let w = aged_world(&b, "[aging]\nmethod = \"immediate\"\nmax_delete = 1");
    assert_eq!(keys(&b), ALL);

    // Dry run: the plan, and no change.
    let (out, r) = s3sync(&w, &["--dry-run", "--force"], &[]);
    assert_exit(&out, 0);
    assert!(
        stderr(&out).contains("ci: would delete packages/old/old_1.zip"),
        "{}",
        stderr(&out)
    );
    assert_eq!(pvs(&r["deleted"]), ["old/1", "old/2"]);
    assert_eq!(keys(&b), ALL);

    // Two deletions, max_delete = 1: refused, nothing deleted, exit 3.
    let (out, r) = s3sync(&w, &[], &[]);
    assert_exit(&out, 3);
    assert!(
        r["failed"][0]["error"]
            .as_str()
            .unwrap()
            .contains("refused to delete 2 package-versions: more than max_delete = 1"),
        "{r}"
    );
    assert_eq!(keys(&b), ALL);
    // status: the refusal, no success since the first pass, nothing behind.
    let status = |w: &World| -> serde_json::Value {
        let out = w.blat(&["status", "--json"]);
        assert_exit(&out, 0);
        common::json(&out)[0].clone()
    };
    let st = status(&w);
    assert_eq!(st["sync_command"], "s3sync", "{st}");
    assert_eq!(st["aging_refused"]["packages"], 2, "{st}");
    assert_eq!(st["behind"]["packages"], 0, "{st}");
    let first_success = st["last_sync"].as_i64().unwrap();
    assert_eq!(st["runs"][0]["outcome"], "partial", "{st}");

    let (out, r) = s3sync(&w, &["--force"], &[]);
    assert_exit(&out, 0);
    assert_eq!(pvs(&r["deleted"]), ["old/1", "old/2"]);
    let st = status(&w);
    assert!(st["aging_refused"].is_null(), "{st}");
    assert!(st["last_sync"].as_i64().unwrap() >= first_success, "{st}");
    assert_eq!(st["runs"][0]["sent"], 0, "{st}");
    assert_eq!(requests(&r), only(&[("list", 1), ("delete", 2)]));
    let mut left: Vec<&str> = ALL.to_vec();
    left.retain(|k| !k.starts_with("packages/old/"));
    assert_eq!(keys(&b), left);
}

#[test]
fn empty_set_or_failing_release_source_deletes_nothing() {
    let Some(b) = bucket("empty") else { return };
    let w = aged_world(&b, "[aging]\nmethod = \"immediate\"");
    // The only wanted release is empty and there are no pins: empty set.
    let conf = w.config().join("targets/ci.conf");
    let text = fs::read_to_string(&conf).unwrap().replace(
        "packages = [\"keep/1\", \"j/current\"]",
        "releases = [\"P/EMPTY\"]",
    );
    fs::write(&conf, text).unwrap();
    let (out, r) = s3sync(&w, &[], &[]);
    assert_exit(&out, 0);
    assert!(
        stderr(&out).contains("the current set is empty: nothing is aged"),
        "{}",
        stderr(&out)
    );
    assert_eq!(pvs(&r["deleted"]), Vec::<String>::new());
    assert_eq!(keys(&b), ALL);

    // A release the Release Manager does not know: the pass fails, deletes nothing.
    let text = fs::read_to_string(&conf)
        .unwrap()
        .replace("P/EMPTY", "P/NOPE");
    fs::write(&conf, text).unwrap();
    let (out, _) = s3sync(&w, &[], &[]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("P/NOPE"), "{}", stderr(&out));
    assert_eq!(keys(&b), ALL);
}

#[test]
fn aging_master_marks_then_deletes_after_the_delay() {
    let Some(b) = bucket("master") else { return };
    let w = aged_world(&b, "[aging]\nmethod = \"master\"\nafter = \"1d\"");
    let t0 = 1_700_000_000i64;
    let at = |t: i64| t.to_string();
    let (out, r) = s3sync(&w, &[], &[("BLAT_NOW", &at(t0))]);
    assert_exit(&out, 0);
    assert_eq!(
        (r["marked"].as_u64(), pvs(&r["deleted"]).len()),
        (Some(2), 0)
    );
    // old/1 rejoins the set: its mark goes.
    w.write_rm(&[("P/R1", "open", 1, &["a/1", "old/1"])]);
    let (_, r) = s3sync(&w, &[], &[("BLAT_NOW", &at(t0 + 3600))]);
    assert_eq!(r["marked"], 0);
    w.write_rm(&[("P/R1", "open", 1, &["a/1"])]);
    let (out, r) = s3sync(&w, &[], &[("BLAT_NOW", &at(t0 + 2 * 86400))]);
    assert_exit(&out, 0);
    assert_eq!(
        pvs(&r["deleted"]),
        ["old/2"],
        "old/1 was marked afresh, old/2 is past the delay"
    );
    assert_eq!(r["marked"], 1);
    assert!(keys(&b).contains(&"packages/old/old_1.zip".to_string()));
    assert!(!keys(&b).contains(&"packages/old/old_2.zip".to_string()));
}

#[test]
fn dry_run_lists_and_changes_nothing() {
    let Some(b) = bucket("dry-run") else { return };
    let w = s3_world(&b, "");
    let a = w.release("a", "1", MTIME);
    w.write_rm(&[("P/R1", "open", 1, &["a/1"])]);
    assert_exit(&s3sync(&w, &[], &[]).0, 0);
    w.release("b", "1", MTIME);
    make_writable(&a);
    set_mtime(&a.join("descpkg"), MTIME + 1);
    make_read_only(&a);
    w.write_rm(&[("P/R1", "open", 1, &["a/1", "b/1"])]);
    let before = bucket_objects(&b);
    let out = w.blat(&["s3sync", "--target", "ci", "--dry-run"]);
    assert_exit(&out, 0);
    let plan = stdout(&out);
    assert!(
        plan.contains("ci: would upload packages/a/a_1.zip")
            && plan.contains("ci: would upload packages/b/b_1.zip"),
        "{plan}"
    );
    assert_eq!(bucket_objects(&b), before);
    // The state file learnt nothing either: the real pass does both.
    let (out, r) = s3sync(&w, &[], &[]);
    assert_exit(&out, 0);
    assert_eq!(pvs(&r["uploaded"]), ["a/1", "b/1"]);
}

#[test]
fn missing_bucket_and_missing_credentials_are_clear_errors() {
    let Some(b) = bucket("errors") else { return };
    let w = World::new();
    w.write_global("");
    w.release("a", "1", MTIME);
    w.write_rm(&[("P/R1", "open", 1, &["a/1"])]);
    let absent = Bucket {
        endpoint: b.endpoint.clone(),
        name: format!("{}-absent", b.name),
    };
    write_s3_target(&w, &absent, "");
    let out = w.blat(&["s3sync", "--target", "ci"]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains(&format!("bucket '{}' does not exist", absent.name)),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    write_s3_target(&w, &b, "");
    let home = w.path().join("home");
    fs::create_dir(&home).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_blat"));
    cmd.arg("-c")
        .arg(w.config())
        .args(["s3sync", "--target", "ci"]);
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd
        .env("HOME", &home)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("no credentials found"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// Starts a moto server that checks credentials (none are known to it, so
/// every key is wrong); killed on drop.
struct AuthServer {
    child: std::process::Child,
    endpoint: String,
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn auth_server() -> Option<AuthServer> {
    common::require("BLAT_TEST_S3_ENDPOINT", "an S3 server")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("python3")
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .env("INITIAL_NO_AUTH_ACTION_COUNT", "0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("cannot start moto_server: {e}")
        }
        Err(e) => {
            eprintln!("skipped: cannot start moto_server ({e})");
            return None;
        }
    };
    let server = AuthServer {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..300 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(server);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("moto_server with authentication did not start on port {port}");
}

#[test]
fn wrong_credentials_are_a_clear_error() {
    let Some(server) = auth_server() else { return };
    let w = World::new();
    w.write_global("");
    w.release("a", "1", MTIME);
    w.write_rm(&[("P/R1", "open", 1, &["a/1"])]);
    write_s3_target(
        &w,
        &Bucket {
            endpoint: server.endpoint.clone(),
            name: "blat-auth".into(),
        },
        "",
    );
    let out = w.blat_env(
        &["s3sync", "--target", "ci"],
        &[
            ("AWS_ACCESS_KEY_ID", "AKIAWRONG"),
            ("AWS_SECRET_ACCESS_KEY", "not-the-secret"),
        ],
    );
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("access denied (InvalidAccessKeyId): check the AWS credentials"),
        "{err}"
    );
    assert!(
        !err.contains("not-the-secret"),
        "a secret never shows: {err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn missing_source_archive_fails_the_pass_and_touches_nothing() {
    let Some(b) = bucket("noarchive") else { return };
    let w = s3_world(&b, "[aging]\nmethod = \"immediate\"\n");
    w.release("a", "1", MTIME);
    w.write_rm(&[("P/R1", "open", 1, &["a/1"])]);
    let (out, _) = s3sync(&w, &[], &[]);
    assert_exit(&out, 0);
    let before = bucket_objects(&b);
    let moved = w.path().join("archive.unmounted");
    fs::rename(w.archive(), &moved).unwrap();
    let (out, _) = s3sync(&w, &[], &[]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains(&format!(
            "ci: s3sync failed: source archive {} does not exist (`archive` in blat.toml)",
            w.archive().display()
        )),
        "{}",
        stderr(&out)
    );
    assert_eq!(bucket_objects(&b), before);
}

#[test]
fn dry_run_works_for_a_user_who_may_only_read_the_state_dir() {
    let Some(b) = bucket("readonly") else { return };
    let w = s3_world(&b, "[aging]\nmethod = \"master\"\n");
    w.release("a", "1", MTIME);
    w.release("b", "1", MTIME);
    w.write_rm(&[("P/R1", "open", 1, &["a/1"])]);
    let (out, _) = s3sync(&w, &[], &[]);
    assert_exit(&out, 0);
    w.write_rm(&[("P/R1", "open", 1, &["b/1"])]);
    let before = common::snapshot(&w.state());
    let out = w.blat_unprivileged(&["s3sync", "--target", "ci", "--dry-run"], &[]);
    assert_exit(&out, 0);
    for line in ["would upload packages/b/b_1.zip", "would mark a/1"] {
        assert!(
            stdout(&out).contains(line),
            "{line}: {}\n{}",
            stdout(&out),
            stderr(&out)
        );
    }
    assert_eq!(common::snapshot(&w.state()), before, "state dir changed");
    assert_eq!(keys(&b), ["packages/a/a_1.zip"]);
}
