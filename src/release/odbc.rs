//! The Release Manager in any SQL database with an ODBC driver (cargo feature
//! `odbc`, odbc-api over unixODBC): the reference schema by default (docs/archive.md),
//! site-specific SQL per query under `[release_manager.queries]`.
//!
//! Results come back in blocks of [`BATCH_ROWS`] rows into columnar text
//! buffers, one driver round trip per block rather than per row: a release of
//! 200,000 package-versions is a few dozen fetches. Driver messages span
//! lines and connection strings carry passwords, so every error leaving this
//! module is one line and shows `PWD=***`.

use std::borrow::Cow;
use std::ops::Range;

use anyhow::{anyhow, bail, Context, Result};
use odbc_api::buffers::{Indicator, TextRowSet};
use odbc_api::handles::slice_to_cow_utf8;
use odbc_api::{
    Connection, ConnectionOptions, Cursor, IntoParameter, ParameterCollectionRef, ResultSetMetadata,
};

use super::ReleaseSource;
use crate::config::{OdbcConfig, ReleaseName};
use crate::current::CurrentSet;
use crate::error::UsageError;

/// Rows per block fetch: large enough that round trips do not dominate,
/// small enough that the buffers stay a few MiB.
pub const BATCH_ROWS: usize = 4096;

/// The longest value fetched, in bytes. Valid names have at most 255 ASCII
/// characters (docs/archive.md); a longer value is refused instead of being truncated
/// into something that might look valid.
pub const MAX_VALUE_BYTES: usize = 512;

/// One of the queries blat asks, with its contract: the `?` parameters it is
/// given (in order) and the result columns it must return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Query {
    ReleaseExists,
    ReleaseContent,
    ProjectExists,
    OpenReleases,
    S3Releases,
}

impl Query {
    pub const ALL: [Query; 5] = [
        Query::ReleaseExists,
        Query::ReleaseContent,
        Query::ProjectExists,
        Query::OpenReleases,
        Query::S3Releases,
    ];

    /// The key under `[release_manager.queries]`.
    pub fn key(self) -> &'static str {
        match self {
            Query::ReleaseExists => "release_exists",
            Query::ReleaseContent => "release_content",
            Query::ProjectExists => "project_exists",
            Query::OpenReleases => "open_releases",
            Query::S3Releases => "s3_releases",
        }
    }

    /// The parameters bound to the `?` markers, in order.
    pub fn parameters(self) -> &'static [&'static str] {
        match self {
            Query::ReleaseExists | Query::ReleaseContent => &["project", "release"],
            Query::ProjectExists | Query::OpenReleases => &["project"],
            Query::S3Releases => &[],
        }
    }

    /// The result columns, in order; empty for the existence checks, where
    /// only "at least one row" counts.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Query::ReleaseExists | Query::ProjectExists => &[],
            Query::ReleaseContent => &["package", "version"],
            Query::OpenReleases => &["release"],
            Query::S3Releases => &["project", "release"],
        }
    }

    /// The query for the reference schema. Standard SQL: it runs unchanged on
    /// PostgreSQL, SQLite, SQL Server, Oracle and MySQL. The ORDER BY only
    /// makes row numbers in messages stable; nothing depends on the order.
    pub fn default_sql(self) -> &'static str {
        match self {
            Query::ReleaseExists => {
                "SELECT r.release_id FROM releases r JOIN projects p ON p.project_id = r.project_id \
                 WHERE p.name = ? AND r.name = ?"
            }
            Query::ReleaseContent => {
                "SELECT pk.name, pv.version FROM releases r \
                 JOIN projects p ON p.project_id = r.project_id \
                 JOIN release_content rc ON rc.release_id = r.release_id \
                 JOIN package_versions pv ON pv.pv_id = rc.pv_id \
                 JOIN packages pk ON pk.package_id = pv.package_id \
                 WHERE p.name = ? AND r.name = ? ORDER BY pk.name, pv.version"
            }
            Query::ProjectExists => "SELECT project_id FROM projects WHERE name = ?",
            Query::OpenReleases => {
                "SELECT r.name FROM releases r JOIN projects p ON p.project_id = r.project_id \
                 WHERE p.name = ? AND r.state <> 'closed' ORDER BY r.name"
            }
            Query::S3Releases => {
                "SELECT p.name, r.name FROM releases r JOIN projects p ON p.project_id = r.project_id \
                 WHERE r.s3sync = 1 ORDER BY p.name, r.name"
            }
        }
    }

    fn configured(self, config: &OdbcConfig) -> Option<&String> {
        let q = &config.queries;
        match self {
            Query::ReleaseExists => q.release_exists.as_ref(),
            Query::ReleaseContent => q.release_content.as_ref(),
            Query::ProjectExists => q.project_exists.as_ref(),
            Query::OpenReleases => q.open_releases.as_ref(),
            Query::S3Releases => q.s3_releases.as_ref(),
        }
    }
}

pub struct OdbcSource {
    conn: Connection<'static>,
    description: String,
    /// The SQL of each query, indexed like [`Query::ALL`].
    sql: [String; 5],
    /// Seconds; 0 leaves the driver's default (no limit).
    query_timeout: usize,
}

impl OdbcSource {
    /// Connects as `config` says. Config mistakes (a missing password
    /// variable, a password given twice) are usage errors; a database that
    /// does not answer or refuses the login is a plain failure.
    pub fn connect(config: &OdbcConfig) -> Result<OdbcSource> {
        let connection_string = connection_string(config)?;
        let description = format!("ODBC release manager {}", mask_password(&connection_string));
        let env = odbc_api::environment().map_err(|e| {
            anyhow!(
                "cannot initialise ODBC (unixODBC's libodbc): {}",
                one_line(&e)
            )
        })?;
        let options = ConnectionOptions {
            login_timeout_sec: Some(
                config
                    .login_timeout
                    .as_secs()
                    .try_into()
                    .unwrap_or(u32::MAX),
            ),
            ..ConnectionOptions::default()
        };
        let conn = env
            .connect_with_connection_string(&connection_string, options)
            .map_err(|e| anyhow!("cannot connect to {description}: {}", one_line(&e)))?;
        let sql = Query::ALL.map(|q| {
            q.configured(config)
                .map_or(q.default_sql(), |s| s.as_str())
                .to_string()
        });
        Ok(OdbcSource {
            conn,
            description,
            sql,
            query_timeout: config
                .query_timeout
                .as_secs()
                .try_into()
                .unwrap_or(usize::MAX),
        })
    }

    fn sql(&self, query: Query) -> &str {
        &self.sql[Query::ALL
            .iter()
            .position(|q| *q == query)
            .expect("every query is in ALL")]
    }

    /// Whether `query` returns at least one row.
    fn exists(&self, query: Query, params: impl ParameterCollectionRef) -> Result<bool> {
        self.run(query, params, |cursor| {
            let mut cursor = cursor.context("returned no result set")?;
            Ok(cursor.next_row().map_err(db_error)?.is_some())
        })
    }

    /// Every row of `query`, which must return exactly `N` text columns.
    /// NULLs and over-long values are errors naming the row.
    fn rows<const N: usize>(
        &self,
        query: Query,
        params: impl ParameterCollectionRef,
    ) -> Result<Vec<[String; N]>> {
        debug_assert_eq!(query.columns().len(), N);
        self.run(query, params, |cursor| {
            let mut cursor = cursor.context("returned no result set")?;
            let found = cursor.num_result_cols().map_err(db_error)?;
            if usize::try_from(found).ok() != Some(N) {
                bail!(
                    "returns {found} columns, expected {N} ({})",
                    query.columns().join(", ")
                );
            }
            let buffer = TextRowSet::from_max_str_lens(BATCH_ROWS, [MAX_VALUE_BYTES; N])
                .map_err(db_error)?;
            let mut block = cursor.bind_buffer(buffer).map_err(db_error)?;
            let mut out = Vec::new();
            // Truncation is checked per value (not by the fetch, which
            // would fail the whole block) so the message names the row.
            while let Some(batch) = block.fetch().map_err(db_error)? {
                for i in 0..batch.num_rows() {
                    let row_no = out.len() + 1;
                    let mut values: [String; N] = std::array::from_fn(|_| String::new());
                    for (col, value) in values.iter_mut().enumerate() {
                        let name = query.columns()[col];
                        let truncated = match batch.indicator_at(col, i) {
                            Indicator::Null => bail!("row {row_no}: {name} is NULL"),
                            Indicator::NoTotal => true,
                            Indicator::Length(len) => len > batch.max_len(col),
                        };
                        if truncated {
                            bail!("row {row_no}: {name} is longer than {MAX_VALUE_BYTES} bytes (not a valid name)");
                        }
                        let bytes = batch.at(col, i).unwrap_or_default();
                        *value = String::from_utf8_lossy(bytes).into_owned();
                    }
                    out.push(values);
                }
            }
            Ok(out)
        })
    }

    /// Prepares `query`, checks its parameter count, executes it with the
    /// query timeout and hands the cursor to `read`; errors name the query.
    fn run<T>(
        &self,
        query: Query,
        params: impl ParameterCollectionRef,
        read: impl FnOnce(
            Option<odbc_api::CursorImpl<odbc_api::handles::StatementRef<'_>>>,
        ) -> Result<T>,
    ) -> Result<T> {
        let key = query.key();
        let result = (|| {
            let mut stmt = self.conn.prepare(self.sql(query)).map_err(db_error)?;
            let expected = query.parameters();
            // Not every driver can count markers; when it cannot, a wrong
            // count still fails at execution with the driver's message.
            if let Ok(markers) = stmt.num_params() {
                if usize::from(markers) != expected.len() {
                    bail!(
                        "has {markers} parameter markers (?), expected {} ({})",
                        expected.len(),
                        if expected.is_empty() {
                            "none".to_string()
                        } else {
                            expected.join(", ")
                        }
                    );
                }
            }
            if self.query_timeout > 0 {
                stmt.set_query_timeout_sec(self.query_timeout)
                    .map_err(|e| {
                        anyhow!(
                        "cannot set query_timeout (set it to 0 for a driver without timeouts): {}",
                        one_line(&e)
                    )
                    })?;
            }
            let cursor = stmt.execute(params).map_err(db_error)?;
            read(cursor)
        })();
        result.with_context(|| format!("query {key}"))
    }
}

impl ReleaseSource for OdbcSource {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn release_rows(&mut self, release: &ReleaseName) -> Result<Vec<(String, String)>> {
        let (project, name) = (release.project.as_str(), release.release.as_str());
        if !self.exists(
            Query::ReleaseExists,
            (&project.into_parameter(), &name.into_parameter()),
        )? {
            bail!("release {release} does not exist");
        }
        let rows = self.rows::<2>(
            Query::ReleaseContent,
            (&project.into_parameter(), &name.into_parameter()),
        )?;
        Ok(rows
            .into_iter()
            .map(|[package, version]| (package, version))
            .collect())
    }

    fn open_releases(&mut self, project: &str) -> Result<Vec<ReleaseName>> {
        if !self.exists(Query::ProjectExists, &project.into_parameter())? {
            bail!("project {project} does not exist");
        }
        let rows = self.rows::<1>(Query::OpenReleases, &project.into_parameter())?;
        Ok(rows
            .into_iter()
            .map(|[release]| ReleaseName {
                project: project.to_string(),
                release,
            })
            .collect())
    }

    fn s3_releases(&mut self) -> Result<Vec<ReleaseName>> {
        let rows = self.rows::<2>(Query::S3Releases, ())?;
        Ok(rows
            .into_iter()
            .map(|[project, release]| ReleaseName { project, release })
            .collect())
    }

    fn relayed(&mut self) -> Result<Option<CurrentSet>> {
        Ok(None)
    }
}

/// The connection string blat hands the driver: `connection_string`, or
/// `DSN=...`, plus `UID` from `user` and `PWD` from `password_env` or
/// `password_file`. It holds the password: never print it, print
/// [`mask_password`] of it.
pub fn connection_string(config: &OdbcConfig) -> Result<String> {
    let usage = |m: String| anyhow::Error::from(UsageError(format!("release_manager: {m}")));
    let mut text = match (&config.connection_string, &config.dsn) {
        (Some(s), None) => s.trim().to_string(),
        (None, Some(dsn)) => format!("DSN={}", attribute_value(dsn)),
        _ => {
            return Err(usage(
                "kind = \"odbc\" needs exactly one of `connection_string` or `dsn`".into(),
            ))
        }
    };
    let mut add = |key: &str, value: &str| {
        if !text.is_empty() && !text.ends_with(';') {
            text.push(';');
        }
        text.push_str(&format!("{key}={};", attribute_value(value)));
    };
    if let Some(user) = &config.user {
        if find_attribute(
            config.connection_string.as_deref().unwrap_or(""),
            &["uid", "user", "username"],
        )
        .is_some()
        {
            return Err(usage(
                "`user` is set and `connection_string` has a user (UID) too: keep one".into(),
            ));
        }
        add("UID", user);
    }
    let password = match (&config.password_env, &config.password_file) {
        (Some(_), Some(_)) => {
            return Err(usage(
                "set `password_env` or `password_file`, not both".into(),
            ))
        }
        (Some(var), None) => match std::env::var(var) {
            Ok(p) if !p.is_empty() => Some(p),
            _ => {
                return Err(usage(format!(
                    "password_env names ${var}, which is not set"
                )))
            }
        },
        (None, Some(path)) => {
            let content = std::fs::read_to_string(path)
                .map_err(|e| usage(format!("cannot read password_file {}: {e}", path.display())))?;
            match content.lines().next().map(|l| l.trim_end_matches('\r')) {
                Some(p) if !p.is_empty() => Some(p.to_string()),
                _ => return Err(usage(format!("password_file {} is empty", path.display()))),
            }
        }
        (None, None) => None,
    };
    if let Some(password) = password {
        if find_attribute(
            config.connection_string.as_deref().unwrap_or(""),
            &["pwd", "password"],
        )
        .is_some()
        {
            return Err(usage(
                "the password comes from password_env/password_file and `connection_string` has one (PWD) too: keep one"
                    .into(),
            ));
        }
        add("PWD", &password);
    }
    Ok(text)
}

/// `text` with the value of every `PWD` or `PASSWORD` attribute replaced by
/// `***`, for messages and logs.
pub fn mask_password(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (key, value) in attributes(text) {
        if is_password_key(&text[key]) {
            out.push_str(&text[copied..value.start]);
            out.push_str("***");
            copied = value.end;
        }
    }
    out.push_str(&text[copied..]);
    out
}

fn is_password_key(key: &str) -> bool {
    let key = key.trim();
    key.eq_ignore_ascii_case("pwd") || key.eq_ignore_ascii_case("password")
}

/// The value range of the first attribute named like one of `keys`.
fn find_attribute(text: &str, keys: &[&str]) -> Option<Range<usize>> {
    attributes(text)
        .into_iter()
        .find(|(k, _)| {
            keys.iter()
                .any(|want| text[k.clone()].trim().eq_ignore_ascii_case(want))
        })
        .map(|(_, v)| v)
}

/// The `(key, value)` byte ranges of an ODBC connection string
/// `KEY=VALUE;KEY={VALUE};...`, where a braced value may hold `;` and writes
/// `}` as `}}`. An unterminated brace runs to the end (and is masked whole).
fn attributes(text: &str) -> Vec<(Range<usize>, Range<usize>)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let key_start = i;
        while i < bytes.len() && bytes[i] != b'=' && bytes[i] != b';' {
            i += 1;
        }
        if i >= bytes.len() || bytes[i] == b';' {
            i += 1; // a bare word: no value to mask
            continue;
        }
        let key = key_start..i;
        i += 1;
        let value_start = i;
        if bytes.get(i) == Some(&b'{') {
            i += 1;
            loop {
                match bytes.get(i) {
                    None => break,
                    Some(b'}') if bytes.get(i + 1) == Some(&b'}') => i += 2,
                    Some(b'}') => {
                        i += 1;
                        break;
                    }
                    Some(_) => i += 1,
                }
            }
            // Anything between the closing brace and the `;` belongs to the value.
        }
        while i < bytes.len() && bytes[i] != b';' {
            i += 1;
        }
        out.push((key, value_start..i));
        i += 1;
    }
    out
}

/// A value as it must be written in a connection string: braced (with `}`
/// doubled) when it holds a character the parser would otherwise take as
/// syntax. `+` too: psqlODBC decodes it as a space in a bare value.
pub fn attribute_value(value: &str) -> Cow<'_, str> {
    let special = value.contains([';', '{', '}', '+']) || value.trim() != value;
    if special {
        Cow::Owned(format!("{{{}}}", value.replace('}', "}}")))
    } else {
        Cow::Borrowed(value)
    }
}

/// An ODBC error as one line: the driver's message (which may span lines)
/// with its SQLSTATE.
fn db_error(e: odbc_api::Error) -> anyhow::Error {
    anyhow!(one_line(&e))
}

fn one_line(e: &odbc_api::Error) -> String {
    let text = match e {
        odbc_api::Error::Diagnostics { record, .. } => {
            format!(
                "{} (SQLSTATE {})",
                slice_to_cow_utf8(&record.message),
                record.state.as_str()
            )
        }
        other => other.to_string(),
    };
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config(connection_string: &str) -> OdbcConfig {
        OdbcConfig {
            connection_string: Some(connection_string.into()),
            login_timeout: Duration::from_secs(5),
            ..OdbcConfig::default()
        }
    }

    #[test]
    fn passwords_are_masked_whatever_their_spelling() {
        let cases = [
            (
                "Driver={PostgreSQL Unicode};Server=h;Uid=u;Pwd=secret;",
                "Driver={PostgreSQL Unicode};Server=h;Uid=u;Pwd=***;",
            ),
            ("DSN=rm;PWD={se;cr}}et};UID=u", "DSN=rm;PWD=***;UID=u"),
            ("DSN=rm;password=secret", "DSN=rm;password=***"),
            ("DSN=rm; Password =secret;X=1", "DSN=rm; Password =***;X=1"),
            ("DSN=rm;PWD={unterminated;X=1", "DSN=rm;PWD=***"),
            ("DSN=rm;PWD=", "DSN=rm;PWD=***"),
            (
                "DSN=rm;Database=pwd;Opt=PWD=x",
                "DSN=rm;Database=pwd;Opt=PWD=x",
            ),
            (
                "Driver={SQLite3};Database=/srv/rm.db;",
                "Driver={SQLite3};Database=/srv/rm.db;",
            ),
        ];
        for (input, masked) in cases {
            assert_eq!(mask_password(input), masked, "{input}");
        }
    }

    #[test]
    fn values_with_syntax_characters_are_braced() {
        let cases = [
            ("plain", "plain"),
            ("a;b", "{a;b}"),
            ("a}b", "{a}}b}"),
            ("{x", "{{x}"),
            ("a+b", "{a+b}"),
            (" lead", "{ lead}"),
            ("trail ", "{trail }"),
        ];
        for (value, written) in cases {
            assert_eq!(attribute_value(value), written, "{value}");
        }
    }

    #[test]
    fn password_from_env_or_file_is_appended_and_masked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3;cr}t\nsecond line ignored\n").unwrap();
        let mut c = config("Driver={PostgreSQL Unicode};Server=h");
        c.user = Some("blat".into());
        c.password_file = Some(file.clone());
        let text = connection_string(&c).unwrap();
        assert_eq!(
            text,
            "Driver={PostgreSQL Unicode};Server=h;UID=blat;PWD={s3;cr}}t};"
        );
        assert_eq!(
            mask_password(&text),
            "Driver={PostgreSQL Unicode};Server=h;UID=blat;PWD=***;"
        );

        // A variable that is surely set: setting one here would race with
        // other test threads reading the environment.
        let path = std::env::var("PATH").unwrap();
        let c = OdbcConfig {
            dsn: Some("rm".into()),
            password_env: Some("PATH".into()),
            ..OdbcConfig::default()
        };
        assert_eq!(
            connection_string(&c).unwrap(),
            format!("DSN=rm;PWD={};", attribute_value(&path))
        );
    }

    #[test]
    fn password_mistakes_are_usage_errors() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let mut twice = config("DSN=rm;PWD=x");
        twice.password_env = Some("PATH".into());
        let mut both = config("DSN=rm");
        both.password_env = Some("PATH".into());
        both.password_file = Some(empty.clone());
        let mut unset = config("DSN=rm");
        unset.password_env = Some("BLAT_UNIT_TEST_SURELY_UNSET".into());
        let mut missing = config("DSN=rm");
        missing.password_file = Some(dir.path().join("missing"));
        let mut blank = config("DSN=rm");
        blank.password_file = Some(empty);
        let mut users = config("DSN=rm;Uid=a");
        users.user = Some("b".into());
        let cases = [
            (twice, "has one (PWD) too"),
            (both, "not both"),
            (unset, "$BLAT_UNIT_TEST_SURELY_UNSET, which is not set"),
            (missing, "cannot read password_file"),
            (blank, "is empty"),
            (users, "has a user (UID) too"),
        ];
        for (c, expected) in cases {
            let err = connection_string(&c).unwrap_err();
            assert!(err.downcast_ref::<UsageError>().is_some(), "{err:#}");
            assert!(
                format!("{err:#}").contains(expected),
                "{err:#} lacks {expected}"
            );
        }
    }
}
