//! What monitoring reads: `blat status --metrics` of a real run (failed
//! runs, pending and rejected tags, marks, refused aging) passes
//! `promtool check metrics`; `contrib/prometheus/blat.rules.yml` passes
//! `promtool check rules` and its unit tests, and uses only metrics blat
//! writes. promtool is Debian's `prometheus` package: under `CI=true` a
//! missing promtool fails these tests.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::{assert_exit, require_tool};
use crate::status::{busy_world, NOW};

fn contrib() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("contrib/prometheus")
}

/// Runs promtool with `args` (and `stdin`); returns its output, asserting
/// that it succeeded.
fn promtool(tool: &Path, args: &[&str], stdin: Option<&[u8]>) -> String {
    let mut child = Command::new(tool)
        .args(args)
        .current_dir(contrib())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.unwrap_or_default())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

/// The metrics file of the scenario of `status::busy_world`.
fn real_metrics() -> String {
    let w = busy_world();
    let file = w.path().join("textfile/blat.prom");
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    let out = w.blat_env(
        &["-q", "status", "--metrics", file.to_str().unwrap()],
        &[("BLAT_NOW", &NOW.to_string())],
    );
    assert_exit(&out, 0);
    // Replaced atomically: no temporary left beside it.
    let names: Vec<_> = fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["blat.prom"]);
    fs::read_to_string(&file).unwrap()
}

#[test]
fn metrics_of_a_real_run_say_what_an_alert_needs() {
    let prom = real_metrics();
    let version = env!("CARGO_PKG_VERSION");
    let last_sync = NOW - 3600;
    let first_sync = NOW - 7200;
    let due = NOW - 3600 + 86400;
    for line in [
        format!("blat_info{{version=\"{version}\"}} 1"),
        "# TYPE blat_last_success_timestamp_seconds gauge".to_string(),
        format!(
            "blat_last_success_timestamp_seconds{{target=\"site\",command=\"sync\"}} {last_sync}"
        ),
        // The refused aging failed aged's second sync: its success is the first.
        format!(
            "blat_last_success_timestamp_seconds{{target=\"aged\",command=\"sync\"}} {first_sync}"
        ),
        format!("blat_last_run_timestamp_seconds{{target=\"aged\",command=\"sync\"}} {last_sync}"),
        "blat_last_run_success{target=\"aged\",command=\"sync\"} 0".to_string(),
        "blat_last_run_outcome{target=\"aged\",command=\"sync\",outcome=\"failed\"} 1".to_string(),
        "blat_last_run_outcome{target=\"aged\",command=\"sync\",outcome=\"done\"} 0".to_string(),
        "blat_last_run_outcome{target=\"site\",command=\"fast\",outcome=\"failed\"} 1".to_string(),
        "blat_last_run_failed_packages{target=\"site\",command=\"fast\"} 1".to_string(),
        "blat_last_run_sent_packages{target=\"site\",command=\"sync\"} 0".to_string(),
        "blat_last_run_sent_bytes{target=\"site\",command=\"sync\"} 0".to_string(),
        "blat_sync_interval_seconds{target=\"site\"} 1200".to_string(),
        "blat_sync_interval_seconds{target=\"aged\"} 14400".to_string(),
        "blat_behind_packages{target=\"site\"} 1".to_string(),
        "blat_pending_tags{target=\"site\"} 1".to_string(),
        "blat_oldest_pending_tag_age_seconds{target=\"site\"} 600".to_string(),
        "blat_oldest_pending_tag_age_seconds{target=\"aged\"} 0".to_string(),
        "blat_rejected_tags{target=\"site\"} 1".to_string(),
        "blat_marked_packages{target=\"site\"} 2".to_string(),
        format!("blat_next_deletion_timestamp_seconds{{target=\"site\"}} {due}"),
        "blat_aging_refused_packages{target=\"aged\"} 2".to_string(),
        "blat_aging_refused_packages{target=\"site\"} 0".to_string(),
    ] {
        assert!(
            prom.lines().any(|l| l == line),
            "{line:?} missing in:\n{prom}"
        );
    }
    for prefix in [
        "blat_last_run_duration_seconds{target=\"site\",command=\"sync\"} ",
        "blat_target_free_bytes{target=\"site\"} ",
    ] {
        let value: f64 = prom
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("{prefix:?} missing in:\n{prom}"))
            .parse()
            .unwrap();
        assert!(value > 0.0, "{prefix}{value}");
    }
    // Prometheus naming: no counters, so no _total; units in the names.
    for line in prom.lines().filter(|l| l.starts_with("# TYPE ")) {
        assert!(line.ends_with(" gauge"), "{line}");
        assert!(!line.contains("_total "), "{line}");
    }
}

#[test]
fn promtool_accepts_the_metrics_of_a_real_run() {
    let Some(tool) = require_tool("promtool", "prometheus") else {
        return;
    };
    let prom = real_metrics();
    let out = promtool(&tool, &["check", "metrics"], Some(prom.as_bytes()));
    // Lint problems are printed (and fail the check); a clean file says nothing.
    assert!(
        out.trim().is_empty(),
        "promtool check metrics:\n{out}\n{prom}"
    );
}

#[test]
fn promtool_accepts_the_alert_rules_and_their_unit_tests() {
    let Some(tool) = require_tool("promtool", "prometheus") else {
        return;
    };
    let out = promtool(&tool, &["check", "rules", "blat.rules.yml"], None);
    assert!(out.contains("SUCCESS: 5 rules found"), "{out}");
    let out = promtool(&tool, &["test", "rules", "blat.rules.test.yml"], None);
    assert!(out.contains("SUCCESS"), "{out}");
}

/// The `blat_*` names an expression of the rules file uses.
fn names_in_rules() -> BTreeSet<String> {
    let rules = fs::read_to_string(contrib().join("blat.rules.yml")).unwrap();
    let mut names = BTreeSet::new();
    for line in rules.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let mut rest = line;
        while let Some(i) = rest.find("blat_") {
            let name: String = rest[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[i + name.len()..];
            names.insert(name);
        }
    }
    names
}

#[test]
fn the_alert_rules_use_only_metrics_blat_writes() {
    let prom = real_metrics();
    let written: BTreeSet<&str> = prom
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let used = names_in_rules();
    for name in [
        "blat_last_success_timestamp_seconds",
        "blat_sync_interval_seconds",
        "blat_oldest_pending_tag_age_seconds",
        "blat_rejected_tags",
        "blat_aging_refused_packages",
    ] {
        assert!(used.contains(name), "{name} not used by the rules");
    }
    for name in &used {
        assert!(
            written.contains(name.as_str()),
            "the rules use {name}, which blat does not write:\n{prom}"
        );
    }
}

/// The README's Monitoring section names every metric family and alert.
#[test]
fn the_readme_names_every_metric_and_alert() {
    let readme =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme
        .split("\n## Monitoring\n")
        .nth(1)
        .expect("README has a section Monitoring")
        .split("\n## ")
        .next()
        .unwrap();
    for line in blat::ops::status::metrics(&[]).lines() {
        if let Some(name) = line
            .strip_prefix("# TYPE ")
            .and_then(|l| l.split(' ').next())
        {
            assert!(
                section.contains(&format!("`{name}`")) || section.contains(&format!("`{name}{{")),
                "README's Monitoring lacks {name}"
            );
        }
    }
    let rules = fs::read_to_string(contrib().join("blat.rules.yml")).unwrap();
    for alert in rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        assert!(
            section.contains(&format!("`{alert}`")),
            "README lacks {alert}"
        );
    }
}
