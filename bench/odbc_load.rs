//! Times loading one target's current set from the Release Manager its
//! config names: connect, pick the releases, fetch and validate every
//! release's content into one set. This is the database half of
//! `current::load` (the archive lookups are left out: they cost the same
//! whatever the source). `bench/odbc.sh` runs it against PostgreSQL over
//! ODBC, SQLite over ODBC and SQLite through rusqlite.
//!
//! Usage: odbc-load CONFIG_DIR TARGET [RUNS]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use blat::config::Config;
use blat::release;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (dir, target) = match args.as_slice() {
        [dir, target] | [dir, target, _] => (dir, target),
        _ => bail!("usage: odbc-load CONFIG_DIR TARGET [RUNS]"),
    };
    let runs: usize = args
        .get(2)
        .map_or(Ok(1), |r| r.parse())
        .context("RUNS: expected a number")?;
    let config = Config::load(Path::new(dir))?;
    let target = config
        .target(target)
        .with_context(|| format!("no target {target}"))?;
    let mut seconds = Vec::new();
    let mut summary = String::new();
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        let mut source = release::open(&config)?;
        let releases =
            release::selected_releases(source.as_mut(), &target.releases, &target.projects, false)?;
        let mut set = BTreeSet::new();
        let mut rows = 0;
        for r in &releases {
            let content = release::release_content(source.as_mut(), r)?;
            rows += content.len();
            set.extend(content);
        }
        seconds.push(started.elapsed().as_secs_f64());
        summary = format!(
            "{}: {} rows, {} package-versions in {} releases",
            source.describe(),
            rows,
            set.len(),
            releases.len()
        );
    }
    seconds.sort_by(f64::total_cmp);
    println!(
        "{summary}: best {:.3}s, median {:.3}s of {} runs",
        seconds[0],
        seconds[seconds.len() / 2],
        seconds.len()
    );
    Ok(())
}
