//! What the receiver's `check` command says about a target archive
//! (docs/protocol.md): read by `blat check`, never acted upon.

use serde::Serialize;

/// The parsed `check` output. Unknown keys are ignored, missing ones keep
/// their defaults (a receiver that said less knows less).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ArchiveFacts {
    /// The archive as the receiver resolved it (absolute).
    pub archive: String,
    /// `$HOME` of the target user.
    pub home: String,
    /// The receiver's own file, when it runs from one.
    pub program: Option<String>,
    /// Started as an authorized_keys forced command.
    pub forced: bool,
    /// Its forced command line says `--allow-install`.
    pub allow_install: bool,
    pub decompressors: Vec<String>,
    pub exists: bool,
    /// The target user may create entries in the archive root.
    pub writable: bool,
    /// `absent`, `writable`, `not-writable`, `symlink` or `not-a-directory`.
    pub dpkg_archive: String,
    /// Package directories the target user may not write into.
    pub unwritable_packages: u64,
    /// One of them, for the message.
    pub unwritable_example: String,
    /// Bytes free on the archive's file system.
    pub avail: Option<u64>,
}

impl ArchiveFacts {
    pub fn parse(text: &str) -> ArchiveFacts {
        let mut f = ArchiveFacts::default();
        for line in text.lines() {
            let mut fields = line.split('\t');
            let key = fields.next().unwrap_or_default();
            let value = fields.next().unwrap_or_default().to_string();
            let yes = value == "yes";
            match key {
                "archive" => f.archive = value,
                "home" => f.home = value,
                "program" => f.program = (value != "-" && !value.is_empty()).then_some(value),
                "forced" => f.forced = yes,
                "allow_install" => f.allow_install = yes,
                "decompressors" => {
                    f.decompressors = value.split_whitespace().map(String::from).collect()
                }
                "exists" => f.exists = yes,
                "writable" => f.writable = yes,
                "dpkg_archive" => f.dpkg_archive = value,
                "unwritable_packages" => {
                    f.unwritable_packages = value.parse().unwrap_or(0);
                    f.unwritable_example = fields.next().unwrap_or_default().to_string();
                }
                "avail" => f.avail = value.parse().ok(),
                _ => {}
            }
        }
        f
    }

    /// Why sync could not write this archive, if it could not.
    pub fn unwritable(&self) -> Option<String> {
        if !self.writable {
            return Some(format!(
                "archive {} is not writable for the target user",
                self.archive
            ));
        }
        match self.dpkg_archive.as_str() {
            "" | "absent" | "writable" => {}
            "symlink" => {
                return Some(format!(
                    "{}/.dpkg_archive is a symlink (blat refuses to write through it)",
                    self.archive
                ))
            }
            "not-a-directory" => {
                return Some(format!("{}/.dpkg_archive is not a directory", self.archive))
            }
            _ => {
                return Some(format!(
                    "{}/.dpkg_archive is not writable for the target user",
                    self.archive
                ))
            }
        }
        if self.unwritable_packages > 0 {
            return Some(format!(
                "{} package director{} not writable for the target user (e.g. {}/{}): new versions of those cannot arrive",
                self.unwritable_packages,
                if self.unwritable_packages == 1 {
                    "y is"
                } else {
                    "ies are"
                },
                self.archive,
                self.unwritable_example
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_the_receiver_says() {
        let f = ArchiveFacts::parse(
            "archive\t/srv/a\nhome\t/home/p\nprogram\t/home/p/.blat/blat-receiver\nforced\tyes\n\
             allow_install\tno\ndecompressors\tgzip zstd\nexists\tyes\nwritable\tyes\n\
             dpkg_archive\tabsent\nunwritable_packages\t2\tjats\navail\t1024\nfuture\tx\n",
        );
        assert_eq!(f.archive, "/srv/a");
        assert_eq!(f.program.as_deref(), Some("/home/p/.blat/blat-receiver"));
        assert!(f.forced && !f.allow_install && f.exists && f.writable);
        assert_eq!(f.decompressors, ["gzip", "zstd"]);
        assert_eq!(
            (f.unwritable_packages, f.unwritable_example.as_str()),
            (2, "jats")
        );
        assert_eq!(f.avail, Some(1024));
        let why = f.unwritable().unwrap();
        assert!(
            why.contains("2 package directories are not writable") && why.contains("/srv/a/jats"),
            "{why}"
        );

        let f = ArchiveFacts::parse("archive\t/x\nprogram\t-\nexists\tno\n");
        assert!(!f.exists && f.program.is_none() && f.avail.is_none());
        let f = ArchiveFacts::parse("archive\t/x\nexists\tyes\nwritable\tno\navail\t-\n");
        assert!(f
            .unwritable()
            .unwrap()
            .contains("archive /x is not writable"));
        assert_eq!(f.avail, None);
    }
}
