//! Man pages: `blat(1)`, one `blat-<command>(1)` per command, and
//! `blat.conf(5)`. They are generated here: names, descriptions, synopses
//! and options from the clap definitions (clap_mangen renders the options),
//! EXIT STATUS from the CLI's exit code text, METRICS from the metrics
//! writer, and the sections an operator needs besides (FILES, ENVIRONMENT,
//! EXAMPLES, SEE ALSO, the configuration keys) from the text below, in a
//! small markup (see [`doc`]). `BLAT_UPDATE_MAN=1 cargo test --test it
//! man_pages` rewrites `man/`. The tests keep the pages in step with the
//! CLI, the configuration parser and the metrics, check that every example
//! command line parses, and lint the pages with mandoc and groff and render
//! them with man (which must be installed under `CI=true`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use blat::cli::Cli;
use clap::CommandFactory;

use crate::common::require_tool;

/// The date on the pages: when their hand-written text last changed.
const DATE: &str = "2026-11-30";
const MANUAL: &str = "blat manual";

// ---- roff --------------------------------------------------------------------

/// Text for roff: backslashes escaped, hyphens as `\-` (an ASCII minus that
/// copies and pastes as such).
fn esc(text: &str) -> String {
    text.replace('\\', "\\e").replace('-', "\\-")
}

/// `text` with `<name>` placeholders in italics, back to `font` after each.
fn placeholders(text: &str, font: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('<') {
        out.push_str(&esc(&rest[..i]));
        let after = &rest[i + 1..];
        match after.find('>') {
            Some(e)
                if e > 0
                    && after[..e]
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) =>
            {
                out.push_str(&format!("\\fI{}\\f{font}", esc(&after[..e])));
                rest = &after[e + 1..];
            }
            _ => {
                out.push('<');
                rest = after;
            }
        }
    }
    out.push_str(&esc(rest));
    out
}

/// The inline markup: `code` in bold, `<name>` a placeholder in italics.
fn inline(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str(&format!("\\fB{}\\fR", placeholders(part, "B")));
        } else {
            out.push_str(&placeholders(part, "R"));
        }
    }
    assert!(
        text.matches('`').count().is_multiple_of(2),
        "unbalanced ` in {text:?}"
    );
    out
}

/// A line of text that roff must not read as a request.
fn text_line(line: &str) -> String {
    if line.starts_with('.') || line.starts_with('\'') {
        format!("\\&{line}\n")
    } else {
        format!("{line}\n")
    }
}

/// Roff text filled into lines of at most 80 bytes (roff refills them).
fn fill(roff: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in roff.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > 80 {
            out.push_str(&text_line(&line));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(&text_line(&line));
    }
    out
}

/// A literal block (examples, commands): kept line by line, indented.
fn literal(lines: &[&str], first: bool) -> String {
    let mut out = String::new();
    if !first {
        out.push_str(".PP\n");
    }
    out.push_str(".RS 4\n.nf\n");
    for l in lines {
        out.push_str(&text_line(&esc(l)));
    }
    out.push_str(".fi\n.RE\n");
    out
}

/// The markup of the hand-written sections, in blocks separated by blank
/// lines: a block whose lines are indented by four spaces is literal; a
/// block of `= term` lines, each followed by its text, is a list of terms
/// (`.TP`); a block of `- ` lines is a bullet list; any other block is a
/// paragraph. Inline: `code`, `<placeholder>`.
fn doc(src: &str) -> String {
    let mut out = String::new();
    let mut first = true;
    for block in src.trim_matches('\n').split("\n\n") {
        let lines: Vec<&str> = block.lines().collect();
        if lines.iter().all(|l| l.starts_with("    ")) {
            let lines: Vec<&str> = lines.iter().map(|l| &l[4..]).collect();
            out.push_str(&literal(&lines, first));
        } else if lines[0].starts_with("= ") || lines[0].starts_with("- ") {
            let bullet = lines[0].starts_with("- ");
            let mut items: Vec<(String, String)> = Vec::new();
            for l in &lines {
                if let Some(term) = l.strip_prefix("= ").or_else(|| l.strip_prefix("- ")) {
                    items.push((term.to_string(), String::new()));
                } else {
                    let body = &mut items.last_mut().expect("an item first").1;
                    body.push(' ');
                    body.push_str(l.trim());
                }
            }
            for (term, body) in items {
                if bullet {
                    out.push_str(".IP \\(bu 2\n");
                    out.push_str(&fill(&inline(&format!("{term}{body}"))));
                } else {
                    // The tag of .TP is one line, however long.
                    out.push_str(".TP\n");
                    out.push_str(&text_line(&inline(&term)));
                    out.push_str(&fill(&inline(body.trim())));
                }
            }
        } else {
            if !first {
                out.push_str(".PP\n");
            }
            out.push_str(&fill(&inline(&lines.join(" "))));
        }
        first = false;
    }
    out
}

fn section(title: &str, body: &str) -> String {
    format!(".SH {title}\n{body}")
}

/// clap's `after_long_help` text as man sections. An unindented line ending
/// in `:` starts a section (`Exit codes:` is EXIT STATUS; else the words
/// before any parenthesis, in capitals, with the line itself leading the
/// text); lines indented by two spaces are text, or a list item when they
/// are `  <word>  <text>`; lines indented by four are literal; other lines
/// are text.
fn help_sections(text: &str) -> Vec<(String, String)> {
    enum Chunk {
        Text(String),
        Literal(Vec<String>),
        Item(String, String),
    }
    let mut sections: Vec<(String, Vec<Chunk>)> = Vec::new();
    for line in text.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            let heading = line.trim_end_matches(':');
            let (title, lead) = if heading == "Exit codes" {
                ("EXIT STATUS".to_string(), None)
            } else {
                let words = heading.split(" (").next().unwrap_or(heading);
                (words.to_uppercase(), Some(line.to_string()))
            };
            sections.push((title, lead.map(Chunk::Text).into_iter().collect()));
            continue;
        }
        let chunks = &mut sections.last_mut().expect("a heading first").1;
        if let Some(l) = line.strip_prefix("    ") {
            match chunks.last_mut() {
                Some(Chunk::Literal(lines)) => lines.push(l.to_string()),
                _ => chunks.push(Chunk::Literal(vec![l.to_string()])),
            }
            continue;
        }
        let l = line.strip_prefix("  ").unwrap_or(line);
        let item = line
            .starts_with("  ")
            .then(|| l.split_once("  "))
            .flatten()
            .filter(|(term, _)| !term.is_empty() && !term.contains(' '));
        if let Some((term, text)) = item {
            chunks.push(Chunk::Item(term.to_string(), text.trim().to_string()));
        } else if !line.starts_with(' ') && matches!(chunks.last(), Some(Chunk::Item(..))) {
            // Unindented text after a list closes it.
            chunks.push(Chunk::Text(l.to_string()));
            chunks.push(Chunk::Text(String::new()));
        } else {
            match chunks.last_mut() {
                Some(Chunk::Text(t)) if !t.is_empty() => {
                    t.push(' ');
                    t.push_str(l.trim());
                }
                _ => chunks.push(Chunk::Text(l.trim().to_string())),
            }
        }
    }
    sections
        .into_iter()
        .map(|(title, chunks)| {
            let mut body = String::new();
            let mut first = true;
            let mut in_list = false;
            for chunk in chunks {
                match chunk {
                    Chunk::Text(t) if t.is_empty() => {}
                    Chunk::Text(t) => {
                        if !first {
                            body.push_str(".PP\n");
                        }
                        body.push_str(&fill(&esc(&t)));
                        in_list = false;
                    }
                    Chunk::Literal(lines) => {
                        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
                        body.push_str(&literal(&lines, first && !in_list));
                        in_list = false;
                    }
                    Chunk::Item(term, text) => {
                        body.push_str(&format!(".TP\n\\fB{}\\fR\n", esc(&term)));
                        body.push_str(&fill(&esc(&text)));
                        in_list = true;
                    }
                }
                first = false;
            }
            (title, body)
        })
        .collect()
}

/// One argument in a synopsis: `[-c DIR]`, `[-v...]`, `[--target NAME]...`,
/// `PACKAGE`; `None` for help and version.
fn synopsis_item(arg: &clap::Arg) -> Option<String> {
    if arg.is_hide_set() || ["help", "version"].contains(&arg.get_id().as_str()) {
        return None;
    }
    let value = || {
        arg.get_value_names()
            .map(|v| v.join(" "))
            .unwrap_or_else(|| arg.get_id().as_str().to_uppercase())
    };
    let mut item = if arg.is_positional() {
        format!("\\fI{}\\fR", esc(&value()))
    } else {
        let flag = match (arg.get_short(), arg.get_long()) {
            (Some(s), _) => format!("-{s}"),
            (None, Some(l)) => format!("--{l}"),
            (None, None) => return None,
        };
        let mut item = format!("\\fB{}\\fR", esc(&flag));
        if arg.get_num_args().is_some_and(|n| n.takes_values()) || arg.get_action().takes_values() {
            item.push_str(&format!("\\ \\fI{}\\fR", esc(&value())));
        }
        if matches!(arg.get_action(), clap::ArgAction::Count) {
            // `\&`: not the end of a sentence (no double space after it).
            item.push_str("...\\&");
        }
        item
    };
    if !arg.is_required_set() {
        item = format!("[{item}]");
    }
    if matches!(arg.get_action(), clap::ArgAction::Append) {
        item.push_str("...\\&");
    }
    Some(item)
}

/// The global options of `blat`, as the top-level command declares them.
fn globals() -> Vec<clap::Arg> {
    Cli::command()
        .get_arguments()
        .filter(|a| a.is_global_set())
        .cloned()
        .collect()
}

/// `.SY blat` with the global options, then the command and its own.
fn synopsis(sub: Option<&clap::Command>) -> String {
    let mut out = String::from(".SY blat\n");
    for arg in globals() {
        if let Some(item) = synopsis_item(&arg) {
            out.push_str(&item);
            out.push('\n');
        }
    }
    match sub {
        Some(sub) => {
            out.push_str(&format!(".B {}\n", sub.get_name()));
            let mut args: Vec<&clap::Arg> =
                sub.get_arguments().filter(|a| !a.is_positional()).collect();
            args.extend(sub.get_positionals());
            for arg in args {
                if let Some(item) = synopsis_item(arg) {
                    out.push_str(&item);
                    out.push('\n');
                }
            }
        }
        None => out.push_str("\\fIcommand\\fR\n[\\fIoptions\\fR] [\\fIarguments\\fR]\n"),
    }
    out.push_str(".YS\n");
    out
}

/// clap_mangen's OPTIONS section(s) of `cmd`, tidied: no trailing blanks,
/// text lines refilled to 80 bytes (not the tag line after `.TP`).
fn options(cmd: clap::Command) -> String {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd)
        .render_options_section(&mut buf)
        .unwrap();
    let mut out = String::new();
    let mut after_tp = false;
    for line in String::from_utf8(buf).unwrap().lines() {
        let line = line.trim_end();
        if line.starts_with('.') || after_tp {
            out.push_str(line);
            out.push('\n');
        } else {
            out.push_str(&fill(line));
        }
        after_tp = line == ".TP";
    }
    out
}

/// The global options as a section of a command's page.
fn global_options() -> String {
    let cmd = clap::Command::new("blat")
        .disable_help_flag(true)
        .disable_version_flag(true)
        .args(
            globals()
                .into_iter()
                .map(|a| a.help_heading("GLOBAL OPTIONS")),
        );
    options(cmd)
}

/// The text of a clap `about`, one paragraph a blank line apart.
fn about_text(cmd: &clap::Command, long: bool) -> String {
    let about = if long {
        cmd.get_long_about().or_else(|| cmd.get_about())
    } else {
        cmd.get_about()
    };
    about.map(|a| a.to_string()).unwrap_or_default()
}

fn title(name: &str, section: &str) -> String {
    // .nh: no hyphenation, so words and paths copy as they are.
    format!(
        ".TH {} {section} {DATE} \"blat {}\" \"{MANUAL}\"\n.nh\n",
        esc(&name.to_uppercase()),
        env!("CARGO_PKG_VERSION")
    )
}

fn name_section(name: &str, about: &str) -> String {
    let about = about.trim_end_matches('.');
    // "Bring targets ..." reads "bring targets ..." after the name; an
    // acronym ("S3 ...") stays.
    let mut chars = about.chars();
    let about = match (chars.next(), chars.next()) {
        (Some(a), Some(b)) if a.is_uppercase() && b.is_lowercase() => {
            format!("{}{}", a.to_lowercase(), &about[a.len_utf8()..])
        }
        _ => about.to_string(),
    };
    section(
        "NAME",
        &fill(&format!("{} \\- {}", esc(name), inline(&about))),
    )
}

fn see_also(refs: &[&str]) -> String {
    let mut body = String::new();
    for (i, r) in refs.iter().enumerate() {
        let (name, sec) = r.split_once('(').expect("name(section)");
        let comma = if i + 1 < refs.len() { "," } else { "" };
        body.push_str(&format!(".BR {} ({sec}{comma}\n", esc(name)));
    }
    section("SEE ALSO", &body)
}

// ---- what the pages say ------------------------------------------------------------

/// The files blat uses, each a `= term` entry of FILES.
const F_CONFIG: &str = "= `/etc/blat/blat.toml`, `/etc/blat/targets/<name>.conf`
  The configuration: the directory given by `-c`, else `$BLAT_CONFIG`, else `/etc/blat`.
  One TOML file per target, named after it; see blat.conf(5). Every run reads it afresh.";
const F_STATE: &str = "= `<state_dir>/targets/<target>.db`
  The state of one target (SQLite): the runs of each command on it (outcome, duration, what
  was sent and failed, how far behind the target was after a sync), tag attempts, aging marks,
  the S3 uploads, its free space as last read. One file per target, so no target waits on
  another's writes and a target can move to another master with its file. The first run
  that may write splits the single `blat.db` of earlier versions into these files and keeps it
  as `blat.db.migrated`. Read-only runs (`status`, `--dry-run`) open it read-only and create
  nothing.";
const F_LOCK: &str = "= `<state_dir>/locks/<target>.lock`
  The lock every pass on a target holds; a run that finds it held does nothing there (exit
  status 4). A dry run takes an existing lock file read-only and creates none.";
const F_WATCH: &str = "= `<state_dir>/locks/<target>.watch`
  The lock of the one `blat fast` watching a target's tags.";
const F_TAGS: &str = "= `<tag_dir>/<target>/<package>::<version>`
  A tag: an empty file, written by `blat tag` or the Release Manager (`tag_dir` defaults to
  `<state_dir>/tags`). Names starting with `.` are never tags.";
const F_REJECTED: &str = "= `<tag_dir>/<target>/.rejected/<tag>`, `.rejected/.<tag>.reason`
  A rejected tag, and why (with the time).";
const F_PLIST: &str = "= `<archive>/.dpkg_archive/packagelist.txt`
  On the target: the current set as `sync` and `plist` last wrote it, one `package version` a
  line, sorted, after a `#` header; `blat age --local` ages by it.";
const F_RECEIVER: &str = "= `~/.blat/blat-receiver`
  On an SSH target: the receiver program blat installs and keeps up to date (see
  blat-sync(1)). Its temporaries in the target archive are named `.blat-tmp-<pid>-*` and
  `.blat-del-*`.";
const F_RINDEX: &str = "= `<archive>/.dpkg_archive/blat-index.txt`
  On the target: the receiver's index of what is installed, so that a sync that changes
  nothing reads one file instead of every descpkg. Kept by every receive, link and delete
  (under flock(1) on `.dpkg_archive`); `sync --verify`, and every `verify_every` syncs, walk
  the target instead, report where it was wrong and rebuild it. Removing it only costs one
  full walk.";
const F_LOG: &str = "= `log_file`
  When blat.toml names one, every run but `status` appends its timestamped lines there.";
const F_INDEX: &str = "= `<archive>/.dpkg_archive/dpkg_archive_list.txt`
  The content index: every directory, file and symlink below the archive, one path a line,
  sorted by bytes; replaced atomically.
= `<archive>/.dpkg_archive/dpkg_archive_list.cache`
  Where each package-version's block of lines sits, by descpkg mtime; losing it only means a
  full walk.
= `<archive>/.dpkg_archive/locks/index.lock`
  Held by a running `blat index` (a second one exits 4).";
const F_AGE_LOCAL: &str = "= `<archive>/.dpkg_archive/blat-age-marks.txt`
  `age --local`: one `package version first-seen-seconds` a line; removing it is always safe
  (the clocks restart).
= `<archive>/.dpkg_archive/locks/age.lock`
  Held by a running `blat age --local` (a second one exits 4).";
const F_METRICS: &str = "= `<FILE>` of `--metrics`
  The Prometheus text file for node_exporter's textfile collector, e.g.
  `/var/lib/prometheus/node-exporter/blat.prom`, written to a temporary file beside it and
  renamed over it.";

const E_CONFIG: &str = "= `BLAT_CONFIG`
  The configuration directory when `-c` is not given (default `/etc/blat`).";
const E_PASSWORD: &str = "= the variable `[release_manager] password_env` names
  The password of an ODBC Release Manager (see blat.conf(5)).";
const E_AWS: &str = "= `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_PROFILE`, `AWS_REGION`, `AWS_CONFIG_FILE`, `AWS_SHARED_CREDENTIALS_FILE`
  S3 targets take their credentials and region only from the standard AWS chain
  (environment, shared config and SSO, web identity, container and instance roles); blat's
  configuration has no key for them and no message shows them.";
const E_NOW: &str = "= `BLAT_NOW`
  Seconds since the epoch to take as the current time. For tests only: it fixes the clock of
  grace periods, aging and ages in `status`.";

/// The hand-written sections of one command's page.
struct Page {
    command: &'static str,
    /// More about the exit status than the list of codes.
    exit: &'static str,
    files: &'static [&'static str],
    environment: &'static [&'static str],
    examples: &'static str,
    see_also: &'static [&'static str],
}

const PAGES: &[Page] = &[
    Page {
        command: "sync",
        exit: "3 when some package-versions, aliases, the PackageList or aging failed and the rest \
went through; 1 when the target could not be reached, the release source failed, or nothing \
went through. A target not yet due under `--due` is 0 and not recorded as a run.",
        files: &[F_CONFIG, F_STATE, F_LOCK, F_PLIST, F_RINDEX, F_RECEIVER, F_LOG],
        environment: &[E_CONFIG, E_PASSWORD, E_NOW],
        examples: "From cron, every 5 minutes, each target whose `sync_interval` has passed:

    */5 * * * *  blat  blat -q sync --all --due >/dev/null

A first SSH target: on the target, as root, a user that owns the archive, then on the \
master the key and the target's host key (compare its fingerprint with the target's own \
`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`):

    useradd -m -s /bin/sh pkgadmin
    install -d -o pkgadmin -m 755 /srv/dpkg_archive
    ln -s /srv/dpkg_archive ~pkgadmin/dpkg_archive

    install -d -m 700 /etc/blat/ssh
    ssh-keygen -t ed25519 -N '' -C blat@master -f /etc/blat/ssh/id_ed25519
    ssh-keyscan -p 22 site-a.example.com >> /etc/blat/ssh/known_hosts
    ssh-keygen -lf /etc/blat/ssh/known_hosts

Append `/etc/blat/ssh/id_ed25519.pub` to `~pkgadmin/.ssh/authorized_keys` on the target \
(restricted to the receiver as in SSH TARGETS above), and describe the target in \
`/etc/blat/targets/site-a.conf`:

    kind = \"archive\"
    host = \"site-a.example.com\"
    user = \"pkgadmin\"
    identity = \"/etc/blat/ssh/id_ed25519\"
    known_hosts = \"/etc/blat/ssh/known_hosts\"
    projects = [\"PROJ\"]

A dry run prints what a sync would do, one `would ...` line each, and changes nothing (not \
even the state); then the real sync, listing each package:

    blat --dry-run sync --target site-a
    blat -v sync --target site-a",
        see_also: &["blat(1)", "blat.conf(5)", "blat-fast(1)", "blat-age(1)", "blat-status(1)", "ssh-keygen(1)", "ssh-keyscan(1)", "sshd(8)"],
    },
    Page {
        command: "plist",
        exit: "1 when the release source failed or the target could not be written.",
        files: &[F_CONFIG, F_STATE, F_LOCK, F_PLIST, F_RECEIVER, F_LOG],
        environment: &[E_CONFIG, E_PASSWORD, E_NOW],
        examples: "Write every archive target's PackageList, for targets that age themselves \
(`blat age --local`) between full syncs:

    blat plist --all

See what it would write:

    blat --dry-run plist --target site-a",
        see_also: &["blat(1)", "blat.conf(5)", "blat-sync(1)", "blat-age(1)"],
    },
    Page {
        command: "s3sync",
        exit: "3 when some uploads or deletions failed and the rest went through; 1 when the \
bucket could not be listed, the release source failed, or nothing went through (also when \
more than `max_delete` deletions were refused and nothing else was done).",
        files: &[F_CONFIG, F_STATE, F_LOCK, F_LOG],
        environment: &[E_CONFIG, E_AWS, E_PASSWORD, E_NOW],
        examples: "Keep every S3 target in step, from cron every 15 minutes:

    */15 * * * *  blat  blat -q s3sync --all >/dev/null

What a pass would upload and delete, without a request that changes anything:

    blat --dry-run s3sync --target ci-bucket",
        see_also: &["blat(1)", "blat.conf(5)", "blat-status(1)"],
    },
    Page {
        command: "fast",
        exit: "1 when a tag was rejected or failed and nothing else went through, 3 when others \
went through; 4 when another watcher holds the target's tags. A tag kept because its package \
is still being written is not a failure.",
        files: &[F_CONFIG, F_STATE, F_LOCK, F_WATCH, F_TAGS, F_REJECTED, F_RECEIVER, F_LOG],
        environment: &[E_CONFIG, E_NOW],
        examples: "From cron: a watcher started every minute, so a tag reaches its target \
within seconds:

    * * * * *  blat  blat -q fast --all --watch 59s >/dev/null

What the tags waiting now would send:

    blat --dry-run fast --target site-a",
        see_also: &["blat(1)", "blat-tag(1)", "blat-sync(1)", "blat-status(1)", "blat.conf(5)", "systemd.path(5)"],
    },
    Page {
        command: "tag",
        exit: "2 when a name is invalid (nothing is written); 1 when a tag directory cannot be \
written. A tag for a package not (yet) in the archive is written, with a warning.",
        files: &[F_CONFIG, F_TAGS],
        environment: &[E_CONFIG],
        examples: "The Release Manager's hook when a package is released, for every archive \
target, or one:

    blat tag jats 2.1.0
    blat tag jats jats2_current --target site-a",
        see_also: &["blat(1)", "blat-fast(1)", "blat.conf(5)"],
    },
    Page {
        command: "index",
        exit: "3 when some directories could not be read (their lines are missing; the next \
run tries again); 2 when the archive does not exist; 4 when another `blat index` holds \
`.dpkg_archive/locks/index.lock`.",
        files: &[F_INDEX, F_CONFIG],
        environment: &[E_CONFIG],
        examples: "On a target, nightly from cron, as the archive's owner (no configuration is \
read):

    30 2 * * *  pkgadmin  blat -q index --archive /srv/dpkg_archive >/dev/null

The master's own archive, and what a run would walk:

    blat index
    blat --dry-run index --archive /srv/dpkg_archive",
        see_also: &["blat(1)", "find(1)"],
    },
    Page {
        command: "age",
        exit: "1 when more deletions than `max_delete` were due (nothing deleted; `--force` \
deletes them) or the release source failed; 3 when some deletions failed and others went \
through; with `--local`, 2 without a usable PackageList and 4 when another `age --local` \
holds its lock.",
        files: &[F_CONFIG, F_STATE, F_LOCK, F_PLIST, F_AGE_LOCAL, F_RECEIVER, F_LOG],
        environment: &[E_CONFIG, E_PASSWORD, E_NOW],
        examples: "What aging would mark, unmark and delete on every archive target:

    blat --dry-run age --all

After checking the releases, delete what a refusal held back:

    blat age --target site-a --force

On a target whose method is `target`, nightly from cron, as the archive's owner:

    15 3 * * *  pkgadmin  blat -q age --local --archive /srv/dpkg_archive --after 14d >/dev/null",
        see_also: &["blat(1)", "blat.conf(5)", "blat-sync(1)", "blat-plist(1)", "blat-status(1)"],
    },
    Page {
        command: "status",
        exit: "0 whatever the targets' state (2 for bad usage or configuration; 1 when the state \
or the metrics file cannot be read or written): alert on the metrics instead.",
        files: &[F_CONFIG, F_STATE, F_TAGS, F_REJECTED, F_METRICS],
        environment: &[E_CONFIG, E_NOW],
        examples: "One line per target: the last successful sync and its age (`overdue` after \
twice `sync_interval`), whether it is behind (package-versions missing or differing after the \
last sync, pending tags and the oldest one's age), the last error; then the details:

    blat status
    TARGET            LAST SUCCESSFUL SYNC                       BEHIND                   LAST ERROR
    site-a (archive)  2024-05-02T10:00:00Z (12m ago)             no                       -
    site-b (archive)  2024-05-02T02:00:00Z (8h12m ago), overdue  yes: 3 package-versions  2m ago, sync: cannot connect to ...

The same as JSON, and the summary lines only:

    blat status --json --target site-a
    blat -q status

The metrics for node_exporter's textfile collector, every minute from cron (the alert \
rules are in `contrib/prometheus/blat.rules.yml`):

    * * * * *  root  blat -q status --metrics /var/lib/prometheus/node-exporter/blat.prom >/dev/null",
        see_also: &["blat(1)", "blat-sync(1)", "blat-fast(1)", "blat-age(1)", "promtool(1)"],
    },
    Page {
        command: "check",
        exit: "0 when every check holds, 1 when one fails (a configuration that does not parse \
is a failed check too); 2 for bad usage, such as an unknown `--target`.",
        files: &[F_CONFIG, F_RECEIVER],
        environment: &[E_CONFIG, E_PASSWORD, E_AWS],
        examples: "Before the first sync of a new target: every step, and the authorized_keys \
line to install there:

    blat check --target site-a

Every target, as JSON (`checks`, `authorized_keys`):

    blat check --json",
        see_also: &["blat(1)", "blat-sync(1)", "blat-ssh(1)", "blat.conf(5)", "ssh-keyscan(1)"],
    },
    Page {
        command: "ssh",
        exit: "ssh's own: the remote command's, or 255 when ssh fails (an unknown host key, a \
refused key); 2 for an unknown target or one that is not an SSH target.",
        files: &[F_CONFIG],
        environment: &[E_CONFIG],
        examples: "A shell on the target, as its user:

    blat ssh site-a

A command there (options after the target are the command's):

    blat ssh site-a df -h dpkg_archive",
        see_also: &["blat(1)", "blat-check(1)", "blat.conf(5)", "ssh(1)"],
    },
    Page {
        command: "completions",
        exit: "0; 2 for bad usage. `--targets` prints nothing (and exits 0) when there is no \
configuration.",
        files: &[F_CONFIG],
        environment: &[E_CONFIG],
        examples: "Load them in the running bash:

    source <(blat completions bash)

The target names the scripts complete:

    blat -c /etc/blat completions --targets",
        see_also: &["blat(1)", "bash(1)", "zsh(1)", "fish(1)"],
    },
];

const TOP_DESCRIPTION: &str = "blat pushes released build packages from a central package \
archive to remote sites over SSH, to local directories and to an S3 bucket, driven by a \
Release Manager database, and keeps those sites tidy. Each command does one pass and exits; \
cron or systemd timers schedule them (see EXAMPLES).

A command that works on targets needs `--target NAME` (repeatable) or `--all`. Every pass \
on a target holds the target's lock; a run that finds it held says so in one line and does \
nothing there. One target failing never stops the others; with several targets the most \
severe outcome decides the exit status. `sync`, `s3sync` and `age` work on up to `jobs` \
targets at once (`--jobs N`), so a slow or unreachable target holds up only itself.

`blat status` and every `--dry-run` change nothing and create nothing (no state file, no \
lock file, no log line), so a user who may only read `state_dir` can run them. A dry run \
prints the exact plan as `would ...` lines.

On a terminal blat shows progress bars; elsewhere (cron, systemd) timestamped lines, and a \
progress line every 30 seconds during long transfers. Always one summary line per target \
when it is done (in the order the targets finish when several run at once), e.g.

    site-a: sync done: 5 sent (20.3 KiB), 0 up to date, 1 aliases linked, packagelist written in 0.1s";

const TOP_EXAMPLES: &str = "On the master, `/etc/cron.d/blat` (`contrib/cron/blat`): a tag \
watcher every minute, a sync of the due targets every 5 minutes, and the metrics:

    * * * * *    blat  blat -q fast --all --watch 59s >/dev/null
    */5 * * * *  blat  blat -q sync --all --due >/dev/null
    * * * * *    root  blat -q status --metrics /var/lib/prometheus/node-exporter/blat.prom >/dev/null

On each target, `/etc/cron.d/blat-target`, as the archive's owner:

    30 2 * * *  pkgadmin  blat -q index --archive /srv/dpkg_archive >/dev/null
    15 3 * * *  pkgadmin  blat -q age --local --archive /srv/dpkg_archive >/dev/null

A first SSH target is set up as blat-sync(1) shows; then see what the first sync would do, \
do it, and look:

    blat --dry-run sync --target site-a
    blat sync --target site-a
    blat status --target site-a

Signal a released package to every target at once:

    blat tag jats 2.1.0";

/// blat.conf(5): (file or table, key, default, meaning).
const CONF_KEYS: &[(&str, &str, &str, &str)] = &[
    ("blat.toml", "archive", "required", "The package archive. When it is missing (a share not mounted, a typo), `sync`, `fast`, `plist`, `age` and `s3sync` fail the target with `source archive ... does not exist`."),
    ("blat.toml", "state_dir", "required", "The state files `targets/<target>.db` (one per target) and `locks/`."),
    ("blat.toml", "tag_dir", "`<state_dir>/tags`", "The tag directories, one subdirectory per target."),
    ("blat.toml", "verbose", "`1`", "0 errors and summaries only, 1 normal, 2 each package, 3 debug; each `-v` adds one, `-q` means 0."),
    ("blat.toml", "log_file", "none", "Also append timestamped lines here (stderr always)."),
    ("blat.toml", "fast_poll", "`5s`", "How often `fast --watch` polls the tag directories (besides waking when a tag appears)."),
    ("blat.toml", "jobs", "`4`", "Targets `sync`, `s3sync` and `age` work on at once (1 to 256; `--jobs N` overrides it); `fast` always works on all its targets at once."),
    ("blat.toml", "ssh_client", "`openssh`", "The `ssh_client` of SSH targets that do not set their own."),
    ("blat.toml", "release_manager", "required", "The table below."),
    ("[release_manager]", "kind", "required", "`sqlite` (the built-in SQLite source), `odbc` (a blat built with the `odbc` feature), or `packagelist`: a relay, whose `archive` is a site a master syncs and whose targets get that site's PackageList, `<archive>/.dpkg_archive/packagelist.txt`, aliases included; no list, an empty one or one that does not parse sends, deletes and ages nothing."),
    ("[release_manager]", "path", "", "`kind = \"sqlite\"`: the database file; a path ending in `.sql` is executed into an in-memory database at each run (demos, fixtures)."),
    ("[release_manager]", "connection_string", "", "`kind = \"odbc\"`: a DSN-less connection string (`Driver={...};Server=...;`); exactly one of it and `dsn`."),
    ("[release_manager]", "dsn", "", "`kind = \"odbc\"`: a data source name from `odbc.ini`."),
    ("[release_manager]", "user", "", "The login, added as `UID=`."),
    ("[release_manager]", "password_env", "", "The name of an environment variable holding the password (added as `PWD=`; never shown)."),
    ("[release_manager]", "password_file", "", "A file whose first line is the password (keep it mode 600)."),
    ("[release_manager]", "login_timeout", "`15s`", "Give up connecting after this long (`0`: no limit)."),
    ("[release_manager]", "query_timeout", "`120s`", "Cancel any one query after this long (`0`: no limit)."),
    ("[release_manager]", "queries", "reference schema", "The table below."),
    ("[release_manager.queries]", "release_exists", "", "SQL with `?` for project and release: a row when the release exists."),
    ("[release_manager.queries]", "release_content", "", "SQL with `?` for project and release: its package and version names."),
    ("[release_manager.queries]", "project_exists", "", "SQL with `?` for the project: a row when it exists."),
    ("[release_manager.queries]", "open_releases", "", "SQL with `?` for the project: the names of its releases not `closed`."),
    ("[release_manager.queries]", "s3_releases", "", "SQL without parameters: project and release names of the releases flagged for S3."),
    ("targets/<name>.conf", "kind", "required", "`archive` (a copy of the archive, over SSH or a local directory) or `s3` (a bucket of ZIPs)."),
    ("targets/<name>.conf", "transport", "`ssh`", "Archive targets: `ssh` or `local`."),
    ("targets/<name>.conf", "path", "", "`transport = \"local\"`: the target archive directory (created when missing; never the source archive or inside it)."),
    ("targets/<name>.conf", "host", "", "SSH: the target's host name or address."),
    ("targets/<name>.conf", "port", "`22`", "SSH: its port."),
    ("targets/<name>.conf", "user", "", "SSH: the user that owns the target archive, e.g. `pkgadmin`."),
    ("targets/<name>.conf", "identity", "", "SSH: the private key (mode 600, no passphrase)."),
    ("targets/<name>.conf", "known_hosts", "", "SSH: the known_hosts file the host key is checked against (always)."),
    ("targets/<name>.conf", "remote_archive", "`dpkg_archive`", "SSH: the target archive, absolute or relative to the user's home."),
    ("targets/<name>.conf", "connect_timeout", "`15s`", "SSH: give up connecting and the handshake after this long."),
    ("targets/<name>.conf", "io_timeout", "`60s`", "SSH: give up on any wait for the target after this long (`0`: none)."),
    ("targets/<name>.conf", "jump", "none", "SSH: jump hosts to pass through, `[user@]host[:port]`, comma-separated, first to last (user: the target's; port: 22); each with its own host key check in `known_hosts`, logging in with `identity`."),
    ("targets/<name>.conf", "ssh_client", "blat.toml's", "SSH: `openssh` (the system's `ssh`, one multiplexed connection per run; `~/.ssh/config` applies, the keys above win) or `libssh2` (built in)."),
    ("targets/<name>.conf", "compression", "`zstd:1`", "`none`, `gzip[:1-9]` or `zstd[:1-19]` (gzip, with a warning, when the target has no zstd; unset: `zstd:1`, or `gzip:1` without a warning)."),
    ("targets/<name>.conf", "min_free", "`0`", "Refuse to send a package that would leave the target with less free space (a size)."),
    ("targets/<name>.conf", "delta", "`link`", "A new version reuses the unchanged files of an older version the target holds: `link` (hard link read-only files of equal mode and mtime, copy the others), `copy` or `off` (send every file)."),
    ("targets/<name>.conf", "bwlimit", "none", "Bytes per second for all transfers to the target together, after compression (a size: a plain number is KiB/s, as rsync's `--bwlimit`; `0`: no limit)."),
    ("targets/<name>.conf", "verify_every", "`24`", "Archive targets: every this many syncs, a full check: the target is walked instead of trusting its index of what is installed, the index is rebuilt, and what was changed on the target by hand is sent again (`0`: only `sync --verify`)."),
    ("targets/<name>.conf", "bucket", "", "S3: the bucket."),
    ("targets/<name>.conf", "prefix", "empty", "S3: the key prefix, e.g. `packages/`."),
    ("targets/<name>.conf", "region", "the AWS chain", "S3: the region."),
    ("targets/<name>.conf", "endpoint", "", "S3: an S3-compatible store's URL (MinIO, Ceph); path-style addressing."),
    ("targets/<name>.conf", "parallel", "`4`", "Concurrent transfers (archive targets) or requests (S3) to this target, 1 to 64."),
    ("targets/<name>.conf", "releases", "`[]`", "`PROJECT/RELEASE` names whose content the target holds (not under a relay)."),
    ("targets/<name>.conf", "projects", "`[]`", "Projects whose releases that are not closed the target holds (not under a relay)."),
    ("targets/<name>.conf", "packages", "`[]`", "`package/version` pins, always kept; an alias pin brings its version and the link."),
    ("targets/<name>.conf", "writable_grace", "`1h`", "A package-version still writable is sent once it has been so for longer than this; one younger than this on the target is never aged."),
    ("targets/<name>.conf", "sync_interval", "`4h`", "`sync --due` syncs the target when its last successful sync is older; `status` calls it overdue after twice this."),
    ("targets/<name>.conf", "tag_retries", "`10`", "Failed attempts at a tag before it is rejected."),
    ("targets/<name>.conf", "aging", "method `none`", "The table below."),
    ("[aging]", "method", "`none`", "`none` (never delete), `immediate` (delete excess package-versions in the same pass), `master` (mark them, delete once marked for longer than `after`) or `target` (the target's own `blat age --local` does it)."),
    ("[aging]", "after", "`14d`", "`master` and `target`: how long a package-version stays marked before it goes."),
    ("[aging]", "max_delete", "`50`", "More deletions than this in one pass are refused as a whole unless `--force`."),
];

const CONF_DESCRIPTION: &str = "blat reads a configuration directory (`-c DIR`, else \
`$BLAT_CONFIG`, else `/etc/blat`): `blat.toml` for the master, and `targets/<name>.conf`, \
one TOML file per target, named after the target. Files with other suffixes are ignored, so \
a target can be prepared as `x.conf.new` and renamed in. Every run reads the configuration \
afresh.

Unknown keys are errors, and every error names the file, line and column and says what was \
expected:

    blat: error: /etc/blat/targets/site-a.conf:5:17: invalid duration '4x': expected seconds or terms like 90s, 5m, 1h10m, 2d12h

Relative paths are taken relative to the directory of the file that holds them.

Durations are seconds, or a sum of terms with `s m h d` (`90`, `5s`, `1h10m`, `2d12h`), at \
most `36500d`. Sizes are a number with `k` (KiB, the default), `b` (1 KiB blocks), `m` (MiB) \
or `g` (GiB), at most 8 EiB. Names of packages and versions must match \
`^[A-Za-z0-9_][A-Za-z0-9._+~-]{0,254}$`; a release is `PROJECT/RELEASE`, and a release or \
project that does not exist is an error, never an empty set.";

const CONF_EXAMPLES: &str = "`/etc/blat/blat.toml`:

    archive   = \"/srv/dpkg_archive\"
    state_dir = \"/var/lib/blat\"
    log_file  = \"/var/log/blat.log\"
    [release_manager]
    kind = \"sqlite\"
    path = \"/srv/rm/release_manager.db\"

`/etc/blat/targets/site-a.conf`, an SSH target that ages by marks on the master:

    kind = \"archive\"
    host = \"site-a.example.com\"
    user = \"pkgadmin\"
    identity    = \"/etc/blat/ssh/id_ed25519\"
    known_hosts = \"/etc/blat/ssh/known_hosts\"
    projects = [\"PROJ\"]
    packages = [\"jats/jats2_current\"]
    min_free = \"2g\"
    [aging]
    method = \"master\"
    after  = \"14d\"

`/etc/blat/targets/ci-bucket.conf`, an S3 target:

    kind   = \"s3\"
    bucket = \"blat-packages\"
    prefix = \"packages/\"
    region = \"eu-west-1\"
    [aging]
    method = \"immediate\"";

// ---- the pages ---------------------------------------------------------------------

fn exit_status(extra: Option<(&str, &str)>) -> String {
    let codes = Cli::command()
        .get_after_long_help()
        .expect("blat's --help ends with the exit codes")
        .to_string();
    let (title, mut body) = help_sections(&codes)
        .into_iter()
        .find(|(t, _)| t == "EXIT STATUS")
        .expect("an Exit codes: section");
    if let Some((command, extra)) = extra {
        body.push_str(".PP\n");
        body.push_str(&fill(&inline(&format!("`blat {command}` exits {extra}"))));
    }
    section(&title, &body)
}

fn entries(list: &[&str]) -> String {
    doc(&list.join("\n"))
}

fn top_page() -> String {
    let cmd = Cli::command();
    let mut page = title("blat", "1");
    page.push_str(&name_section("blat", &about_text(&cmd, false)));
    page.push_str(&section("SYNOPSIS", &synopsis(None)));
    page.push_str(&section("DESCRIPTION", &doc(TOP_DESCRIPTION)));
    let mut commands = String::new();
    for sub in cmd.get_subcommands() {
        commands.push_str(&format!(
            ".TP\n.BR blat\\-{} (1)\n{}",
            esc(sub.get_name()),
            fill(&inline(about_text(sub, false).trim_end_matches('.')))
        ));
    }
    page.push_str(&section("COMMANDS", &commands));
    page.push_str(&options(Cli::command().subcommand_required(false)));
    page.push_str(&exit_status(None));
    page.push_str(&section(
        "FILES",
        &entries(&[
            F_CONFIG,
            F_STATE,
            F_LOCK,
            F_WATCH,
            F_TAGS,
            F_REJECTED,
            F_PLIST,
            F_RINDEX,
            F_RECEIVER,
            F_LOG,
            F_INDEX,
            F_AGE_LOCAL,
        ]),
    ));
    page.push_str(&section(
        "ENVIRONMENT",
        &entries(&[E_CONFIG, E_PASSWORD, E_AWS, E_NOW]),
    ));
    page.push_str(&section("EXAMPLES", &doc(TOP_EXAMPLES)));
    let mut refs: Vec<String> = cmd
        .get_subcommands()
        .map(|s| format!("blat-{}(1)", s.get_name()))
        .collect();
    refs.extend(["blat.conf(5)", "cron(8)", "systemd.timer(5)"].map(String::from));
    page.push_str(&see_also(
        &refs.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    page
}

fn command_page(sub: &clap::Command) -> String {
    let name = sub.get_name();
    let spec = PAGES
        .iter()
        .find(|p| p.command == name)
        .unwrap_or_else(|| panic!("blat {name} has no man page sections in tests/it/man.rs"));
    let full = format!("blat-{name}");
    let mut page = title(&full, "1");
    page.push_str(&name_section(&full, &about_text(sub, false)));
    page.push_str(&section("SYNOPSIS", &synopsis(Some(sub))));
    page.push_str(&section("DESCRIPTION", &doc(&about_text(sub, true))));
    page.push_str(&options(sub.clone()));
    page.push_str(&global_options());
    if let Some(help) = sub.get_after_long_help() {
        for (title, body) in help_sections(&help.to_string()) {
            page.push_str(&section(&title, &body));
        }
    }
    if name == "status" {
        page.push_str(&metrics_section());
    }
    page.push_str(&exit_status(Some((name, spec.exit))));
    page.push_str(&section("FILES", &entries(spec.files)));
    page.push_str(&section("ENVIRONMENT", &entries(spec.environment)));
    page.push_str(&section("EXAMPLES", &doc(spec.examples)));
    page.push_str(&see_also(spec.see_also));
    page
}

/// METRICS of blat-status(1): every family the metrics writer has, with its
/// HELP text.
fn metrics_section() -> String {
    let mut body = doc(
        "`--metrics FILE` writes these gauges in the Prometheus text format \
(for node_exporter's textfile collector), each with the label `target` and, per command, \
`command`; `blat_last_run_outcome` has `outcome`, `blat_info` `version`. The alert rules in \
`contrib/prometheus/blat.rules.yml` use them.",
    );
    for (name, help) in metric_families() {
        body.push_str(&format!(".TP\n\\fB{}\\fR\n", esc(&name)));
        body.push_str(&fill(&esc(&help)));
    }
    section("METRICS", &body)
}

/// (name, help) of each family `blat status --metrics` writes.
fn metric_families() -> Vec<(String, String)> {
    blat::ops::status::metrics(&[])
        .lines()
        .filter_map(|l| l.strip_prefix("# HELP "))
        .map(|l| {
            let (name, help) = l.split_once(' ').unwrap();
            (name.to_string(), help.to_string())
        })
        .collect()
}

fn conf_page() -> String {
    let mut page = title("blat.conf", "5");
    page.push_str(&name_section(
        "blat.conf",
        "configuration of blat(1): blat.toml and targets/*.conf",
    ));
    page.push_str(&section(
        "SYNOPSIS",
        &fill(&inline(
            "`/etc/blat/blat.toml` `/etc/blat/targets/<name>.conf`",
        )),
    ));
    page.push_str(&section("DESCRIPTION", &doc(CONF_DESCRIPTION)));
    let tables = [
        ("blat.toml", "BLAT.TOML", "The master's settings, at the top level of `blat.toml`:"),
        ("[release_manager]", "RELEASE MANAGER", "The `[release_manager]` table of `blat.toml`: where the current sets come from."),
        ("[release_manager.queries]", "RELEASE MANAGER QUERIES", "`[release_manager.queries]`, for `kind = \"odbc\"` when the database's schema differs from the reference schema: each query gets its parameters through `?` markers (never spliced into the SQL), must have exactly that many, and its result columns are read as text."),
        ("targets/<name>.conf", "TARGETS", "One file per target, `targets/<name>.conf`. Keys of SSH targets apply to `transport = \"ssh\"`, S3 keys to `kind = \"s3\"`."),
        ("[aging]", "AGING", "The `[aging]` table of a target file: what happens to package-versions on the target that are not in its current set. Never excess: anything while the current set is empty, pins, aliases and the versions they point to, package-versions younger than `writable_grace`."),
    ];
    for (table, heading, intro) in tables {
        let mut body = doc(intro);
        for (t, key, default, meaning) in CONF_KEYS {
            if *t != table {
                continue;
            }
            body.push_str(&format!(".TP\n\\fB{}\\fR", esc(key)));
            if !default.is_empty() {
                body.push_str(&format!(" ({})", inline(default)));
            }
            body.push('\n');
            body.push_str(&fill(&inline(meaning)));
        }
        page.push_str(&section(heading, &body));
    }
    page.push_str(&section("FILES", &entries(&[F_CONFIG])));
    page.push_str(&section("EXAMPLES", &doc(CONF_EXAMPLES)));
    page.push_str(&see_also(&[
        "blat(1)",
        "blat-sync(1)",
        "blat-age(1)",
        "blat-s3sync(1)",
    ]));
    page
}

/// Every page: (file name, roff).
fn render() -> Vec<(String, String)> {
    let cmd = Cli::command();
    let mut pages = vec![("blat.1".to_string(), top_page())];
    for sub in cmd.get_subcommands() {
        pages.push((format!("blat-{}.1", sub.get_name()), command_page(sub)));
    }
    pages.push(("blat.conf.5".to_string(), conf_page()));
    pages
}

fn man_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("man")
}

fn is_page(name: &str) -> bool {
    name.ends_with(".1") || name.ends_with(".5")
}

// ---- the tests ---------------------------------------------------------------------

#[test]
fn man_pages_match_the_clap_definitions() {
    let dir = man_dir();
    let pages = render();
    if std::env::var("BLAT_UPDATE_MAN").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if is_page(&path.file_name().unwrap().to_string_lossy()) {
                std::fs::remove_file(path).unwrap();
            }
        }
        for (name, text) in &pages {
            std::fs::write(dir.join(name), text).unwrap();
        }
    }
    let mut stale = Vec::new();
    for (name, text) in &pages {
        if std::fs::read_to_string(dir.join(name)).ok().as_ref() != Some(text) {
            stale.push(name.clone());
        }
    }
    let extra: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().to_string()))
                .filter(|n| is_page(n) && !pages.iter().any(|(p, _)| p == n))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        stale.is_empty() && extra.is_empty(),
        "man pages out of date: {stale:?}, no longer generated: {extra:?}; run BLAT_UPDATE_MAN=1 cargo test --test it man_pages"
    );
}

#[test]
fn man_pages_have_the_sections_an_operator_needs() {
    for (name, text) in render() {
        let headings: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix(".SH "))
            .collect();
        let wanted: &[&str] = if name.ends_with(".5") {
            &[
                "NAME",
                "SYNOPSIS",
                "DESCRIPTION",
                "FILES",
                "EXAMPLES",
                "SEE ALSO",
            ]
        } else {
            &[
                "NAME",
                "SYNOPSIS",
                "DESCRIPTION",
                "OPTIONS",
                "EXIT STATUS",
                "FILES",
                "ENVIRONMENT",
                "EXAMPLES",
                "SEE ALSO",
            ]
        };
        for h in wanted {
            assert!(headings.contains(h), "{name} lacks {h}: {headings:?}");
        }
        if name.ends_with(".1") {
            // Every synopsis starts with blat and its global options.
            let synopsis = text.split(".SH SYNOPSIS\n").nth(1).unwrap();
            let synopsis = synopsis.split(".YS").next().unwrap();
            for flag in [
                "\\-c",
                "\\-v",
                "\\-q",
                "\\-\\-dry\\-run",
                "\\-\\-json",
                "\\-\\-target",
                "\\-\\-all",
            ] {
                assert!(
                    synopsis.contains(&format!("\\fB{flag}\\fR")),
                    "{name}: synopsis lacks {flag}:\n{synopsis}"
                );
            }
        }
        // Every page named in SEE ALSO as blat's exists.
        let see = text.split(".SH SEE ALSO\n").nth(1).unwrap();
        for line in see.lines().filter_map(|l| l.strip_prefix(".BR ")) {
            let name_ = line.split(' ').next().unwrap().replace("\\-", "-");
            if name_.starts_with("blat") {
                let sec = if name_ == "blat.conf" { "5" } else { "1" };
                let file = format!("{name_}.{sec}");
                assert!(
                    render().iter().any(|(n, _)| *n == file),
                    "{name} refers to {file}, which is not generated"
                );
            }
        }
    }
}

/// The literal lines of the pages' EXAMPLES that run blat, as words.
fn example_command_lines() -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for (name, text) in render() {
        let Some(examples) = text.split(".SH EXAMPLES\n").nth(1) else {
            continue;
        };
        let examples = examples.split("\n.SH ").next().unwrap();
        let mut literal = false;
        for line in examples.lines() {
            match line {
                ".nf" => literal = true,
                ".fi" => literal = false,
                _ if literal => {
                    let line = line.replace("\\-", "-").replace("\\e", "\\");
                    let words: Vec<&str> = line.split_whitespace().collect();
                    // A cron line: five time fields and the user first.
                    let start = if words.first() == Some(&"blat") {
                        Some(0)
                    } else {
                        (words.get(6) == Some(&"blat")).then_some(6)
                    };
                    if let Some(i) = start {
                        let words: Vec<String> = words[i..]
                            .iter()
                            .take_while(|w| !w.starts_with('>'))
                            .map(|w| w.to_string())
                            .collect();
                        out.push((name.clone(), words));
                    }
                }
                _ => {}
            }
        }
    }
    out
}

#[test]
fn man_page_examples_are_command_lines_blat_accepts() {
    use clap::Parser;
    let lines = example_command_lines();
    assert!(lines.len() >= 20, "{lines:?}");
    for (page, words) in &lines {
        if let Err(e) = Cli::try_parse_from(words) {
            panic!(
                "{page}: `{}` is not a valid blat command line: {e}",
                words.join(" ")
            );
        }
    }
    // The cron lines are contrib/cron's.
    let contrib = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("contrib/cron/blat"),
    )
    .unwrap();
    for line in contrib.lines().filter(|l| l.contains(" blat -q ")) {
        let command = line
            .split_whitespace()
            .skip(6)
            .collect::<Vec<_>>()
            .join(" ");
        let command = command.split(" >").next().unwrap();
        assert!(
            lines
                .iter()
                .any(|(p, w)| p == "blat.1" && w.join(" ") == command),
            "blat(1) EXAMPLES lack contrib/cron/blat's `{command}`"
        );
    }
}

/// The keys the configuration parser accepts in `table`, from its error for
/// an unknown key ("expected one of ...").
fn accepted_keys(table: &str) -> BTreeSet<String> {
    let w = crate::common::World::new();
    let (global, target) = match table {
        "blat.toml" => ("zzz_unknown = 1\n", None),
        "[release_manager]" => ("", None),
        "[release_manager.queries]" => ("", None),
        "targets/<name>.conf" => ("", Some("zzz_unknown = 1\n")),
        "[aging]" => ("", Some("[aging]\nmethod = \"none\"\nzzz_unknown = 1\n")),
        other => panic!("{other}"),
    };
    w.write_global(global);
    let toml = w.config().join("blat.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    match table {
        "[release_manager]" => text.push_str("zzz_unknown = 1\n"),
        "[release_manager.queries]" => {
            text.push_str("[release_manager.queries]\nzzz_unknown = 1\n")
        }
        _ => {}
    }
    std::fs::write(&toml, text).unwrap();
    if let Some(t) = target {
        w.write_target(
            "t",
            &format!("kind = \"archive\"\ntransport = \"local\"\npath = \"/nonexistent\"\n{t}"),
        );
    }
    let out = w.blat(&["status"]);
    let err = crate::common::stderr(&out);
    let list = err
        .split("expected one of ")
        .nth(1)
        .unwrap_or_else(|| panic!("{table}: {err}"));
    list.lines()
        .next()
        .unwrap()
        .split(", ")
        .map(|k| k.trim().trim_matches('`').to_string())
        .collect()
}

#[test]
fn blat_conf_documents_every_key_the_parser_accepts() {
    for table in [
        "blat.toml",
        "[release_manager]",
        "[release_manager.queries]",
        "targets/<name>.conf",
        "[aging]",
    ] {
        let documented: BTreeSet<String> = CONF_KEYS
            .iter()
            .filter(|(t, ..)| *t == table)
            .map(|(_, k, ..)| k.to_string())
            .collect();
        assert_eq!(
            documented,
            accepted_keys(table),
            "{table}: blat.conf(5) and the parser differ"
        );
    }
}

#[test]
fn blat_status_documents_every_metric() {
    let page = render()
        .into_iter()
        .find(|(n, _)| n == "blat-status.1")
        .unwrap()
        .1;
    let families = metric_families();
    assert!(families.len() >= 15, "{families:?}");
    for (name, _) in families {
        assert!(
            page.contains(&format!("\\fB{}\\fR", esc(&name))),
            "{name} undocumented"
        );
    }
}

/// Runs `tool` on every page (as generated now, whatever `man/` holds);
/// returns whether it succeeded and what it printed on stdout and stderr.
fn run_on_pages(
    tool: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Vec<(String, bool, String, String)> {
    let dir = tempfile::tempdir().unwrap();
    render()
        .into_iter()
        .map(|(name, text)| {
            let path = dir.path().join(&name);
            std::fs::write(&path, text).unwrap();
            let out = Command::new(tool)
                .args(args)
                .arg(&path)
                .envs(env.iter().copied())
                .output()
                .unwrap();
            (
                name,
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
        .collect()
}

#[test]
fn man_pages_pass_mandoc_lint() {
    let Some(mandoc) = require_tool("mandoc", "mandoc") else {
        return;
    };
    // Every level, style included.
    for (name, ok, stdout, stderr) in run_on_pages(&mandoc, &["-Tlint", "-W", "style"], &[]) {
        assert!(
            ok && stdout.is_empty() && stderr.is_empty(),
            "mandoc -Tlint {name}:\n{stdout}{stderr}"
        );
    }
}

#[test]
fn man_pages_pass_groff_warnings() {
    let Some(groff) = require_tool("groff", "groff-base") else {
        return;
    };
    for (name, ok, stdout, stderr) in
        run_on_pages(&groff, &["-w", "all", "-man", "-Tutf8", "-z"], &[])
    {
        assert!(
            ok && stdout.is_empty() && stderr.is_empty(),
            "groff -w all {name}:\n{stdout}{stderr}"
        );
    }
}

#[test]
fn man_pages_render_in_80_columns() {
    let Some(man) = require_tool("man", "man-db") else {
        return;
    };
    let pages = render();
    for (name, ok, stdout, stderr) in run_on_pages(
        &man,
        &["-l", "-P", "cat"],
        &[
            ("MANWIDTH", "80"),
            ("MAN_KEEP_FORMATTING", ""),
            ("LC_ALL", "C.UTF-8"),
        ],
    ) {
        assert!(ok && stderr.is_empty(), "man -l {name}:\n{stderr}");
        let text = &pages.iter().find(|(n, _)| *n == name).unwrap().1;
        // Literal lines (examples) may be wider than a terminal; nothing else.
        let literals: Vec<String> = text
            .split(".nf\n")
            .skip(1)
            .flat_map(|b| b.split(".fi\n").next().unwrap().lines())
            .map(|l| {
                l.replace("\\-", "-")
                    .replace("\\e", "\\")
                    .replace("\\&", "")
            })
            .collect();
        let rendered: String = stdout.chars().filter(|c| *c != '\u{8}').collect();
        for line in rendered.lines() {
            let wide = line.chars().count() > 80;
            assert!(
                !wide || literals.iter().any(|l| line.trim() == l.trim()),
                "{name}: a line wider than 80 columns:\n{line}"
            );
            assert!(!line.trim_start().starts_with(".\\\""), "{name}: {line}");
        }
        for heading in ["NAME", "SYNOPSIS", "DESCRIPTION", "SEE ALSO"] {
            assert!(
                rendered.lines().any(|l| l == heading),
                "{name}: no {heading} in\n{rendered}"
            );
        }
    }
}
