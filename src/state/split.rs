//! Splitting the single state file of earlier versions
//! (`<state_dir>/blat.db`) into one file per target, once, by the first run
//! that may write. Each target's rows go into a new file that appears whole
//! (written as a temporary, synced, renamed); `blat.db` is then kept as
//! `blat.db.migrated`, so nothing is lost if something was missed. Runs that
//! start at once take turns (a lock in `locks/`); the second finds no
//! `blat.db` and goes on.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OpenFlags};

use super::{target_file, State, LEGACY_FILE, MIGRATIONS, TARGETS_DIR};
use crate::atomic::AtomicFile;

/// The lock the splitting runs take turns on, in `<state_dir>/locks/`
/// (a target's name never starts with `.`).
const SPLIT_LOCK: &str = ".split-state";

/// What [`split_legacy`] did.
#[derive(Debug, Default)]
pub struct Split {
    /// Targets whose rows now live in their own file.
    pub targets: Vec<String>,
    /// Rows left behind, and why (a target that already had its own file,
    /// a name that cannot be a file name).
    pub skipped: Vec<String>,
    /// Where `blat.db` went.
    pub kept_as: PathBuf,
}

/// Splits `<state_dir>/blat.db` into per-target files if it is there;
/// `None` when there was nothing to split (the common case: one `stat`).
pub fn split_legacy(state_dir: &Path) -> Result<Option<Split>> {
    let legacy = state_dir.join(LEGACY_FILE);
    if std::fs::symlink_metadata(&legacy).is_err() {
        return Ok(None);
    }
    let _turn = crate::lock::wait_for(state_dir, SPLIT_LOCK)?;
    // Split meanwhile by the run we waited for.
    if std::fs::symlink_metadata(&legacy).is_err() {
        return Ok(None);
    }
    split_locked(state_dir, &legacy).map(Some).with_context(|| {
        format!(
            "cannot split the state file {} into one file per target in {} (move it aside to start with an empty state)",
            legacy.display(),
            state_dir.join(TARGETS_DIR).display()
        )
    })
}

fn split_locked(state_dir: &Path, legacy: &Path) -> Result<Split> {
    let dir = state_dir.join(TARGETS_DIR);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create state directory {}", dir.display()))?;
    remove_dead_temporaries(&dir);
    // Upgraded to this blat's schema first, so that both sides have the
    // same columns in the same order.
    let old = State::open_file(legacy)?;
    let tables = target_tables(&old.conn)?;
    let mut split = Split::default();
    for name in target_names(&old.conn, &tables)? {
        let dest = match target_file(state_dir, &name) {
            Ok(dest) => dest,
            Err(e) => {
                split.skipped.push(format!("{e:#}"));
                continue;
            }
        };
        if std::fs::symlink_metadata(&dest).is_ok() {
            split.skipped.push(format!(
                "target '{name}': it has its own state file {} already",
                dest.display()
            ));
            continue;
        }
        copy_target(legacy, &tables, &name, &dest).with_context(|| format!("target '{name}'"))?;
        split.targets.push(name);
    }
    // Back to a rollback journal, so the file is whole without its -wal
    // (best effort: another program may have it open).
    let _ = old.conn.pragma_update(None, "journal_mode", "DELETE");
    drop(old);
    split.kept_as = keep_aside(legacy)?;
    sync_dir(state_dir);
    Ok(split)
}

/// The tables with a `target` column: everything the state holds is about
/// one target.
fn target_tables(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT m.name FROM sqlite_master m
         WHERE m.type = 'table'
           AND EXISTS (SELECT 1 FROM pragma_table_info(m.name) WHERE name = 'target')
         ORDER BY m.name",
    )?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn target_names(conn: &Connection, tables: &[String]) -> Result<Vec<String>> {
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    let union = tables
        .iter()
        .map(|t| format!("SELECT target FROM {}", quoted(t)))
        .collect::<Vec<_>>()
        .join(" UNION ");
    let mut stmt = conn.prepare(&format!("SELECT DISTINCT target FROM ({union}) ORDER BY 1"))?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Writes `target`'s rows of `legacy` to a new file at `dest`, whole or
/// not at all.
fn copy_target(legacy: &Path, tables: &[String], target: &str, dest: &Path) -> Result<()> {
    let tmp = AtomicFile::create(dest)?;
    {
        // A rollback journal while it is written: the temporary is one
        // file, and a later open switches it to WAL like any state file.
        let conn = Connection::open_with_flags(
            tmp.path(),
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NOFOLLOW,
        )?;
        let mut state = State {
            conn,
            version: MIGRATIONS.len(),
            file: Some(tmp.path().to_path_buf()),
        };
        state.migrate()?;
        let conn = &state.conn;
        conn.execute(
            "ATTACH DATABASE ?1 AS legacy",
            params![legacy.to_string_lossy()],
        )?;
        let tx = conn.unchecked_transaction()?;
        for table in tables {
            let t = quoted(table);
            tx.execute(
                &format!("INSERT INTO main.{t} SELECT * FROM legacy.{t} WHERE target = ?1"),
                params![target],
            )?;
        }
        tx.commit()?;
        conn.execute("DETACH DATABASE legacy", [])?;
    }
    tmp.commit()
}

/// Renames `blat.db` (and a `-wal` or `-shm` left beside it) to
/// `blat.db.migrated`, or `blat.db.migrated.N` when that is taken.
fn keep_aside(legacy: &Path) -> Result<PathBuf> {
    let mut kept = legacy.with_file_name(format!("{LEGACY_FILE}.migrated"));
    let mut n = 1;
    while std::fs::symlink_metadata(&kept).is_ok() {
        kept = legacy.with_file_name(format!("{LEGACY_FILE}.migrated.{n}"));
        n += 1;
    }
    std::fs::rename(legacy, &kept)
        .with_context(|| format!("cannot rename {} to {}", legacy.display(), kept.display()))?;
    for suffix in ["-wal", "-shm"] {
        let mut from = legacy.as_os_str().to_owned();
        from.push(suffix);
        let mut to = kept.as_os_str().to_owned();
        to.push(suffix);
        if std::fs::symlink_metadata(&from).is_ok() {
            let _ = std::fs::rename(&from, &to);
        }
    }
    Ok(kept)
}

/// Temporaries of a split that died: only a split writes in `targets/`
/// outside SQLite, and this one holds the lock.
fn remove_dead_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(".blat-tmp-")
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Outcome;

    /// A `blat.db` as blat before per-target files left it: schema 1 to
    /// `version`, with rows of targets `a` and `b` in every table it has.
    fn legacy_file(dir: &Path, version: usize) {
        let conn = Connection::open(dir.join(LEGACY_FILE)).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        for sql in &MIGRATIONS[..version] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", version as i64)
            .unwrap();
        for t in ["a", "b"] {
            conn.execute(
                "INSERT INTO runs (target, command, started, finished, outcome, summary)
                 VALUES (?1, 'sync', 100, 110, 'done', ?1)",
                params![t],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO tags (target, tag, attempts) VALUES (?1, 'p::1', 2)",
                params![t],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO marks (target, package, version, first_seen) VALUES (?1, 'p', '1', 50)",
                params![t],
            )
            .unwrap();
            if version >= 2 {
                conn.execute(
                    "INSERT INTO uploads VALUES (?1, 'k', 'p', '1', 5, 10, 'e', 6)",
                    params![t],
                )
                .unwrap();
            }
        }
        // A row of a target whose name cannot be a file name stays behind.
        conn.execute(
            "INSERT INTO runs (target, command, started) VALUES ('../x', 'sync', 1)",
            [],
        )
        .unwrap();
    }

    #[test]
    fn splits_each_targets_rows_into_its_own_file_once() {
        for version in [1, 2, 3] {
            let dir = tempfile::tempdir().unwrap();
            legacy_file(dir.path(), version);
            let split = split_legacy(dir.path()).unwrap().unwrap();
            assert_eq!(split.targets, ["a", "b"]);
            assert_eq!(split.skipped.len(), 1, "{:?}", split.skipped);
            assert!(split.skipped[0].contains("'../x'"), "{:?}", split.skipped);
            assert_eq!(split.kept_as, dir.path().join("blat.db.migrated"));
            assert!(!dir.path().join(LEGACY_FILE).exists());
            for t in ["a", "b"] {
                let state = State::open_target(dir.path(), t).unwrap();
                assert_eq!(state.last_success(t, "sync").unwrap(), Some(110));
                assert_eq!(state.last_runs(t).unwrap()[0].summary.as_deref(), Some(t));
                assert_eq!(state.tag_attempts(t).unwrap()[0].1, 2);
                assert_eq!(state.marks(t).unwrap(), [("p".into(), "1".into(), 50)]);
                assert_eq!(state.uploads(t).unwrap().len(), usize::from(version >= 2));
                // Only its own rows.
                let other = if t == "a" { "b" } else { "a" };
                assert!(state.last_runs(other).unwrap().is_empty());
                assert!(state.marks(other).unwrap().is_empty());
                // Recording goes on where the old file stopped.
                let id = state.start_run(t, "sync", 200).unwrap();
                state
                    .finish_run(id, 210, Outcome::Done, "ok", None)
                    .unwrap();
                assert_eq!(state.last_success(t, "sync").unwrap(), Some(210));
            }
            let mut left: Vec<String> = std::fs::read_dir(dir.path().join(TARGETS_DIR))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| !n.ends_with("-wal") && !n.ends_with("-shm"))
                .collect();
            left.sort();
            assert_eq!(left, ["a.db", "b.db"], "no temporaries left");
            // Nothing to split any more.
            assert!(split_legacy(dir.path()).unwrap().is_none());
        }
    }

    #[test]
    fn a_target_with_its_own_file_keeps_it_and_the_old_file_is_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        legacy_file(dir.path(), 3);
        // Already split once: blat.db.migrated is taken.
        std::fs::write(dir.path().join("blat.db.migrated"), b"earlier").unwrap();
        let own = State::open_target(dir.path(), "a").unwrap();
        let id = own.start_run("a", "fast", 300).unwrap();
        own.finish_run(id, 301, Outcome::Done, "", None).unwrap();
        drop(own);
        let split = split_legacy(dir.path()).unwrap().unwrap();
        assert_eq!(split.targets, ["b"]);
        assert!(split.skipped.iter().any(|s| s.contains("target 'a'")));
        assert_eq!(split.kept_as, dir.path().join("blat.db.migrated.1"));
        let a = State::open_target(dir.path(), "a").unwrap();
        assert_eq!(a.last_success("a", "sync").unwrap(), None);
        assert_eq!(a.last_success("a", "fast").unwrap(), Some(301));
        // The rows left behind are still in the file kept aside.
        let kept = Connection::open(&split.kept_as).unwrap();
        let n: i64 = kept
            .query_row("SELECT count(*) FROM runs WHERE target = 'a'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(
            std::fs::read(dir.path().join("blat.db.migrated")).unwrap(),
            b"earlier"
        );
    }

    #[test]
    fn runs_starting_at_once_split_once() {
        let dir = tempfile::tempdir().unwrap();
        legacy_file(dir.path(), 2);
        let path = dir.path().to_path_buf();
        let results: Vec<_> = (0..4)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || split_legacy(&path).map_err(|e| format!("{e:#}")))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap().unwrap())
            .collect();
        assert_eq!(results.iter().filter(|r| r.is_some()).count(), 1);
        assert!(!dir.path().join("blat.db.migrated.1").exists());
        for t in ["a", "b"] {
            let state = State::open_target(dir.path(), t).unwrap();
            assert_eq!(state.last_success(t, "sync").unwrap(), Some(110));
        }
    }
}
