//! End to end over ODBC: `blat sync` with `kind = "odbc"` against a real
//! PostgreSQL (psqlODBC) and a SQLite file (`{SQLite3}` driver) gives the
//! same target as the SQLite source, and a database that is unreachable,
//! refuses the login, fails or times out a query, or answers nonsense stops
//! the pass with one error line, exit 1, before anything on the target
//! changes, and without ever showing the password.

use std::fs;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use odbc_api::ConnectionOptions;

use crate::common::{self, assert_exit, json, stderr, stdout, World};
use crate::release_suite::{
    require_driver, split_password, sqlite_odbc_string, with_attribute, PgDatabase, Releases,
    SqliteFile,
};

const T0: i64 = 1_700_000_000;
const NOW: &str = "1700100000";
const PASSWORD_VAR: &str = "BLAT_TEST_RM_PASSWORD";

const RM: Releases<'static> = &[
    ("PROJ/R1.0", "closed", 0, &["alpha/1.0", "beta/2.0"]),
    ("PROJ/R2.0", "open", 1, &["alpha/1.1", "beta/2.0"]),
    ("OTHER/X1", "open", 0, &["omega/3.0", "jats/current"]),
    ("OTHER/OLD", "closed", 0, &["extra/9.9"]),
];

/// What every target of these tests wants: a named release, a project's
/// not-closed releases (one with an alias) and a pin.
const TARGET: &str =
    "releases = [\"PROJ/R1.0\"]\nprojects = [\"OTHER\"]\npackages = [\"gamma/0.9\"]\n\
                      [aging]\nmethod = \"immediate\"\n";

fn world() -> World {
    let w = World::new();
    w.release("alpha", "1.0", T0);
    w.release("alpha", "1.1", T0 + 10);
    w.release("beta", "2.0", T0 + 20);
    w.release("omega", "3.0", T0 + 30);
    w.release("jats", "5.0", T0 + 40);
    w.alias("jats", "current", "5.0");
    w.release("gamma", "0.9", T0 + 50);
    w.release("extra", "9.9", T0 + 60);
    w.write_rm(RM);
    w
}

fn toml_str(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Writes blat.toml with an ODBC release manager: `settings` are the lines
/// under `[release_manager]` after `kind`, `queries` those under
/// `[release_manager.queries]`. Logs to `<world>/blat.log`.
fn write_odbc_global(w: &World, settings: &str, queries: &str) {
    let text = format!(
        "archive = {}\nstate_dir = {}\ntag_dir = {}\nlog_file = {}\n\
         [release_manager]\nkind = \"odbc\"\n{settings}\n[release_manager.queries]\n{queries}\n",
        toml_str(&w.archive().display().to_string()),
        toml_str(&w.state().display().to_string()),
        toml_str(&w.path().join("tags").display().to_string()),
        toml_str(&w.path().join("blat.log").display().to_string()),
    );
    fs::write(w.config().join("blat.toml"), text).unwrap();
}

fn sync(w: &World, target: &str, env: &[(&str, &str)]) -> Output {
    let mut all = vec![("BLAT_NOW", NOW)];
    all.extend_from_slice(env);
    w.blat_env(&["-vv", "sync", "--target", target, "--json"], &all)
}

/// A target tree to compare across runs: what `common::snapshot` shows,
/// without the mtimes of directories and files blat itself makes at run
/// time (the target root, package directories, `.dpkg_archive/`), which
/// differ by the second between two runs.
fn comparable(root: &Path) -> Vec<String> {
    common::snapshot(root)
        .into_iter()
        .map(|line| {
            let path = line.split(' ').next().unwrap_or("");
            let made_by_run = path.is_empty()
                || path == "/"
                || path.starts_with(".dpkg_archive")
                || (path.ends_with('/') && !path.trim_end_matches('/').contains('/'));
            if made_by_run && !line.contains(" -> ") {
                let mut parts: Vec<&str> = line.split(' ').collect();
                parts.truncate(2);
                parts.join(" ")
            } else {
                line
            }
        })
        .collect()
}

#[test]
fn sync_over_odbc_gives_the_same_target_as_the_sqlite_source() {
    let w = world();
    for name in ["via-sqlite", "via-postgres", "via-sqlite-odbc", "via-dsn"] {
        w.local_target(name, TARGET);
    }
    w.write_global("");
    let out = sync(&w, "via-sqlite", &[]);
    assert_exit(&out, 0);
    let reference = json(&out);
    let expected = comparable(&w.target_dir("via-sqlite"));
    for pv in [
        "alpha/1.0",
        "beta/2.0",
        "omega/3.0",
        "jats/5.0",
        "gamma/0.9",
    ] {
        assert!(
            w.target_dir("via-sqlite")
                .join(pv)
                .join("descpkg")
                .is_file(),
            "{pv} missing"
        );
    }
    for pv in ["alpha/1.1", "extra/9.9"] {
        assert!(
            !w.target_dir("via-sqlite").join(pv).exists(),
            "{pv} is not wanted"
        );
    }
    let packagelist = |name: &str| {
        fs::read_to_string(w.target_dir(name).join(".dpkg_archive/packagelist.txt")).unwrap()
    };

    let mut compared = 0;
    if let Some(server) = common::require("BLAT_TEST_PG", "PostgreSQL") {
        let db = PgDatabase::new(&server, &common::rm_sql(RM));
        // The password comes from the environment, not the config.
        let (without, password) = split_password(&db.connection_string);
        write_odbc_global(
            &w,
            &format!(
                "connection_string = {}\npassword_env = \"{PASSWORD_VAR}\"",
                toml_str(&without)
            ),
            "",
        );
        let out = sync(&w, "via-postgres", &[(PASSWORD_VAR, &password)]);
        assert_exit(&out, 0);
        let report = json(&out);
        assert_eq!(
            report["targets"][0]["report"]["sent"],
            reference["targets"][0]["report"]["sent"]
        );
        assert_eq!(
            report["targets"][0]["report"]["linked"],
            reference["targets"][0]["report"]["linked"]
        );
        assert_eq!(comparable(&w.target_dir("via-postgres")), expected);
        assert_eq!(packagelist("via-postgres"), packagelist("via-sqlite"));
        let log = fs::read_to_string(w.path().join("blat.log")).unwrap();
        for text in [stderr(&out), log] {
            assert!(
                !text.to_lowercase().contains(&format!("pwd={password}")),
                "password shown:\n{text}"
            );
        }
        compared += 1;
    }
    if require_driver("SQLite3") {
        let db = SqliteFile::new(&common::rm_sql(RM));
        write_odbc_global(
            &w,
            &format!(
                "connection_string = {}",
                toml_str(&sqlite_odbc_string(&db.path))
            ),
            "",
        );
        let out = sync(&w, "via-sqlite-odbc", &[]);
        assert_exit(&out, 0);
        assert_eq!(
            json(&out)["targets"][0]["report"]["sent"],
            reference["targets"][0]["report"]["sent"]
        );
        assert_eq!(comparable(&w.target_dir("via-sqlite-odbc")), expected);
        assert_eq!(packagelist("via-sqlite-odbc"), packagelist("via-sqlite"));
        compared += 1;

        // The same database named by a DSN (`dsn = ...`) from a user odbc.ini.
        let odbc_ini = w.path().join("odbc.ini");
        fs::write(
            &odbc_ini,
            format!(
                "[blat_rm_test]\nDriver = SQLite3\nDatabase = {}\n",
                db.path.display()
            ),
        )
        .unwrap();
        write_odbc_global(&w, "dsn = \"blat_rm_test\"", "");
        // Unknown to unixODBC without the file: the DSN is what connects.
        let out = sync(&w, "via-dsn", &[]);
        assert_exit(&out, 1);
        assert!(
            stderr(&out).contains("DSN=blat_rm_test"),
            "{}",
            stderr(&out)
        );
        let out = sync(
            &w,
            "via-dsn",
            &[("ODBCINI", &odbc_ini.display().to_string())],
        );
        assert_exit(&out, 0);
        assert_eq!(comparable(&w.target_dir("via-dsn")), expected);
        assert_eq!(packagelist("via-dsn"), packagelist("via-sqlite"));
    }
    if compared == 0 {
        eprintln!("note: no ODBC backend available; only the SQLite reference run was checked");
    }
}

/// Runs statements on `db` as the test's admin connection.
fn execute(db: &PgDatabase, sql: &str) {
    let env = odbc_api::environment().unwrap();
    let conn = env
        .connect_with_connection_string(&db.connection_string, ConnectionOptions::default())
        .unwrap();
    for statement in crate::release_suite::statements(sql) {
        conn.execute(statement, (), None)
            .unwrap_or_else(|e| panic!("{e}\nin: {statement}"));
    }
}

/// One failing run: its exit code, the one error line naming the cause,
/// the target untouched, no password anywhere.
#[track_caller]
fn assert_failed_cleanly(
    w: &World,
    out: &Output,
    code: i32,
    expected: &[&str],
    secrets: &[&str],
    before: &[String],
) {
    assert_exit(out, code);
    let (err, outp) = (stderr(out), stdout(out));
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "expected one error line, got:\n{err}");
    for part in expected {
        assert!(
            errors[0].contains(part),
            "error line lacks {part:?}: {}",
            errors[0]
        );
    }
    let log = fs::read_to_string(w.path().join("blat.log")).unwrap_or_default();
    for secret in secrets {
        for (what, text) in [("stderr", &err), ("stdout", &outp), ("log file", &log)] {
            let found = text.to_lowercase().contains(&secret.to_lowercase());
            assert!(!found, "the password shows in the {what}:\n{text}");
        }
    }
    assert_eq!(
        common::snapshot(&w.target_dir("site")),
        before,
        "the target changed"
    );
    common::assert_no_leftovers(&w.target_dir("site"));
}

#[test]
fn database_failures_stop_the_pass_before_any_change() {
    let Some(server) = common::require("BLAT_TEST_PG", "PostgreSQL") else {
        return;
    };
    let w = world();
    w.local_target("site", TARGET);
    let db = PgDatabase::new(&server, &common::rm_sql(RM));
    let (without, password) = split_password(&db.connection_string);
    let password_file = w.path().join("rm-password");
    fs::write(&password_file, format!("{password}\n")).unwrap();
    let good = format!(
        "connection_string = {}\npassword_file = {}",
        toml_str(&without),
        toml_str(&password_file.display().to_string())
    );
    write_odbc_global(&w, &good, "");
    assert_exit(&sync(&w, "site", &[]), 0);
    // Excess on the target: with aging "immediate", a failure misread as an
    // empty current set would delete it.
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(w.archive().join("extra"))
        .arg(w.target_dir("site"))
        .status()
        .unwrap();
    assert!(copied.success());
    let before = common::snapshot(&w.target_dir("site"));
    let pwd = password_line(&password);

    let wrong = "not-the-password-4711";
    let unreachable = with_attribute(
        &with_attribute(&without, "Server", "127.0.0.1"),
        "Port",
        "1",
    );
    let release_content = "SELECT pk.name, pv.version FROM releases r \
        JOIN projects p ON p.project_id = r.project_id \
        JOIN release_content rc ON rc.release_id = r.release_id \
        JOIN package_versions pv ON pv.pv_id = rc.pv_id \
        JOIN packages pk ON pk.package_id = pv.package_id";
    let slow = format!(
        "{release_content} CROSS JOIN (SELECT pg_sleep(30)) s WHERE p.name = ? AND r.name = ?"
    );
    let password_setting = |var: &str| {
        format!(
            "connection_string = {}\npassword_env = \"{var}\"",
            toml_str(&without)
        )
    };
    // Accepts TCP connections (the kernel does) but never says a word: a
    // server that hangs, or a firewall that swallows packets.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port().to_string();
    let hanging = with_attribute(
        &with_attribute(&without, "Server", "127.0.0.1"),
        "Port",
        &silent_port,
    );
    let cases: Vec<(&str, String, String, Vec<&str>)> = vec![
        (
            "server that never answers",
            format!(
                "connection_string = {}\npassword_env = \"{PASSWORD_VAR}\"\nlogin_timeout = 2",
                toml_str(&hanging)
            ),
            String::new(),
            vec!["site: sync failed: cannot connect to ODBC release manager", "timeout expired", "SQLSTATE 08001"],
        ),
        (
            "unreachable server",
            format!("connection_string = {}\npassword_env = \"{PASSWORD_VAR}\"\nlogin_timeout = 5", toml_str(&unreachable)),
            String::new(),
            vec!["site: sync failed: cannot connect to ODBC release manager", "Port=1", "PWD=***"],
        ),
        (
            "wrong password",
            password_setting("BLAT_TEST_WRONG_PASSWORD"),
            String::new(),
            vec!["cannot connect to ODBC release manager", "password authentication failed"],
        ),
        (
            "query on a missing table",
            good.clone(),
            "release_content = \"SELECT name, version FROM no_such_table WHERE project = ? AND release = ?\"".into(),
            vec!["cannot read release OTHER/X1", "query release_content", "no_such_table", "SQLSTATE 42P01"],
        ),
        (
            "query timeout",
            format!("{good}\nquery_timeout = 1"),
            format!("release_content = {}", toml_str(&slow)),
            vec!["cannot read release OTHER/X1", "query release_content", "statement timeout", "SQLSTATE 57014"],
        ),
        (
            "query with a column missing",
            good.clone(),
            format!(
                "release_content = {}",
                toml_str(&format!(
                    "{} WHERE p.name = ? AND r.name = ?",
                    release_content.replace("pk.name, pv.version", "pk.name")
                ))
            ),
            vec!["query release_content", "returns 1 columns, expected 2 (package, version)"],
        ),
        (
            "query without its parameters",
            good.clone(),
            "open_releases = \"SELECT name FROM releases WHERE state <> 'closed'\"".into(),
            vec!["cannot read releases of project OTHER", "query open_releases", "expected 1 (project)"],
        ),
    ];
    for (what, settings, queries, expected) in &cases {
        write_odbc_global(&w, settings, queries);
        let started = Instant::now();
        let out = sync(
            &w,
            "site",
            &[
                (PASSWORD_VAR, &password),
                ("BLAT_TEST_WRONG_PASSWORD", wrong),
            ],
        );
        eprintln!(
            "{what}: {:.1}s: {}",
            started.elapsed().as_secs_f64(),
            stderr(&out).trim()
        );
        assert_failed_cleanly(&w, &out, 1, expected, &[&pwd, wrong], &before);
        if *what == "server that never answers" {
            let took = started.elapsed();
            assert!(
                took < Duration::from_secs(10),
                "login_timeout = 2 did not stop a silent server ({took:?})"
            );
        }
        if *what == "query timeout" {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "query_timeout = 1 did not cut a 30 s query short"
            );
        }
    }

    // The database answers, but with something that must not be used.
    write_odbc_global(&w, &good, "");
    execute(
        &db,
        "INSERT INTO packages VALUES (900, 'evil');
INSERT INTO package_versions VALUES (900, 900, '../../etc');
INSERT INTO release_content VALUES (1, 900);",
    );
    let out = sync(&w, "site", &[]);
    assert_failed_cleanly(
        &w,
        &out,
        1,
        &["release PROJ/R1.0: row ", "('evil', '../../etc')"],
        &[&pwd],
        &before,
    );
    execute(&db, "DELETE FROM release_content WHERE pv_id = 900;");
    execute(
        &db,
        "UPDATE releases SET name = 'R1.0-renamed' WHERE name = 'R1.0';",
    );
    let out = sync(&w, "site", &[]);
    assert_failed_cleanly(
        &w,
        &out,
        1,
        &["release PROJ/R1.0 does not exist"],
        &[&pwd],
        &before,
    );
    let out = w.blat_env(&["plist", "--target", "site"], &[("BLAT_NOW", NOW)]);
    assert_failed_cleanly(
        &w,
        &out,
        1,
        &["release PROJ/R1.0 does not exist"],
        &[&pwd],
        &before,
    );
    execute(
        &db,
        "UPDATE releases SET name = 'R1.0' WHERE name = 'R1.0-renamed';",
    );

    // A configuration mistake is exit 2, still before anything happens.
    write_odbc_global(&w, &password_setting("BLAT_TEST_SURELY_UNSET_VAR"), "");
    let out = sync(&w, "site", &[]);
    assert_failed_cleanly(
        &w,
        &out,
        2,
        &["$BLAT_TEST_SURELY_UNSET_VAR, which is not set"],
        &[&pwd],
        &before,
    );

    // And with the database back, the same target syncs cleanly again.
    write_odbc_global(&w, &good, "");
    let out = sync(&w, "site", &[]);
    assert_exit(&out, 0);
    assert_eq!(json(&out)["targets"][0]["report"]["up_to_date"], 5);
}

/// The password as it would appear in a connection string.
fn password_line(password: &str) -> String {
    format!("PWD={password}")
}

/// The README's query table and defaults are the code's (docs that cannot drift).
#[test]
fn readme_documents_the_queries() {
    use blat::release::odbc::Query;
    let readme =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme
        .find("## Release Manager over ODBC")
        .expect("README has a section Release Manager over ODBC");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let flat = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
    let flat_section = flat(section);
    for query in Query::ALL {
        let key = query.key();
        let list = |names: &[&str], empty: &str| {
            if names.is_empty() {
                empty.to_string()
            } else {
                names.join(", ")
            }
        };
        let row = format!(
            "| `{key}` | {} | {} |",
            list(query.parameters(), "none"),
            list(query.columns(), "any")
        );
        assert!(section.contains(&row), "README lacks the row {row}");
        let sql = flat(query.default_sql());
        assert!(
            flat_section.contains(&format!("-- {key} {sql}")),
            "README lacks the default {key}: {sql}"
        );
    }
    assert!(section.contains(&format!("blocks of {}", blat::release::odbc::BATCH_ROWS)));
    assert!(section.contains(&format!(
        "longer than {} bytes",
        blat::release::odbc::MAX_VALUE_BYTES
    )));
}
