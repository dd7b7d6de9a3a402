//! `blat plist`: write the current set to the target as
//! `.dpkg_archive/packagelist.txt`, atomically, and nothing else.

use anyhow::Result;
use serde::Serialize;

use super::{Context, Selection, TargetReport};
use crate::error::Outcome;

#[derive(Serialize)]
pub struct PlistReport {
    pub releases: Vec<String>,
    pub packages: usize,
}

impl TargetReport for PlistReport {
    fn outcome(&self) -> Outcome {
        Outcome::Done
    }
    fn summary(&self) -> String {
        format!(
            "packagelist written: {} package-versions from {} releases",
            self.packages,
            self.releases.len()
        )
    }
}

pub fn run(ctx: &Context, selection: &Selection) -> Result<Outcome> {
    let targets = ctx.select(selection, |t| t.archive().is_some(), "archive")?;
    super::for_each_target(ctx, "plist", &targets, |ctx, target, _state| {
        let set = ctx.current_set(target)?;
        let dest = ctx.open_target(target)?;
        crate::packagelist::write(dest.as_ref(), &set, crate::clock::now())?;
        Ok(Some(PlistReport {
            releases: set.releases.iter().map(|r| r.to_string()).collect(),
            packages: set.versions.len(),
        }))
    })
}
