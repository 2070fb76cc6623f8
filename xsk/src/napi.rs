//! The kernel threads of threaded NAPI (`napi/IFACE-ID`): the receive work
//! of an interface once `/sys/class/net/IFACE/threaded` is 1. The appliance
//! pins them to its workers' cores (`[xsk] napi = "workers"`), the lab
//! benchmark to the core under test.

use std::collections::HashSet;

/// The threads (pids) whose name is `napi/IFACE-…`. The name is the
/// interface's in any network namespace: callers tell theirs apart by
/// switching threaded NAPI on and taking the threads that appear.
pub fn napi_threads(iface: &str) -> HashSet<i32> {
    let prefix = format!("napi/{iface}-");
    let mut out = HashSet::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) {
            // comm is cut at 15 bytes: a long name matches by its start.
            let comm = comm.trim_end();
            if comm.starts_with(&prefix) || (comm.len() == 15 && prefix.starts_with(comm)) {
                out.insert(pid);
            }
        }
    }
    out
}
