//! The frame of every pass, written once: the lock, the run record in the
//! target's state file, error capture (a failing or panicking pass never
//! stops the others), the one summary line, the `--json` report and the
//! exit code (the worst outcome). Passes over configured targets run one
//! after another or several at once ([`Passes::jobs`]); a pass on an
//! archive of this machine (`index`, `age --local`) runs in the same frame
//! without a configuration ([`for_archive`]).
//!
//! With several targets at once, each summary line is printed whole as its
//! target finishes (so the slowest target comes last), while the `--json`
//! report lists the targets in the order they were selected.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;

use super::{Context, LockKind, TargetReport};
use crate::config::TargetConfig;
use crate::error::{outcome_of, LockHeld, Outcome};
use crate::lock::TargetLock;
use crate::report::Reporter;
use crate::state::{RunFacts, State};

/// An error that stopped a pass, with what the pass had done before it, if
/// anything (a `fast --watch` that delivered tags for a minute).
pub struct Stopped<R> {
    pub error: anyhow::Error,
    /// Boxed: a `Result` is as large as its error.
    pub report: Option<Box<R>>,
}

impl<R> From<anyhow::Error> for Stopped<R> {
    fn from(error: anyhow::Error) -> Self {
        Stopped {
            error,
            report: None,
        }
    }
}

/// What a pass returns: its report; `None` when it decided not to run (a
/// target not due), so no run is recorded; or what stopped it.
pub type PassResult<R> = std::result::Result<Option<R>, Stopped<R>>;

/// How a command runs its passes over targets.
#[derive(Clone, Copy, Debug)]
pub struct Passes<'a> {
    pub command: &'a str,
    /// Targets worked on at once; 1: one after another, on this thread.
    pub jobs: usize,
    /// The lock each pass holds.
    pub lock: LockKind,
    /// While another run holds a target's lock, try again until then
    /// (`fast --watch` takes over from the previous minute's run) instead of
    /// reporting the target locked at once.
    pub lock_wait: Option<Instant>,
}

impl<'a> Passes<'a> {
    /// One target after another, each under its target lock.
    pub fn new(command: &'a str) -> Passes<'a> {
        Passes {
            command,
            jobs: 1,
            lock: LockKind::Target,
            lock_wait: None,
        }
    }

    /// Up to `jobs` targets at once.
    pub fn jobs(self, jobs: usize) -> Passes<'a> {
        Passes { jobs, ..self }
    }
}

/// How often a pass waiting for a held lock tries again.
const LOCK_RETRY: Duration = Duration::from_millis(250);

/// One target's pass as the frame saw it.
#[derive(Serialize)]
pub struct Frame<R: Serialize> {
    pub target: String,
    pub outcome: Outcome,
    pub exit_code: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<R>,
}

impl<R: Serialize> Frame<R> {
    fn stopped(target: &str, error: &anyhow::Error, report: Option<R>) -> Frame<R> {
        let outcome = outcome_of(error);
        Frame {
            target: target.to_string(),
            outcome,
            exit_code: outcome.code(),
            error: Some(format!("{error:#}")),
            report,
        }
    }
}

/// The whole command's report (`--json`).
#[derive(Serialize)]
pub struct CommandReport<R: Serialize> {
    pub command: String,
    pub dry_run: bool,
    pub outcome: Outcome,
    pub exit_code: u8,
    pub targets: Vec<Frame<R>>,
}

/// Runs `pass` on each target in turn, under its lock; one failing target
/// never stops the others. Returns the command's outcome (the worst one).
pub fn for_each_target<R, P>(
    ctx: &Context,
    command: &str,
    targets: &[TargetConfig],
    pass: P,
) -> Result<Outcome>
where
    R: TargetReport + Send,
    P: Fn(&Context, &TargetConfig, &State) -> PassResult<R> + Sync,
{
    for_each_target_with(ctx, Passes::new(command), targets, pass)
}

/// [`for_each_target`] as `passes` says: up to `passes.jobs` targets at
/// once, each on a thread of its own, so a slow or dead target holds up
/// only itself (for as long as its own timeouts let it). The pass gets the
/// target's state file, read-only under `--dry-run`.
pub fn for_each_target_with<R, P>(
    ctx: &Context,
    passes: Passes,
    targets: &[TargetConfig],
    pass: P,
) -> Result<Outcome>
where
    R: TargetReport + Send,
    P: Fn(&Context, &TargetConfig, &State) -> PassResult<R> + Sync,
{
    if !ctx.dry_run {
        ctx.split_state()?;
    }
    let frames = run_frames(&ctx.reporter, passes.command, targets, passes.jobs, |t| {
        target_frame(ctx, &passes, t, &pass)
    });
    finish(&ctx.reporter, ctx.dry_run, passes.command, frames)
}

/// One pass on an archive of this machine that is no configured target
/// (`index`, `age --local`, run by cron on a target): the same frame, with
/// `place` (the archive) in the target's stead, `lock` taken first and
/// nothing recorded (a target keeps no blat state).
pub fn for_archive<R: TargetReport>(
    reporter: &Reporter,
    dry_run: bool,
    command: &str,
    place: &str,
    lock: impl FnOnce() -> Result<Option<TargetLock>>,
    pass: impl FnOnce() -> PassResult<R>,
) -> Result<Outcome> {
    let frame = match lock() {
        Ok(_lock) => recorded(reporter, place, command, None, pass),
        Err(e) => Frame::stopped(place, &e, None),
    };
    print_line(reporter, command, &frame);
    finish(reporter, dry_run, command, vec![frame])
}

/// Runs `one` on each item, on up to `jobs` threads, printing each frame's
/// line as it ends; returns the frames in the order of `items`.
fn run_frames<T, R>(
    reporter: &Reporter,
    command: &str,
    items: &[T],
    jobs: usize,
    one: impl Fn(&T) -> Frame<R> + Sync,
) -> Vec<Frame<R>>
where
    T: Sync,
    R: TargetReport + Send,
{
    let each = |i: usize| {
        let frame = one(&items[i]);
        print_line(reporter, command, &frame);
        (i, frame)
    };
    let mut frames: Vec<(usize, Frame<R>)> = if jobs <= 1 || items.len() <= 1 {
        (0..items.len()).map(each).collect()
    } else {
        crate::exec::drain(0..items.len(), jobs, |queue| {
            let mut done = Vec::new();
            while let Some(i) = queue.next() {
                done.push(each(i));
            }
            done
        })
    };
    frames.sort_by_key(|(i, _)| *i);
    frames.into_iter().map(|(_, f)| f).collect()
}

/// The lock, the state file and the recorded pass of one target.
fn target_frame<R, P>(ctx: &Context, passes: &Passes, target: &TargetConfig, pass: &P) -> Frame<R>
where
    R: TargetReport,
    P: Fn(&Context, &TargetConfig, &State) -> PassResult<R>,
{
    let _lock = match lock_target(ctx, passes, &target.name) {
        Ok(lock) => lock,
        Err(e) => return Frame::stopped(&target.name, &e, None),
    };
    let state = match ctx.state_of(&target.name) {
        Ok(state) => state,
        Err(e) => return Frame::stopped(&target.name, &e, None),
    };
    let record = (!ctx.dry_run).then_some(&state);
    recorded(&ctx.reporter, &target.name, passes.command, record, || {
        pass(ctx, target, &state)
    })
}

fn lock_target(ctx: &Context, passes: &Passes, target: &str) -> Result<Option<TargetLock>> {
    loop {
        match super::take_lock(&ctx.config, &ctx.reporter, ctx.dry_run, target, passes.lock) {
            Err(e)
                if e.downcast_ref::<LockHeld>().is_some()
                    && passes.lock_wait.is_some_and(|until| Instant::now() < until) =>
            {
                let until = passes.lock_wait.expect("checked above");
                std::thread::sleep(LOCK_RETRY.min(until.saturating_duration_since(Instant::now())));
            }
            taken => return taken,
        }
    }
}

/// Runs `pass`, recording it in `state` (when given) as a run of `command`
/// on `name`: its start, then its outcome, summary, error and facts.
fn recorded<R: TargetReport>(
    reporter: &Reporter,
    name: &str,
    command: &str,
    state: Option<&State>,
    pass: impl FnOnce() -> PassResult<R>,
) -> Frame<R> {
    let run_id = state.and_then(|s| s.start_run(name, command, crate::clock::now()).ok());
    let started = Instant::now();
    // A bug in one target's pass must not take the other targets' with it.
    let result = std::panic::catch_unwind(AssertUnwindSafe(pass)).unwrap_or_else(|_| {
        Err(anyhow::anyhow!("internal error: the {command} pass on {name} panicked").into())
    });
    let seconds = started.elapsed().as_secs_f64();
    let frame = match result {
        Ok(Some(r)) => {
            let outcome = r.outcome();
            Frame {
                target: name.to_string(),
                outcome,
                exit_code: outcome.code(),
                error: None,
                report: Some(r),
            }
        }
        Ok(None) => Frame {
            target: name.to_string(),
            outcome: Outcome::Done,
            exit_code: Outcome::Done.code(),
            error: None,
            report: None,
        },
        Err(Stopped { error, report }) => Frame::stopped(name, &error, report.map(|r| *r)),
    };
    let (Some(state), Some(id)) = (state, run_id) else {
        return frame;
    };
    if frame.report.is_none() && frame.error.is_none() {
        let _ = state.discard_run(id);
        return frame;
    }
    let summary = frame
        .report
        .as_ref()
        .map(|r| r.summary())
        .unwrap_or_default();
    let facts = RunFacts {
        seconds: Some(seconds),
        ..frame.report.as_ref().map(|r| r.facts()).unwrap_or_default()
    };
    let now = crate::clock::now();
    if let Err(e) = state
        .finish_run(id, now, frame.outcome, &summary, frame.error.as_deref())
        .and_then(|()| state.record_facts(id, now, &facts))
    {
        reporter.warn(
            name,
            &format!("cannot record the run in the state file: {e:#}"),
        );
    }
    frame
}

/// The one summary line of a target's pass (an error line when it failed).
fn print_line<R: TargetReport>(reporter: &Reporter, command: &str, frame: &Frame<R>) {
    let name = &frame.target;
    let word = frame.outcome.word();
    match (&frame.report, &frame.error) {
        (_, Some(e)) => reporter.error("", &format!("{name}: {command} {word}: {e}")),
        (Some(r), None) => reporter.summary(&format!("{name}: {command} {word}: {}", r.summary())),
        (None, None) => reporter.summary(&format!("{name}: {command} skipped: not due")),
    }
}

/// The command's outcome (the worst of its targets'), and its `--json`
/// report.
fn finish<R: Serialize>(
    reporter: &Reporter,
    dry_run: bool,
    command: &str,
    frames: Vec<Frame<R>>,
) -> Result<Outcome> {
    let outcome = frames
        .iter()
        .map(|f| f.outcome)
        .max()
        .unwrap_or(Outcome::Done);
    if reporter.json() {
        let report = CommandReport {
            command: command.to_string(),
            dry_run,
            outcome,
            exit_code: outcome.code(),
            targets: frames,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Serialize)]
    struct Done(usize);

    impl TargetReport for Done {
        fn outcome(&self) -> Outcome {
            Outcome::Done
        }
        fn summary(&self) -> String {
            format!("item {}", self.0)
        }
    }

    #[test]
    fn frames_keep_the_item_order_and_a_panic_fails_only_its_item() {
        let reporter = Reporter::new(0, false);
        let items: Vec<usize> = (0..12).collect();
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let frames = run_frames(&reporter, "test", &items, 3, |&i| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            // Later items finish first: the order is the items', not the ends'.
            std::thread::sleep(Duration::from_millis(5 * (12 - i as u64)));
            running.fetch_sub(1, Ordering::SeqCst);
            recorded(&reporter, &format!("t{i}"), "test", None, || {
                if i == 4 {
                    panic!("a bug in one pass");
                }
                Ok(Some(Done(i)))
            })
        });
        assert!(most.load(Ordering::SeqCst) <= 3);
        assert_eq!(most.load(Ordering::SeqCst), 3, "three at once");
        let names: Vec<&str> = frames.iter().map(|f| f.target.as_str()).collect();
        assert_eq!(
            names,
            items.iter().map(|i| format!("t{i}")).collect::<Vec<_>>()
        );
        for (i, f) in frames.iter().enumerate() {
            if i == 4 {
                assert_eq!(f.outcome, Outcome::Failed);
                assert_eq!(
                    f.error.as_deref(),
                    Some("internal error: the test pass on t4 panicked")
                );
            } else {
                assert_eq!(f.outcome, Outcome::Done);
                assert_eq!(f.report.as_ref().map(|r| r.0), Some(i));
            }
        }
        // One at a time, on this thread.
        let caller = std::thread::current().id();
        let frames = run_frames(&reporter, "test", &items[..3], 1, |&i| {
            assert_eq!(std::thread::current().id(), caller);
            recorded(&reporter, &format!("t{i}"), "test", None, || {
                Ok(Some(Done(i)))
            })
        });
        assert_eq!(frames.len(), 3);
    }

    #[test]
    fn a_stopped_pass_keeps_what_it_did_and_its_exit_code() {
        let reporter = Reporter::new(0, false);
        let frame: Frame<Done> = recorded(&reporter, "t", "test", None, || {
            Err(Stopped {
                error: anyhow::Error::new(LockHeld("t".into())),
                report: Some(Box::new(Done(7))),
            })
        });
        assert_eq!(frame.outcome, Outcome::Locked);
        assert_eq!(frame.exit_code, 4);
        assert_eq!(frame.report.map(|r| r.0), Some(7));
    }
}
