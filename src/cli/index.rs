//! `blat index` arguments.

use std::path::PathBuf;

use clap::Args;

/// Write the archive's content index, .dpkg_archive/dpkg_archive_list.txt: every file and
/// folder, one path a line relative to the archive, sorted by bytes, replaced atomically.
///
/// Incremental: released package-versions are walked once and then copied from the previous
/// list while their descpkg mtime stays the same (cache: .dpkg_archive/dpkg_archive_list.cache;
/// a missing or damaged cache only means a full walk). Names starting with '.' at the top two
/// levels (.dpkg_archive, .blat-* temporaries) are not listed; symlinks are listed, not followed.
#[derive(Debug, Args)]
pub struct IndexArgs {
    /// The archive to index; with it no configuration is read (for cron on a target).
    /// Default: the configuration's `archive`
    #[arg(long, value_name = "DIR")]
    pub archive: Option<PathBuf>,
    /// Directory-walking threads (default: one per core)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
}

impl IndexArgs {
    /// `configured`: the configuration's archive, used without `--archive`.
    pub fn options(
        &self,
        global: &super::GlobalArgs,
        configured: &std::path::Path,
    ) -> crate::ops::index::IndexOptions {
        crate::ops::index::IndexOptions {
            archive: self
                .archive
                .clone()
                .unwrap_or_else(|| configured.to_path_buf()),
            threads: self.threads.map(usize::from),
            dry_run: global.dry_run,
        }
    }
}
