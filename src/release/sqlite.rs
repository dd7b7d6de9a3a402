//! The Release Manager in a SQLite database with the reference schema
//! (docs/archive.md). A path ending in `.sql` is executed into an in-memory database
//! at each run instead: the bundled example and test fixtures use that.

use std::path::Path;

use anyhow::{bail, Context, Result};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use super::ReleaseSource;
use crate::config::ReleaseName;
use crate::current::CurrentSet;

pub struct SqliteSource {
    conn: Connection,
    description: String,
}

impl SqliteSource {
    pub fn open(path: &Path) -> Result<SqliteSource> {
        let description = format!("SQLite release manager {}", path.display());
        let conn = if path.extension().is_some_and(|e| e == "sql") {
            let sql = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let conn = Connection::open_in_memory()?;
            conn.execute_batch(&sql)
                .with_context(|| format!("cannot load {}", path.display()))?;
            conn
        } else {
            if !path.is_file() {
                bail!("release manager database {} does not exist", path.display());
            }
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
                .with_context(|| format!("cannot open {}", path.display()))?
        };
        Ok(SqliteSource { conn, description })
    }

    fn release_id(&self, release: &ReleaseName) -> Result<i64> {
        self.conn
            .query_row(
                "SELECT r.release_id FROM releases r JOIN projects p ON p.project_id = r.project_id
                 WHERE p.name = ?1 AND r.name = ?2",
                params![release.project, release.release],
                |r| r.get(0),
            )
            .optional()?
            .with_context(|| format!("release {release} does not exist"))
    }
}

impl ReleaseSource for SqliteSource {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn release_rows(&mut self, release: &ReleaseName) -> Result<Vec<(String, String)>> {
        let id = self.release_id(release)?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT pk.name, pv.version FROM release_content rc
             JOIN package_versions pv ON pv.pv_id = rc.pv_id
             JOIN packages pk ON pk.package_id = pv.package_id
             WHERE rc.release_id = ?1 ORDER BY pk.name, pv.version",
        )?;
        let rows = stmt.query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn open_releases(&mut self, project: &str) -> Result<Vec<ReleaseName>> {
        let exists: Option<i64> = self
            .conn
            .query_row(
                "SELECT project_id FROM projects WHERE name = ?1",
                params![project],
                |r| r.get(0),
            )
            .optional()?;
        let Some(project_id) = exists else {
            bail!("project {project} does not exist");
        };
        let mut stmt = self.conn.prepare_cached(
            "SELECT name FROM releases WHERE project_id = ?1 AND state <> 'closed' ORDER BY name",
        )?;
        let rows = stmt.query_map(params![project_id], |r| r.get::<_, String>(0))?;
        rows.map(|name| {
            Ok(ReleaseName {
                project: project.to_string(),
                release: name?,
            })
        })
        .collect()
    }

    fn s3_releases(&mut self) -> Result<Vec<ReleaseName>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT p.name, r.name FROM releases r JOIN projects p ON p.project_id = r.project_id
             WHERE r.s3sync = 1 ORDER BY p.name, r.name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(ReleaseName {
                project: r.get(0)?,
                release: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn relayed(&mut self) -> Result<Option<CurrentSet>> {
        Ok(None)
    }
}
