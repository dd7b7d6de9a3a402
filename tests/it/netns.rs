//! Network namespaces for the jump host tests: a line of namespaces, the
//! first joined to ours by a veth pair, each further one to the one before.
//! A new namespace does not forward (ip_forward is 0 there), so each
//! reaches only its neighbours: the test process reaches the first only,
//! the first reaches the second, and so on. Routes marked unreachable for
//! the farther links make a direct connection from here fail at once
//! instead of leaving by the default route.
//!
//! Names and addresses are unique per test (process id and a counter), and
//! everything is removed on drop. Without root or `ip netns`, the tests
//! skip, except under `CI=true`, where they fail.

#![allow(dead_code)]

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::common::is_root;

/// Namespaces `0..len`, namespace `k` at `addr(k)` on the link towards us.
pub struct Line {
    names: Vec<String>,
    /// Our end of the first link.
    root_veth: String,
    /// `10.A.B` of each link.
    nets: Vec<String>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn unavailable(why: &str) -> Option<Line> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("network namespaces are required under CI=true: {why}");
    }
    eprintln!("skipped: no network namespaces here ({why})");
    None
}

impl Line {
    /// `len` namespaces in a line, or `None` (skip) when namespaces cannot
    /// be made outside CI.
    pub fn new(len: usize) -> Option<Line> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        if !is_root() {
            return unavailable("the tests do not run as root");
        }
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let tag = format!("{:05}{:02}", pid % 100_000, n % 100);
        let mut line = Line {
            names: (0..len).map(|k| format!("blat-jump-{tag}-{k}")).collect(),
            root_veth: format!("bj{tag}0a"),
            nets: (0..len)
                .map(|k| format!("10.{}.{}", 150 + pid % 50, (n * 4 + k) % 256))
                .collect(),
        };
        match line.build() {
            Ok(()) => Some(line),
            Err(e) => {
                line.tear_down();
                unavailable(&e)
            }
        }
    }

    fn build(&mut self) -> Result<(), String> {
        for (k, ns) in self.names.iter().enumerate() {
            ip(&["netns", "add", ns])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            let near = format!("{}{k}a", &self.root_veth[..self.root_veth.len() - 2]);
            let far = format!("{}{k}b", &self.root_veth[..self.root_veth.len() - 2]);
            ip(&["link", "add", &near, "type", "veth", "peer", "name", &far])?;
            ip(&["link", "set", &far, "netns", ns])?;
            let net = &self.nets[k];
            let mut near_ns: Vec<&str> = Vec::new();
            if k > 0 {
                ip(&["link", "set", &near, "netns", &self.names[k - 1]])?;
                near_ns = vec!["-n", &self.names[k - 1]];
                // From here, the farther links are unreachable at once.
                ip(&["route", "add", "unreachable", &format!("{net}.0/24")])?;
            }
            let with_ns = |rest: &[&str]| -> Vec<String> {
                near_ns.iter().chain(rest).map(|s| s.to_string()).collect()
            };
            let args = with_ns(&["addr", "add", &format!("{net}.1/24"), "dev", &near]);
            ip(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
            let args = with_ns(&["link", "set", &near, "up"]);
            ip(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
            ip(&["-n", ns, "addr", "add", &format!("{net}.2/24"), "dev", &far])?;
            ip(&["-n", ns, "link", "set", &far, "up"])?;
        }
        Ok(())
    }

    /// The name of namespace `k`.
    pub fn ns(&self, k: usize) -> &str {
        &self.names[k]
    }

    /// The address of namespace `k` on the link towards us.
    pub fn addr(&self, k: usize) -> String {
        format!("{}.2", self.nets[k])
    }

    /// The address namespace `k` sees its neighbour towards us come from.
    pub fn uplink(&self, k: usize) -> String {
        format!("{}.1", self.nets[k])
    }

    /// The processes running in namespace `k`.
    pub fn pids(&self, k: usize) -> Vec<i32> {
        let out = Command::new("ip")
            .args(["netns", "pids", &self.names[k]])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// Kills every process in namespace `k`, as a machine that dies.
    pub fn kill_all(&self, k: usize) {
        for pid in self.pids(k) {
            crate::common::kill9(pid);
        }
    }

    fn tear_down(&mut self) {
        for k in 0..self.names.len() {
            self.kill_all(k);
        }
        for (k, ns) in self.names.iter().enumerate() {
            let _ = ip(&["netns", "del", ns]);
            if k > 0 {
                let _ = ip(&[
                    "route",
                    "del",
                    "unreachable",
                    &format!("{}.0/24", self.nets[k]),
                ]);
            }
        }
        // Gone with its namespace's end, but not at once.
        let _ = ip(&["link", "del", &self.root_veth]);
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        self.tear_down();
    }
}
