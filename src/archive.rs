//! The package archive: validated names, package-versions, the descpkg change
//! key, aliases and the writable-grace rule (docs/archive.md).
//!
//! Every name that reaches a path or a command, whatever its source (config,
//! tag file, database row, target listing), goes through [`Name::new`].

use std::fmt;
use std::fs;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

/// A package, version or alias name: `^[A-Za-z0-9_][A-Za-z0-9._+~-]{0,254}$`.
/// Held inline when it fits in 23 bytes (every real name does): the sets
/// and listings of a target hold hundreds of thousands of them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(smol_str::SmolStr);

impl Serialize for Name {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl Name {
    /// Validates `text` as a package, version or alias name.
    pub fn new(text: &str) -> Result<Name, String> {
        let bytes = text.as_bytes();
        let valid = !bytes.is_empty()
            && bytes.len() <= 255
            && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
            && bytes
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b"._+~-".contains(&b));
        if valid {
            Ok(Name(smol_str::SmolStr::new(text)))
        } else {
            Err(format!(
                "invalid name '{}': expected letters, digits and ._+~- (not starting with . + ~ -), at most 255 characters",
                text.escape_default()
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One package-version: the unit that is sent, listed, aged and deleted.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PackageVersion {
    pub package: Name,
    pub version: Name,
}

impl PackageVersion {
    pub fn new(package: &str, version: &str) -> Result<PackageVersion, String> {
        Ok(PackageVersion {
            package: Name::new(package)?,
            version: Name::new(version)?,
        })
    }

    /// Parses `package/version` (config pins) or `package::version` (tags).
    pub fn parse(text: &str, separator: &str) -> Result<PackageVersion, String> {
        let (p, v) = text.split_once(separator).ok_or_else(|| {
            format!(
                "invalid package-version '{}': expected package{separator}version",
                text.escape_default()
            )
        })?;
        PackageVersion::new(p, v).map_err(|e| format!("'{}': {e}", text.escape_default()))
    }
}

impl fmt::Display for PackageVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.package, self.version)
    }
}

/// An alias: `<package>/<alias>` is a symlink to the sibling `<version>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Alias {
    pub package: Name,
    pub alias: Name,
    pub version: Name,
}

impl fmt::Display for Alias {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} -> {}", self.package, self.alias, self.version)
    }
}

/// What the source archive holds under `<archive>/<package>/<version>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceEntry {
    /// No such directory, or no descpkg in it.
    Missing,
    /// A symlink to a sibling version.
    Alias(Name),
    /// A package-version; `writable_since` is set while it is still being
    /// built (the newest mtime of its directory and descpkg).
    Version {
        descpkg_mtime: i64,
        writable_since: Option<i64>,
    },
}

/// The master's package archive, read directly from the file system.
#[derive(Clone, Debug)]
pub struct SourceArchive {
    pub root: PathBuf,
}

impl SourceArchive {
    pub fn new(root: impl Into<PathBuf>) -> SourceArchive {
        SourceArchive { root: root.into() }
    }

    /// Fails unless the archive root is a directory. A missing archive (a
    /// share not mounted, a typo in blat.toml) must fail the pass, never
    /// look like an archive that has none of the packages.
    pub fn check(&self) -> Result<()> {
        let root = self.root.display();
        match fs::metadata(&self.root) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => {
                anyhow::bail!("source archive {root} is not a directory (`archive` in blat.toml)")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                anyhow::bail!("source archive {root} does not exist (`archive` in blat.toml)")
            }
            Err(e) => Err(e).with_context(|| format!("cannot read source archive {root}")),
        }
    }

    pub fn version_dir(&self, pv: &PackageVersion) -> PathBuf {
        self.root
            .join(pv.package.as_str())
            .join(pv.version.as_str())
    }

    /// Looks at one package-version without walking its files.
    pub fn inspect(&self, pv: &PackageVersion) -> Result<SourceEntry> {
        let dir = self.version_dir(pv);
        let meta = match fs::symlink_metadata(&dir) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(SourceEntry::Missing),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
        };
        if meta.file_type().is_symlink() {
            let link = fs::read_link(&dir)
                .with_context(|| format!("cannot read alias {}", dir.display()))?;
            let target = alias_target(&pv.package, &link).with_context(|| {
                format!(
                    "alias {} points to '{}', not to a sibling version",
                    dir.display(),
                    link.display()
                )
            })?;
            return Ok(SourceEntry::Alias(target));
        }
        if !meta.is_dir() {
            return Ok(SourceEntry::Missing);
        }
        let descpkg = dir.join("descpkg");
        let dmeta = match fs::symlink_metadata(&descpkg) {
            Ok(m) if m.is_file() => m,
            Ok(_) => return Ok(SourceEntry::Missing),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(SourceEntry::Missing),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", descpkg.display())),
        };
        let writable = meta.permissions().mode() & 0o222 != 0;
        Ok(SourceEntry::Version {
            descpkg_mtime: dmeta.mtime(),
            writable_since: writable.then(|| meta.mtime().max(dmeta.mtime())),
        })
    }

    /// [`inspect`](Self::inspect) of many package-versions at once, for a
    /// current set of 100,000 (issue 14): each package directory is opened
    /// once and its versions and descpkgs are looked up relative to it (a
    /// walk of two names instead of the whole path, twice per version), on
    /// up to two threads. Anything but a plain version directory (an alias,
    /// an error) is looked up by `inspect` itself, so the entries and the
    /// errors are the same. Results in the order of `pvs`.
    pub fn inspect_all(&self, pvs: &[PackageVersion]) -> Vec<Result<SourceEntry>> {
        const PER_THREAD: usize = 2_000;
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 2)
            .min(pvs.len().div_ceil(PER_THREAD).max(1));
        let chunk = pvs.len().div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            let parts: Vec<_> = pvs
                .chunks(chunk)
                .map(|part| scope.spawn(move || self.inspect_run(part)))
                .collect();
            parts
                .into_iter()
                .flat_map(|p| p.join().expect("an inspect thread panicked"))
                .collect()
        })
    }

    /// One thread's part of [`inspect_all`](Self::inspect_all): the package
    /// directory stays open while the next version is of the same package.
    fn inspect_run(&self, pvs: &[PackageVersion]) -> Vec<Result<SourceEntry>> {
        let mut open: Option<(&Name, Option<fs::File>)> = None;
        pvs.iter()
            .map(|pv| {
                if open.as_ref().is_none_or(|(p, _)| *p != &pv.package) {
                    let dir = fs::OpenOptions::new()
                        .read(true)
                        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
                        .open(self.root.join(pv.package.as_str()))
                        .ok();
                    open = Some((&pv.package, dir));
                }
                let fast = open
                    .as_ref()
                    .and_then(|(_, dir)| dir.as_ref())
                    .and_then(|dir| inspect_at(dir, &pv.version));
                fast.map_or_else(|| self.inspect(pv), Ok)
            })
            .collect()
    }

    /// Lists the versions and aliases of one package (names that fail
    /// validation are skipped: they can never be packages).
    pub fn package_entries(&self, package: &Name) -> Result<Vec<(Name, SourceEntry)>> {
        let dir = self.root.join(package.as_str());
        let mut out = Vec::new();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
        };
        for entry in rd {
            let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
            let Some(name) = entry.file_name().to_str().and_then(|s| Name::new(s).ok()) else {
                continue;
            };
            let pv = PackageVersion {
                package: package.clone(),
                version: name.clone(),
            };
            out.push((name, self.inspect(&pv)?));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

/// [`SourceArchive::inspect`] of `version` in the open package directory
/// `dir`, for a version directory or nothing at all; `None` for anything
/// else (an alias, an error), which `inspect` then looks at itself.
fn inspect_at(dir: &fs::File, version: &Name) -> Option<SourceEntry> {
    let meta = match lstat_at(dir, version.as_str()) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(SourceEntry::Missing),
        Err(_) => return None,
    };
    match meta.st_mode & libc::S_IFMT {
        libc::S_IFDIR => {}
        libc::S_IFLNK => return None,
        _ => return Some(SourceEntry::Missing),
    }
    let descpkg = match lstat_at(dir, &format!("{version}/descpkg")) {
        Ok(m) if m.st_mode & libc::S_IFMT == libc::S_IFREG => m,
        Ok(_) => return Some(SourceEntry::Missing),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(SourceEntry::Missing),
        Err(_) => return None,
    };
    let writable = meta.st_mode & 0o222 != 0;
    Some(SourceEntry::Version {
        descpkg_mtime: descpkg.st_mtime,
        writable_since: writable.then(|| meta.st_mtime.max(descpkg.st_mtime)),
    })
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`: lstat relative to `dir`.
fn lstat_at(dir: &fs::File, name: &str) -> std::io::Result<libc::stat> {
    use std::os::fd::AsRawFd;
    let name = std::ffi::CString::new(name).map_err(std::io::Error::other)?;
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: a valid fd, a NUL-terminated name and room for one stat.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fstatat succeeded, so it filled the stat.
    Ok(unsafe { st.assume_init() })
}

/// The version an alias symlink of `package` points to. The one rule of
/// what an alias is (docs/archive.md), on the master and on targets alike:
/// with `.` components and trailing slashes dropped, its target is `V`,
/// `../PACKAGE/V`, or an absolute path ending in `/PACKAGE/V`, where V is a
/// valid version name. Anything else is not an alias blat follows. On a
/// target an alias protects its version from aging, so the absolute form
/// is taken without asking where its root is: when in doubt, keep.
pub fn alias_target(package: &Name, link: &Path) -> Result<Name> {
    let text = link.to_str().context("link target is not UTF-8")?;
    let absolute = text.starts_with('/');
    let parts: Vec<&str> = text
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    let version = match (absolute, parts.as_slice()) {
        (false, [v]) => v,
        (false, ["..", p, v]) if *p == package.as_str() => v,
        (true, [.., p, v]) if *p == package.as_str() => v,
        _ => anyhow::bail!("not a sibling version of {package}"),
    };
    Name::new(version).map_err(anyhow::Error::msg)
}

/// True when a package that is still writable may be sent: it has been
/// writable for longer than `grace`. A zero grace sends writable versions at
/// once, even one written this very second (a fresh git checkout of an
/// example archive is all writable and new).
pub fn past_grace(writable_since: i64, now: i64, grace: Duration) -> bool {
    grace.is_zero() || now.saturating_sub(writable_since) > crate::config::units::secs_i64(grace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_accepted() {
        for n in [
            "a",
            "A0",
            "_x",
            "jats2_current",
            "1.0.0",
            "v1+build~rc-2",
            &"x".repeat(255),
        ] {
            assert!(Name::new(n).is_ok(), "{n}");
        }
    }

    #[test]
    fn names_rejected() {
        for n in [
            "",
            ".",
            "..",
            ".hidden",
            "-x",
            "+x",
            "~x",
            "a/b",
            "../x",
            "a b",
            "a\nb",
            "a:b",
            "é",
            &"x".repeat(256),
        ] {
            let err = Name::new(n).unwrap_err();
            assert!(err.contains("invalid name"), "{err}");
        }
    }

    #[test]
    fn package_version_parsing() {
        let pv = PackageVersion::parse("jats::2.1", "::").unwrap();
        assert_eq!(pv.to_string(), "jats/2.1");
        assert!(PackageVersion::parse("../../etc::x", "::").is_err());
        assert!(PackageVersion::parse("noseparator", "::").is_err());
        assert!(PackageVersion::parse("a/b/c", "/").is_err());
    }

    #[test]
    fn alias_targets() {
        let p = Name::new("pkg").unwrap();
        for (link, version) in [
            ("1.2", "1.2"),
            ("./1.2", "1.2"),
            ("1.2/", "1.2"),
            ("./1.2//", "1.2"),
            ("../pkg/1.2", "1.2"),
            ("./../pkg/./1.2/", "1.2"),
            ("/srv/dpkg_archive/pkg/1.2", "1.2"),
            ("/pkg/1.2/", "1.2"),
        ] {
            assert_eq!(
                alias_target(&p, Path::new(link)).unwrap().as_str(),
                version,
                "{link}"
            );
        }
        for link in [
            "../other/1.2",
            "/abs",
            "/srv/other/1.2",
            "..",
            "../pkg",
            "sub/1.2",
            "../../pkg/1.2",
            ".hidden",
            "",
            "/",
        ] {
            assert!(alias_target(&p, Path::new(link)).is_err(), "{link}");
        }
    }

    #[test]
    fn grace() {
        let g = Duration::from_secs(3600);
        assert!(!past_grace(1000, 1000 + 3600, g));
        assert!(past_grace(1000, 1000 + 3601, g));
        assert!(
            past_grace(1000, 1000, Duration::ZERO),
            "zero grace: at once"
        );
        assert!(
            past_grace(2000, 1000, Duration::ZERO),
            "even from the future"
        );
    }
}
