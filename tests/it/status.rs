//! `blat status`: runs, tags, marks and the last error, as text, JSON and
//! Prometheus metrics.

use std::fs;

use crate::common::{assert_exit, stdout, World};

fn world() -> World {
    let w = World::new();
    w.release("a", "1.0", 1_700_000_000);
    w.write_global("");
    w.write_rm(&[("P/R1", "open", 0, &["a/1.0"])]);
    w.local_target("site", "projects = [\"P\"]\ntag_retries = 1\n");
    w
}

#[test]
fn status_shows_runs_tags_and_errors() {
    let w = world();
    assert_exit(&w.blat(&["sync", "--all"]), 0);
    // A tag for a package that does not exist is rejected by fast (after
    // tag_retries = 1 attempt).
    let tags = w.path().join("tags/site");
    fs::create_dir_all(&tags).unwrap();
    fs::write(tags.join("nope::1.0"), "").unwrap();
    w.blat(&["fast", "--all"]);
    fs::write(tags.join("a::1.0"), "").unwrap();
    // A failing sync leaves the last error.
    w.local_target("site", "releases = [\"P/GONE\"]\n");
    assert_exit(&w.blat(&["sync", "--all"]), 1);

    let metrics = w.path().join("blat.prom");
    let out = w.blat(&["status", "--json", "--metrics", metrics.to_str().unwrap()]);
    assert_exit(&out, 0);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let site = &v[0];
    assert_eq!(site["target"], "site");
    let sync = site["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["command"] == "sync")
        .unwrap();
    assert_eq!(sync["outcome"], "failed");
    assert_eq!(site["pending_tags"], serde_json::json!(["a::1.0"]));
    assert_eq!(site["rejected_tags"][0]["tag"], "nope::1.0");
    assert!(site["last_error"]["error"]
        .as_str()
        .unwrap()
        .contains("release P/GONE does not exist"));

    let prom = fs::read_to_string(&metrics).unwrap();
    for line in [
        "# TYPE blat_last_run_timestamp_seconds gauge",
        "blat_last_run_success{target=\"site\",command=\"sync\"} 0",
        "blat_pending_tags{target=\"site\"} 1",
        "blat_rejected_tags{target=\"site\"} 1",
        "blat_marked_packages{target=\"site\"} 0",
    ] {
        assert!(
            prom.lines().any(|l| l == line),
            "{line:?} missing in:\n{prom}"
        );
    }

    let text = stdout(&w.blat(&["status"]));
    assert!(text.starts_with("site (archive)\n"), "{text}");
    assert!(text.contains("tags: 1 pending, 1 rejected"), "{text}");
    assert!(text.contains("rejected nope::1.0: "), "{text}");
    assert!(
        text.contains("last error: ") && text.contains("sync: cannot read release P/GONE"),
        "{text}"
    );
}

#[test]
fn status_of_a_fresh_setup_is_empty_not_an_error() {
    let w = world();
    let out = w.blat(&["status", "--target", "site"]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("no runs yet"), "{}", stdout(&out));
}
