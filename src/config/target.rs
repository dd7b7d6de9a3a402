//! `targets/<name>.conf`: one target's file, parsed and checked key by key
//! (its kind, transport, selection and aging), every error at its line.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use toml::Spanned;

use serde::Deserialize;

use super::{
    paths_overlap, read, Aging, AgingMethod, ArchiveTarget, Compression, DeltaMode, DurationValue,
    JumpHost, ReleaseName, S3Target, SizeValue, Source, SshClient, SshConfig, TargetConfig,
    TargetKind, Transport,
};
use crate::archive::PackageVersion;
use crate::error::UsageError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    kind: Spanned<String>,
    // archive targets
    transport: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
    host: Option<Spanned<String>>,
    port: Option<u16>,
    user: Option<Spanned<String>>,
    identity: Option<Spanned<String>>,
    known_hosts: Option<Spanned<String>>,
    remote_archive: Option<Spanned<String>>,
    connect_timeout: Option<DurationValue>,
    io_timeout: Option<DurationValue>,
    jump: Option<Spanned<String>>,
    ssh_client: Option<Spanned<String>>,
    compression: Option<Spanned<String>>,
    min_free: Option<SizeValue>,
    delta: Option<Spanned<String>>,
    bwlimit: Option<SizeValue>,
    verify_every: Option<Spanned<u32>>,
    // s3 targets
    bucket: Option<Spanned<String>>,
    prefix: Option<Spanned<String>>,
    region: Option<String>,
    endpoint: Option<String>,
    // both
    parallel: Option<Spanned<i64>>,
    #[serde(default)]
    releases: Vec<Spanned<String>>,
    #[serde(default)]
    projects: Vec<Spanned<String>>,
    #[serde(default)]
    packages: Vec<Spanned<String>>,
    writable_grace: Option<DurationValue>,
    sync_interval: Option<DurationValue>,
    tag_retries: Option<u32>,
    aging: Option<RawAging>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAging {
    method: Spanned<String>,
    after: Option<DurationValue>,
    max_delete: Option<usize>,
}

/// Reads every `DIR/targets/*.conf`, sorted by name: apart from `load` so
/// that the global file's parsing and the targets' listing read on their own.
pub(super) fn load_targets(
    dir: &Path,
    archive: &Path,
    relay: bool,
    ssh_client: SshClient,
) -> Result<Vec<TargetConfig>> {
    let mut targets = Vec::new();
    let targets_dir = dir.join("targets");
    if targets_dir.is_dir() {
        let entries = std::fs::read_dir(&targets_dir)
            .with_context(|| format!("cannot list {}", targets_dir.display()))?;
        for entry in entries {
            let path = entry?.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".conf"))
            else {
                continue; // other suffixes (x.conf.new) are ignored on purpose
            };
            if name.starts_with('.') {
                continue;
            }
            if crate::archive::Name::new(name).is_err() {
                bail!(UsageError(format!(
                    "{}: invalid target name '{name}': expected letters, digits and ._+~-",
                    path.display()
                )));
            }
            let text = read(&path)?;
            let src = Source {
                path: &path,
                text: &text,
            };
            targets.push(target(&src, name, archive, relay, ssh_client)?);
        }
    }
    targets.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(targets)
}

fn target(
    src: &Source,
    name: &str,
    source_archive: &Path,
    relay: bool,
    ssh_client: SshClient,
) -> Result<TargetConfig> {
    let raw: RawTarget = src.parse()?;
    let parallel = match &raw.parallel {
        None => 4,
        Some(p) if (1..=64).contains(p.get_ref()) => *p.get_ref() as usize,
        Some(p) => return Err(src.error(p.span(), "invalid parallel: expected 1 to 64")),
    };
    let kind = target_kind(src, &raw, parallel, source_archive, ssh_client)?;

    let (releases, projects, packages) = selection(src, &raw, relay)?;
    let aging = aging(src, raw.aging.as_ref(), &kind)?;
    Ok(TargetConfig {
        name: name.to_string(),
        file: src.path.to_path_buf(),
        kind,
        releases,
        projects,
        packages,
        writable_grace: raw
            .writable_grace
            .map_or(Duration::from_secs(3600), |d| d.0),
        sync_interval: raw
            .sync_interval
            .map_or(Duration::from_secs(4 * 3600), |d| d.0),
        tag_retries: raw.tag_retries.unwrap_or(10),
        aging,
    })
}

/// The target's kind with its own keys, refusing the other kind's keys:
/// apart from `target` so that the kind-specific half reads on its own.
fn target_kind(
    src: &Source,
    raw: &RawTarget,
    parallel: usize,
    source_archive: &Path,
    ssh_client: SshClient,
) -> Result<TargetKind> {
    // Keys that belong to the other kind are errors, not silently ignored.
    let archive_keys: [(&str, Option<std::ops::Range<usize>>); 11] = [
        ("transport", raw.transport.as_ref().map(|v| v.span())),
        ("path", raw.path.as_ref().map(|v| v.span())),
        ("host", raw.host.as_ref().map(|v| v.span())),
        ("user", raw.user.as_ref().map(|v| v.span())),
        ("identity", raw.identity.as_ref().map(|v| v.span())),
        (
            "remote_archive",
            raw.remote_archive.as_ref().map(|v| v.span()),
        ),
        ("compression", raw.compression.as_ref().map(|v| v.span())),
        ("delta", raw.delta.as_ref().map(|v| v.span())),
        ("jump", raw.jump.as_ref().map(|v| v.span())),
        ("verify_every", raw.verify_every.as_ref().map(|v| v.span())),
        ("ssh_client", raw.ssh_client.as_ref().map(|v| v.span())),
    ];
    let s3_keys = [
        ("bucket", raw.bucket.as_ref().map(|v| v.span())),
        ("prefix", raw.prefix.as_ref().map(|v| v.span())),
    ];
    Ok(match raw.kind.get_ref().as_str() {
        "archive" => {
            refuse_keys(src, &s3_keys, "kind = \"s3\" targets")?;
            TargetKind::Archive(archive_target(
                src,
                raw,
                parallel,
                source_archive,
                ssh_client,
            )?)
        }
        "s3" => {
            refuse_keys(src, &archive_keys, "kind = \"archive\" targets")?;
            let bucket = raw
                .bucket
                .as_ref()
                .ok_or_else(|| src.error(raw.kind.span(), "kind = \"s3\" needs `bucket`"))?;
            TargetKind::S3(S3Target {
                bucket: bucket.get_ref().clone(),
                prefix: raw
                    .prefix
                    .as_ref()
                    .map(|p| p.get_ref().clone())
                    .unwrap_or_default(),
                region: raw.region.clone(),
                endpoint: raw.endpoint.clone(),
                parallel,
            })
        }
        other => {
            return Err(src.error(
                raw.kind.span(),
                format!("unknown target kind '{other}': expected \"archive\" or \"s3\""),
            ))
        }
    })
}

/// The target's releases, projects and packages (what it gets), each
/// checked: apart from `target` as one step of it.
fn selection(
    src: &Source,
    raw: &RawTarget,
    relay: bool,
) -> Result<(Vec<ReleaseName>, Vec<String>, Vec<PackageVersion>)> {
    // A relay passes its site's whole list on: it has no releases to pick.
    if let Some((key, span)) = relay
        .then(|| {
            (raw.releases.first().map(|r| ("releases", r.span())))
                .or(raw.projects.first().map(|p| ("projects", p.span())))
        })
        .flatten()
    {
        return Err(src.error(
            span,
            format!("`{key}` needs a Release Manager: under release_manager kind = \"packagelist\" (a relay) every target gets the site's whole PackageList"),
        ));
    }
    let mut releases = Vec::new();
    for r in &raw.releases {
        releases.push(ReleaseName::parse(r.get_ref()).map_err(|e| src.error(r.span(), e))?);
    }
    let mut projects = Vec::new();
    for p in &raw.projects {
        if p.get_ref().is_empty() || p.get_ref().contains('/') {
            return Err(src.error(
                p.span(),
                format!("invalid project '{}': expected a project name", p.get_ref()),
            ));
        }
        projects.push(p.get_ref().clone());
    }
    let mut packages = Vec::new();
    for p in &raw.packages {
        packages.push(PackageVersion::parse(p.get_ref(), "/").map_err(|e| src.error(p.span(), e))?);
    }
    Ok((releases, projects, packages))
}

/// The target's `[aging]` table, defaults filled in: apart from `target`
/// as one step of it.
fn aging(src: &Source, aging: Option<&RawAging>, kind: &TargetKind) -> Result<Aging> {
    Ok(match aging {
        None => Aging {
            method: AgingMethod::None,
            after: Duration::from_secs(14 * 86400),
            max_delete: 50,
        },
        Some(a) => {
            let method = match a.method.get_ref().as_str() {
                "none" => AgingMethod::None,
                "immediate" => AgingMethod::Immediate,
                "master" => AgingMethod::Master,
                "target" => AgingMethod::Target,
                other => {
                    return Err(src.error(
                        a.method.span(),
                        format!("unknown aging method '{other}': expected none, immediate, master or target"),
                    ))
                }
            };
            if method == AgingMethod::Target && matches!(kind, TargetKind::S3(_)) {
                return Err(src.error(
                    a.method.span(),
                    "aging method \"target\" is for archive targets",
                ));
            }
            Aging {
                method,
                after: a.after.map_or(Duration::from_secs(14 * 86400), |d| d.0),
                max_delete: a.max_delete.unwrap_or(50),
            }
        }
    })
}

/// The first of `keys` that is set, as an error: it belongs to `whose`
/// (another kind or transport), and is refused rather than ignored. One
/// rule for the three places that refuse keys.
fn refuse_keys(
    src: &Source,
    keys: &[(&str, Option<std::ops::Range<usize>>)],
    whose: &str,
) -> Result<()> {
    match keys
        .iter()
        .find_map(|(key, span)| Some((key, span.clone()?)))
    {
        Some((key, span)) => Err(src.error(span, format!("`{key}` is for {whose}"))),
        None => Ok(()),
    }
}

/// `transport = "local"`: the target archive's path, which must not
/// overlap the source archive; apart from `archive_target` per transport.
fn local_transport(src: &Source, raw: &RawTarget, source_archive: &Path) -> Result<Transport> {
    let ssh_keys = [
        ("host", raw.host.as_ref().map(|v| v.span())),
        ("user", raw.user.as_ref().map(|v| v.span())),
        ("identity", raw.identity.as_ref().map(|v| v.span())),
        ("jump", raw.jump.as_ref().map(|v| v.span())),
        (
            "remote_archive",
            raw.remote_archive.as_ref().map(|v| v.span()),
        ),
        ("ssh_client", raw.ssh_client.as_ref().map(|v| v.span())),
    ];
    refuse_keys(src, &ssh_keys, "transport = \"ssh\"")?;
    let path = raw.path.as_ref().ok_or_else(|| {
        let span = raw.transport.as_ref().map_or(raw.kind.span(), |t| t.span());
        src.error(
            span,
            "transport = \"local\" needs `path` (the target archive directory)",
        )
    })?;
    let resolved = src.resolve(path)?;
    // Aging on a target deletes there: a target inside the source
    // archive, or holding it, would delete from the source.
    if paths_overlap(&resolved, source_archive) {
        return Err(src.error(
            path.span(),
            format!(
                "path {} overlaps the source archive {}: a local target must be outside it and must not contain it",
                resolved.display(),
                source_archive.display()
            ),
        ));
    }
    Ok(Transport::Local { path: resolved })
}

/// `transport = "ssh"`: host, login, jump chain and client; apart from
/// `archive_target` per transport.
fn ssh_transport(src: &Source, raw: &RawTarget, ssh_client: SshClient) -> Result<Transport> {
    if let Some(p) = &raw.path {
        return Err(src.error(
            p.span(),
            "`path` is for transport = \"local\"; use `remote_archive`",
        ));
    }
    let need = |v: &Option<Spanned<String>>, key: &str| -> Result<Spanned<String>> {
        v.clone().ok_or_else(|| {
            src.error(
                raw.transport.as_ref().map_or(raw.kind.span(), |t| t.span()),
                format!("transport = \"ssh\" needs `{key}`"),
            )
        })
    };
    let host = need(&raw.host, "host")?;
    let user = need(&raw.user, "user")?;
    let identity = need(&raw.identity, "identity")?;
    let known_hosts = need(&raw.known_hosts, "known_hosts")?;
    let jump = match &raw.jump {
        None => Vec::new(),
        Some(j) => JumpHost::parse_chain(j.get_ref(), user.get_ref())
            .map_err(|e| src.error(j.span(), e))?,
    };
    Ok(Transport::Ssh(SshConfig {
        host: host.into_inner(),
        port: raw.port.unwrap_or(22),
        user: user.into_inner(),
        identity: src.resolve(&identity)?,
        known_hosts: src.resolve(&known_hosts)?,
        remote_archive: raw
            .remote_archive
            .as_ref()
            .map_or("dpkg_archive".to_string(), |r| r.get_ref().clone()),
        connect_timeout: raw.connect_timeout.map_or(Duration::from_secs(15), |d| d.0),
        io_timeout: raw.io_timeout.map_or(Duration::from_secs(60), |d| d.0),
        jump,
        client: match &raw.ssh_client {
            None => ssh_client,
            Some(c) => SshClient::parse(c.get_ref()).map_err(|e| src.error(c.span(), e))?,
        },
    }))
}

/// Syncs between two full checks of an archive target (`verify_every`).
pub const DEFAULT_VERIFY_EVERY: u32 = 24;

fn archive_target(
    src: &Source,
    raw: &RawTarget,
    parallel: usize,
    source_archive: &Path,
    ssh_client: SshClient,
) -> Result<ArchiveTarget> {
    let transport_name = raw
        .transport
        .as_ref()
        .map_or("ssh", |t| t.get_ref().as_str());
    let transport = match transport_name {
        "local" => local_transport(src, raw, source_archive)?,
        "ssh" => ssh_transport(src, raw, ssh_client)?,
        other => {
            let span = raw.transport.as_ref().map(|t| t.span()).unwrap_or(0..0);
            return Err(src.error(
                span,
                format!("unknown transport '{other}': expected \"ssh\" or \"local\""),
            ));
        }
    };
    let compression = match &raw.compression {
        None => Compression::DEFAULT,
        Some(c) => Compression::parse(c.get_ref()).map_err(|e| src.error(c.span(), e))?,
    };
    let delta = match &raw.delta {
        None => DeltaMode::Link,
        Some(d) => DeltaMode::parse(d.get_ref()).map_err(|e| src.error(d.span(), e))?,
    };
    Ok(ArchiveTarget {
        transport,
        parallel,
        compression,
        compression_set: raw.compression.is_some(),
        min_free: raw.min_free.map_or(0, |s| s.0),
        delta,
        // rsync's --bwlimit=0: no limit.
        bwlimit: raw.bwlimit.map(|s| s.0).filter(|&b| b > 0),
        verify_every: raw
            .verify_every
            .as_ref()
            .map_or(DEFAULT_VERIFY_EVERY, |v| *v.get_ref()),
    })
}
