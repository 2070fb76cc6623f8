//! The privileges `mtugate run` needs, checked before it touches anything,
//! and kernel refusals translated into the capability they point at.
//!
//! mtugate runs as root, or (the Debian package) as the system user
//! `mtugate` with exactly these capabilities, found by experiment in the
//! lab (README, "Packaging and running as a service"; `deploy/e2e-package.sh`
//! repeats it): the lab run passes with the five, and without any one of
//! them the kernel refuses the start.
//!
//! | capability | what needs it | the kernel's refusal without it |
//! |---|---|---|
//! | `CAP_BPF` | `bpf()`: loading the XDP program, creating its maps | `EPERM` loading the object |
//! | `CAP_PERFMON` | the verifier accepts the program's packet pointer arithmetic only from a "privileged" loader (Spectre v1 hardening for the others) | `EACCES`, "pointer arithmetic with it prohibited for !root" |
//! | `CAP_NET_ADMIN` | networking program types and maps (XDP, DEVMAP, XSKMAP), attaching to an interface | `EPERM` loading the object |
//! | `CAP_NET_RAW` | opening AF_XDP sockets | `EPERM` creating the socket |
//! | `CAP_IPC_LOCK` | pinning the UMEM (`frames × frame_size` per queue) beyond `RLIMIT_MEMLOCK` | `ENOBUFS` registering the UMEM |
//!
//! `CAP_IPC_LOCK` can be replaced by a `RLIMIT_MEMLOCK` (systemd
//! `LimitMEMLOCK=`) at least as large as all the UMEMs: the check accepts
//! either. Not needed: `CAP_SYS_ADMIN` (only to mount a bpffs where
//! `[xsk] bpffs` names none, or, on kernels before 5.8, which have no
//! `CAP_BPF` / `CAP_PERFMON`, instead of those two; also to remove a
//! link-less XDP program an old mtugate left, which needs its id opened),
//! `CAP_SYS_RESOURCE`, `CAP_SYS_NICE` (workers pin themselves to allowed
//! cores, which needs nothing).
//!
//! Everything is read from `/proc` (`CapEff` of `/proc/self/status`, "Max
//! locked memory" of `/proc/self/limits`, `/proc/sys/kernel/cap_last_cap`,
//! `/proc/self/mountinfo`): no `unsafe`, no libc call.

use std::fmt;
use std::path::Path;
use std::sync::OnceLock;

/// What the run checked by [`preflight`] needs, for [`explain`].
static NEEDS: OnceLock<RunNeeds> = OnceLock::new();

/// A Linux capability (the bit number of `linux/capability.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// 12.
    NetAdmin = 12,
    /// 13.
    NetRaw = 13,
    /// 14.
    IpcLock = 14,
    /// 21.
    SysAdmin = 21,
    /// 38 (Linux 5.8).
    Perfmon = 38,
    /// 39 (Linux 5.8).
    Bpf = 39,
}

impl Cap {
    /// The name, as `capabilities(7)` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Cap::NetAdmin => "CAP_NET_ADMIN",
            Cap::NetRaw => "CAP_NET_RAW",
            Cap::IpcLock => "CAP_IPC_LOCK",
            Cap::SysAdmin => "CAP_SYS_ADMIN",
            Cap::Perfmon => "CAP_PERFMON",
            Cap::Bpf => "CAP_BPF",
        }
    }
}

/// The capabilities the package's unit grants: what `mtugate run` needs.
pub const RUN_CAPS: [Cap; 5] = [
    Cap::NetAdmin,
    Cap::NetRaw,
    Cap::Bpf,
    Cap::Perfmon,
    Cap::IpcLock,
];

/// What a process holds, as read from `/proc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Privileges {
    /// The effective capability set (`CapEff`).
    pub effective: u64,
    /// The highest capability the kernel knows (`cap_last_cap`).
    pub last_cap: u32,
    /// The soft `RLIMIT_MEMLOCK` in bytes; `None` = unlimited.
    pub memlock: Option<u64>,
}

impl Privileges {
    /// This process's privileges.
    pub fn current() -> std::io::Result<Privileges> {
        let status = std::fs::read_to_string("/proc/self/status")?;
        let limits = std::fs::read_to_string("/proc/self/limits")?;
        // Kernels before 3.2 have no cap_last_cap: they know neither CAP_BPF.
        let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .unwrap_or_else(|_| "36".into());
        Privileges::parse(&status, &limits, &last).ok_or_else(|| {
            std::io::Error::other("cannot read CapEff / Max locked memory from /proc/self")
        })
    }

    /// Parses the text of `/proc/self/status`, `/proc/self/limits` and
    /// `/proc/sys/kernel/cap_last_cap`.
    pub fn parse(status: &str, limits: &str, last_cap: &str) -> Option<Privileges> {
        let eff = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())?;
        let soft = limits
            .lines()
            .find_map(|l| l.strip_prefix("Max locked memory"))
            .and_then(|v| v.split_whitespace().next())?;
        let memlock = match soft {
            "unlimited" => None,
            n => Some(n.parse().ok()?),
        };
        Some(Privileges {
            effective: eff,
            last_cap: last_cap.trim().parse().ok()?,
            memlock,
        })
    }

    /// Whether the effective set holds `cap`.
    pub fn has(&self, cap: Cap) -> bool {
        self.effective & (1u64 << cap as u32) != 0
    }

    /// Whether the kernel has `CAP_BPF` and `CAP_PERFMON` (Linux 5.8);
    /// before that, `CAP_SYS_ADMIN` stands for both.
    pub fn split_bpf_caps(&self) -> bool {
        self.last_cap >= Cap::Bpf as u32
    }
}

/// What the configured run will do that takes a privilege.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunNeeds {
    /// Bytes of UMEM to pin, all queues together.
    pub umem_bytes: u64,
    /// `[xsk] bpffs`: where the XDP links are pinned.
    pub bpffs: std::path::PathBuf,
    /// Whether `[xsk] bpffs` is a bpffs mount already (else mtugate mounts
    /// one, which takes `CAP_SYS_ADMIN`).
    pub bpffs_mounted: bool,
    /// Why `[xsk] bpffs` cannot be reached, when it exists but a directory
    /// on the way refuses this user (not a capability: a path to grant).
    pub bpffs_unreachable: Option<String>,
}

impl RunNeeds {
    /// `queues` queues of `frames` UMEM frames of `frame_size` bytes; pins
    /// under `bpffs` (looked up in this process's mount table).
    pub fn new(queues: usize, frames: u32, frame_size: u32, bpffs: &Path) -> RunNeeds {
        // mtugate mounts one where the path is missing or no bpffs.
        let meta = std::fs::metadata(bpffs);
        let mounted = meta.as_ref().is_ok_and(|m| m.is_dir())
            && std::fs::read_to_string("/proc/self/mountinfo")
                .is_ok_and(|m| fstype_of(&m, bpffs).as_deref() == Some("bpf"));
        let unreachable = match meta {
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Some(e.to_string()),
            _ => None,
        };
        RunNeeds {
            umem_bytes: queues as u64 * u64::from(frames) * u64::from(frame_size),
            bpffs: bpffs.to_path_buf(),
            bpffs_mounted: mounted,
            bpffs_unreachable: unreachable,
        }
    }
}

/// The file system type of the mount that holds `path`, from the text of
/// `/proc/self/mountinfo` (the longest mount point that is a prefix of it;
/// the last one listed wins, as the last mount hides the others).
pub fn fstype_of(mountinfo: &str, path: &Path) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    for line in mountinfo.lines() {
        // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
        let f: Vec<&str> = line.split_whitespace().collect();
        let Some(sep) = f.iter().position(|&x| x == "-") else {
            continue;
        };
        let (Some(mp), Some(fstype)) = (f.get(4), f.get(sep + 1)) else {
            continue;
        };
        // Octal escapes (\040 for a space) are left as they are: a mount
        // point with a space simply never matches.
        if path.starts_with(mp) && best.as_ref().is_none_or(|(len, _)| mp.len() >= *len) {
            best = Some((mp.len(), (*fstype).to_owned()));
        }
    }
    best.map(|(_, t)| t)
}

/// One privilege the run lacks: what, and what for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The capability (or `CAP_SYS_ADMIN` on kernels without the split).
    pub cap: Cap,
    /// What mtugate would use it for.
    pub why: String,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "mtugate run needs {} ({}) — missing",
            self.cap.name(),
            self.why
        )
    }
}

/// Every privilege the run described by `n` needs and `p` lacks, in the
/// order the run would trip over them.
pub fn missing(p: &Privileges, n: &RunNeeds) -> Vec<Missing> {
    let mut out = Vec::new();
    let mut need = |cap: Cap, why: String| {
        // Before Linux 5.8, CAP_SYS_ADMIN is what CAP_BPF and CAP_PERFMON are now.
        let cap = if matches!(cap, Cap::Bpf | Cap::Perfmon) && !p.split_bpf_caps() {
            Cap::SysAdmin
        } else {
            cap
        };
        let held = p.has(cap) || (matches!(cap, Cap::Bpf | Cap::Perfmon) && p.has(Cap::SysAdmin));
        if !held && !out.iter().any(|m: &Missing| m.cap == cap) {
            out.push(Missing { cap, why });
        }
    };
    // A bpffs path that exists but cannot be reached is a path to grant,
    // not a capability: the preflight says so on its own.
    if !n.bpffs_mounted && n.bpffs_unreachable.is_none() {
        need(
            Cap::SysAdmin,
            format!(
                "mount a bpffs at {}, which is none: mount one there first, or set [xsk] bpffs to one",
                n.bpffs.display()
            ),
        );
    }
    need(Cap::Bpf, "load the XDP program and create its maps".into());
    need(
        Cap::Perfmon,
        "the verifier accepts the XDP program's packet pointer arithmetic only from a privileged loader".into(),
    );
    need(
        Cap::NetAdmin,
        "load an XDP program and its DEVMAP/XSKMAP, attach it to the ports".into(),
    );
    need(Cap::NetRaw, "open the AF_XDP sockets".into());
    let mib = n.umem_bytes.div_ceil(1 << 20);
    if p.memlock.is_some_and(|l| l < n.umem_bytes) {
        need(
            Cap::IpcLock,
            format!(
                "pin {mib} MiB of UMEM; RLIMIT_MEMLOCK is {} MiB: or raise it to at least {mib} MiB (systemd: LimitMEMLOCK=)",
                p.memlock.unwrap_or(0) >> 20
            ),
        );
    }
    out
}

/// The preflight of `mtugate run`: an error naming every missing
/// privilege, or `Ok`. Remembers `n` for [`explain`].
/// `MTUGATE_SKIP_PREFLIGHT=1` skips the check (so a test can show that the
/// kernel refuses too; [`explain`] then names the cause).
pub fn preflight(n: RunNeeds) -> anyhow::Result<()> {
    let n = NEEDS.get_or_init(|| n);
    if std::env::var_os("MTUGATE_SKIP_PREFLIGHT").is_some_and(|v| v == "1") {
        return Ok(());
    }
    if let Some(why) = &n.bpffs_unreachable {
        anyhow::bail!(
            "[xsk] bpffs {}: {why}: the user mtugate runs as must be able to reach it (the package's unit shows the service an empty /sys/fs/bpf with only /sys/fs/bpf/mtugate bound in; /usr/lib/tmpfiles.d/mtugate.conf makes that directory)",
            n.bpffs.display()
        );
    }
    let p = Privileges::current()?;
    let m = missing(&p, n);
    if m.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = m.iter().map(ToString::to_string).collect();
    anyhow::bail!(
        "{}. Run it as root, or grant them (systemd: AmbientCapabilities=; setpriv --ambient-caps); the package's unit grants {}",
        list.join("; "),
        RUN_CAPS.map(Cap::name).join(" ")
    )
}

/// The errno of a kernel refusal found anywhere in `e`'s chain: `EPERM`,
/// `EACCES` or `ENOBUFS` (the UMEM over `RLIMIT_MEMLOCK`), whether kept as
/// an `io::Error` or only in a message (libbpf's errors are text).
fn refusal(e: &anyhow::Error) -> Option<i32> {
    const CODES: [i32; 3] = [1, 13, 105];
    e.chain().find_map(|c| {
        if let Some(code) = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.raw_os_error())
            .filter(|code| CODES.contains(code))
        {
            return Some(code);
        }
        let s = c.to_string();
        CODES
            .into_iter()
            .find(|code| s.contains(&format!("(os error {code})")))
    })
}

/// Adds to an error of `mtugate run` that the kernel refused (EPERM,
/// EACCES, ENOBUFS) which privileges this process lacks for the run
/// [`preflight`] checked, or, when it lacks none, where else to look.
/// Errors before the preflight (configuration) are returned unchanged.
pub fn explain(e: anyhow::Error) -> anyhow::Error {
    match NEEDS.get() {
        Some(n) => explain_for(e, n),
        None => e,
    }
}

fn explain_for(e: anyhow::Error, n: &RunNeeds) -> anyhow::Error {
    if refusal(&e).is_none() {
        return e;
    }
    let Ok(p) = Privileges::current() else {
        return e;
    };
    let m = missing(&p, n);
    if m.is_empty() {
        return e.context(format!(
            "the kernel refused, though this process holds every capability mtugate run needs: check that its user may write {} and /run/mtugate/locks, and any LSM or seccomp policy",
            n.bpffs.join("mtugate").display()
        ));
    }
    let list: Vec<String> = m.iter().map(ToString::to_string).collect();
    e.context(format!("permission denied: {}", list.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS_8M: &str =
        "Limit                     Soft Limit           Hard Limit           Units     \n\
        Max locked memory         8388608              8388608              bytes     \n";
    const LIMITS_INF: &str =
        "Max locked memory         unlimited            unlimited            bytes     \n";

    fn privs(caps: &[Cap], limits: &str, last: &str) -> Privileges {
        let eff: u64 = caps.iter().map(|&c| 1u64 << c as u32).sum();
        Privileges::parse(
            &format!("Name:\tmtugate\nCapInh:\t0000000000000000\nCapEff:\t{eff:016x}\n"),
            limits,
            last,
        )
        .unwrap()
    }

    fn needs(umem: u64) -> RunNeeds {
        RunNeeds {
            umem_bytes: umem,
            bpffs: "/sys/fs/bpf/mtugate".into(),
            bpffs_mounted: true,
            bpffs_unreachable: None,
        }
    }

    fn names(m: &[Missing]) -> Vec<&'static str> {
        m.iter().map(|m| m.cap.name()).collect()
    }

    #[test]
    fn root_lacks_nothing() {
        let p = Privileges::parse("CapEff:\t000001ffffffffff\n", LIMITS_8M, "40\n").unwrap();
        assert!(missing(&p, &needs(64 << 20)).is_empty());
    }

    #[test]
    fn the_unit_set_is_enough_and_each_one_is_named_when_dropped() {
        let full = privs(&RUN_CAPS, LIMITS_8M, "40");
        assert!(missing(&full, &needs(32 << 20)).is_empty());
        for drop in RUN_CAPS {
            let caps: Vec<Cap> = RUN_CAPS.into_iter().filter(|&c| c != drop).collect();
            let m = missing(&privs(&caps, LIMITS_8M, "40"), &needs(32 << 20));
            assert_eq!(names(&m), [drop.name()], "without {}", drop.name());
            let line = m[0].to_string();
            assert!(
                line.starts_with(&format!("mtugate run needs {} (", drop.name())),
                "{line}"
            );
            assert!(line.ends_with("— missing"), "{line}");
        }
    }

    #[test]
    fn a_memlock_limit_large_enough_replaces_cap_ipc_lock() {
        let caps = [Cap::NetAdmin, Cap::NetRaw, Cap::Bpf, Cap::Perfmon];
        assert!(missing(&privs(&caps, LIMITS_INF, "40"), &needs(1 << 30)).is_empty());
        assert!(missing(&privs(&caps, LIMITS_8M, "40"), &needs(8 << 20)).is_empty());
        let m = missing(&privs(&caps, LIMITS_8M, "40"), &needs((8 << 20) + 1));
        assert_eq!(names(&m), ["CAP_IPC_LOCK"]);
        assert!(m[0].why.contains("RLIMIT_MEMLOCK is 8 MiB"), "{}", m[0].why);
        assert!(m[0].why.contains("at least 9 MiB"), "{}", m[0].why);
    }

    #[test]
    fn before_linux_5_8_cap_sys_admin_stands_for_bpf_and_perfmon() {
        // cap_last_cap 37: no CAP_PERFMON, no CAP_BPF.
        let m = missing(
            &privs(&[Cap::NetAdmin, Cap::NetRaw, Cap::IpcLock], LIMITS_8M, "37"),
            &needs(1),
        );
        assert_eq!(names(&m), ["CAP_SYS_ADMIN"]);
        let p = privs(
            &[Cap::NetAdmin, Cap::NetRaw, Cap::IpcLock, Cap::SysAdmin],
            LIMITS_8M,
            "37",
        );
        assert!(missing(&p, &needs(1)).is_empty());
        // CAP_SYS_ADMIN still covers both on newer kernels.
        let p = privs(
            &[Cap::NetAdmin, Cap::NetRaw, Cap::IpcLock, Cap::SysAdmin],
            LIMITS_8M,
            "40",
        );
        assert!(missing(&p, &needs(1)).is_empty());
    }

    #[test]
    fn no_bpffs_mount_needs_cap_sys_admin_to_mount_one() {
        let mut n = needs(1);
        n.bpffs_mounted = false;
        let m = missing(&privs(&RUN_CAPS, LIMITS_INF, "40"), &n);
        assert_eq!(names(&m), ["CAP_SYS_ADMIN"]);
        assert!(m[0].why.contains("/sys/fs/bpf/mtugate"), "{}", m[0].why);
    }

    #[test]
    fn an_unreachable_bpffs_is_no_capability() {
        let mut n = needs(1);
        n.bpffs_mounted = false;
        n.bpffs_unreachable = Some("Permission denied (os error 13)".into());
        assert!(missing(&privs(&RUN_CAPS, LIMITS_INF, "40"), &n).is_empty());
        // As the process sees it: a directory it may not search.
        let n = RunNeeds::new(1, 1, 1, Path::new("/proc/1/root/nonexistent"));
        if Privileges::current().is_ok_and(|p| !p.has(Cap::SysAdmin)) {
            assert!(n.bpffs_unreachable.is_some(), "{n:?}");
        }
    }

    #[test]
    fn mountinfo_finds_the_mount_holding_a_path() {
        let mi = "22 1 0:21 / / rw - ext4 /dev/vda rw\n\
                  25 22 0:22 / /sys rw,nosuid - sysfs sysfs rw\n\
                  30 25 0:26 / /sys/fs/bpf rw shared:9 - bpf bpf rw,mode=700\n\
                  31 22 0:27 / /run rw - tmpfs tmpfs rw\n";
        assert_eq!(
            fstype_of(mi, Path::new("/sys/fs/bpf/mtugate")).as_deref(),
            Some("bpf")
        );
        assert_eq!(
            fstype_of(mi, Path::new("/sys/fs/bpf")).as_deref(),
            Some("bpf")
        );
        assert_eq!(
            fstype_of(mi, Path::new("/sys/fs/bpfx")).as_deref(),
            Some("sysfs")
        );
        assert_eq!(
            fstype_of(mi, Path::new("/run/mtugate/bpffs")).as_deref(),
            Some("tmpfs")
        );
        assert_eq!(fstype_of(mi, Path::new("/etc")).as_deref(), Some("ext4"));
    }

    /// The package's unit grants exactly what the preflight asks for.
    #[test]
    fn the_unit_grants_exactly_run_caps() {
        let unit = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/mtugate.service"
        ))
        .unwrap();
        let mut want: Vec<&str> = RUN_CAPS.map(Cap::name).to_vec();
        want.sort_unstable();
        for key in ["AmbientCapabilities=", "CapabilityBoundingSet="] {
            let line = unit.lines().find_map(|l| l.strip_prefix(key));
            let mut got: Vec<&str> = line.unwrap_or_default().split_whitespace().collect();
            got.sort_unstable();
            assert_eq!(got, want, "{key}");
        }
    }

    #[test]
    fn a_refusal_is_explained_by_what_is_missing_or_where_else_to_look() {
        let e = anyhow::anyhow!("loading the XDP program: Operation not permitted (os error 1)");
        let text = format!("{:#}", explain_for(e, &needs(1)));
        // Whoever runs the test: it names missing capabilities, or says
        // none is missing and where to look instead.
        assert!(
            text.starts_with("permission denied: mtugate run needs CAP_")
                || text
                    .starts_with("the kernel refused, though this process holds every capability"),
            "{text}"
        );
        assert!(text.ends_with("(os error 1)"), "{text}");
    }

    #[test]
    fn refusals_are_recognised_in_io_errors_and_in_text() {
        let io = anyhow::Error::new(std::io::Error::from_raw_os_error(1)).context("binding");
        assert_eq!(refusal(&io), Some(1));
        let text = anyhow::anyhow!("loading the XDP program: Permission denied (os error 13)");
        assert_eq!(refusal(&text), Some(13));
        let umem = anyhow::anyhow!("creating the UMEM: No buffer space available (os error 105)");
        assert_eq!(refusal(&umem), Some(105));
        let other = anyhow::anyhow!("interface nosuch0 does not exist (os error 2)");
        assert_eq!(refusal(&other), None);
        // Not a refusal: returned unchanged.
        let e = explain_for(other, &needs(1));
        assert_eq!(
            e.to_string(),
            "interface nosuch0 does not exist (os error 2)"
        );
    }
}
