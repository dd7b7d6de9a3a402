//! `blat plist` arguments.

use clap::Args;

/// Write the current set to each target as .dpkg_archive/packagelist.txt
#[derive(Debug, Args)]
pub struct PlistArgs {}
