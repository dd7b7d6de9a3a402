//! `contrib/kubernetes/` and `contrib/container/Containerfile` (README,
//! "Splitting the master"), held to what they promise, as
//! `fast::contrib_schedules_use_commands_blat_accepts` holds cron and
//! systemd: every file parses as YAML; every container's command line (its
//! `command`/`args`, or the image's ENTRYPOINT/CMD where it has none)
//! parses with the real CLI; the ConfigMap loads with blat's configuration
//! loader; one CronJob per configured target, each `sync --target` it with
//! `concurrencyPolicy: Forbid`; one `fast --watch` Deployment (replicas 1,
//! Recreate); the SSH Secret read-only with mode 0400; each job's state on
//! a claim of its own and the archive read-only, where the configuration
//! says they are.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use clap::Parser;
use yaml_rust2::{Yaml, YamlLoader};

fn contrib() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib")
}

/// Every document of every `.yaml` file, with the file's name.
fn documents() -> Vec<(String, Yaml)> {
    let dir = contrib().join("kubernetes");
    let mut files: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        assert!(file.ends_with(".yaml"), "{file}: only .yaml files here");
        let text = fs::read_to_string(dir.join(&file)).unwrap();
        let docs = YamlLoader::load_from_str(&text)
            .unwrap_or_else(|e| panic!("contrib/kubernetes/{file} is not valid YAML: {e}"));
        assert!(!docs.is_empty(), "{file}");
        for doc in docs {
            assert!(
                doc["apiVersion"].as_str().is_some(),
                "{file}: no apiVersion"
            );
            assert!(doc["kind"].as_str().is_some(), "{file}: no kind");
            out.push((file.clone(), doc));
        }
    }
    out
}

fn str_of<'a>(y: &'a Yaml, what: &str) -> &'a str {
    y.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, found {y:?}"))
}

fn strings(y: &Yaml, what: &str) -> Vec<String> {
    y.as_vec()
        .unwrap_or_else(|| panic!("{what}: expected a list, found {y:?}"))
        .iter()
        .map(|s| str_of(s, what).to_string())
        .collect()
}

fn named<'a>(list: &'a Yaml, name: &str, what: &str) -> &'a Yaml {
    list.as_vec()
        .unwrap_or_else(|| panic!("{what}: expected a list"))
        .iter()
        .find(|v| v["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("{what}: no entry named {name}"))
}

/// The ENTRYPOINT and CMD of the container file, each a JSON array.
struct Image {
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    user: String,
    config: String,
}

fn image() -> Image {
    let path = contrib().join("container/Containerfile");
    let text = fs::read_to_string(&path).unwrap();
    let stages: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert!(
        stages.len() >= 2 && stages[0].ends_with(" AS build"),
        "a multi-stage build: {stages:?}"
    );
    assert!(
        stages.last().unwrap().contains("debian:") && stages.last().unwrap().contains("-slim"),
        "a Debian slim runtime: {stages:?}"
    );
    let runtime = &text[text.rfind("\nFROM ").unwrap()..];
    assert!(
        runtime.contains("openssh-client"),
        "the SSH client in the runtime"
    );
    let last = |key: &str| -> String {
        runtime
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("Containerfile: no {key}in the runtime stage"))
            .trim()
            .to_string()
    };
    let array = |key: &str| -> Vec<String> {
        let value = last(key);
        serde_json::from_str(&value).unwrap_or_else(|e| {
            panic!("Containerfile: {key}{value} is not a JSON array (exec form): {e}")
        })
    };
    let config = last("ENV BLAT_CONFIG=");
    Image {
        entrypoint: array("ENTRYPOINT "),
        cmd: array("CMD "),
        user: last("USER "),
        config,
    }
}

#[track_caller]
fn parses(what: &str, argv: &[String]) {
    assert!(
        argv.first()
            .is_some_and(|w| w == "blat" || w.ends_with("/blat")),
        "{what}: runs {argv:?}, not blat"
    );
    if let Err(e) = blat::cli::Cli::try_parse_from(argv) {
        panic!(
            "{what}: `{}` is not a valid blat command line: {e}",
            argv.join(" ")
        );
    }
}

/// The ConfigMap as a configuration directory: each item at its path.
fn load_config_map(
    docs: &[(String, Yaml)],
    items: &Yaml,
) -> (tempfile::TempDir, blat::config::Config) {
    let map = &docs
        .iter()
        .find(|(_, d)| d["kind"].as_str() == Some("ConfigMap"))
        .expect("a ConfigMap")
        .1;
    let dir = tempfile::tempdir().unwrap();
    for item in items.as_vec().expect("configMap items") {
        let key = str_of(&item["key"], "item key");
        let path = dir.path().join(str_of(&item["path"], "item path"));
        let text = str_of(&map["data"][key], &format!("ConfigMap data {key}"));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
    }
    let config = blat::config::Config::load(dir.path())
        .unwrap_or_else(|e| panic!("the ConfigMap does not load as a blat configuration: {e:#}"));
    (dir, config)
}

/// A pod's blat command line and the claim its state is on.
struct Pod {
    argv: Vec<String>,
    claim: String,
}

/// What a pod spec promises, checked against the configuration it mounts.
fn check_pod(what: &str, pod: &Yaml, docs: &[(String, Yaml)], image: &Image) -> Pod {
    let uid = pod["securityContext"]["runAsUser"].as_i64();
    assert_eq!(
        uid.map(|u| u.to_string()),
        image.user.split(':').next().map(String::from),
        "{what}: runAsUser is the image's USER"
    );
    assert_eq!(
        pod["securityContext"]["runAsNonRoot"].as_bool(),
        Some(true),
        "{what}"
    );
    let containers = pod["containers"].as_vec().expect("containers");
    assert_eq!(containers.len(), 1, "{what}");
    let c = &containers[0];
    let mut argv = match &c["command"] {
        Yaml::BadValue => image.entrypoint.clone(),
        command => strings(command, what),
    };
    argv.extend(match &c["args"] {
        Yaml::BadValue => image.cmd.clone(),
        args => strings(args, what),
    });
    parses(what, &argv);

    let config_dir = named(&c["env"], "BLAT_CONFIG", what)["value"]
        .as_str()
        .unwrap_or(&image.config)
        .to_string();
    let mount = |name: &str| -> (String, bool) {
        let m = named(&c["volumeMounts"], name, what);
        (
            str_of(&m["mountPath"], what).to_string(),
            m["readOnly"].as_bool() == Some(true),
        )
    };
    let volume = |name: &str| named(&pod["volumes"], name, what).clone();

    let (at, ro) = mount("config");
    assert_eq!(
        (at.as_str(), ro),
        (config_dir.as_str(), true),
        "{what}: config"
    );
    let config_volume = volume("config");
    let (_dir, config) = load_config_map(docs, &config_volume["configMap"]["items"]);

    let (ssh_at, ro) = mount("ssh");
    assert!(ro, "{what}: the SSH Secret is mounted read-only");
    let ssh = volume("ssh");
    assert!(ssh["secret"]["secretName"].as_str().is_some(), "{what}");
    assert_eq!(
        ssh["secret"]["defaultMode"].as_i64(),
        Some(0o400),
        "{what}: mode 0400"
    );
    for target in &config.targets {
        let archive = target.archive().expect("archive targets");
        if let blat::config::Transport::Ssh(s) = &archive.transport {
            for file in [&s.identity, &s.known_hosts] {
                assert!(
                    file.starts_with(&ssh_at),
                    "{what}: {}'s {} is not in the SSH Secret at {ssh_at}",
                    target.name,
                    file.display()
                );
            }
        }
    }

    let (state_at, ro) = mount("state");
    assert!(!ro, "{what}: the state is written");
    let claim = volume("state")["persistentVolumeClaim"]["claimName"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: the state is on a claim"))
        .to_string();
    assert_eq!(
        Path::new(&state_at),
        config.state_dir,
        "{what}: state_dir is on the claim"
    );
    assert!(
        config.tag_dir.starts_with(&state_at),
        "{what}: tag_dir is on the claim"
    );

    let (archive_at, ro) = mount("archive");
    assert!(ro, "{what}: the archive is mounted read-only");
    assert_eq!(
        volume("archive")["persistentVolumeClaim"]["readOnly"].as_bool(),
        Some(true),
        "{what}"
    );
    assert_eq!(Path::new(&archive_at), config.archive, "{what}: archive");

    assert_eq!(
        c["securityContext"]["allowPrivilegeEscalation"].as_bool(),
        Some(false),
        "{what}"
    );
    Pod { argv, claim }
}

#[test]
fn kubernetes_manifests_run_blat_command_lines_and_one_sync_job_per_target() {
    let docs = documents();
    let image = image();
    let mut argv = image.entrypoint.clone();
    argv.extend(image.cmd.clone());
    parses("Containerfile ENTRYPOINT + CMD", &argv);
    assert!(
        !["0", "root"].contains(&image.user.split(':').next().unwrap()),
        "the image runs as a non-root user, not {}",
        image.user
    );

    // kustomization.yaml lists every other file.
    let kustomization = &docs
        .iter()
        .find(|(_, d)| d["kind"].as_str() == Some("Kustomization"))
        .expect("a kustomization.yaml")
        .1;
    let listed: BTreeSet<String> = strings(&kustomization["resources"], "resources")
        .into_iter()
        .collect();
    let files: BTreeSet<String> = docs
        .iter()
        .map(|(f, _)| f.clone())
        .filter(|f| f != "kustomization.yaml")
        .collect();
    assert_eq!(listed, files, "kustomization.yaml resources");

    let mut synced = BTreeSet::new();
    let mut watchers = 0;
    let mut configured = BTreeSet::new();
    let mut state_claims = Vec::new();
    for (file, doc) in &docs {
        let name = doc["metadata"]["name"].as_str().unwrap_or(file);
        let what = format!("{file}: {name}");
        match doc["kind"].as_str().unwrap() {
            "CronJob" => {
                assert_eq!(
                    doc["spec"]["concurrencyPolicy"].as_str(),
                    Some("Forbid"),
                    "{what}"
                );
                let pod = &doc["spec"]["jobTemplate"]["spec"]["template"]["spec"];
                assert_eq!(pod["restartPolicy"].as_str(), Some("Never"), "{what}");
                let Pod { argv, claim } = check_pod(&what, pod, &docs, &image);
                state_claims.push(claim);
                let words: Vec<&str> = argv.iter().map(String::as_str).collect();
                let at = words
                    .iter()
                    .position(|w| *w == "--target")
                    .expect("--target");
                assert!(
                    words.contains(&"sync") && !words.contains(&"--all"),
                    "{what}: {words:?}"
                );
                assert!(
                    synced.insert(words[at + 1].to_string()),
                    "{what}: a second job for {}",
                    words[at + 1]
                );
                let items = &named(&pod["volumes"], "config", &what)["configMap"]["items"];
                let (_dir, config) = load_config_map(&docs, items);
                configured.extend(config.targets.iter().map(|t| t.name.clone()));
            }
            "Deployment" => {
                assert_eq!(doc["spec"]["replicas"].as_i64(), Some(1), "{what}");
                assert_eq!(
                    doc["spec"]["strategy"]["type"].as_str(),
                    Some("Recreate"),
                    "{what}"
                );
                let Pod { argv, claim } =
                    check_pod(&what, &doc["spec"]["template"]["spec"], &docs, &image);
                state_claims.push(claim);
                assert!(
                    argv.contains(&"fast".to_string()) && argv.contains(&"--watch".to_string()),
                    "{what}: {argv:?}"
                );
                watchers += 1;
            }
            "ConfigMap" | "PersistentVolumeClaim" | "Kustomization" => {}
            other => panic!("{what}: unexpected kind {other}"),
        }
    }
    assert_eq!(watchers, 1, "one fast --watch Deployment");
    // SQLite's WAL must not be shared by machines: a state claim per job,
    // each one ReadWriteOnce and defined here.
    let unique: BTreeSet<&String> = state_claims.iter().collect();
    assert_eq!(
        unique.len(),
        state_claims.len(),
        "a state claim shared: {state_claims:?}"
    );
    for claim in &state_claims {
        let pvc = &docs
            .iter()
            .find(|(_, d)| {
                d["kind"].as_str() == Some("PersistentVolumeClaim")
                    && d["metadata"]["name"].as_str() == Some(claim)
            })
            .unwrap_or_else(|| panic!("no PersistentVolumeClaim {claim}"))
            .1;
        assert_eq!(
            strings(&pvc["spec"]["accessModes"], claim),
            ["ReadWriteOnce"],
            "{claim}"
        );
    }
    assert!(synced.len() >= 2, "an example with two targets: {synced:?}");
    assert_eq!(
        synced, configured,
        "one sync CronJob for each configured target"
    );
}
