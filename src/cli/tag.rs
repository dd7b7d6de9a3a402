//! `blat tag` arguments.

use clap::Args;

use super::GlobalArgs;
use crate::ops::tag::TagOptions;

/// Write the tag PACKAGE::VERSION atomically into the tag directory of every
/// archive target (or of each --target), for `blat fast`
#[derive(Debug, Args)]
pub struct TagArgs {
    /// The package name
    pub package: String,
    /// The version (or an alias of it, such as jats2_current)
    pub version: String,
}

impl TagArgs {
    pub fn options(&self, global: &GlobalArgs) -> TagOptions {
        TagOptions {
            selection: global.selection(),
            package: self.package.clone(),
            version: self.version.clone(),
        }
    }
}
