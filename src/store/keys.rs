//! Where blat keeps things in a bucket: one ZIP per package-version at
//! `{prefix}{package}/{package}_{version}.zip`, one alias object per alias at
//! `{prefix}{package}/{alias}.txt` (the version, one line), and the change
//! key in each ZIP's metadata. Any other key is not blat's and is left alone.

use crate::archive::{Name, PackageVersion};

/// The user metadata that carries the change key (descpkg mtime) with each ZIP.
pub const MTIME_META: &str = "descpkg-mtime";

/// `{prefix}{package}/{package}_{version}.zip`
pub fn zip_key(prefix: &str, pv: &PackageVersion) -> String {
    format!("{prefix}{}/{}_{}.zip", pv.package, pv.package, pv.version)
}

/// `{prefix}{package}/{alias}.txt`
pub fn alias_key(prefix: &str, package: &Name, alias: &Name) -> String {
    format!("{prefix}{package}/{alias}.txt")
}

/// What a key in the bucket is to blat; anything else is left alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyKind {
    Zip(PackageVersion),
    Alias { package: Name, alias: Name },
}

pub fn parse_key(prefix: &str, key: &str) -> Option<KeyKind> {
    let (package, file) = key.strip_prefix(prefix)?.split_once('/')?;
    let package = Name::new(package).ok()?;
    if let Some(version) = file
        .strip_prefix(&format!("{package}_"))
        .and_then(|f| f.strip_suffix(".zip"))
    {
        return Some(KeyKind::Zip(PackageVersion {
            package,
            version: Name::new(version).ok()?,
        }));
    }
    let alias = Name::new(file.strip_suffix(".txt")?).ok()?;
    Some(KeyKind::Alias { package, alias })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let p = PackageVersion::new("jats", "2.1_beta").unwrap();
        assert_eq!(zip_key("pk/", &p), "pk/jats/jats_2.1_beta.zip");
        assert_eq!(
            parse_key("pk/", "pk/jats/jats_2.1_beta.zip"),
            Some(KeyKind::Zip(p))
        );
        let (j, cur) = (Name::new("jats").unwrap(), Name::new("current").unwrap());
        assert_eq!(alias_key("", &j, &cur), "jats/current.txt");
        assert_eq!(
            parse_key("", "jats/current.txt"),
            Some(KeyKind::Alias {
                package: j,
                alias: cur
            })
        );
        for foreign in [
            "other/jats/jats_1.zip",
            "pk/jats/other_1.zip",
            "pk/jats/x/y.zip",
            "pk/.hidden/x.txt",
            "pk/jats/jats_.zip",
            "pk/README",
        ] {
            assert_eq!(parse_key("pk/", foreign), None, "{foreign}");
        }
    }
}
