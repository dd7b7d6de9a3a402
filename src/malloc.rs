//! The C allocator's settings for blat and the ssh processes it runs: keep
//! freed memory instead of handing it back to the kernel at once.
//!
//! glibc's malloc returns the top of its heap to the kernel when more than
//! 128 KiB of it are free, and serves blocks above 128 KiB with their own
//! mmap. A process that moves megabytes through buffers that grow, shrink
//! and grow again (ssh relaying a listing of 100,000 package-versions; blat
//! parsing it) then takes a fresh page fault for every page, each time.
//! Measured on the 2-CPU VM of bench/ssh.sh's `bigtarget` case: ssh took
//! 100,000-170,000 page faults for one 4 MB listing, 2,000 with these
//! settings, and the no-change sync went from 1.4-1.9 s to 1.0-1.1 s. The
//! cost is memory kept until the process ends: bounded by its peak.

/// The largest block still carved from the heap, and how much free heap
/// top is kept: glibc's upper limit for the first (32 MiB on 64-bit), and
/// what a run of blat may hold at its peak for the second.
const MMAP_THRESHOLD: usize = 32 << 20;
const TRIM_THRESHOLD: usize = 256 << 20;

/// The same as `GLIBC_TUNABLES`, for the ssh processes blat runs (read by
/// glibc at their start; other C libraries ignore it).
pub fn tunables() -> String {
    format!(
        "glibc.malloc.mmap_threshold={MMAP_THRESHOLD}:glibc.malloc.trim_threshold={TRIM_THRESHOLD}"
    )
}

/// Sets `GLIBC_TUNABLES` for a child unless the user set their own.
pub fn for_child(cmd: &mut std::process::Command) {
    if std::env::var_os("GLIBC_TUNABLES").is_none() {
        cmd.env("GLIBC_TUNABLES", tunables());
    }
}

/// Applies the settings to blat itself, unless the user chose their own.
pub fn init() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("GLIBC_TUNABLES").is_none() {
        // SAFETY: mallopt only changes the allocator's parameters; called
        // first thing in main, before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD as libc::c_int);
        }
    }
}
