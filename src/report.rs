//! What blat tells people: log lines (timestamped when not on a terminal, and
//! always in `log_file`), progress (bars on a terminal, periodic lines
//! otherwise, nothing with `-q`), plan lines for `--dry-run`, and summaries.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::units::human_bytes;

/// Message levels; a message shows when its level ≤ the verbosity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 0,
    Info = 1,
    Detail = 2,
    Debug = 3,
}

pub struct Reporter {
    verbosity: u8,
    json: bool,
    tty: bool,
    log_file: Option<Mutex<File>>,
    bars: Option<MultiProgress>,
}

impl Reporter {
    /// `verbosity`: 0 errors only (`-q`), 1 normal, 2 each package (`-v`),
    /// 3 debug (`-vv`).
    pub fn new(verbosity: u8, json: bool) -> Reporter {
        let tty = std::io::stderr().is_terminal();
        let bars = (tty && verbosity >= 1 && !json)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Reporter {
            verbosity,
            json,
            tty,
            log_file: None,
            bars,
        }
    }

    pub fn set_log_file(&mut self, path: &Path) -> Result<()> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open log file {}", path.display()))?;
        self.log_file = Some(Mutex::new(file));
        Ok(())
    }

    pub fn json(&self) -> bool {
        self.json
    }

    pub fn verbosity(&self) -> u8 {
        self.verbosity
    }

    /// Logs one line about `target` (empty for none) at `level`.
    pub fn log(&self, level: Level, target: &str, message: &str) {
        let prefix = if target.is_empty() {
            String::new()
        } else {
            format!("{target}: ")
        };
        let stamp = crate::clock::rfc3339(crate::clock::now());
        if let Some(file) = &self.log_file {
            if level <= Level::Detail {
                let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
                let _ = writeln!(f, "{stamp} blat[{}] {prefix}{message}", std::process::id());
            }
        }
        if level as u8 > self.verbosity {
            return;
        }
        let line = if self.tty {
            format!("{prefix}{message}")
        } else {
            format!("{stamp} {prefix}{message}")
        };
        match &self.bars {
            Some(bars) => {
                let _ = bars.println(&line);
            }
            None => eprintln!("{line}"),
        }
    }

    pub fn info(&self, target: &str, message: &str) {
        self.log(Level::Info, target, message);
    }

    pub fn detail(&self, target: &str, message: &str) {
        self.log(Level::Detail, target, message);
    }

    pub fn debug(&self, target: &str, message: &str) {
        self.log(Level::Debug, target, message);
    }

    /// Warnings show at the normal level; `-q` hides them.
    pub fn warn(&self, target: &str, message: &str) {
        self.log(Level::Info, target, &format!("warning: {message}"));
    }

    /// Errors always show.
    pub fn error(&self, target: &str, message: &str) {
        self.log(Level::Error, target, &format!("error: {message}"));
    }

    /// One line of a `--dry-run` plan: the command's real output, on stdout
    /// (stderr under `--json`, whose stdout is the report).
    pub fn plan_line(&self, target: &str, message: &str) {
        let line = format!("{target}: {message}");
        if self.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }

    /// The package-versions a pass leaves out, one line each: part of the
    /// plan under `--dry-run`, information otherwise.
    pub fn skipped(&self, target: &str, skipped: &[crate::plan::Skipped], dry_run: bool) {
        for s in skipped {
            let line = format!("skip {}: {}", s.pv, s.reason);
            if dry_run {
                self.plan_line(target, &line)
            } else {
                self.info(target, &line)
            }
        }
    }

    /// The one-line summary of a target's pass; same placement as plan lines.
    pub fn summary(&self, line: &str) {
        if let Some(file) = &self.log_file {
            let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(
                f,
                "{} blat[{}] {line}",
                crate::clock::rfc3339(crate::clock::now()),
                std::process::id()
            );
        }
        if self.json {
            if self.verbosity >= 1 {
                eprintln!("{line}");
            }
        } else {
            println!("{line}");
        }
    }

    /// Progress of a transfer of `packages` package-versions.
    pub fn transfer(&self, target: &str, packages: usize) -> TransferProgress<'_> {
        // Sizes are known only as packages are walked, so the bar counts
        // packages and the bytes go in its message.
        let bar = self.bars.as_ref().map(|bars| {
            let bar = bars.add(ProgressBar::new(packages as u64));
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:.bold} [{bar:30}] {pos}/{len} packages {msg} {elapsed}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(target.to_string());
            bar
        });
        TransferProgress {
            reporter: self,
            target: target.to_string(),
            packages,
            bytes: AtomicU64::new(0),
            done: AtomicU64::new(0),
            bar,
            last_line: Mutex::new(Instant::now()),
            started: Instant::now(),
        }
    }
}

/// Thread-safe progress of one target's transfers.
pub struct TransferProgress<'a> {
    reporter: &'a Reporter,
    target: String,
    packages: usize,
    bytes: AtomicU64,
    done: AtomicU64,
    bar: Option<ProgressBar>,
    last_line: Mutex<Instant>,
    started: Instant,
}

/// How often a non-terminal run reports progress of a long transfer.
const LINE_EVERY: Duration = Duration::from_secs(30);

impl TransferProgress<'_> {
    pub fn add_bytes(&self, n: u64) {
        let total = self.bytes.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(bar) = &self.bar {
            bar.set_message(human_bytes(total));
        } else {
            self.maybe_line();
        }
    }

    pub fn package_done(&self) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }

    fn maybe_line(&self) {
        let mut last = self.last_line.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() >= LINE_EVERY {
            *last = Instant::now();
            self.reporter.info(
                &self.target,
                &format!(
                    "sending: {}/{} packages, {} in {}s",
                    self.done.load(Ordering::Relaxed),
                    self.packages,
                    human_bytes(self.bytes.load(Ordering::Relaxed)),
                    self.started.elapsed().as_secs()
                ),
            );
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
