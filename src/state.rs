//! blat's own state, one SQLite file per target in `state_dir`
//! (`targets/<target>.db`): the runs of each command on the target (for
//! `sync --due` and `status`), tag retry counts, aging marks, S3 uploads.
//! One file per target, so that targets can be split across machines and no
//! target's writes wait on another's; the single `blat.db` of earlier
//! versions is split once by the first run that may write ([`split`]).
//!
//! The schema evolves by `user_version` migrations that are only ever
//! appended, never edited or removed, so any older state file upgrades.
//! Every file keeps the `target` column of the single-file schema, so a
//! row means the same wherever it lives.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::error::Outcome;

mod split;
pub use split::{split_legacy, Split};

/// The state file of blat before per-target files, in `state_dir`.
pub const LEGACY_FILE: &str = "blat.db";
/// The directory of the per-target state files, in `state_dir`.
pub const TARGETS_DIR: &str = "targets";

/// `<state_dir>/targets/<target>.db`, the state file of `target`. Target
/// names come from the configuration's file names and are checked there;
/// checked again here, as anything that becomes a path.
pub fn target_file(state_dir: &Path, target: &str) -> Result<PathBuf> {
    crate::archive::Name::new(target)
        .map_err(|e| anyhow::anyhow!("no state file for this target: {e}"))?;
    // NAME_MAX is 255 bytes; the `-wal` and `-shm` files add 4 to `.db`.
    if target.len() > 255 - ".db-wal".len() {
        anyhow::bail!(
            "no state file for target '{target}': its name is longer than {} characters",
            255 - ".db-wal".len()
        );
    }
    Ok(state_dir.join(TARGETS_DIR).join(format!("{target}.db")))
}

/// Schema steps; entry `i` upgrades `user_version` i to i+1.
const MIGRATIONS: &[&str] = &[
    // 1: runs, tags, aging marks
    "CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        target TEXT NOT NULL,
        command TEXT NOT NULL,
        started INTEGER NOT NULL,
        finished INTEGER,
        outcome TEXT,
        summary TEXT,
        error TEXT
    );
    CREATE INDEX runs_by_target ON runs (target, command, id);
    CREATE TABLE tags (
        target TEXT NOT NULL,
        tag TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        PRIMARY KEY (target, tag)
    );
    CREATE TABLE marks (
        target TEXT NOT NULL,
        package TEXT NOT NULL,
        version TEXT NOT NULL,
        first_seen INTEGER NOT NULL,
        PRIMARY KEY (target, package, version)
    );",
    // 2: S3 uploads (what each object holds, so a pass needs no request per
    // object) and open multipart uploads (aborted by the next pass).
    "CREATE TABLE uploads (
        target TEXT NOT NULL,
        key TEXT NOT NULL,
        package TEXT NOT NULL,
        version TEXT NOT NULL,
        descpkg_mtime INTEGER NOT NULL,
        size INTEGER NOT NULL,
        etag TEXT NOT NULL,
        uploaded INTEGER NOT NULL,
        PRIMARY KEY (target, key)
    );
    CREATE TABLE multipart_uploads (
        target TEXT NOT NULL,
        key TEXT NOT NULL,
        upload_id TEXT NOT NULL,
        started INTEGER NOT NULL,
        PRIMARY KEY (target, upload_id)
    );",
    // 3: what each run did, for `status` and its metrics: its duration,
    // packages sent (bytes) and failed, the package-versions of the current
    // set still missing or differing after it (sync, s3sync), deletions
    // aging refused (max_delete); and each target's free space as last read.
    "ALTER TABLE runs ADD COLUMN seconds REAL;
    ALTER TABLE runs ADD COLUMN sent INTEGER;
    ALTER TABLE runs ADD COLUMN bytes_sent INTEGER;
    ALTER TABLE runs ADD COLUMN failed INTEGER;
    ALTER TABLE runs ADD COLUMN behind INTEGER;
    ALTER TABLE runs ADD COLUMN aging_refused INTEGER;
    ALTER TABLE runs ADD COLUMN problem TEXT;
    CREATE TABLE free_space (
        target TEXT PRIMARY KEY,
        bytes INTEGER NOT NULL,
        seen INTEGER NOT NULL
    );",
    // 4: per archive target, the syncs that read the target's index since
    // its last full check (a walk compared with the index), for
    // `verify_every`.
    "CREATE TABLE full_checks (
        target TEXT PRIMARY KEY,
        syncs_since INTEGER NOT NULL,
        last_check INTEGER
    );",
];

/// The first schema version with the per-run facts ([`RunFacts`]) and the
/// `free_space` table; [`State::open_status`] reads older files without them.
const FACTS_VERSION: usize = 3;

/// The first schema version with the `full_checks` table.
const FULL_CHECKS_VERSION: usize = 4;

/// An open state file.
pub struct State {
    conn: Connection,
    /// The schema version of the file (older only for [`State::open_status`]).
    version: usize,
    /// `None` for [`State::open_read_only`] of a state file that does not
    /// exist (an empty in-memory stand-in).
    file: Option<PathBuf>,
}

/// One finished (or still running) command run on a target.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Run {
    pub target: String,
    pub command: String,
    pub started: i64,
    pub finished: Option<i64>,
    pub outcome: Option<String>,
    pub summary: Option<String>,
    pub error: Option<String>,
    /// What the run did (absent for runs recorded by an older blat).
    #[serde(flatten)]
    pub facts: RunFacts,
}

/// What one run did, as far as its command knows (`None`: not applicable,
/// or not known).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct RunFacts {
    /// Wall-clock duration.
    pub seconds: Option<f64>,
    /// Package-versions sent (uploaded, for s3sync).
    pub sent: Option<u64>,
    pub bytes_sent: Option<u64>,
    /// Package-versions (and other items) that failed.
    pub failed: Option<u64>,
    /// Package-versions of the current set still missing on the target, or
    /// there with another descpkg mtime, after the run (sync, s3sync).
    pub behind: Option<u64>,
    /// Deletions due that aging refused (more than max_delete); `Some(0)`
    /// when the run aged and refused nothing.
    pub aging_refused: Option<u64>,
    /// What went wrong first in a run that failed or partly failed without
    /// an error of its own (a package, an alias, the PackageList, a tag,
    /// aging's refusal), with how many more failed.
    pub problem: Option<String>,
    /// The target's free space, as read during the run.
    #[serde(skip)]
    pub free_bytes: Option<u64>,
}

/// A target's free space as last read, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FreeSpace {
    pub bytes: u64,
    pub seen: i64,
}

/// The columns of a [`Run`], in the order [`run_row`] reads them.
const RUN_COLUMNS: &str = "target, command, started, finished, outcome, summary, error, \
    seconds, sent, bytes_sent, failed, behind, aging_refused, problem";
/// The same for a schema before [`FACTS_VERSION`].
const RUN_COLUMNS_V2: &str = "target, command, started, finished, outcome, summary, error, \
    NULL, NULL, NULL, NULL, NULL, NULL, NULL";

fn run_row(r: &rusqlite::Row) -> rusqlite::Result<Run> {
    let count = |i: usize| -> rusqlite::Result<Option<u64>> {
        Ok(r.get::<_, Option<i64>>(i)?
            .map(|n| u64::try_from(n).unwrap_or(0)))
    };
    Ok(Run {
        target: r.get(0)?,
        command: r.get(1)?,
        started: r.get(2)?,
        finished: r.get(3)?,
        outcome: r.get(4)?,
        summary: r.get(5)?,
        error: r.get(6)?,
        facts: RunFacts {
            seconds: r.get(7)?,
            sent: count(8)?,
            bytes_sent: count(9)?,
            failed: count(10)?,
            behind: count(11)?,
            aging_refused: count(12)?,
            problem: r.get(13)?,
            free_bytes: None,
        },
    })
}

/// What one upload left in the bucket (a row of `uploads`). For an alias
/// object, `version` is the version it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upload {
    pub key: String,
    pub package: String,
    pub version: String,
    pub descpkg_mtime: i64,
    pub size: u64,
    pub etag: String,
    pub uploaded: i64,
}

impl State {
    /// Opens (creating and migrating as needed) the state file of `target`.
    /// The caller has split a `blat.db` of an earlier version first
    /// ([`split_legacy`]), or its rows would not be seen.
    pub fn open_target(state_dir: &Path, target: &str) -> Result<State> {
        let path = target_file(state_dir, target)?;
        let dir = state_dir.join(TARGETS_DIR);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create state directory {}", dir.display()))?;
        State::open_file(&path)
    }

    /// Opens (creating and migrating as needed) the state file `path`.
    pub fn open_file(path: &Path) -> Result<State> {
        let path = path.to_path_buf();
        let conn = Connection::open(&path)
            .with_context(|| format!("cannot open state file {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        // Switching a new file to WAL needs a lock that SQLite does not wait
        // for (its busy handler is not called there): runs opening a new
        // state file at once try again for up to the same 30 s.
        let mut tries = 0;
        loop {
            match conn.pragma_update(None, "journal_mode", "WAL") {
                Ok(()) => break,
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy && tries < 3000 =>
                {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot use state file {}", path.display()))
                }
            }
        }
        let mut state = State {
            conn,
            version: MIGRATIONS.len(),
            file: Some(path.clone()),
        };
        state
            .migrate()
            .with_context(|| format!("cannot migrate state file {}", path.display()))?;
        Ok(state)
    }

    /// Opens the state for a pass that writes nothing (`status`, any
    /// `--dry-run`), so that a user who may only read `state_dir` can run
    /// it: creates no directory and no file, never migrates, and the
    /// connection refuses writes. A missing state file is an empty state
    /// (see [`State::recorded`]).
    ///
    /// The state file is a WAL database. While a writer has it open, its
    /// `-wal` and `-shm` files exist and a read-only connection reads
    /// through them. When there is no `-wal` file no connection has it
    /// open and the database file holds everything: it is read as
    /// `immutable` (no locks, no WAL), because a read-only connection would
    /// create `-wal` and `-shm` files (owned by whoever runs the dry run,
    /// which could lock the real runs out), or fail where it cannot. A
    /// read-only open that fails for another reason falls back to
    /// `immutable` too (then a writer's last commits may not show yet).
    ///
    /// Until a run that may write has split the `blat.db` of an earlier
    /// version, a target without its own file is read from that file.
    pub fn open_read_only(state_dir: &Path, target: &str) -> Result<State> {
        State::read_only(&State::readable_file(state_dir, target)?, false)
    }

    /// [`State::open_read_only`] for `status`, which also reads a state
    /// file an older blat wrote (not yet upgraded by a run that may write
    /// it): what that schema lacks reads as not known.
    pub fn open_status(state_dir: &Path, target: &str) -> Result<State> {
        State::read_only(&State::readable_file(state_dir, target)?, true)
    }

    /// The file a read-only open of `target` reads: its own, else the
    /// `blat.db` not yet split, else its own (that does not exist).
    fn readable_file(state_dir: &Path, target: &str) -> Result<PathBuf> {
        let own = target_file(state_dir, target)?;
        if std::fs::symlink_metadata(&own).is_err() {
            let legacy = state_dir.join(LEGACY_FILE);
            if std::fs::symlink_metadata(&legacy).is_ok() {
                return Ok(legacy);
            }
        }
        Ok(own)
    }

    /// Reads the state file `path` (see [`State::open_read_only`]).
    pub fn read_only(path: &Path, older_too: bool) -> Result<State> {
        let path = path.to_path_buf();
        match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return State::empty(),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot open state file {}", path.display()))
            }
            Ok(_) => {}
        }
        let open = |uri: String| -> Result<(Connection, i64)> {
            let conn = Connection::open_with_flags(
                uri,
                OpenFlags::SQLITE_OPEN_READ_ONLY
                    | OpenFlags::SQLITE_OPEN_URI
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            conn.busy_timeout(std::time::Duration::from_secs(30))?;
            // The first read is where a WAL file without its -shm fails.
            let version = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
            Ok((conn, version))
        };
        let uri = format!("file:{}", uri_path(&path));
        let immutable = format!("{uri}?mode=ro&immutable=1");
        let mut wal = path.clone().into_os_string();
        wal.push("-wal");
        let opened = if Path::new(&wal).exists() {
            open(format!("{uri}?mode=ro")).or_else(|_| open(immutable))
        } else {
            open(immutable)
        };
        let (conn, version) =
            opened.with_context(|| format!("cannot read state file {}", path.display()))?;
        let version = usize::try_from(version).unwrap_or(usize::MAX);
        if version == 0 {
            // Created by a run that has not set it up yet: nothing recorded.
            return State::empty();
        }
        if version > MIGRATIONS.len() {
            anyhow::bail!(
                "state file {} has schema version {version}, newer than this blat knows ({})",
                path.display(),
                MIGRATIONS.len()
            );
        }
        if version < MIGRATIONS.len() && !older_too {
            anyhow::bail!(
                "state file {} has schema version {version}, older than this blat's ({}): it is upgraded by the first run that may write it (one without --dry-run)",
                path.display(),
                MIGRATIONS.len()
            );
        }
        Ok(State {
            conn,
            version,
            file: Some(path),
        })
    }

    /// [`State::open_read_only`] or [`State::open_target`].
    pub fn open_for(state_dir: &Path, target: &str, read_only: bool) -> Result<State> {
        if read_only {
            State::open_read_only(state_dir, target)
        } else {
            State::open_target(state_dir, target)
        }
    }

    /// An empty state in memory: what a state file that does not exist holds.
    fn empty() -> Result<State> {
        let mut state = State {
            conn: Connection::open_in_memory()?,
            version: MIGRATIONS.len(),
            file: None,
        };
        state.migrate()?;
        Ok(state)
    }

    /// False when there is no state file (a read-only open of a state
    /// directory where no run was ever recorded).
    pub fn recorded(&self) -> bool {
        self.file.is_some()
    }

    fn migrate(&mut self) -> Result<()> {
        loop {
            // Read the version inside a write transaction, so two processes
            // opening a new state file at once (cron starting fast and sync
            // in the same minute) take turns instead of both migrating.
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
            let version = version as usize;
            if version > MIGRATIONS.len() {
                anyhow::bail!(
                    "state file has schema version {version}, newer than this blat knows ({})",
                    MIGRATIONS.len()
                );
            }
            let Some(sql) = MIGRATIONS.get(version) else {
                return Ok(());
            };
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (version + 1) as i64)?;
            tx.commit()?;
        }
    }
    /// Records the start of a run; returns its id for [`State::finish_run`].
    pub fn start_run(&self, target: &str, command: &str, now: i64) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO runs (target, command, started) VALUES (?1, ?2, ?3)",
            params![target, command, now],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn finish_run(
        &self,
        id: i64,
        now: i64,
        outcome: Outcome,
        summary: &str,
        error: Option<&str>,
    ) -> Result<()> {
        self.conn.execute(
            "UPDATE runs SET finished = ?2, outcome = ?3, summary = ?4, error = ?5 WHERE id = ?1",
            params![id, now, outcome.word(), summary, error],
        )?;
        // Keep the table small: the last 200 runs per target and command,
        // and the last successful one however old (`sync --due`, status).
        self.conn.execute(
            "DELETE FROM runs WHERE id IN (SELECT id FROM runs r
               WHERE r.target = (SELECT target FROM runs WHERE id = ?1)
                 AND r.command = (SELECT command FROM runs WHERE id = ?1)
               ORDER BY id DESC LIMIT -1 OFFSET 200)
             AND id IS NOT (SELECT max(id) FROM runs d
               WHERE d.target = (SELECT target FROM runs WHERE id = ?1)
                 AND d.command = (SELECT command FROM runs WHERE id = ?1)
                 AND d.outcome = 'done')",
            params![id],
        )?;
        Ok(())
    }

    /// Records what run `id` did (see [`RunFacts`]), and the target's free
    /// space when the run read it.
    pub fn record_facts(&self, id: i64, now: i64, facts: &RunFacts) -> Result<()> {
        let n = |v: Option<u64>| v.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
        self.conn.execute(
            "UPDATE runs SET seconds = ?2, sent = ?3, bytes_sent = ?4, failed = ?5,
                behind = ?6, aging_refused = ?7, problem = ?8 WHERE id = ?1",
            params![
                id,
                facts.seconds,
                n(facts.sent),
                n(facts.bytes_sent),
                n(facts.failed),
                n(facts.behind),
                n(facts.aging_refused),
                facts.problem
            ],
        )?;
        if let Some(bytes) = facts.free_bytes {
            self.conn.execute(
                "INSERT INTO free_space (target, bytes, seen)
                   SELECT target, ?2, ?3 FROM runs WHERE id = ?1
                 ON CONFLICT (target) DO UPDATE SET bytes = excluded.bytes, seen = excluded.seen",
                params![id, n(Some(bytes)), now],
            )?;
        }
        Ok(())
    }

    fn run_columns(&self) -> &'static str {
        if self.version >= FACTS_VERSION {
            RUN_COLUMNS
        } else {
            RUN_COLUMNS_V2
        }
    }

    /// The most recent finished run of `command` on `target` that measured
    /// how far behind the target is (see [`RunFacts::behind`]).
    pub fn last_behind(&self, target: &str, command: &str) -> Result<Option<Run>> {
        if self.version < FACTS_VERSION {
            return Ok(None);
        }
        Ok(self
            .conn
            .query_row(
                &format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE target = ?1 AND command = ?2
                     AND behind IS NOT NULL AND finished IS NOT NULL ORDER BY id DESC LIMIT 1"
                ),
                params![target, command],
                run_row,
            )
            .optional()?)
    }

    /// The most recent finished run on `target` that aged (see
    /// [`RunFacts::aging_refused`]).
    pub fn last_aging(&self, target: &str) -> Result<Option<Run>> {
        if self.version < FACTS_VERSION {
            return Ok(None);
        }
        Ok(self
            .conn
            .query_row(
                &format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE target = ?1
                     AND aging_refused IS NOT NULL AND finished IS NOT NULL
                     ORDER BY finished DESC, id DESC LIMIT 1"
                ),
                params![target],
                run_row,
            )
            .optional()?)
    }

    /// The target's free space as last read (by a sync).
    pub fn free_space(&self, target: &str) -> Result<Option<FreeSpace>> {
        if self.version < FACTS_VERSION {
            return Ok(None);
        }
        Ok(self
            .conn
            .query_row(
                "SELECT bytes, seen FROM free_space WHERE target = ?1",
                params![target],
                |r| {
                    Ok(FreeSpace {
                        bytes: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                        seen: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    /// Syncs of `target` that trusted its index since its last full check
    /// (`None`: no full check recorded yet).
    pub fn syncs_since_full_check(&self, target: &str) -> Result<Option<u64>> {
        if self.version < FULL_CHECKS_VERSION {
            return Ok(None);
        }
        Ok(self
            .conn
            .query_row(
                "SELECT syncs_since, last_check FROM full_checks WHERE target = ?1",
                params![target],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?)),
            )
            .optional()?
            .and_then(|(n, last)| last.map(|_| u64::try_from(n).unwrap_or(0))))
    }

    /// Counts a sync of `target`: a full check (the target was walked and
    /// its index rebuilt) starts the count again, a listing from the index
    /// adds one.
    pub fn count_listing(&self, target: &str, full_check: bool, now: i64) -> Result<()> {
        if full_check {
            self.conn.execute(
                "INSERT INTO full_checks (target, syncs_since, last_check) VALUES (?1, 0, ?2)
                 ON CONFLICT (target) DO UPDATE SET syncs_since = 0, last_check = excluded.last_check",
                params![target, now],
            )?;
        } else {
            self.conn.execute(
                "INSERT INTO full_checks (target, syncs_since) VALUES (?1, 1)
                 ON CONFLICT (target) DO UPDATE SET syncs_since = syncs_since + 1",
                params![target],
            )?;
        }
        Ok(())
    }

    /// Forgets a run that turned out not to happen (a target not yet due).
    pub fn discard_run(&self, id: i64) -> Result<()> {
        self.conn
            .execute("DELETE FROM runs WHERE id = ?1", params![id])?;
        Ok(())
    }

    /// When `command` last finished with outcome `done` on `target`.
    pub fn last_success(&self, target: &str, command: &str) -> Result<Option<i64>> {
        Ok(self
            .conn
            .query_row(
                "SELECT max(finished) FROM runs WHERE target = ?1 AND command = ?2 AND outcome = 'done'",
                params![target, command],
                |r| r.get::<_, Option<i64>>(0),
            )
            .optional()?
            .flatten())
    }

    /// The most recent run of each command on `target`.
    pub fn last_runs(&self, target: &str) -> Result<Vec<Run>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {} FROM runs
             WHERE id IN (SELECT max(id) FROM runs WHERE target = ?1 GROUP BY command)
             ORDER BY command",
            self.run_columns()
        ))?;
        let rows = stmt.query_map(params![target], run_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The most recent finished run of each command on `target`.
    pub fn last_finished_runs(&self, target: &str) -> Result<Vec<Run>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {} FROM runs WHERE id IN (SELECT max(id) FROM runs
               WHERE target = ?1 AND finished IS NOT NULL GROUP BY command)
             ORDER BY command",
            self.run_columns()
        ))?;
        let rows = stmt.query_map(params![target], run_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// When each command on `target` last finished with outcome `done`.
    pub fn last_successes(&self, target: &str) -> Result<Vec<(String, i64)>> {
        let mut stmt = self.conn.prepare(
            "SELECT command, max(finished) FROM runs
             WHERE target = ?1 AND outcome = 'done' AND finished IS NOT NULL
             GROUP BY command ORDER BY command",
        )?;
        let rows = stmt.query_map(params![target], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The most recent run of `target` that ended with an error, or (from
    /// schema 3 on) with a problem (see [`RunFacts::problem`]).
    pub fn last_error(&self, target: &str) -> Result<Option<Run>> {
        Ok(self
            .conn
            .query_row(
                &format!(
                    "SELECT {} FROM runs WHERE target = ?1 AND ({}) ORDER BY id DESC LIMIT 1",
                    self.run_columns(),
                    if self.version >= FACTS_VERSION {
                        "error IS NOT NULL OR problem IS NOT NULL"
                    } else {
                        "error IS NOT NULL"
                    }
                ),
                params![target],
                run_row,
            )
            .optional()?)
    }

    /// Counts one failed attempt at `tag` on `target` (used by `fast`);
    /// returns the attempts so far.
    pub fn tag_failed(&self, target: &str, tag: &str, error: &str) -> Result<u32> {
        self.conn.execute(
            "INSERT INTO tags (target, tag, attempts, last_error) VALUES (?1, ?2, 1, ?3)
             ON CONFLICT (target, tag) DO UPDATE SET attempts = attempts + 1, last_error = ?3",
            params![target, tag, error],
        )?;
        Ok(self.conn.query_row(
            "SELECT attempts FROM tags WHERE target = ?1 AND tag = ?2",
            params![target, tag],
            |r| r.get(0),
        )?)
    }

    /// Forgets the attempts at a tag that was consumed or rejected.
    pub fn forget_tag(&self, target: &str, tag: &str) -> Result<()> {
        self.conn.execute(
            "DELETE FROM tags WHERE target = ?1 AND tag = ?2",
            params![target, tag],
        )?;
        Ok(())
    }

    /// Tags of `target` that failed at least once: (tag, attempts, last error).
    pub fn tag_attempts(&self, target: &str) -> Result<Vec<(String, u32, Option<String>)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT tag, attempts, last_error FROM tags WHERE target = ?1 ORDER BY tag")?;
        let rows = stmt.query_map(params![target], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The aging marks of `target`: (package, version, first seen excess),
    /// sorted. Names are as stored; callers validate them before use.
    pub fn marks(&self, target: &str) -> Result<Vec<(String, String, i64)>> {
        let mut stmt = self.conn.prepare(
            "SELECT package, version, first_seen FROM marks WHERE target = ?1 ORDER BY package, version",
        )?;
        let rows = stmt.query_map(params![target], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Replaces all aging marks of `target` in one transaction, so a pass
    /// that dies half-way leaves the marks of the pass before.
    pub fn set_marks<'a>(
        &self,
        target: &str,
        marks: impl IntoIterator<Item = (&'a str, &'a str, i64)>,
    ) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        tx.execute("DELETE FROM marks WHERE target = ?1", params![target])?;
        {
            let mut insert = tx.prepare(
                "INSERT INTO marks (target, package, version, first_seen) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (package, version, first_seen) in marks {
                insert.execute(params![target, package, version, first_seen])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// In WAL mode `synchronous = NORMAL` keeps the file consistent but
    /// skips an fsync per commit: a power cut may forget the last S3 upload
    /// rows, which costs one HEAD each at the next pass, while thousands of
    /// small uploads would otherwise spend more time in fsync than uploading.
    pub fn relax_sync(&self) -> Result<()> {
        self.conn
            .pragma_update(None, "synchronous", "NORMAL")
            .context("cannot set up the state file")
    }

    /// What `s3sync` left in the bucket of `target`, by key.
    pub fn uploads(&self, target: &str) -> Result<HashMap<String, Upload>> {
        let mut stmt = self.conn.prepare(
            "SELECT key, package, version, descpkg_mtime, size, etag, uploaded FROM uploads WHERE target = ?1",
        )?;
        let rows = stmt.query_map(params![target], |r| {
            Ok(Upload {
                key: r.get(0)?,
                package: r.get(1)?,
                version: r.get(2)?,
                descpkg_mtime: r.get(3)?,
                size: r.get::<_, i64>(4)? as u64,
                etag: r.get(5)?,
                uploaded: r.get(6)?,
            })
        })?;
        let mut out = HashMap::new();
        for row in rows {
            let row = row?;
            out.insert(row.key.clone(), row);
        }
        Ok(out)
    }

    pub fn record_upload(&self, target: &str, u: &Upload) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO uploads (target, key, package, version, descpkg_mtime, size, etag, uploaded)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![target, u.key, u.package, u.version, u.descpkg_mtime, u.size as i64, u.etag, u.uploaded],
        )?;
        Ok(())
    }

    pub fn forget_upload(&self, target: &str, key: &str) -> Result<()> {
        self.conn.execute(
            "DELETE FROM uploads WHERE target = ?1 AND key = ?2",
            params![target, key],
        )?;
        Ok(())
    }

    /// Multipart uploads started and not known to have ended: (key, upload id).
    pub fn open_multiparts(&self, target: &str) -> Result<Vec<(String, String)>> {
        let mut stmt = self.conn.prepare(
            "SELECT key, upload_id FROM multipart_uploads WHERE target = ?1 ORDER BY started",
        )?;
        let rows = stmt.query_map(params![target], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn multipart_started(
        &self,
        target: &str,
        key: &str,
        upload_id: &str,
        now: i64,
    ) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO multipart_uploads (target, key, upload_id, started) VALUES (?1, ?2, ?3, ?4)",
            params![target, key, upload_id, now],
        )?;
        Ok(())
    }

    pub fn multipart_ended(&self, target: &str, upload_id: &str) -> Result<()> {
        self.conn.execute(
            "DELETE FROM multipart_uploads WHERE target = ?1 AND upload_id = ?2",
            params![target, upload_id],
        )?;
        Ok(())
    }
}

/// Content hashes of the master's archive files, for deltas
/// (`src/delta.rs`): `<state_dir>/hashes.db`, a file of its own (a cache,
/// rebuilt when lost; no migrations). A hash is only reused while the
/// file's path, size, mtime (to the nanosecond), inode and ctime are the
/// ones it was computed for.
pub struct HashCache {
    conn: std::sync::Mutex<Connection>,
}

/// What identifies one state of a file for [`HashCache`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: i64,
    pub ino: u64,
    pub ctime: i64,
}

impl HashCache {
    pub fn open(state_dir: &Path) -> Result<HashCache> {
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("cannot create state directory {}", state_dir.display()))?;
        let path = state_dir.join("hashes.db");
        let conn = Connection::open(&path)
            .with_context(|| format!("cannot open hash cache {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
            PRAGMA synchronous = NORMAL;
            CREATE TABLE IF NOT EXISTS hashes (
                path BLOB PRIMARY KEY,
                size INTEGER NOT NULL,
                mtime INTEGER NOT NULL,
                mtime_nsec INTEGER NOT NULL,
                ino INTEGER NOT NULL,
                ctime INTEGER NOT NULL,
                hash BLOB NOT NULL
            );",
        )
        .with_context(|| format!("cannot use hash cache {}", path.display()))?;
        Ok(HashCache {
            conn: std::sync::Mutex::new(conn),
        })
    }

    /// The hash recorded for `path` in exactly the state `stamp`.
    pub fn get(&self, path: &Path, stamp: FileStamp) -> Option<Vec<u8>> {
        use std::os::unix::ffi::OsStrExt;
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        conn.query_row(
            "SELECT hash FROM hashes WHERE path = ?1 AND size = ?2 AND mtime = ?3
             AND mtime_nsec = ?4 AND ino = ?5 AND ctime = ?6",
            params![
                path.as_os_str().as_bytes(),
                stamp.size as i64,
                stamp.mtime,
                stamp.mtime_nsec,
                stamp.ino as i64,
                stamp.ctime
            ],
            |r| r.get(0),
        )
        .optional()
        .ok()
        .flatten()
    }

    /// Records `hash` for `path` in state `stamp` (a failure only costs a
    /// re-read next time).
    pub fn put(&self, path: &Path, stamp: FileStamp, hash: &[u8]) {
        use std::os::unix::ffi::OsStrExt;
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let _ = conn.execute(
            "INSERT OR REPLACE INTO hashes (path, size, mtime, mtime_nsec, ino, ctime, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                path.as_os_str().as_bytes(),
                stamp.size as i64,
                stamp.mtime,
                stamp.mtime_nsec,
                stamp.ino as i64,
                stamp.ctime,
                hash
            ],
        );
    }
}

/// A file path for an SQLite `file:` URI: bytes other than unreserved
/// characters and `/` are percent-encoded (`?`, `#` and `%` must be).
fn uri_path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_cache_answers_only_for_the_same_file_state() {
        let dir = tempfile::tempdir().unwrap();
        let stamp = FileStamp {
            size: 10,
            mtime: 100,
            mtime_nsec: 5,
            ino: 7,
            ctime: 200,
        };
        let path = Path::new("/a/p/1.0/lib/x");
        {
            let cache = HashCache::open(dir.path()).unwrap();
            assert_eq!(cache.get(path, stamp), None);
            cache.put(path, stamp, b"hash");
        }
        // Another run (a new connection) finds it; any change of the file
        // (size, mtime, inode, ctime) or another path misses.
        let cache = HashCache::open(dir.path()).unwrap();
        assert_eq!(cache.get(path, stamp), Some(b"hash".to_vec()));
        for changed in [
            FileStamp { size: 11, ..stamp },
            FileStamp {
                mtime: 101,
                ..stamp
            },
            FileStamp {
                mtime_nsec: 6,
                ..stamp
            },
            FileStamp { ino: 8, ..stamp },
            FileStamp {
                ctime: 201,
                ..stamp
            },
        ] {
            assert_eq!(cache.get(path, changed), None, "{changed:?}");
        }
        assert_eq!(cache.get(Path::new("/a/p/1.0/lib/y"), stamp), None);
    }

    #[test]
    fn read_only_open_creates_nothing_and_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("odd ?#% name");
        // No state file: an empty state, and nothing created.
        let state = State::open_read_only(&state_dir, "a").unwrap();
        assert!(!state.recorded());
        assert!(state.last_runs("a").unwrap().is_empty());
        assert!(!state_dir.exists());
        drop(state);
        let writer = State::open_target(&state_dir, "a").unwrap();
        let id = writer.start_run("a", "sync", 100).unwrap();
        writer
            .finish_run(id, 110, Outcome::Done, "ok", None)
            .unwrap();
        // While the writer is open (WAL and -shm present) and after it closed.
        for open_writer in [true, false] {
            let state = State::open_read_only(&state_dir, "a").unwrap();
            assert!(state.recorded());
            assert_eq!(state.last_success("a", "sync").unwrap(), Some(110));
            let err = state.start_run("a", "sync", 200).unwrap_err();
            assert!(format!("{err:#}").contains("readonly"), "{err:#}");
            if open_writer {
                drop(state);
            }
        }
        drop(writer);
        let names = |d: &Path| {
            let mut n: Vec<String> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            n.sort();
            n
        };
        let targets = state_dir.join(TARGETS_DIR);
        assert_eq!(names(&state_dir), [TARGETS_DIR]);
        assert_eq!(names(&targets), ["a.db"]);
        assert!(!State::open_read_only(&state_dir, "b").unwrap().recorded());
        let state = State::open_read_only(&state_dir, "a").unwrap();
        assert_eq!(state.last_success("a", "sync").unwrap(), Some(110));
        assert_eq!(
            names(&targets),
            ["a.db"],
            "a read-only open leaves no -wal/-shm"
        );
    }

    #[test]
    fn read_only_open_of_an_older_schema_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("blat.db")).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        drop(conn);
        let err = format!(
            "{:#}",
            State::open_read_only(dir.path(), "a").err().unwrap()
        );
        assert!(err.contains("older than this blat's"), "{err}");
    }

    #[test]
    fn migrates_and_records_runs() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open_target(dir.path(), "a").unwrap();
        let v: i64 = state
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v as usize, MIGRATIONS.len());
        let id = state.start_run("a", "sync", 100).unwrap();
        assert_eq!(state.last_success("a", "sync").unwrap(), None);
        state
            .finish_run(id, 110, Outcome::Done, "ok", None)
            .unwrap();
        let id = state.start_run("a", "sync", 200).unwrap();
        state
            .finish_run(id, 210, Outcome::Failed, "", Some("boom"))
            .unwrap();
        assert_eq!(state.last_success("a", "sync").unwrap(), Some(110));
        let runs = state.last_runs("a").unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].error.as_deref(), Some("boom"));
        drop(state);
        // Reopening an up-to-date file runs no migration again.
        let state = State::open_target(dir.path(), "a").unwrap();
        assert_eq!(state.last_success("a", "sync").unwrap(), Some(110));
    }

    #[test]
    fn records_what_each_run_did_and_the_free_space() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open_target(dir.path(), "a").unwrap();
        let id = state.start_run("a", "sync", 100).unwrap();
        state
            .finish_run(id, 110, Outcome::Partial, "1 sent", None)
            .unwrap();
        let facts = RunFacts {
            seconds: Some(9.5),
            sent: Some(1),
            bytes_sent: Some(4096),
            failed: Some(2),
            behind: Some(2),
            aging_refused: Some(0),
            problem: Some("p/1: no space left (and 1 more)".into()),
            free_bytes: Some(1 << 40),
        };
        state.record_facts(id, 110, &facts).unwrap();
        // A later sync that failed outright measured nothing.
        let id = state.start_run("a", "sync", 200).unwrap();
        state
            .finish_run(id, 210, Outcome::Failed, "", Some("unreachable"))
            .unwrap();
        state
            .record_facts(
                id,
                210,
                &RunFacts {
                    seconds: Some(1.0),
                    ..RunFacts::default()
                },
            )
            .unwrap();
        let measured = state.last_behind("a", "sync").unwrap().unwrap();
        assert_eq!(measured.finished, Some(110));
        assert_eq!(
            measured.facts,
            RunFacts {
                free_bytes: None,
                ..facts
            }
        );
        assert_eq!(state.last_aging("a").unwrap().unwrap().finished, Some(110));
        assert_eq!(
            state.free_space("a").unwrap(),
            Some(FreeSpace {
                bytes: 1 << 40,
                seen: 110
            })
        );
        assert_eq!(state.free_space("b").unwrap(), None);
        let runs = state.last_finished_runs("a").unwrap();
        assert_eq!(runs[0].facts.seconds, Some(1.0));
        assert_eq!(runs[0].facts.sent, None);
    }

    #[test]
    fn counts_syncs_since_the_last_full_check() {
        let dir = tempfile::tempdir().unwrap();
        let s = State::open_target(dir.path(), "t").unwrap();
        assert_eq!(s.syncs_since_full_check("t").unwrap(), None);
        s.count_listing("t", false, 10).unwrap();
        assert_eq!(s.syncs_since_full_check("t").unwrap(), None, "no check yet");
        s.count_listing("t", true, 20).unwrap();
        assert_eq!(s.syncs_since_full_check("t").unwrap(), Some(0));
        s.count_listing("t", false, 30).unwrap();
        s.count_listing("t", false, 40).unwrap();
        assert_eq!(s.syncs_since_full_check("t").unwrap(), Some(2));
        assert_eq!(s.syncs_since_full_check("other").unwrap(), None);
        s.count_listing("t", true, 50).unwrap();
        assert_eq!(s.syncs_since_full_check("t").unwrap(), Some(0));
    }

    #[test]
    fn pruning_keeps_the_last_success() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open_target(dir.path(), "a").unwrap();
        let id = state.start_run("a", "sync", 1).unwrap();
        state.finish_run(id, 2, Outcome::Done, "ok", None).unwrap();
        for t in 10..260 {
            let id = state.start_run("a", "sync", t).unwrap();
            state
                .finish_run(id, t, Outcome::Failed, "", Some("down"))
                .unwrap();
        }
        assert_eq!(state.last_success("a", "sync").unwrap(), Some(2));
        assert_eq!(state.last_successes("a").unwrap(), [("sync".into(), 2)]);
        let n: i64 = state
            .conn
            .query_row("SELECT count(*) FROM runs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 201);
    }

    #[test]
    fn status_reads_a_state_file_of_an_older_blat() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("blat.db")).unwrap();
        for sql in &MIGRATIONS[..2] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 2).unwrap();
        conn.execute(
            "INSERT INTO runs (target, command, started, finished, outcome, summary)
             VALUES ('a', 'sync', 100, 110, 'done', 'ok')",
            [],
        )
        .unwrap();
        drop(conn);
        assert!(State::open_read_only(dir.path(), "a").is_err());
        let state = State::open_status(dir.path(), "a").unwrap();
        let runs = state.last_runs("a").unwrap();
        assert_eq!(runs[0].facts, RunFacts::default());
        assert_eq!(state.last_finished_runs("a").unwrap().len(), 1);
        assert!(state.last_behind("a", "sync").unwrap().is_none());
        assert!(state.last_aging("a").unwrap().is_none());
        assert!(state.free_space("a").unwrap().is_none());
        assert_eq!(state.last_success("a", "sync").unwrap(), Some(110));
        drop(state);
        // The first run that may write upgrades it.
        let state = State::open_file(&dir.path().join(LEGACY_FILE)).unwrap();
        assert_eq!(state.last_runs("a").unwrap()[0].facts.seconds, None);
    }

    #[test]
    fn concurrent_first_opens_migrate_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || {
                    State::open_target(&path, "a")
                        .map(|_| ())
                        .map_err(|e| format!("{e:#}"))
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        let state = State::open_target(&path, "a").unwrap();
        let v: i64 = state
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v as usize, MIGRATIONS.len());
    }

    #[test]
    fn counts_tag_attempts_per_target() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open_target(dir.path(), "a").unwrap();
        assert_eq!(state.tag_failed("a", "p::1", "first").unwrap(), 1);
        assert_eq!(state.tag_failed("a", "p::1", "second").unwrap(), 2);
        assert_eq!(state.tag_failed("b", "p::1", "other target").unwrap(), 1);
        assert_eq!(
            state.tag_attempts("a").unwrap(),
            vec![("p::1".to_string(), 2, Some("second".to_string()))]
        );
        state.forget_tag("a", "p::1").unwrap();
        assert!(state.tag_attempts("a").unwrap().is_empty());
        assert_eq!(state.tag_attempts("b").unwrap().len(), 1);
    }
}
