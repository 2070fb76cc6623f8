//! Where the ports' receive processing runs (`[xsk] napi`).
//!
//! A frame's receive work — the driver's poll, the XDP stage (fast path
//! included) and, in copy mode, the copy into the UMEM — runs in the NAPI
//! context of its RX queue: in softirq on whatever core the interrupt (or,
//! on veth, the sender) happened to be. For a poll-mode appliance that owns
//! its cores that is the wrong place: the work competes with whatever else
//! runs there, and a fast path forwarding in softirq on a busy core is no
//! faster than the kernel. With `napi = "workers"` (opt-in; the default,
//! `"kernel"`, leaves placement to the system's IRQ affinity) mtugate
//! turns on threaded NAPI for each port (`/sys/class/net/IFACE/threaded`)
//! and pins the port's NAPI threads to the workers' cores: one queue's
//! receive, fast path and slow path all run on the cores given to mtugate,
//! as in DPDK's run-to-completion model.
//!
//! The threads are found by name (`napi/IFACE-ID`) as the ones that appear
//! when threaded NAPI is switched on (off first if it already was), so a
//! same-named interface of another network namespace is never touched.
//! A driver without threaded NAPI is left as it is, with a warning. On a
//! clean stop the previous setting is restored.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mtugate_xsk::napi_threads;

/// How long to wait for the NAPI threads to appear.
const APPEAR: Duration = Duration::from_secs(2);

/// What was changed, to be put back on a clean stop.
#[derive(Debug, Default)]
pub struct Placed {
    restore: Vec<(PathBuf, String)>,
    /// NAPI threads pinned, per port (for the log and the tests).
    pub pinned: Vec<(String, Vec<i32>)>,
}

impl Placed {
    /// Puts the ports' threaded-NAPI setting back as it was.
    pub fn restore(self) {
        for (path, old) in self.restore {
            if let Err(e) = std::fs::write(&path, &old) {
                tracing::warn!("restoring {}: {e}", path.display());
            }
        }
    }
}

/// Turns threaded NAPI on for every port and pins its threads to `cores`.
/// Never fails the start: what cannot be done is logged and left.
pub fn place(ifaces: &[&str], cores: &[usize]) -> Placed {
    let mut placed = Placed::default();
    let mut set = nix::sched::CpuSet::new();
    for &c in cores {
        if set.set(c).is_err() {
            tracing::warn!(core = c, "napi: core out of range");
        }
    }
    for &iface in ifaces {
        let path = PathBuf::from(format!("/sys/class/net/{iface}/threaded"));
        let old = match std::fs::read_to_string(&path) {
            Ok(v) => v.trim().to_owned(),
            Err(e) => {
                tracing::warn!(
                    iface,
                    "napi: {} unreadable ({e}): receive work stays where the kernel puts it",
                    path.display()
                );
                continue;
            }
        };
        // Already threaded: off and on again, so that the threads that
        // appear are this interface's.
        if old != "0" {
            if let Err(e) = std::fs::write(&path, "0") {
                tracing::warn!(iface, "napi: switching threaded NAPI off first: {e}");
            }
        }
        let before = napi_threads(iface);
        if let Err(e) = std::fs::write(&path, "1") {
            tracing::warn!(
                iface,
                "napi: threaded NAPI refused ({e}): receive work stays where the kernel puts it"
            );
            let _ = std::fs::write(&path, &old);
            continue;
        }
        placed.restore.push((path, old));
        let end = Instant::now() + APPEAR;
        let mut new: Vec<i32>;
        loop {
            new = napi_threads(iface).difference(&before).copied().collect();
            if !new.is_empty() || Instant::now() > end {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if new.is_empty() {
            tracing::warn!(
                iface,
                "napi: no NAPI thread appeared; receive work stays where the kernel puts it"
            );
            continue;
        }
        new.sort_unstable();
        for &pid in &new {
            if let Err(e) = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(pid), &set) {
                tracing::warn!(iface, pid, "napi: pinning the NAPI thread: {e}");
            }
        }
        tracing::info!(iface, threads = ?new, cores = ?cores, "napi: receive work pinned to the workers' cores");
        placed.pinned.push((iface.to_owned(), new));
    }
    placed
}
