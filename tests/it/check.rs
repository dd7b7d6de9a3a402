//! `blat check` against the real servers: an SSH target on the sshd
//! fixture (everything holds, and each failure provoked once: unknown host
//! key, wrong key, missing or stale receiver under a forced command,
//! unwritable or missing archive, min_free), the Release Manager (a
//! release and a project that do not exist, over SQLite and over ODBC with
//! PostgreSQL), a local target, and S3 on moto (a missing bucket, no
//! credentials, the probe object). Also `blat ssh` through the same
//! fixture. A check never changes the target.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};

use blat::target::RECEIVER;
use serde_json::Value;

use crate::common::{self, assert_exit, stderr, stdout, World};
use crate::sshd::{keygen, public_key, Sshd};

const T0: i64 = 1_700_000_000;

/// A world with project P (a, b), release Q/R1 (c) and the SSH target
/// `site` on `sshd` wanting both.
fn world(sshd: &Sshd, extra: &str) -> World {
    let w = World::new();
    w.release("a", "1.0", T0);
    w.release("b", "2.0", T0 + 10);
    w.release("c", "3.0", T0 + 20);
    w.write_global("");
    w.write_rm(&[
        ("P/R1", "open", 0, &["a/1.0", "b/2.0"]),
        ("P/OLD", "closed", 0, &["a/1.0"]),
        ("Q/R1", "open", 0, &["c/3.0"]),
    ]);
    sshd.write_target(
        &w,
        "site",
        &format!("projects = [\"P\"]\nreleases = [\"Q/R1\"]\n{extra}"),
    );
    w
}

fn check(w: &World, args: &[&str]) -> Output {
    let mut all = vec!["check"];
    all.extend_from_slice(args);
    w.blat(&all)
}

/// The report of `blat check --json`.
fn json(w: &World, args: &[&str]) -> (Output, Value) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = check(w, &all);
    let v = common::json(&out);
    (out, v)
}

/// The line of check `name` of `scope`, which must be there.
#[track_caller]
fn line<'a>(out: &'a str, scope: &str, name: &str) -> &'a str {
    let needle = format!("  {scope}: {name}: ");
    out.lines()
        .find(|l| l.contains(&needle))
        .unwrap_or_else(|| panic!("no {scope}: {name} line in:\n{out}"))
}

#[track_caller]
fn assert_line(out: &Output, scope: &str, name: &str, status: &str, needles: &[&str]) {
    let text = stdout(out);
    let l = line(&text, scope, name);
    assert!(
        l.starts_with(status),
        "{scope}: {name} is not {status}:\n{text}"
    );
    for n in needles {
        assert!(l.contains(n), "{scope}: {name} lacks {n:?}: {l}");
    }
}

// ------------------------------------------------------------ SSH targets

#[test]
fn everything_holds_on_a_new_ssh_target_and_nothing_changes() {
    let Some(sshd) = Sshd::start() else { return };
    let w = world(&sshd, "compression = \"gzip\"\nmin_free = \"1m\"");
    let out = check(&w, &["--target", "site"]);
    assert_exit(&out, 0);
    let port = sshd.port;
    for (name, needles) in [
        ("identity", Vec::<String>::new()),
        ("known_hosts", vec![]),
        ("dns", vec!["127.0.0.1 is 127.0.0.1".into()]),
        ("tcp", vec![format!("port {port} answers")]),
        ("ssh handshake", vec!["OpenSSH".to_string()]),
        ("host key", vec!["ssh-ed25519 SHA256:".to_string()]),
        ("key accepted", vec![format!("lets {}", sshd.user)]),
        (
            "receiver",
            vec!["is not there".into(), "the next sync installs it".into()],
        ),
        (
            "archive",
            vec![format!("{} exists", sshd.archive().display())],
        ),
        ("free space", vec!["more than min_free 1.0 MiB".into()]),
        (
            "project P",
            vec!["1 not-closed release (R1), 2 package-versions".into()],
        ),
        ("release Q/R1", vec!["1 package-versions".into()]),
    ] {
        let needles: Vec<&str> = needles.iter().map(|s| s.as_ref()).collect();
        assert_line(&out, "site", name, "ok", &needles);
    }
    for scope in ["config", "source archive", "release manager"] {
        assert!(
            stdout(&out).contains(&format!("ok    {scope}: ")),
            "{}",
            stdout(&out)
        );
    }
    assert!(stderr(&out).contains("check done: "), "{}", stderr(&out));
    // The line that lets the key in, forced command and all, for the
    // target user's home there.
    let wanted = format!(
        "restrict,command=\"{}/.blat/blat-receiver\" {}",
        sshd.home.display(),
        public_key(&sshd.identity)
    );
    assert!(
        stdout(&out).lines().any(|l| l.trim() == wanted),
        "no authorized_keys line {wanted:?} in:\n{}",
        stdout(&out)
    );
    sshd.assert_untouched();

    // --json: the same checks, the line, and nothing but JSON on stdout.
    let (out, v) = json(&w, &["--target", "site"]);
    assert_exit(&out, 0);
    assert_eq!(v["outcome"], "done");
    assert_eq!(v["exit_code"], 0);
    let checks = v["checks"].as_array().unwrap();
    assert!(checks.iter().all(|c| c["status"] == "ok"), "{v:#}");
    assert!(checks
        .iter()
        .any(|c| c["scope"] == "site" && c["check"] == "host key"));
    assert_eq!(v["authorized_keys"][0]["line"], wanted.as_str());
    assert_eq!(v["authorized_keys"][0]["home_assumed"], false);
    sshd.assert_untouched();

    // After a sync the receiver is there and current.
    assert_exit(&w.blat(&["sync", "--target", "site"]), 0);
    let out = check(&w, &["--target", "site"]);
    assert_exit(&out, 0);
    assert_line(
        &out,
        "site",
        "receiver",
        "ok",
        &["is current", "the key is not restricted"],
    );
}

#[test]
fn unknown_host_key_fails_with_the_keyscan_hint() {
    let Some(sshd) = Sshd::start() else { return };
    let w = world(&sshd, "");
    let key = sshd.host_key("ed25519");
    fs::write(&sshd.known_hosts, format!("127.0.0.1 {key}\n")).unwrap();
    let out = check(&w, &["--target", "site"]);
    assert_exit(&out, 1);
    let port = sshd.port;
    assert_line(&out, "site", "ssh handshake", "ok", &[]);
    assert_line(
        &out,
        "site",
        "host key",
        "FAIL",
        &[
            &format!("unknown host [127.0.0.1]:{port}"),
            &format!(
                "ssh-keyscan -p {port} 127.0.0.1 >> {}",
                sshd.known_hosts.display()
            ),
        ],
    );
    assert_line(&out, "site", "receiver", "skip", &["no login"]);
    assert!(stderr(&out).contains("check failed: "), "{}", stderr(&out));
    // The authorized_keys line is still shown (the home assumed).
    assert!(
        stdout(&out).contains("(home assumed; the target did not say)"),
        "{}",
        stdout(&out)
    );
    sshd.assert_untouched();
}

#[test]
fn a_key_the_target_refuses_fails_at_key_accepted() {
    let Some(sshd) = Sshd::start() else { return };
    let w = world(&sshd, "");
    let stranger = keygen(&sshd.path().join("stranger"), "ed25519");
    sshd.write_site_with_identity(&w, &stranger, "");
    let out = check(&w, &["--target", "site"]);
    assert_exit(&out, 1);
    assert_line(&out, "site", "host key", "ok", &[]);
    assert_line(
        &out,
        "site",
        "key accepted",
        "FAIL",
        &[
            &format!("refused the key {}", stranger.display()),
            "authorized_keys line printed below",
        ],
    );
    // The line printed holds the stranger's public key: installing it is the fix.
    let stranger_line = public_key(&stranger);
    assert!(stdout(&out).contains(&stranger_line), "{}", stdout(&out));
    sshd.assert_untouched();
}

#[test]
fn forced_command_keys_missing_stale_and_current_receivers() {
    let Some(sshd) = Sshd::start() else { return };
    let w = world(&sshd, "");
    let key = keygen(&sshd.path().join("id_forced"), "ed25519");
    // No .pub: check derives the public key from the private one.
    let public = public_key(&key);
    fs::remove_file(key.with_extension("pub")).unwrap();
    sshd.write_site_with_identity(&w, &key, "");
    // The line check prints is the one to install: do exactly that.
    let out = check(&w, &["--target", "site"]);
    assert_exit(&out, 1);
    let text = stdout(&out);
    let printed = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("restrict,command="))
        .unwrap_or_else(|| panic!("no authorized_keys line:\n{text}"))
        .to_string();
    let mut words = public.split_whitespace();
    let (kind, blob) = (words.next().unwrap(), words.next().unwrap());
    assert!(printed.ends_with(&format!("{kind} {blob}")), "{printed}");
    assert_line(&out, "site", "public key", "ok", &["derived from"]);
    // Not logged in, check could not ask the target for the home: it says
    // it assumed /home/USER, and the operator puts the real one.
    assert!(
        text.contains("(home assumed; the target did not say)"),
        "{text}"
    );
    let assumed = format!(
        "restrict,command=\"/home/{}/.blat/blat-receiver\" ",
        sshd.user
    );
    assert!(printed.starts_with(&assumed), "{printed}");
    sshd.authorize(&printed.replace(
        &format!("/home/{}/", sshd.user),
        &format!("{}/", sshd.home.display()),
    ));

    // Missing receiver: a restricted key cannot put it there.
    let out = check(&w, &["--target", "site"]);
    assert_exit(&out, 1);
    assert_line(
        &out,
        "site",
        "receiver",
        "FAIL",
        &[
            "is not there",
            "restricted to a forced command",
            "install -d -o",
        ],
    );
    assert_line(&out, "site", "archive", "skip", &[]);
    assert!(!sshd.receiver().exists());

    // A stale one that may not update itself.
    let stale = format!("{RECEIVER}\n# an older receiver\n");
    sshd.plant_receiver(&stale);
    let out = check(&w, &["--target", "site"]);
    assert_exit(&out, 1);
    assert_line(
        &out,
        "site",
        "receiver",
        "FAIL",
        &["another version", "does not say --allow-install"],
    );
    assert_eq!(fs::read_to_string(sshd.receiver()).unwrap(), stale);
    let blat_dir: Vec<_> = fs::read_dir(sshd.receiver().parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(blat_dir.len(), 1, "temporaries left: {blat_dir:?}");

    // Current: everything holds, and check says the key is a forced command.
    sshd.plant_receiver(RECEIVER);
    let out = check(&w, &["--target", "site"]);
    assert_exit(&out, 0);
    assert_line(
        &out,
        "site",
        "receiver",
        "ok",
        &["is current", "the key is a forced command"],
    );
    assert_line(&out, "site", "archive", "ok", &[]);
    assert_exit(&w.blat(&["sync", "--target", "site"]), 0);
}

#[test]
fn a_forced_command_with_allow_install_lets_the_next_sync_update() {
    let Some(sshd) = Sshd::start() else { return };
    let w = world(&sshd, "");
    sshd.forced_key(&w, " --allow-install");
    let stale = format!("{RECEIVER}\n# an older receiver\n");
    sshd.plant_receiver(&stale);
    let out = check(&w, &["--target", "site"]);
    assert_exit(&out, 1); // the archive cannot be looked at through a stale receiver
    assert_line(
        &out,
        "site",
        "receiver",
        "ok",
        &["another version", "says --allow-install"],
    );
    // The probe left the receiver as it was, and no temporary beside it.
    assert_eq!(fs::read_to_string(sshd.receiver()).unwrap(), stale);
    assert_eq!(
        fs::read_dir(sshd.receiver().parent().unwrap())
            .unwrap()
            .count(),
        1
    );
    assert_exit(&w.blat(&["sync", "--target", "site"]), 0);
    let out = check(&w, &["--target", "site"]);
    assert_exit(&out, 0);
    assert_line(&out, "site", "receiver", "ok", &["--allow-install"]);
}

#[test]
fn unwritable_or_missing_archive_fails() {
    let Some(sshd) = Sshd::start() else { return };
    let w = world(&sshd, "");
    fs::set_permissions(sshd.archive(), fs::Permissions::from_mode(0o555)).unwrap();
    let out = check(&w, &["--target", "site"]);
    fs::set_permissions(sshd.archive(), fs::Permissions::from_mode(0o755)).unwrap();
    if sshd.user == "root" {
        return; // root writes anything
    }
    assert_exit(&out, 1);
    assert_line(
        &out,
        "site",
        "archive",
        "FAIL",
        &[
            &format!("archive {} is not writable", sshd.archive().display()),
            &format!("chown -R {}", sshd.user),
        ],
    );
    assert_line(&out, "site", "free space", "ok", &[]);

    // A package directory the user may not write into.
    let pkg = sshd.archive().join("a");
    fs::create_dir(&pkg).unwrap();
    fs::set_permissions(&pkg, fs::Permissions::from_mode(0o555)).unwrap();
    let out = check(&w, &["--target", "site"]);
    fs::remove_dir(&pkg).unwrap();
    assert_exit(&out, 1);
    assert_line(
        &out,
        "site",
        "archive",
        "FAIL",
        &["1 package directory is not writable", "/a)"],
    );

    // No archive at all.
    let w2 = world(&sshd, "remote_archive = \"no_such_archive\"");
    let out = check(&w2, &["--target", "site"]);
    assert_exit(&out, 1);
    assert_line(
        &out,
        "site",
        "archive",
        "FAIL",
        &["no_such_archive does not exist", "install -d -o"],
    );
    assert_line(&out, "site", "free space", "skip", &[]);
    assert!(!sshd.home.join("no_such_archive").exists());
}

#[test]
fn min_free_not_met_fails_and_zstd_is_checked() {
    let Some(sshd) = Sshd::start() else { return };
    let w = world(&sshd, "min_free = \"8589934591g\"\ncompression = \"zstd\"");
    let out = check(&w, &["--target", "site"]);
    assert_exit(&out, 1);
    assert_line(
        &out,
        "site",
        "free space",
        "FAIL",
        &["not more than min_free", "lower `min_free`"],
    );
    let has_zstd = Command::new("zstd")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert_line(
        &out,
        "site",
        "zstd",
        if has_zstd { "ok" } else { "FAIL" },
        &[],
    );
}

// ------------------------------------------------------------ Release Manager, config

#[test]
fn a_missing_release_or_project_fails_with_its_name() {
    let w = World::new();
    w.release("a", "1.0", T0);
    w.write_global("");
    w.write_rm(&[("P/R1", "open", 0, &["a/1.0"])]);
    w.local_target(
        "site",
        "releases = [\"P/R1\", \"P/NOPE\"]\nprojects = [\"GONE\"]\npackages = [\"a/1.0\", \"zz/9\"]",
    );
    let out = check(&w, &["--all"]);
    assert_exit(&out, 1);
    assert_line(&out, "site", "release P/R1", "ok", &["1 package-versions"]);
    assert_line(
        &out,
        "site",
        "release P/NOPE",
        "FAIL",
        &["release P/NOPE does not exist", "correct `releases`"],
    );
    assert_line(
        &out,
        "site",
        "project GONE",
        "FAIL",
        &["project GONE does not exist", "correct `projects`"],
    );
    assert_line(&out, "site", "pins", "FAIL", &["zz/9"]);
    // A local target whose directory does not exist yet: the first sync makes it.
    assert_line(&out, "site", "archive", "ok", &["does not exist yet"]);
    assert!(!w.target_dir("site").exists(), "check created the target");
    assert!(!w.state().exists(), "check created the state directory");
}

#[test]
fn a_config_that_does_not_parse_is_a_failed_check_and_unknown_targets_are_usage_errors() {
    let w = World::new();
    w.write_global("");
    w.write_rm(&[]);
    w.write_target("bad", "kind = \"archive\"\nparallel = 99\n");
    let out = check(&w, &[]);
    assert_exit(&out, 1);
    assert_line(&out, "config", "parses", "FAIL", &["bad.conf:2:12", "fix:"]);

    fs::remove_file(w.config().join("targets/bad.conf")).unwrap();
    let out = check(&w, &["--target", "nosuch"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("unknown target 'nosuch'"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_unwritable_local_target_fails() {
    if common::is_root() {
        // root may write anywhere; run unprivileged to see the failure.
        let w = World::new();
        w.release("a", "1.0", T0);
        w.write_global("");
        w.write_rm(&[("P/R1", "open", 0, &["a/1.0"])]);
        let blocked = w.path().join("blocked");
        fs::create_dir(&blocked).unwrap();
        fs::set_permissions(&blocked, fs::Permissions::from_mode(0o555)).unwrap();
        w.write_target(
            "site",
            &format!(
                "kind = \"archive\"\ntransport = \"local\"\npath = \"{}/x/dpkg_archive\"\nprojects = [\"P\"]\n",
                blocked.display()
            ),
        );
        common::give_unprivileged(&w.config());
        let out = w.blat_unprivileged(&["check", "--all"], &[]);
        assert_exit(&out, 1);
        assert_line(
            &out,
            "site",
            "archive",
            "FAIL",
            &["blat may not create it", "is not writable", "install -d"],
        );
    }
}

#[cfg(feature = "odbc")]
#[test]
fn odbc_release_manager_missing_release_and_unreachable_server() {
    use crate::release_suite::PgDatabase;
    let Some(server) = common::require("BLAT_TEST_PG", "PostgreSQL") else {
        return;
    };
    let w = World::new();
    w.release("a", "1.0", T0);
    let db = PgDatabase::new(&server, &common::rm_sql(&[("P/R1", "open", 0, &["a/1.0"])]));
    let write = |connection_string: &str| {
        fs::write(
            w.config().join("blat.toml"),
            format!(
                "archive = \"{}\"\nstate_dir = \"{}\"\n[release_manager]\nkind = \"odbc\"\nconnection_string = \"{}\"\nlogin_timeout = \"5s\"\n",
                w.archive().display(),
                w.state().display(),
                connection_string.replace('\\', "\\\\").replace('"', "\\\"")
            ),
        )
        .unwrap()
    };
    write(&db.connection_string);
    w.local_target(
        "site",
        "releases = [\"P/R1\", \"P/MISSING\"]\nprojects = [\"P\"]",
    );
    let out = check(&w, &["--all"]);
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("ok    release manager: reachable: "),
        "{}",
        stdout(&out)
    );
    assert_line(&out, "site", "release P/R1", "ok", &["1 package-versions"]);
    assert_line(
        &out,
        "site",
        "release P/MISSING",
        "FAIL",
        &["does not exist"],
    );
    assert_line(
        &out,
        "site",
        "project P",
        "ok",
        &["1 not-closed release (R1)"],
    );

    // A server that is not there: one failed check, the releases skipped.
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    write(&crate::release_suite::with_attribute(
        &db.connection_string,
        "Port",
        &nowhere,
    ));
    let out = check(&w, &["--all"]);
    assert_exit(&out, 1);
    assert_line(
        &out,
        "release manager",
        "reachable",
        "FAIL",
        &["fix: check [release_manager]"],
    );
    assert_line(&out, "site", "releases", "skip", &["not reachable"]);
    let (_, password) = crate::release_suite::split_password(&db.connection_string);
    assert!(
        !stdout(&out)
            .to_lowercase()
            .contains(&format!("pwd={};", password.to_lowercase())),
        "password shown: {}",
        stdout(&out)
    );
}

// ------------------------------------------------------------ S3

#[cfg(feature = "s3")]
mod s3 {
    use super::*;

    fn s3_world(endpoint: &str, bucket: &str) -> World {
        let w = World::new();
        w.release("a", "1.0", T0);
        w.write_global("");
        w.write_rm(&[("P/R1", "open", 1, &["a/1.0"])]);
        w.write_target(
            "bucket",
            &format!(
                "kind = \"s3\"\nbucket = \"{bucket}\"\nprefix = \"pkgs/\"\nregion = \"us-east-1\"\nendpoint = \"{endpoint}\"\n"
            ),
        );
        w
    }

    fn bucket_name(test: &str) -> String {
        format!("blat-check-{test}-{}", std::process::id())
    }

    #[test]
    fn bucket_credentials_and_the_probe_object() {
        let Some(endpoint) = common::require("BLAT_TEST_S3_ENDPOINT", "an S3 server") else {
            return;
        };
        let name = bucket_name("probe");
        let w = s3_world(&endpoint, &name);

        // The bucket does not exist yet.
        let out = check(&w, &["--target", "bucket"]);
        assert_exit(&out, 1);
        assert_line(&out, "bucket", "credentials", "ok", &["Environment"]);
        assert_line(
            &out,
            "bucket",
            "bucket",
            "FAIL",
            &[
                &format!("bucket '{name}' does not exist"),
                "create the bucket",
            ],
        );
        assert_line(&out, "bucket", "write", "skip", &[]);
        assert_line(
            &out,
            "bucket",
            "s3sync releases",
            "ok",
            &["1 release flagged s3sync, 1 package-versions"],
        );

        let (rt, client) = (crate::s3::runtime(), crate::s3::sdk(&endpoint));
        rt.block_on(client.create_bucket().bucket(&name).send())
            .unwrap();
        let out = check(&w, &["--target", "bucket"]);
        assert_exit(&out, 0);
        assert_line(&out, "bucket", "bucket", "ok", &["can be listed"]);
        assert_line(
            &out,
            "bucket",
            "write",
            "ok",
            &["pkgs/.blat-check-", "written and removed"],
        );
        let left = rt
            .block_on(client.list_objects_v2().bucket(&name).send())
            .unwrap();
        assert_eq!(left.contents().len(), 0, "the probe object stayed");
        // No secret in the output.
        assert!(!stdout(&out).contains("testing"), "{}", stdout(&out));

        // No credentials anywhere in the chain.
        let home = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_blat"));
        cmd.arg("-c")
            .arg(w.config())
            .args(["check", "--target", "bucket"])
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .env_remove("BLAT_CONFIG")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", home.path().join("none"))
            .env("AWS_SHARED_CREDENTIALS_FILE", home.path().join("none"))
            .env("HOME", home.path());
        let out = cmd.output().unwrap();
        assert_exit(&out, 1);
        assert_line(
            &out,
            "bucket",
            "credentials",
            "FAIL",
            &["no AWS credentials", "AWS_ACCESS_KEY_ID"],
        );
        assert_line(&out, "bucket", "bucket", "skip", &[]);
    }
}

// ------------------------------------------------------------ blat ssh

fn blat_ssh(w: &World, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_blat"));
    cmd.arg("-c")
        .arg(w.config())
        .arg("ssh")
        .args(args)
        .env_remove("BLAT_CONFIG")
        .stdin(Stdio::null());
    cmd.output().unwrap()
}

#[test]
fn blat_ssh_runs_commands_as_the_target_user_with_its_settings() {
    let Some(sshd) = Sshd::start() else { return };
    let w = world(&sshd, "");
    assert_exit(&blat_ssh(&w, &["site", "true"]), 0);
    let out = blat_ssh(&w, &["site", "echo", "hi"]);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "hi\n");
    // The target user, in its home; options after the target are the command's.
    let out = blat_ssh(&w, &["site", "id", "-un;", "echo", "$HOME"]);
    assert_exit(&out, 0);
    assert_eq!(
        stdout(&out),
        format!("{}\n{}\n", sshd.user, sshd.home.display())
    );
    // ssh's exit code is blat's.
    assert_exit(&blat_ssh(&w, &["site", "exit", "3"]), 3);

    // Host keys are checked against the target's known_hosts only.
    fs::write(&sshd.known_hosts, "").unwrap();
    let out = blat_ssh(&w, &["site", "true"]);
    assert_exit(&out, 255);
    assert!(
        stderr(&out).contains("Host key verification failed"),
        "{}",
        stderr(&out)
    );

    // Not an SSH target, or no target: usage errors.
    w.local_target("local", "");
    let out = blat_ssh(&w, &["local", "true"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("target 'local' is not an SSH target"));
    assert_exit(&blat_ssh(&w, &["nosuch"]), 2);
}
