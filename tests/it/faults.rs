//! Fault harness: `kill -9` at seeded random moments, of the blat process
//! (`sync`, `fast`, `age`, `index`) and of the receiver's shell on the
//! target, for local and SSH targets; and a target file system that fills
//! up.
//!
//! After each kill, once every process of the killed run is gone, a checker
//! walks the target: every visible version directory (depth 2, not starting
//! with `.`) must be complete and equal to a build the source had of it, or
//! absent; every alias must point to a version that is there. Then the next
//! `blat sync` must converge at once (no waiting): exit 0, the current set
//! complete and equal to the source, nothing named `.blat-*` anywhere.
//!
//! The kill moments are seeded (`BLAT_SEED=N` replays the choices: command,
//! delay, victim) but land on a running program, so a replay hits a similar
//! moment, not the same instruction. A failure prints the seed, the kill
//! and what was left on the target.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, Rng, World};
use crate::sshd::Sshd;

const T0: i64 = 1_700_000_000;

type Pv = (String, String);

/// What a kill round ran and killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmd {
    Sync,
    Fast,
    Age,
    Index,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Victim {
    /// The blat process.
    Blat,
    /// A shell running blat-receiver for this target.
    Receiver,
}

struct Harness {
    seed: u64,
    rng: Rng,
    w: World,
    /// The target archive.
    target: PathBuf,
    sshd: Option<Sshd>,
    /// Every picture (as lines) each package-version has had in the source.
    builds: BTreeMap<Pv, Vec<Vec<String>>>,
    /// Each package's last build's files (path, content, mtime): most of
    /// them reappear in its next version, so sends are deltas.
    last_files: BTreeMap<String, Vec<(String, Vec<u8>, i64)>>,
    /// The release's content (the current set, with the alias pin).
    release: Vec<Pv>,
    /// Typical duration of each command, to aim the kills.
    typical: BTreeMap<&'static str, Duration>,
    /// Numbered log of what happened, for failure messages.
    log: Vec<String>,
    kills: usize,
}

fn lines(pic: &[common::Entry]) -> Vec<String> {
    pic.iter().map(|e| e.line("")).collect()
}

impl Harness {
    fn new(seed: u64, ssh: bool) -> Option<Harness> {
        let sshd = if ssh { Some(Sshd::start()?) } else { None };
        let w = World::new();
        let target = match &sshd {
            Some(s) => s.archive(),
            None => w.target_dir("site"),
        };
        let mut h = Harness {
            seed,
            rng: Rng::new(seed),
            w,
            target,
            sshd,
            builds: BTreeMap::new(),
            last_files: BTreeMap::new(),
            release: Vec::new(),
            typical: BTreeMap::new(),
            log: Vec::new(),
            kills: 0,
        };
        h.generate();
        h.w.write_global("");
        Some(h)
    }

    /// About 120 package-versions over 10 packages (several with more
    /// versions than a batch holds), small files and a few of 1–3 MiB.
    fn generate(&mut self) {
        for p in 0..10 {
            let package = format!("p{p}");
            let n = if p < 2 {
                self.rng.range(20, 40)
            } else {
                self.rng.range(1, 8)
            };
            for v in 0..n {
                self.build(&package, &format!("{v}.0"), T0 + v as i64);
            }
        }
        // An alias, pinned: its version is never deleted, the link never dangles.
        self.w.alias("p0", "current", "1.0");
        self.release = self.builds.keys().cloned().collect();
        self.write_rm(&self.release.clone());
    }

    /// Writes (or rewrites) a released package-version.
    fn build(&mut self, package: &str, version: &str, mtime: i64) {
        let dir = self.w.archive().join(package).join(version);
        if dir.exists() {
            common::remove_tree(&dir);
        }
        let mut files: Vec<(String, Vec<u8>, i64)> = Vec::new();
        let last = self.last_files.get(package).cloned().unwrap_or_default();
        for i in 0..self.rng.range(2, 14) {
            let rel = format!("d{}/f{i}", i % 3);
            // Most files of a new version are the previous version's.
            if let Some(same) = last.iter().find(|f| f.0 == rel) {
                if self.rng.chance(70) {
                    files.push(same.clone());
                    continue;
                }
            }
            let size = self.rng.range(0, 3000) as usize;
            files.push((rel, self.rng.bytes(size, false), mtime - 1000));
        }
        if let Some(blob) = last.iter().find(|f| f.0 == "blob.bin") {
            if self.rng.chance(70) {
                files.push(blob.clone());
            }
        }
        if self.rng.chance(6) && !files.iter().any(|f| f.0 == "blob.bin") {
            let size = self.rng.range(512 << 10, 2 << 20) as usize;
            files.push(("blob.bin".into(), self.rng.bytes(size, true), mtime - 1000));
        }
        let dir = self
            .w
            .build(package, version, mtime, &[("lib/link", "->../d0/f0")]);
        for (rel, data, file_mtime) in &files {
            let p = dir.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, data).unwrap();
            common::set_mtime(&p, *file_mtime);
        }
        self.last_files.insert(package.to_string(), files);
        for d in ["d0", "d1", "d2", "lib"] {
            if dir.join(d).exists() {
                common::set_mtime(&dir.join(d), mtime - 500);
            }
        }
        common::set_mtime(&dir, mtime);
        common::make_read_only(&dir);
        let pic = lines(&common::picture(&dir).unwrap());
        self.builds
            .entry((package.into(), version.into()))
            .or_default()
            .push(pic);
    }

    fn write_rm(&self, content: &[Pv]) {
        let content: Vec<String> = content.iter().map(|(p, v)| format!("{p}/{v}")).collect();
        let content: Vec<&str> = content.iter().map(String::as_str).collect();
        self.w.write_rm(&[("P/R1", "open", 0, &content)]);
    }

    fn write_target(&mut self) {
        let compression = *self.rng.pick(&["none", "gzip:1", "zstd:1"]);
        let parallel = self.rng.range(2, 6);
        // Triage knob, as in model.rs: BLAT_TEST_PARALLEL=1.
        let parallel = std::env::var("BLAT_TEST_PARALLEL")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(parallel);
        // io_timeout 10s over SSH: a run that waits for it (rather than
        // noticing a dead receiver) shows, and costs less.
        let io = if self.sshd.is_some() {
            "io_timeout = \"10s\"\n"
        } else {
            ""
        };
        let extra = format!(
            "projects = [\"P\"]\npackages = [\"p0/current\"]\nparallel = {parallel}\ncompression = \"{compression}\"\n{io}\
             [aging]\nmethod = \"immediate\"\nmax_delete = 100000\n"
        );
        match &self.sshd {
            None => self.w.local_target("site", &extra),
            Some(s) => s.write_target(&self.w, "site", &extra),
        }
    }

    fn note(&mut self, line: String) {
        self.log.push(line);
    }

    fn fail(&self, what: &str) -> ! {
        let left = common::blat_names(&self.target);
        panic!(
            "seed {} ({}): {what}\n  .blat-* on the target: {left:?}\n  replay: BLAT_SEED={} cargo test --all-features --test it -- faults::\n  log:\n    {}",
            self.seed,
            if self.sshd.is_some() { "ssh" } else { "local" },
            self.seed,
            self.log.join("\n    ")
        );
    }

    fn blat_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_blat"));
        // `blat index` runs on the target as the archive's owner (cron
        // there): over SSH, as the target user, from where it can reach.
        if let (Some(s), Some(&"index")) = (&self.sshd, args.first()) {
            use std::os::unix::process::CommandExt;
            let blat = self.w.path().join("blat");
            if !blat.exists() && fs::hard_link(env!("CARGO_BIN_EXE_blat"), &blat).is_err() {
                fs::copy(env!("CARGO_BIN_EXE_blat"), &blat).unwrap();
            }
            let id = |flag: &str| -> u32 {
                crate::sshd::sh(Command::new("id").args([flag, &s.user]))
                    .trim()
                    .parse()
                    .unwrap()
            };
            cmd = Command::new(&blat);
            if crate::sshd::sh(Command::new("id").arg("-u")).trim() == "0" {
                cmd.uid(id("-u")).gid(id("-g"));
            }
        }
        cmd.arg("-c").arg(self.w.config()).args(args);
        cmd.env_remove("BLAT_CONFIG").env_remove("BLAT_NOW");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    }

    fn args(&self, cmd: Cmd) -> Vec<String> {
        match cmd {
            Cmd::Sync => vec!["sync".into(), "--target".into(), "site".into()],
            Cmd::Fast => vec!["fast".into(), "--target".into(), "site".into()],
            Cmd::Age => vec!["age".into(), "--target".into(), "site".into()],
            Cmd::Index => vec![
                "index".into(),
                "--archive".into(),
                self.target.display().to_string(),
            ],
        }
    }

    /// Does a process of this target's receiver side run `argv`?
    fn is_receiver(&self, argv: &[String]) -> bool {
        let is_script = |a: &String| a == "blat-receiver" || a.ends_with("/blat-receiver");
        match &self.sshd {
            Some(s) => argv.iter().any(|a| Path::new(a) == s.receiver()),
            None => argv.iter().any(is_script) && common::mentions(argv, &self.target),
        }
    }

    /// Anything still working on the target: receivers and their children
    /// (tar -C ARCHIVE), and blat runs for it.
    fn is_busy(&self, argv: &[String]) -> bool {
        let home = match &self.sshd {
            Some(s) => s.home.clone(),
            None => self.target.clone(),
        };
        self.is_receiver(argv) || common::mentions(argv, &home)
    }

    /// Runs a command to its end (no fault): it must exit 0.
    fn run_clean(&mut self, cmd: Cmd, what: &str) -> Output {
        let args = self.args(cmd);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let started = Instant::now();
        let out = self.blat_command(&args).output().unwrap();
        let took = started.elapsed();
        self.typical.insert(name(cmd), took);
        self.note(format!(
            "{what}: blat {} -> exit {:?} in {:.2}s",
            args.join(" "),
            out.status.code(),
            took.as_secs_f64()
        ));
        if out.status.code() != Some(0) {
            let err: Vec<String> = common::stderr(&out)
                .lines()
                .take(12)
                .map(|l| l.chars().take(300).collect())
                .collect();
            self.fail(&format!(
                "{what}: exit {:?}, expected 0\n  stderr:\n    {}",
                out.status.code(),
                err.join("\n    ")
            ));
        }
        out
    }

    /// Prepares the world so that `cmd` has work to do.
    fn prepare(&mut self, cmd: Cmd) {
        self.write_target();
        match cmd {
            Cmd::Sync => {
                if self.rng.chance(50) {
                    common::empty_dir(&self.target);
                    self.note("target emptied".into());
                } else {
                    // New builds of some versions: sync swaps them in place.
                    let pvs: Vec<Pv> = self.release.clone();
                    for _ in 0..self.rng.range(3, 15) {
                        let (p, v) = self.rng.pick(&pvs).clone();
                        let m = T0 + 10_000 + self.rng.below(1_000_000) as i64;
                        self.build(&p, &v, m);
                    }
                    self.note("some versions rebuilt (new descpkg mtimes)".into());
                }
            }
            Cmd::Fast => {
                common::empty_dir(&self.target);
                let tags = self.w.path().join("tags/site");
                common::empty_dir(&tags);
                fs::create_dir_all(&tags).unwrap();
                let pvs: Vec<Pv> = self.release.clone();
                let n = self.rng.range(10, pvs.len() as u64);
                for _ in 0..n {
                    let (p, v) = self.rng.pick(&pvs);
                    fs::write(tags.join(format!("{p}::{v}")), "").unwrap();
                }
                self.note(format!("target emptied, about {n} tags written"));
            }
            Cmd::Age => {
                // Everything there, then most of it leaves the release.
                self.write_rm(&self.release.clone());
                self.run_clean(Cmd::Sync, "age setup");
                let keep: Vec<Pv> = self
                    .release
                    .iter()
                    .filter(|_| self.rng.chance(20))
                    .cloned()
                    .collect();
                self.write_rm(&keep);
                self.note(format!("release shrunk to {} package-versions", keep.len()));
            }
            Cmd::Index => {
                if self.rng.chance(50) {
                    let dpkg = self.target.join(".dpkg_archive");
                    let _ = fs::remove_file(dpkg.join("dpkg_archive_list.txt"));
                    let _ = fs::remove_file(dpkg.join("dpkg_archive_list.cache"));
                    self.note("index and cache removed (full walk)".into());
                }
            }
        }
    }

    /// Runs `cmd`, kills `victim` at a seeded moment; true when a kill
    /// landed on a running process.
    fn kill_round(&mut self, cmd: Cmd, victim: Victim) -> bool {
        let args = self.args(cmd);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let typical = self
            .typical
            .get(name(cmd))
            .copied()
            .unwrap_or(Duration::from_millis(1500));
        let delay =
            Duration::from_micros(self.rng.below(typical.as_micros() as u64 * 9 / 10 + 1000));
        let pick = self.rng.next_u64();
        let mut child = self.blat_command(&argv).spawn().unwrap();
        let started = Instant::now();
        let mut killed = None;
        match victim {
            Victim::Blat => {
                std::thread::sleep(delay);
                if child.try_wait().unwrap().is_none() && common::kill9(child.id() as i32) {
                    killed = Some(format!(
                        "blat (pid {}) after {:.3}s",
                        child.id(),
                        delay.as_secs_f64()
                    ));
                }
            }
            Victim::Receiver => {
                // Mostly a receiver that changes the target (receive,
                // delete), sometimes any (list, version, link, put, gc).
                let changing = !pick.is_multiple_of(4);
                std::thread::sleep(delay / 2);
                while child.try_wait().unwrap().is_none() {
                    let shells: Vec<(i32, Vec<String>)> =
                        common::processes(|a| self.is_receiver(a))
                            .into_iter()
                            .filter(|(_, a)| {
                                !changing || a.iter().any(|w| w == "receive" || w == "delete")
                            })
                            .collect();
                    if !shells.is_empty() {
                        let (pid, argv) = &shells[(pick % shells.len() as u64) as usize];
                        let what: Vec<&String> = argv
                            .iter()
                            .skip_while(|a| a.as_str() != "-a")
                            .skip(2)
                            .take(3)
                            .collect();
                        if common::kill9(*pid) {
                            killed = Some(format!(
                                "receiver shell (pid {pid}, {what:?}, one of {}) after {:.3}s",
                                shells.len(),
                                started.elapsed().as_secs_f64()
                            ));
                            break;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(3));
                }
            }
        }
        // Wait for it (its stderr drained aside, so it never blocks on a
        // full pipe), noting what still runs on the target if it is slow.
        let mut stderr_pipe = child.stderr.take().unwrap();
        let drain = std::thread::spawn(move || {
            use std::io::Read;
            let mut e = Vec::new();
            let _ = stderr_pipe.read_to_end(&mut e);
            e
        });
        let mut stuck = None;
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if stuck.is_none() && started.elapsed() > Duration::from_secs(5) {
                let procs: Vec<String> = common::processes(|a| self.is_busy(a))
                    .iter()
                    .map(|(pid, a)| {
                        let line = a.join(" ");
                        let line: String = line.chars().take(160).collect();
                        format!("{pid}: {line}")
                    })
                    .collect();
                stuck = Some(procs);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = std::process::Output {
            status,
            stdout: Vec::new(),
            stderr: drain.join().unwrap(),
        };
        // A process that was exiting anyway takes the signal as a zombie:
        // only a run that died of it counts.
        if victim == Victim::Blat {
            use std::os::unix::process::ExitStatusExt;
            if out.status.signal() != Some(libc::SIGKILL) {
                killed = None;
            }
        }
        if killed.is_none() {
            // It ended first: aim earlier next time.
            self.typical.insert(name(cmd), started.elapsed());
        }
        let what = match &killed {
            Some(k) => format!("killed {k}"),
            None => "no kill (it had ended)".into(),
        };
        self.note(format!(
            "blat {}: {what}; exit {:?} after {:.2}s",
            argv.join(" "),
            out.status.code(),
            started.elapsed().as_secs_f64()
        ));
        // A kill must never leave blat hanging: it ends within io_timeout
        // (10s here) and a margin. With the libssh2 client a killed
        // receiver shell over SSH costs the whole io_timeout (see
        // a_receiver_killed_mid_stream_over_ssh_ends_its_batch_at_once);
        // every other kill ends in a second or two.
        if started.elapsed() > Duration::from_secs(20) {
            let err: Vec<String> = common::stderr(&out)
                .lines()
                .take(6)
                .map(|l| l.chars().take(300).collect())
                .collect();
            self.fail(&format!(
                "the killed run took {:.1}s to end\n  still running on the target 5s after it began:\n    {}\n  its stderr:\n    {}",
                started.elapsed().as_secs_f64(),
                stuck.unwrap_or_default().join("\n    "),
                err.join("\n    ")
            ));
        }
        // Whatever the killed run left running must end by itself.
        let waited = Instant::now();
        if !common::wait_gone(|a| self.is_busy(a), Duration::from_secs(30)) {
            let left = common::processes(|a| self.is_busy(a));
            self.fail(&format!(
                "processes still working on the target 30s after the kill: {:?}",
                left.iter()
                    .map(|(pid, a)| format!(
                        "{pid}: {}",
                        a.join(" ").chars().take(200).collect::<String>()
                    ))
                    .collect::<Vec<_>>()
            ));
        }
        if waited.elapsed() > Duration::from_secs(2) {
            self.note(format!(
                "processes of the killed run ended {:.1}s later",
                waited.elapsed().as_secs_f64()
            ));
        }
        if killed.is_some() {
            self.kills += 1;
        }
        killed.is_some()
    }

    /// The receiver's index (docs/protocol.md, *The index*) never claims
    /// a version that is not there with that descpkg mtime, nor an alias
    /// that is not there with that target, whatever was killed when: it may
    /// only be behind.
    fn check_index(&self, when: &str) {
        use std::os::unix::fs::MetadataExt;
        let path = self.target.join(".dpkg_archive/blat-index.txt");
        let Ok(text) = fs::read_to_string(&path) else {
            return;
        };
        let mut versions: BTreeMap<Pv, i64> = BTreeMap::new();
        let mut aliases: BTreeMap<Pv, String> = BTreeMap::new();
        for line in text.lines().skip(1).filter(|l| !l.is_empty()) {
            let f: Vec<&str> = line.split('\t').collect();
            let key = || (f[1].to_string(), f[2].to_string());
            match f.as_slice() {
                ["V", _, _, m, _, "."] => {
                    versions.insert(key(), m.parse().unwrap_or(-1));
                }
                ["-V", _, _, "."] => {
                    versions.remove(&key());
                }
                ["A", _, _, to, "."] => {
                    aliases.insert(key(), to.to_string());
                }
                ["-A", _, _, "."] => {
                    aliases.remove(&key());
                }
                // A line cut short by the kill: the receiver distrusts the
                // whole index then (a full scan), so nothing is claimed.
                _ => return,
            }
        }
        for ((p, v), m) in &versions {
            let descpkg = self.target.join(p).join(v).join("descpkg");
            match fs::symlink_metadata(&descpkg) {
                Ok(d) if d.is_file() && d.mtime() == *m => {}
                other => self.fail(&format!(
                    "{when}: the index claims {p}/{v} with descpkg mtime {m}: {other:?}"
                )),
            }
        }
        for ((p, a), to) in &aliases {
            match fs::read_link(self.target.join(p).join(a)) {
                Ok(t) if t == Path::new(to) => {}
                other => self.fail(&format!(
                    "{when}: the index claims alias {p}/{a} -> {to}: {other:?}"
                )),
            }
        }
    }

    /// Every visible version directory is complete and equal to a build of
    /// it; every alias points to a version that is there.
    fn check_visible(&self, when: &str) {
        self.check_index(when);
        let Ok(rd) = fs::read_dir(&self.target) else {
            return;
        };
        for pkg in rd.flatten() {
            let pname = pkg.file_name().to_string_lossy().into_owned();
            if pname.starts_with('.') {
                continue;
            }
            if !pkg.file_type().unwrap().is_dir() {
                self.fail(&format!(
                    "{when}: {pname} at the top is not a package directory"
                ));
            }
            for ver in fs::read_dir(pkg.path()).unwrap().flatten() {
                let vname = ver.file_name().to_string_lossy().into_owned();
                if vname.starts_with('.') {
                    continue;
                }
                let ft = ver.file_type().unwrap();
                if ft.is_symlink() {
                    let to = fs::read_link(ver.path()).unwrap();
                    if !pkg.path().join(&to).join("descpkg").is_file() {
                        self.fail(&format!(
                            "{when}: alias {pname}/{vname} -> {} dangles",
                            to.display()
                        ));
                    }
                    continue;
                }
                let got = match common::picture(&ver.path()) {
                    Ok(p) => lines(&p),
                    Err(e) => self.fail(&format!("{when}: {pname}/{vname} cannot be read: {e}")),
                };
                let key = (pname.clone(), vname.clone());
                let Some(builds) = self.builds.get(&key) else {
                    self.fail(&format!("{when}: {pname}/{vname} was never in the source"));
                };
                if !builds.contains(&got) {
                    let last = builds.last().unwrap();
                    self.fail(&format!(
                        "{when}: {pname}/{vname} is visible but not a complete build of it:\n{}",
                        common::diff(last, &got, 10)
                    ));
                }
            }
        }
    }

    /// The next sync converges at once: exit 0, the current set complete and
    /// equal to the source, nothing named .blat-* left.
    fn converge(&mut self) {
        self.write_rm(&self.release.clone());
        self.write_target();
        self.run_clean(Cmd::Sync, "converging sync");
        let left = common::blat_names(&self.target);
        if !left.is_empty() {
            self.fail(&format!(
                "after the converging sync, left on the target: {left:?}"
            ));
        }
        self.check_visible("after the converging sync");
        // The index is true again: it misses nothing of the current set
        // (the converging sync read it), and claims nothing false.
        let out = Command::new("sh")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("receiver/blat-receiver"))
            .arg("-a")
            .arg(&self.target)
            .args(["list", "--full", "--read-only"])
            .output()
            .unwrap();
        let release: Vec<String> = self
            .release
            .iter()
            .map(|(p, v)| format!("{p}\t{v}"))
            .collect();
        for d in common::stdout(&out)
            .lines()
            .filter_map(|l| l.strip_prefix("D\t"))
        {
            let excess_unindexed = d
                .strip_prefix("unindexed\t")
                .is_some_and(|pv| !release.iter().any(|r| r == pv));
            if !excess_unindexed {
                self.fail(&format!(
                    "after the converging sync, the index is wrong: {d}"
                ));
            }
        }
        for (p, v) in self.release.clone() {
            let dir = self.target.join(&p).join(&v);
            let got = common::picture(&dir).map(|p| lines(&p));
            let want = self.builds[&(p.clone(), v.clone())].last().unwrap().clone();
            if got.as_ref() != Ok(&want) {
                self.fail(&format!(
                    "after the converging sync, {p}/{v} is not the source's: {}",
                    match got {
                        Err(e) => e,
                        Ok(g) => common::diff(&want, &g, 6),
                    }
                ));
            }
        }
    }
}

fn name(cmd: Cmd) -> &'static str {
    match cmd {
        Cmd::Sync => "sync",
        Cmd::Fast => "fast",
        Cmd::Age => "age",
        Cmd::Index => "index",
    }
}

fn seed(default: u64) -> u64 {
    std::env::var("BLAT_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}

/// `kills` kills of `victim`, the commands drawn from `cmds`.
fn campaign(default_seed: u64, ssh: bool, victim: Victim, cmds: &[Cmd], kills: usize) {
    let seed = seed(default_seed);
    let Some(mut h) = Harness::new(seed, ssh) else {
        return;
    };
    let started = Instant::now();
    h.write_target();
    h.run_clean(Cmd::Sync, "initial sync");
    let mut rounds = 0;
    while h.kills < kills {
        rounds += 1;
        if rounds > kills * 4 {
            h.fail(&format!(
                "only {} of {kills} kills landed in {rounds} rounds",
                h.kills
            ));
        }
        let cmd = *h.rng.pick(cmds);
        // The receiver runs for sync, fast and age only.
        if victim == Victim::Receiver && cmd == Cmd::Index {
            continue;
        }
        h.note(format!("--- round {rounds}: {} of {victim:?}", name(cmd)));
        h.prepare(cmd);
        if h.kill_round(cmd, victim) {
            h.check_visible("after the kill");
        }
        h.converge();
    }
    if std::env::var("BLAT_FAULTS_LOG").is_ok() {
        eprintln!("{}", h.log.join("\n"));
    }
    eprintln!(
        "faults: seed {seed}: {} kills of {victim:?} ({}) in {rounds} rounds, {:.1}s",
        h.kills,
        if ssh { "ssh" } else { "local" },
        started.elapsed().as_secs_f64()
    );
}

const ALL: &[Cmd] = &[Cmd::Sync, Cmd::Sync, Cmd::Fast, Cmd::Age, Cmd::Index];
const WITH_RECEIVER: &[Cmd] = &[Cmd::Sync, Cmd::Sync, Cmd::Fast, Cmd::Age];

#[test]
fn kill_blat_local() {
    campaign(101, false, Victim::Blat, ALL, 20);
}

#[test]
fn kill_blat_ssh() {
    campaign(202, true, Victim::Blat, ALL, 12);
}

#[test]
fn kill_receiver_local() {
    campaign(303, false, Victim::Receiver, WITH_RECEIVER, 12);
}

#[test]
fn kill_receiver_ssh() {
    campaign(404, true, Victim::Receiver, WITH_RECEIVER, 10);
}

// ------------------------------------------------------------ full disk

/// A target file system too small for the set: whatever fails, nothing
/// partial is visible, the run says so in one line per package (not pages
/// of tar messages), and once there is room the next sync converges.
#[test]
fn a_full_target_file_system_then_room_again() {
    let w = World::new();
    let mut rng = Rng::new(seed(505));
    let mut content = Vec::new();
    let mut builds: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in 0..8 {
        for v in 0..rng.range(1, 6) {
            let package = format!("p{p}");
            let version = format!("{v}.0");
            let size = rng.range(100 << 10, 600 << 10) as usize;
            let blob = rng.bytes(size, true);
            let dir = w.build(&package, &version, T0 + v as i64, &[("small", "s")]);
            fs::write(dir.join("blob"), &blob).unwrap();
            common::set_mtime(&dir.join("blob"), T0);
            common::set_mtime(&dir, T0 + v as i64);
            common::make_read_only(&dir);
            let pv = format!("{package}/{version}");
            builds.insert(pv.clone(), lines(&common::picture(&dir).unwrap()));
            content.push(pv);
        }
    }
    let refs: Vec<&str> = content.iter().map(String::as_str).collect();
    w.write_global("");
    w.write_rm(&[("P/R1", "open", 0, &refs)]);
    w.local_target(
        "site",
        "projects = [\"P\"]\ncompression = \"none\"\nparallel = 4\n",
    );
    let t = w.target_dir("site");
    let Some(fs_) = common::Tmpfs::mount(&t, "2m") else {
        return;
    };
    let out = w.blat(&["sync", "--all"]);
    let err = common::stderr(&out);
    let code = out.status.code();
    assert!(
        code == Some(3) || code == Some(1),
        "exit {code:?}, expected 3 or 1 with {} package-versions and 2 MiB\n{err}",
        content.len()
    );
    // Nothing partial: a visible version is a whole one.
    let mut visible = 0;
    for pv in &content {
        let dir = t.join(pv);
        if dir.exists() {
            visible += 1;
            assert_eq!(
                lines(&common::picture(&dir).unwrap()),
                builds[pv],
                "{pv} is visible but not whole"
            );
        }
    }
    assert!(visible < content.len(), "all of it fitted in 2 MiB?");
    // One clear line per package that failed, not pages of tar messages.
    let failed = content.len() - visible;
    let lines_: Vec<&str> = err.lines().collect();
    assert!(
        lines_.len() <= failed + 3,
        "{} stderr lines for {failed} failed package-versions:\n{}",
        lines_.len(),
        lines_
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    for l in &lines_ {
        assert!(
            l.len() <= 500,
            "an error line of {} characters (tar messages?): {}...",
            l.len(),
            l.chars().take(300).collect::<String>()
        );
    }
    assert!(err.contains("No space left on device"), "{err}");
    assert!(
        common::blat_names(&t).is_empty(),
        "left on the full target: {:?}",
        common::blat_names(&t)
    );
    // Room again: the next sync converges.
    fs_.resize("64m");
    let out = w.blat(&["sync", "--all"]);
    common::assert_exit(&out, 0);
    for pv in &content {
        assert_eq!(
            lines(&common::picture(&t.join(pv)).unwrap()),
            builds[pv],
            "{pv} after the enlarged sync"
        );
    }
    assert!(
        common::blat_names(&t).is_empty(),
        "{:?}",
        common::blat_names(&t)
    );
    drop(fs_);
}

// ------------------------------------------------------------ a dead receiver over SSH

/// The parent of `pid`, from /proc.
fn parent(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid ...: comm may hold blanks, so from the last ')'.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The receiver's own shell over SSH killed in the middle of a `receive`
/// (not one of its pipeline's subshells): blat must notice at once that
/// the receiver is gone (the session reports its end), fail that batch,
/// and not wait for `io_timeout`; the next sync converges. With the
/// OpenSSH client (the default); the libssh2 client still waits for
/// io_timeout there (sshd stops taking the stream but neither closes the
/// channel nor reports the exit while libssh2 writes).
#[test]
fn a_receiver_killed_mid_stream_over_ssh_ends_its_batch_at_once() {
    let Some(sshd) = Sshd::start() else { return };
    let w = World::new();
    let mut rng = Rng::new(seed(606));
    let mut content = Vec::new();
    for i in 0..3 {
        let dir = w.build("big", &format!("{i}"), T0 + i, &[]);
        fs::write(dir.join("blob"), rng.bytes(24 << 20, true)).unwrap();
        common::set_mtime(&dir.join("blob"), T0);
        common::set_mtime(&dir, T0 + i);
        common::make_read_only(&dir);
        content.push(format!("big/{i}"));
    }
    let refs: Vec<&str> = content.iter().map(String::as_str).collect();
    w.write_global("");
    w.write_rm(&[("P/R1", "open", 0, &refs)]);
    let mut slow = Vec::new();
    for compression in ["none", "gzip:1", "zstd:1"] {
        common::empty_dir(&sshd.archive());
        sshd.write_target(
            &w,
            "site",
            // io_timeout 20s: a batch that waits for it shows, and costs less.
            &format!(
                "projects = [\"P\"]\nparallel = 1\ncompression = \"{compression}\"\nio_timeout = \"20s\"\nssh_client = \"openssh\"\n"
            ),
        );
        let mut child = Command::new(env!("CARGO_BIN_EXE_blat"))
            .arg("-c")
            .arg(w.config())
            .args(["sync", "--target", "site"])
            .env_remove("BLAT_NOW")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let receiver = sshd.receiver();
        let is_receive = |a: &[String]| {
            a.iter().any(|x| Path::new(x) == receiver) && a.iter().any(|x| x == "receive")
        };
        // The receiver's own shell: its parent is not one of its subshells.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut killed = None;
        while killed.is_none() && Instant::now() < deadline && child.try_wait().unwrap().is_none() {
            let procs = common::processes(is_receive);
            let pids: Vec<i32> = procs.iter().map(|(p, _)| *p).collect();
            if let Some((pid, _)) = procs
                .iter()
                .find(|(p, _)| parent(*p).is_some_and(|pp| !pids.contains(&pp)))
            {
                // Let the stream get going first.
                std::thread::sleep(Duration::from_millis(300));
                if common::kill9(*pid) {
                    killed = Some(Instant::now());
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let out = child.wait_with_output().unwrap();
        let Some(at) = killed else {
            panic!(
                "{compression}: no receive to kill (exit {:?})",
                out.status.code()
            );
        };
        let took = at.elapsed();
        let err = common::stderr(&out);
        if took > Duration::from_secs(10) {
            slow.push(format!(
                "compression {compression}: blat ended {:.1}s after the receiver was killed (exit {:?}): {}",
                took.as_secs_f64(),
                out.status.code(),
                err.lines().next().unwrap_or("").chars().take(200).collect::<String>()
            ));
        }
        assert!(
            out.status.code() == Some(1) || out.status.code() == Some(3),
            "{compression}: exit {:?} after the receiver was killed\n{err}",
            out.status.code()
        );
        // Nothing of the killed run may be left running, and the next sync
        // converges.
        assert!(common::wait_gone(
            |a| common::mentions(a, &sshd.home) || a.iter().any(|x| Path::new(x) == receiver),
            Duration::from_secs(30)
        ));
        common::assert_exit(&w.blat(&["sync", "--target", "site"]), 0);
        for pv in &content {
            assert_eq!(
                common::picture(&w.archive().join(pv)),
                common::picture(&sshd.archive().join(pv)),
                "{pv}"
            );
        }
        assert!(common::blat_names(&sshd.archive()).is_empty());
    }
    assert!(
        slow.is_empty(),
        "a dead receiver was noticed late:\n{}",
        slow.join("\n")
    );
}
