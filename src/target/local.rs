//! The `local` transport: runs the embedded receiver with `sh -c` on the
//! master itself, against a directory (a mounted share, demos, tests). Same
//! program, same protocol as over SSH.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use super::protocol::ArchiveUse;
use super::{InputFn, RunOutput, Transport, RECEIVER};

pub struct LocalTransport {
    archive: PathBuf,
}

impl LocalTransport {
    pub fn new(archive: PathBuf) -> LocalTransport {
        LocalTransport { archive }
    }
}

impl Transport for LocalTransport {
    fn describe(&self) -> String {
        self.archive.display().to_string()
    }

    fn run(&self, args: &[String], input: Option<InputFn>) -> Result<RunOutput> {
        // A new local target starts empty: its directory is created, so a
        // fresh share or demo needs no preparation (SSH targets must
        // exist); reads of a missing one see an empty archive and create
        // nothing, so a --dry-run leaves no trace.
        if !self.archive.exists() {
            match ArchiveUse::of(args) {
                ArchiveUse::None => {}
                ArchiveUse::Reads => {
                    return Ok(RunOutput {
                        status: 0,
                        stdout: String::new(),
                        stderr: String::new(),
                    })
                }
                ArchiveUse::Writes => {
                    std::fs::create_dir_all(&self.archive).with_context(|| {
                        format!("cannot create target archive {}", self.archive.display())
                    })?
                }
            }
        }
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(RECEIVER)
            .arg("blat-receiver")
            .arg("-a")
            .arg(&self.archive)
            .args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run the receiver with sh")?;
        let mut stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        // Read output on threads so a chatty receiver never blocks our writes.
        let out_thread = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stdout.read_to_string(&mut s);
            s
        });
        let err_thread = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let mut feed_error = None;
        if let Some(input) = input {
            let mut stdin = child.stdin.take().expect("piped");
            if let Err(e) = input(&mut stdin) {
                feed_error = Some(e);
            }
            drop(stdin);
        }
        let status = child.wait().context("cannot wait for the receiver")?;
        let stdout = out_thread.join().unwrap_or_default();
        let stderr = err_thread.join().unwrap_or_default();
        if let Some(e) = feed_error {
            // The receiver's own complaint, if any, says more than EPIPE.
            let detail = stderr.trim();
            if detail.is_empty() {
                return Err(e.context("sending to the receiver failed"));
            }
            return Err(e.context(format!("sending to the receiver failed: {detail}")));
        }
        Ok(RunOutput {
            status: status.code().unwrap_or(1),
            stdout,
            stderr,
        })
    }
}
