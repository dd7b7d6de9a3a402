//! Error kinds that decide blat's exit code, and the codes themselves.
//!
//! Most errors are plain `anyhow` chains; the few that change the exit code
//! are typed so `main` can find them with `downcast_ref`.

use std::fmt;

/// Exit codes, documented in the README and the man page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// 0: everything done.
    Done,
    /// 4: a target's lock was held by another run; nothing was done there.
    Locked,
    /// 3: partly done: some packages failed, the rest went through.
    Partial,
    /// 1: failed.
    Failed,
    /// 2: bad usage or configuration.
    Usage,
}

impl Outcome {
    pub fn code(self) -> u8 {
        match self {
            Outcome::Done => 0,
            Outcome::Failed => 1,
            Outcome::Usage => 2,
            Outcome::Partial => 3,
            Outcome::Locked => 4,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Failed => "failed",
            Outcome::Usage => "usage",
            Outcome::Partial => "partial",
            Outcome::Locked => "locked",
        }
    }
}

/// Bad usage or configuration (exit code 2).
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A target's lock is held by another run (exit code 4).
#[derive(Debug)]
pub struct LockHeld(pub String);

impl fmt::Display for LockHeld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "target {} is busy: another blat run holds its lock",
            self.0
        )
    }
}

impl std::error::Error for LockHeld {}

/// The outcome an error stands for.
pub fn outcome_of(err: &anyhow::Error) -> Outcome {
    if err.downcast_ref::<UsageError>().is_some() {
        Outcome::Usage
    } else if err.downcast_ref::<LockHeld>().is_some() {
        Outcome::Locked
    } else {
        Outcome::Failed
    }
}
