//! The one `ReleaseSource` suite every Release Manager backend must pass
//! (restic's backend suite is the model): the same reference fixture is
//! loaded into each database and the same checks run against each source.
//!
//! Backends: SQLite through rusqlite; with the `odbc` feature, the very same
//! SQLite file through the `{SQLite3}` ODBC driver, and PostgreSQL through
//! psqlODBC (`$BLAT_TEST_PG`, a scratch database per run). A missing driver
//! or server skips locally and fails under `CI=true`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use blat::config::ReleaseName;
use blat::release::{self, ReleaseSource};

use crate::common;

/// `(PROJECT/RELEASE, state, s3sync, [package/version...])`, as `common::rm_sql` takes.
pub type Releases<'a> = &'a [(&'a str, &'a str, i32, &'a [&'a str])];

/// The reference fixture. Release names repeat across projects (the
/// queries must join the project), states other than open/closed count as
/// not closed, and BROKEN/B1 holds a name that must never reach a path.
pub const FIXTURE: Releases<'static> = &[
    (
        "PROJ/R1.0",
        "closed",
        0,
        &["alpha/1.0", "beta/2.0", "gamma/0.9"],
    ),
    (
        "PROJ/R2.0",
        "open",
        1,
        &["alpha/1.1", "beta/2.0", "Zlib/1.2.13", "jats/current"],
    ),
    ("PROJ/R3.0", "frozen", 0, &["alpha/1.2"]),
    ("PROJ/EMPTY", "open", 0, &[]),
    ("OLD/R0", "closed", 1, &["alpha/0.1"]),
    ("OTHER/R1.0", "open", 0, &["omega/2.0"]),
    ("OTHER/X1", "open", 1, &["omega/3.0", "beta/2.0"]),
    ("BROKEN/B1", "open", 0, &["good/1.0", "evil/../../etc"]),
];

/// Rows of BIG/LARGE: more than two blocks of the ODBC source's bulk fetch.
pub const BIG_RELEASE_ROWS: usize = 9_000;

/// The second package of TOOLONG/R1: longer than any valid name and than the
/// ODBC source's value buffer.
pub fn too_long_name() -> String {
    "x".repeat(600)
}

/// The fixture as SQL for the reference schema: `common::rm_sql(FIXTURE)`
/// plus BIG/LARGE, TOOLONG/R1 and NULLS/R1 (a NULL version), which
/// `rm_sql` cannot express. Multi-row INSERTs keep loading fast over ODBC.
pub fn fixture_sql() -> String {
    let mut sql = common::rm_sql(FIXTURE);
    let (first, n) = (100_000, BIG_RELEASE_ROWS);
    let values =
        |f: &dyn Fn(usize) -> String| (first..first + n).map(f).collect::<Vec<_>>().join(",");
    sql.push_str("INSERT INTO projects VALUES (1000, 'BIG');\n");
    sql.push_str("INSERT INTO releases VALUES (1000, 1000, 'LARGE', 'open', 0);\n");
    sql.push_str(&format!(
        "INSERT INTO packages VALUES {};\n",
        values(&|i| format!("({i}, 'pkg{i}')"))
    ));
    sql.push_str(&format!(
        "INSERT INTO package_versions VALUES {};\n",
        values(&|i| format!("({i}, {i}, '1.{}.0')", i % 97))
    ));
    sql.push_str(&format!(
        "INSERT INTO release_content VALUES {};\n",
        values(&|i| format!("(1000, {i})"))
    ));
    sql.push_str(&format!(
        "INSERT INTO projects VALUES (1001, 'TOOLONG');
INSERT INTO releases VALUES (1001, 1001, 'R1', 'open', 0);
INSERT INTO packages VALUES (200000, '{}');
INSERT INTO package_versions VALUES (200000, 200000, '1.0');
INSERT INTO release_content VALUES (1001, 200000);
INSERT INTO packages VALUES (200002, 'aaa');
INSERT INTO package_versions VALUES (200002, 200002, '1.0');
INSERT INTO release_content VALUES (1001, 200002);
INSERT INTO projects VALUES (1002, 'NULLS');
INSERT INTO releases VALUES (1002, 1002, 'R1', 'open', 0);
INSERT INTO packages VALUES (200001, 'nullish');
INSERT INTO package_versions VALUES (200001, 200001, NULL);
INSERT INTO release_content VALUES (1002, 200001);
",
        too_long_name()
    ));
    sql
}

/// The `(package, version)` rows of BIG/LARGE.
fn big_release() -> Vec<(String, String)> {
    (100_000..100_000 + BIG_RELEASE_ROWS)
        .map(|i| (format!("pkg{i}"), format!("1.{}.0", i % 97)))
        .collect()
}

/// A SQLite database file holding `sql`, in a temporary directory.
pub struct SqliteFile {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl SqliteFile {
    pub fn new(sql: &str) -> SqliteFile {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("release_manager.db");
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(sql)
            .unwrap();
        SqliteFile { _dir: dir, path }
    }
}

fn rn(text: &str) -> ReleaseName {
    ReleaseName::parse(text).unwrap()
}

fn pairs(list: &[&str]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = list
        .iter()
        .map(|pv| {
            let (p, v) = pv.split_once('/').unwrap();
            (p.to_string(), v.to_string())
        })
        .collect();
    out.sort();
    out
}

/// The rows of `release`, sorted: the contract promises no order.
fn rows(source: &mut dyn ReleaseSource, release: &str) -> Vec<(String, String)> {
    let mut rows = source
        .release_rows(&rn(release))
        .unwrap_or_else(|e| panic!("{release}: {e:#}"));
    rows.sort();
    rows
}

fn names(list: Vec<ReleaseName>) -> Vec<String> {
    let mut out: Vec<String> = list.iter().map(ReleaseName::to_string).collect();
    out.sort();
    out
}

#[track_caller]
fn assert_error(result: anyhow::Result<impl std::fmt::Debug>, expected: &[&str]) {
    match result {
        Ok(v) => panic!("expected an error containing {expected:?}, got Ok({v:?})"),
        Err(e) => {
            let text = format!("{e:#}");
            assert!(!text.contains('\n'), "error spans lines: {text}");
            for part in expected {
                assert!(text.contains(part), "error lacks {part:?}: {text}");
            }
        }
    }
}

type Check = fn(&mut dyn ReleaseSource);

/// The checks, by name.
const CHECKS: &[(&str, Check)] = &[
    ("release_rows_are_the_release_content", |s| {
        for (name, _, _, content) in FIXTURE.iter().filter(|r| !r.0.starts_with("BROKEN/")) {
            assert_eq!(rows(s, name), pairs(content), "{name}");
        }
    }),
    ("empty_release_is_empty_not_an_error", |s| {
        assert_eq!(rows(s, "PROJ/EMPTY"), []);
    }),
    ("unknown_release_is_an_error", |s| {
        for name in [
            "PROJ/R9",
            "NOPE/R1.0",
            "proj/R1.0",
            "OTHER/R2.0",
            "PROJ/R1.0' OR '1'='1",
        ] {
            assert_error(
                s.release_rows(&rn(name)),
                &[&format!("release {name} does not exist")],
            );
        }
    }),
    ("open_releases_are_the_not_closed_ones", |s| {
        let open = |s: &mut dyn ReleaseSource, p: &str| names(s.open_releases(p).unwrap());
        assert_eq!(open(s, "PROJ"), ["PROJ/EMPTY", "PROJ/R2.0", "PROJ/R3.0"]);
        assert_eq!(open(s, "OTHER"), ["OTHER/R1.0", "OTHER/X1"]);
        assert_eq!(
            open(s, "OLD"),
            Vec::<String>::new(),
            "a project with only closed releases has none"
        );
    }),
    ("unknown_project_is_an_error", |s| {
        for project in ["NOPE", "proj", "PROJ' OR '1'='1"] {
            assert_error(
                s.open_releases(project),
                &[&format!("project {project} does not exist")],
            );
        }
    }),
    ("s3_releases_are_the_flagged_ones", |s| {
        assert_eq!(
            names(s.s3_releases().unwrap()),
            ["OLD/R0", "OTHER/X1", "PROJ/R2.0"]
        );
    }),
    ("bad_name_fails_the_release_naming_the_row", |s| {
        let err = release::release_content(s, &rn("BROKEN/B1")).unwrap_err();
        let text = format!("{err:#}");
        // Row numbers follow the default queries' ORDER BY.
        assert!(text.contains("release BROKEN/B1: row 1 "), "{text}");
        assert!(text.contains("('evil', '../../etc')"), "{text}");
        assert!(text.contains("invalid name '../../etc'"), "{text}");
    }),
    ("over_long_and_null_values_fail_the_release", |s| {
        assert_error(
            release::release_content(s, &rn("TOOLONG/R1")),
            &["TOOLONG/R1", "row 2"],
        );
        assert_error(release::release_content(s, &rn("NULLS/R1")), &["NULLS/R1"]);
    }),
    ("validated_content_of_a_good_release", |s| {
        let content = release::release_content(s, &rn("PROJ/R2.0")).unwrap();
        let mut got: Vec<String> = content
            .iter()
            .map(|pv| format!("{}/{}", pv.package, pv.version))
            .collect();
        got.sort();
        assert_eq!(
            got,
            ["Zlib/1.2.13", "alpha/1.1", "beta/2.0", "jats/current"]
        );
    }),
    ("big_release_comes_back_whole", |s| {
        let mut expected = big_release();
        expected.sort();
        let got = rows(s, "BIG/LARGE");
        assert_eq!(got.len(), BIG_RELEASE_ROWS);
        assert!(got == expected, "BIG/LARGE differs from the fixture");
    }),
    ("selected_releases_combine_releases_projects_and_s3", |s| {
        let picked = release::selected_releases(
            s,
            &[rn("PROJ/R1.0"), rn("PROJ/R2.0")],
            &["PROJ".into()],
            false,
        );
        assert_eq!(
            names(picked.unwrap()),
            ["PROJ/EMPTY", "PROJ/R1.0", "PROJ/R2.0", "PROJ/R3.0"]
        );
        let s3 = release::selected_releases(s, &[], &[], true).unwrap();
        assert_eq!(names(s3), ["OLD/R0", "OTHER/X1", "PROJ/R2.0"]);
        let only_named = release::selected_releases(s, &[rn("OTHER/R1.0")], &[], true).unwrap();
        assert_eq!(
            names(only_named),
            ["OTHER/R1.0"],
            "named releases replace the s3sync default"
        );
        assert_error(
            release::selected_releases(s, &[], &["NOPE".into()], false),
            &["project NOPE"],
        );
    }),
    ("one_source_answers_many_queries", |s| {
        for _ in 0..25 {
            assert_eq!(rows(s, "PROJ/R2.0").len(), 4);
            assert!(s.release_rows(&rn("PROJ/R9")).is_err());
            assert_eq!(s.open_releases("PROJ").unwrap().len(), 3);
        }
    }),
];

/// Runs every check against a fresh source from `open`, then fails once,
/// naming every check that failed (each failure's message is in the output).
pub fn run(backend: &str, open: &dyn Fn() -> Box<dyn ReleaseSource>) {
    let mut failed = Vec::new();
    for (name, check) in CHECKS {
        let mut source = open();
        let describe = source.describe();
        assert!(!describe.is_empty(), "{backend}: describe() is empty");
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check(source.as_mut()))) {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failed.push(format!("{name}: {message}"));
        }
    }
    assert!(
        failed.is_empty(),
        "{backend}: {} of {} checks failed:\n{}",
        failed.len(),
        CHECKS.len(),
        failed.join("\n")
    );
}

#[test]
fn sqlite() {
    let db = SqliteFile::new(&fixture_sql());
    run("SQLite (rusqlite)", &|| {
        Box::new(release::sqlite::SqliteSource::open(&db.path).unwrap())
    });
}

#[test]
fn sqlite_from_sql_file() {
    // The `.sql` form that fixtures and the bundled example use.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rm.sql");
    std::fs::write(&path, fixture_sql()).unwrap();
    run("SQLite (.sql in memory)", &|| {
        Box::new(release::sqlite::SqliteSource::open(&path).unwrap())
    });
}

#[cfg(feature = "odbc")]
pub use odbc_backends::*;

#[cfg(feature = "odbc")]
mod odbc_backends {
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use blat::config::OdbcConfig;
    use blat::release::odbc::OdbcSource;
    use odbc_api::ConnectionOptions;

    use super::*;

    /// `sql` split into statements (fixture SQL ends each with `;` and a newline).
    pub fn statements(sql: &str) -> impl Iterator<Item = &str> {
        sql.split(";\n").map(str::trim).filter(|s| !s.is_empty())
    }

    /// An ODBC config for `connection_string` with blat's defaults.
    pub fn odbc_config(connection_string: &str) -> OdbcConfig {
        OdbcConfig {
            connection_string: Some(connection_string.to_string()),
            login_timeout: Duration::from_secs(15),
            query_timeout: Duration::from_secs(120),
            ..OdbcConfig::default()
        }
    }

    /// Whether unixODBC knows driver `name`; when it does not, panics under
    /// `CI=true` (CI installs it) and otherwise skips with a note.
    pub fn require_driver(name: &str) -> bool {
        let drivers = odbc_api::environment().unwrap().drivers().unwrap();
        if drivers.iter().any(|d| d.description == name) {
            return true;
        }
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("ODBC driver {{{name}}} is required under CI=true but not registered (scripts/test-env start)");
        }
        eprintln!(
            "skipped: ODBC driver {{{name}}} not registered (scripts/test-env start registers it)"
        );
        false
    }

    /// `Driver={SQLite3};Database=<path>;`
    pub fn sqlite_odbc_string(path: &Path) -> String {
        format!("Driver={{SQLite3}};Database={};", path.display())
    }

    /// `connection_string` with attribute `key` set to `value` (replacing
    /// it when present). Test strings only: values must not hold `;`.
    pub fn with_attribute(connection_string: &str, key: &str, value: &str) -> String {
        let mut parts: Vec<String> = connection_string
            .split(';')
            .filter(|p| {
                !p.is_empty()
                    && !p
                        .split('=')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .eq_ignore_ascii_case(key)
            })
            .map(str::to_string)
            .collect();
        parts.push(format!("{key}={value}"));
        parts.join(";") + ";"
    }

    /// `connection_string` without its password, and the password.
    pub fn split_password(connection_string: &str) -> (String, String) {
        let mut password = String::new();
        let rest: Vec<&str> = connection_string
            .split(';')
            .filter(|p| match p.split_once('=') {
                Some((k, v)) if k.trim().eq_ignore_ascii_case("pwd") => {
                    password = v.to_string();
                    false
                }
                _ => !p.is_empty(),
            })
            .collect();
        (rest.join(";") + ";", password)
    }

    /// A PostgreSQL database of its own, made from `$BLAT_TEST_PG`'s server
    /// and loaded with some SQL; dropped again at the end. Tests run in
    /// parallel (and other people's tests share the server): nobody else
    /// ever sees it.
    pub struct PgDatabase {
        admin: String,
        pub name: String,
        /// Connects to this database, password included.
        pub connection_string: String,
    }

    impl PgDatabase {
        pub fn new(server: &str, sql: &str) -> PgDatabase {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let name = format!(
                "blat_test_{}_{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::SeqCst)
            );
            let env = odbc_api::environment().unwrap();
            let admin = env
                .connect_with_connection_string(server, ConnectionOptions::default())
                .unwrap_or_else(|e| panic!("cannot connect to $BLAT_TEST_PG: {e}"));
            admin
                .execute(
                    &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                    (),
                    None,
                )
                .unwrap();
            // template0: nobody is ever connected to it, so concurrent
            // creations cannot fail on "source database is being accessed".
            admin
                .execute(
                    &format!("CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8'"),
                    (),
                    None,
                )
                .unwrap();
            let db = PgDatabase {
                admin: server.to_string(),
                connection_string: with_attribute(server, "Database", &name),
                name,
            };
            let conn = env
                .connect_with_connection_string(&db.connection_string, ConnectionOptions::default())
                .unwrap();
            for statement in statements(sql) {
                conn.execute(statement, (), None).unwrap_or_else(|e| {
                    panic!("{e}\nin: {}", &statement[..statement.len().min(200)])
                });
            }
            db
        }
    }

    impl Drop for PgDatabase {
        fn drop(&mut self) {
            let env = odbc_api::environment().unwrap();
            if let Ok(admin) =
                env.connect_with_connection_string(&self.admin, ConnectionOptions::default())
            {
                let _ = admin.execute(
                    &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
                    (),
                    None,
                );
            }
        }
    }

    fn connect(connection_string: &str) -> Box<dyn ReleaseSource> {
        Box::new(
            OdbcSource::connect(&odbc_config(connection_string))
                .unwrap_or_else(|e| panic!("{e:#}")),
        )
    }

    #[test]
    fn sqlite_through_odbc() {
        if !require_driver("SQLite3") {
            return;
        }
        let db = SqliteFile::new(&fixture_sql());
        let connection_string = sqlite_odbc_string(&db.path);
        run("SQLite through ODBC {SQLite3}", &|| {
            connect(&connection_string)
        });
    }

    #[test]
    fn postgres_through_odbc() {
        let Some(server) = common::require("BLAT_TEST_PG", "PostgreSQL") else {
            return;
        };
        let db = PgDatabase::new(&server, &fixture_sql());
        run("PostgreSQL through ODBC", &|| {
            connect(&db.connection_string)
        });
    }

    #[test]
    fn describe_never_shows_the_password() {
        let Some(server) = common::require("BLAT_TEST_PG", "PostgreSQL") else {
            return;
        };
        let (_, password) = split_password(&server);
        assert!(!password.is_empty(), "$BLAT_TEST_PG has no PWD");
        let source = connect(&server);
        let text = source.describe();
        assert!(
            !text
                .to_lowercase()
                .contains(&format!("pwd={}", password.to_lowercase())),
            "{text}"
        );
        assert!(
            text.contains("Pwd=***") || text.contains("PWD=***"),
            "{text}"
        );
    }
}
