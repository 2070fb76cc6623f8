//! mtugate's XDP program (`xsk/bpf/mtugate.bpf.c`, compiled by `build.rs`)
//! on one port: loading, attaching through a pinned `bpf_link`, ownership,
//! configuration, socket registration and its counters.
//!
//! # Ownership
//!
//! Exactly one live mtugate owns an interface, whatever its run directory:
//! the owner holds an exclusive `flock` on
//! `<lock_dir>/<netns>-<iface>.lock` (the kernel releases it when the owner
//! dies, however it dies) and writes its PID and configuration into it. A
//! second instance that finds the lock held refuses **before touching
//! anything**, naming the owner.
//!
//! # Attachment that outlives the process
//!
//! The program is attached with a `bpf_link` pinned at
//! `<bpffs>/mtugate/<netns>/<iface>/link`, its counters map beside it. When
//! mtugate stops or dies, its sockets close and the kernel removes them from
//! the program's XSKMAP: the program keeps running and forwards every frame
//! unprocessed (`bypass`) or drops it (`block`), counting it. The next start
//! finds the pinned link, loads a new program (reusing the pinned counters
//! map) and swaps it in with `bpf_link_update`: there is no moment where
//! frames go nowhere. A program attached without a link (an older mtugate
//! or a killed run of one) is replaced when it is ours and its owner is
//! dead; a foreign program is refused unless replacing it is allowed.
//! `mtugate detach` removes the link and its pins for good.
//!
//! `<netns>` is the inode of the caller's network namespace, so labs with
//! equal interface names in different namespaces never meet.

use std::{
    ffi::CString,
    fs::File,
    io::{self, Write},
    os::{
        fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd},
        unix::fs::MetadataExt,
    },
    path::{Path, PathBuf},
    ptr,
};

use libbpf_rs::{MapCore, MapFlags, Object, ObjectBuilder};
use libxdp_sys as sys;
use serde::{Deserialize, Serialize};

use crate::xdp_stats::STAT_COUNT;
use crate::{AttachMode, XdpStats, XskError};

/// The compiled program.
static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/mtugate.bpf.o"));

/// The SYN policer's maps and the route mirror: one set for the whole
/// appliance.
const SHARED_MAPS: [&str; 5] = [
    "mtg_syn_global",
    "mtg_syn_src",
    "mtg_rmtu4",
    "mtg_rmtu6",
    "mtg_rmtu_min",
];

/// Name of our XDP program as the kernel reports it.
pub(crate) const PROG_NAME: &str = "mtugate_xdp";
/// Name of the legacy (netlink-attached) program of mtugate 0.1.
const LEGACY_PROG_NAME: &str = "mtugate_xsk";

// xsk/bpf/mtugate.h, mirrored (a test reads the header).
/// Largest RX queue id + 1 the program's XSKMAP takes.
pub const MAX_QUEUES: u32 = 256;
const STEER_EXCEPTIONS: u8 = 0;
const STEER_ALL: u8 = 1;
const FAIL_BYPASS: u8 = 0;
const FAIL_BLOCK: u8 = 1;
const FLAG_EGRESS: u32 = 1;
const FLAG_CLAMP4: u32 = 2;
const FLAG_CLAMP6: u32 = 4;
const FLAG_POLICE: u32 = 8;
const FLAG_PMTU_ERRORS: u32 = 32;
const FLAG_ROUTER: u32 = 16;
const FLAG_FRAG_KERNEL: u32 = 64;
/// Ports a router's program can forward to (`MTG_MAX_PORTS`).
pub const MAX_PORTS: u32 = 64;
const OVER_DROP: u8 = 0;
const OVER_PASS: u8 = 1;
/// Sources the policer remembers (`MTG_SRC_ENTRIES`; least recently used
/// evicted).
pub const SRC_ENTRIES: u32 = 65536;
/// Entries of each route trie (`MTG_ROUTE_ENTRIES`).
pub const ROUTE_ENTRIES: u32 = 262144;

/// `struct mtg_cfg`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct RawCfg {
    flags: u32,
    egress_mtu: u16,
    steer: u8,
    on_failure: u8,
    syn_over: u8,
    pad: [u8; 7],
    global_interval: u64,
    global_tolerance: u64,
    source_interval: u64,
    source_tolerance: u64,
}

const _: () = assert!(size_of::<RawCfg>() == 48);

impl RawCfg {
    fn to_bytes(self) -> [u8; 48] {
        let mut b = [0u8; 48];
        b[..4].copy_from_slice(&self.flags.to_ne_bytes());
        b[4..6].copy_from_slice(&self.egress_mtu.to_ne_bytes());
        b[6] = self.steer;
        b[7] = self.on_failure;
        b[8] = self.syn_over;
        b[16..24].copy_from_slice(&self.global_interval.to_ne_bytes());
        b[24..32].copy_from_slice(&self.global_tolerance.to_ne_bytes());
        b[32..40].copy_from_slice(&self.source_interval.to_ne_bytes());
        b[40..48].copy_from_slice(&self.source_tolerance.to_ne_bytes());
        b
    }
}

/// The GCRA form of a budget of `rate` per second with depth `burst`:
/// `(interval, tolerance)` in ns, the interval rounded up so that the
/// program never grants more than the rate. `None` (no limit): `(0, 0)`.
fn gcra(budget: Option<(u64, u64)>) -> (u64, u64) {
    // A closed budget (rate or burst 0) refuses every SYN.
    budget.map_or((0, 0), |(rate, burst)| {
        mtugate_datapath::ops::bucket::gcra(rate, burst)
    })
}

// include/uapi/linux/if_link.h
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const XDP_FLAGS_HW_MODE: u32 = 1 << 3;
const XDP_FLAGS_REPLACE: u32 = 1 << 4;

/// Which frames go to the AF_XDP sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Steer {
    /// Only frames that need work (SYNs, too big, not understood); the
    /// rest is forwarded by the XDP program itself.
    Exceptions,
    /// Every frame (zero-copy NICs, NIC-queue benchmarking).
    All,
}

/// What the program does with a frame that should go to a socket when
/// there is none (mtugate stopped or died).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    /// Forward it to the egress port unprocessed (the link stays up).
    Bypass,
    /// Drop it (nothing crosses unclamped).
    Block,
}

/// How the program polices the SYNs the pipeline would clamp, before they
/// are copied into user space (see `bpf/mtugate.bpf.c`): a budget per
/// source (an IPv4 address, an IPv6 /64; a SYN over it is dropped), then
/// one global budget shared by every port and CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SynPolice {
    /// IPv4 and IPv6 SYNs entering this port are clamped by the pipeline
    /// (only those are policed; other SYNs are ordinary segments here).
    pub clamp: [bool; 2],
    /// Police them. `false`: every such SYN goes to the pipeline.
    pub enabled: bool,
    /// The global budget, `(per second, burst)`; `None`: no limit.
    pub global: Option<(u64, u64)>,
    /// Each source's budget; `None`: no per-source limit.
    pub per_source: Option<(u64, u64)>,
    /// Over the global budget: forward unclamped (`true`) or drop.
    pub over_pass: bool,
}

/// What the program of a port does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastPath {
    /// Which frames go to the sockets.
    pub steer: Steer,
    /// Without a socket: bypass or block.
    pub on_failure: OnFailure,
    /// The egress port of frames forwarded by the program: its ifindex and
    /// the largest L3 packet it takes. `None`: a port that only feeds its
    /// socket (traffic tools); without a socket frames go to the kernel.
    pub egress: Option<(u32, u16)>,
    /// SYN policing.
    pub syn: SynPolice,
    /// Steer ICMP Fragmentation Needed and ICMPv6 Packet Too Big to the
    /// workers (they learn path MTUs from them) instead of forwarding them.
    pub pmtu_errors: bool,
    /// Router mode: the kernel's FIB decides the egress of every frame
    /// (among the ports given to [`PortProgram::set_router_ports`]);
    /// `egress` is then `None`.
    pub router: bool,
    /// Router mode: an IPv4 packet over its route's MTU with DF clear goes
    /// to the kernel, which fragments it as it forwards it, instead of to
    /// a worker (`[router] fragment = "kernel"`).
    pub frag_kernel: bool,
}

impl FastPath {
    /// Every frame to the socket; the kernel's stack when there is none.
    pub const SOCKET_ONLY: FastPath = FastPath {
        steer: Steer::All,
        on_failure: OnFailure::Bypass,
        egress: None,
        syn: SynPolice {
            clamp: [false; 2],
            enabled: false,
            global: None,
            per_source: None,
            over_pass: false,
        },
        pmtu_errors: false,
        router: false,
        frag_kernel: false,
    };

    fn raw(&self) -> RawCfg {
        let (global_interval, global_tolerance) = gcra(self.syn.global);
        let (source_interval, source_tolerance) = gcra(self.syn.per_source);
        let flag = |on: bool, f: u32| if on { f } else { 0 };
        RawCfg {
            flags: flag(self.egress.is_some(), FLAG_EGRESS)
                | flag(self.syn.clamp[0], FLAG_CLAMP4)
                | flag(self.syn.clamp[1], FLAG_CLAMP6)
                | flag(self.syn.enabled, FLAG_POLICE)
                | flag(self.pmtu_errors, FLAG_PMTU_ERRORS)
                | flag(self.router, FLAG_ROUTER)
                | flag(self.router && self.frag_kernel, FLAG_FRAG_KERNEL),
            syn_over: if self.syn.over_pass {
                OVER_PASS
            } else {
                OVER_DROP
            },
            pad: [0; 7],
            global_interval,
            global_tolerance,
            source_interval,
            source_tolerance,
            egress_mtu: self.egress.map_or(0, |e| e.1),
            steer: match self.steer {
                Steer::Exceptions => STEER_EXCEPTIONS,
                Steer::All => STEER_ALL,
            },
            on_failure: match self.on_failure {
                OnFailure::Bypass => FAIL_BYPASS,
                OnFailure::Block => FAIL_BLOCK,
            },
        }
    }
}

/// Where and how a port's program is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachOptions {
    /// A bpffs mount; pins go under `<bpffs>/mtugate/`. Default
    /// `/sys/fs/bpf`.
    pub bpffs: PathBuf,
    /// Directory of the per-interface lock files. Default `/run/mtugate/locks`.
    pub lock_dir: PathBuf,
    /// Native or generic XDP.
    pub mode: AttachMode,
    /// Replace an XDP program that is not mtugate's.
    pub replace_foreign: bool,
    /// Pin the link, so that the program outlives the process (the
    /// appliance). `false`: the program is detached when the
    /// [`PortProgram`] is dropped (traffic tools).
    pub persist: bool,
    /// Who we are, written into the lock file (e.g. the config path).
    pub owner: String,
    /// Router mode: the route mirror's entries at start, written into the
    /// appliance's tries before the first port's program sees a frame.
    pub routes: Vec<(RoutePrefix, RouteMetrics)>,
}

impl Default for AttachOptions {
    fn default() -> Self {
        AttachOptions {
            bpffs: PathBuf::from("/sys/fs/bpf"),
            lock_dir: PathBuf::from("/run/mtugate/locks"),
            mode: AttachMode::Auto,
            replace_foreign: false,
            persist: true,
            owner: String::new(),
            routes: Vec::new(),
        }
    }
}

/// The attach mode obtained on a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum XdpMode {
    /// Driver (native) XDP.
    Native,
    /// Generic (skb) XDP.
    Generic,
}

/// How the program came to be attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Takeover {
    /// Nothing was attached.
    Fresh,
    /// A pinned link of ours was found (its owner had stopped or died): the
    /// new program was swapped in atomically.
    PinnedLink {
        /// The program that ran until now.
        previous_prog_id: u32,
    },
    /// A program attached without a link was detached first.
    Replaced(ReplacedProgram),
}

/// An XDP program found attached to a port and detached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplacedProgram {
    /// Interface name.
    pub iface: String,
    /// Kernel program id.
    pub id: u32,
    /// Kernel program name.
    pub name: String,
    /// `true` when it was not mtugate's own program.
    pub foreign: bool,
}

/// What failed on `iface`, as an error to `map_err` an `io::Error` into.
fn bpf_error(iface: &str, what: &'static str) -> impl FnOnce(io::Error) -> XskError {
    let iface = iface.to_owned();
    move |source| XskError::Bpf {
        iface,
        what,
        source,
    }
}

/// libbpf returns `-errno`.
fn check(ret: i32) -> io::Result<i32> {
    if ret < 0 {
        Err(io::Error::from_raw_os_error(-ret))
    } else {
        Ok(ret)
    }
}

/// Takes ownership of a file descriptor libbpf returned.
fn owned(ret: i32) -> io::Result<OwnedFd> {
    let fd = check(ret)?;
    // SAFETY: a non-negative return of these libbpf calls is a new file
    // descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn prog_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall wrapper, no pointers.
    owned(unsafe { sys::bpf_prog_get_fd_by_id(id) })
}

fn prog_info(fd: RawFd) -> io::Result<(u32, String)> {
    // SAFETY: `bpf_prog_info` is plain old data; all zeroes is valid.
    let mut info: sys::bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut len = size_of::<sys::bpf_prog_info>() as u32;
    // SAFETY: `info` and `len` are valid for writes and `len` is the size of
    // `info`, so the kernel writes at most that many bytes.
    check(unsafe { sys::bpf_prog_get_info_by_fd(fd, &mut info, &mut len) })?;
    let name: Vec<u8> = info
        .name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok((info.id, String::from_utf8_lossy(&name).into_owned()))
}

/// (program id, ifindex) of an XDP link, `None` if it is another kind of
/// link or no longer attached to a device.
fn xdp_link_info(fd: RawFd) -> io::Result<Option<(u32, u32)>> {
    // SAFETY: `bpf_link_info` is plain old data; all zeroes is valid.
    let mut info: sys::bpf_link_info = unsafe { std::mem::zeroed() };
    let mut len = size_of::<sys::bpf_link_info>() as u32;
    // SAFETY: as in `prog_info`.
    check(unsafe { sys::bpf_link_get_info_by_fd(fd, &mut info, &mut len) })?;
    if info.type_ != sys::bpf_link_type_BPF_LINK_TYPE_XDP {
        return Ok(None);
    }
    // SAFETY: for an XDP link the kernel fills the `xdp` member of the
    // union (a plain u32).
    let ifindex = unsafe { info.__bindgen_anon_1.xdp.ifindex };
    Ok((ifindex != 0).then_some((info.prog_id, ifindex)))
}

/// `struct bpf_xdp_query_opts` with its padding spelled out, so that it is
/// zero: libbpf rejects options with non-zero bytes past the fields it
/// knows, and a struct whose padding is left implicit can get garbage
/// there when moved.
#[repr(C)]
#[derive(Default)]
struct XdpQueryOpts {
    sz: usize,
    prog_id: u32,
    drv_prog_id: u32,
    hw_prog_id: u32,
    skb_prog_id: u32,
    attach_mode: u8,
    _pad0: [u8; 7],
    feature_flags: u64,
    xdp_zc_max_segs: u32,
    _pad1: u32,
}

/// `struct bpf_xdp_attach_opts` with explicit (zero) padding.
#[repr(C)]
struct XdpAttachOpts {
    sz: usize,
    old_prog_fd: i32,
    _pad: i32,
}

const _: () = {
    use std::mem::offset_of;
    assert!(size_of::<XdpQueryOpts>() == size_of::<sys::bpf_xdp_query_opts>());
    assert!(
        offset_of!(XdpQueryOpts, drv_prog_id) == offset_of!(sys::bpf_xdp_query_opts, drv_prog_id)
    );
    assert!(
        offset_of!(XdpQueryOpts, skb_prog_id) == offset_of!(sys::bpf_xdp_query_opts, skb_prog_id)
    );
    assert!(
        offset_of!(XdpQueryOpts, attach_mode) == offset_of!(sys::bpf_xdp_query_opts, attach_mode)
    );
    assert!(size_of::<XdpAttachOpts>() == size_of::<sys::bpf_xdp_attach_opts>());
    assert!(
        offset_of!(XdpAttachOpts, old_prog_fd) == offset_of!(sys::bpf_xdp_attach_opts, old_prog_fd)
    );
};

/// Program ids attached to `ifindex`, per mode.
fn query(ifindex: u32) -> io::Result<XdpQueryOpts> {
    let mut opts = XdpQueryOpts {
        sz: size_of::<XdpQueryOpts>(),
        ..XdpQueryOpts::default()
    };
    // SAFETY: `XdpQueryOpts` has the layout of `bpf_xdp_query_opts`
    // (checked at compile time above), is valid for writes, and `sz` says
    // how large it is.
    check(unsafe {
        sys::bpf_xdp_query(
            ifindex as i32,
            0,
            ptr::from_mut(&mut opts).cast::<sys::bpf_xdp_query_opts>(),
        )
    })?;
    Ok(opts)
}

/// Detaches the netlink-attached program `prog` (mode `mode_flag`) from
/// `ifindex`, only if it is still the one attached.
fn detach_legacy(ifindex: u32, mode_flag: u32, prog: &OwnedFd) -> io::Result<()> {
    let opts = XdpAttachOpts {
        sz: size_of::<XdpAttachOpts>(),
        old_prog_fd: prog.as_raw_fd(),
        _pad: 0,
    };
    // SAFETY: `XdpAttachOpts` has the layout of `bpf_xdp_attach_opts`
    // (checked at compile time above) and outlives the call.
    check(unsafe {
        sys::bpf_xdp_detach(
            ifindex as i32,
            mode_flag | XDP_FLAGS_REPLACE,
            ptr::from_ref(&opts).cast::<sys::bpf_xdp_attach_opts>(),
        )
    })?;
    Ok(())
}

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let c = cpath(path)?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    owned(unsafe { sys::bpf_obj_get(c.as_ptr()) })
}

fn obj_pin(fd: RawFd, path: &Path) -> io::Result<()> {
    let c = cpath(path)?;
    // SAFETY: as in `obj_get`.
    check(unsafe { sys::bpf_obj_pin(fd, c.as_ptr()) }).map(drop)
}

/// Creates an XDP link of `prog` on `ifindex` in mode `flags`.
fn link_create(prog: RawFd, ifindex: u32, flags: u32) -> io::Result<OwnedFd> {
    // SAFETY: `bpf_link_create_opts` is plain old data; all zeroes is valid.
    let mut opts: sys::bpf_link_create_opts = unsafe { std::mem::zeroed() };
    opts.sz = size_of::<sys::bpf_link_create_opts>();
    opts.flags = flags;
    // SAFETY: `opts` is a valid, sized options struct that outlives the call.
    owned(unsafe {
        sys::bpf_link_create(prog, ifindex as i32, sys::bpf_attach_type_BPF_XDP, &opts)
    })
}

/// Swaps the program of the link `link` for `prog`, atomically.
fn link_update(link: RawFd, prog: RawFd) -> io::Result<()> {
    // SAFETY: plain syscall wrapper; null options mean defaults.
    check(unsafe { sys::bpf_link_update(link, prog, ptr::null()) }).map(drop)
}

/// The inode of the caller's network namespace.
fn netns_id() -> io::Result<u64> {
    Ok(std::fs::metadata("/proc/self/ns/net")?.ino())
}

/// Whether `path` is a bpffs mount (statfs magic).
fn is_bpffs(path: &Path) -> bool {
    const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
    let Ok(c) = cpath(path) else { return false };
    // SAFETY: `statfs` is plain old data; all zeroes is valid.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` is valid for writes.
    let r = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    r == 0 && st.f_type as i64 == BPF_FS_MAGIC
}

/// Mounts a bpffs at `path` if there is none. Returns whether it mounted
/// one in a mount namespace of its own (where the pins do not outlive the
/// process: `ip netns exec` gives every command a private /sys).
fn ensure_bpffs(path: &Path) -> io::Result<bool> {
    if is_bpffs(path) {
        return Ok(false);
    }
    std::fs::create_dir_all(path)?;
    let c = cpath(path)?;
    // SAFETY: NUL-terminated strings that outlive the call; no data.
    let r = unsafe { libc::mount(c"bpf".as_ptr(), c.as_ptr(), c"bpf".as_ptr(), 0, ptr::null()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    let mine = std::fs::metadata("/proc/self/ns/mnt")?.ino();
    let init = std::fs::metadata("/proc/1/ns/mnt").map(|m| m.ino());
    Ok(init.map_or(true, |i| i != mine))
}

/// The per-interface lock, held for the life of the owner.
fn lock(dir: &Path, netns: u64, iface: &str, owner: &str) -> Result<File, XskError> {
    let err = |what| bpf_error(iface, what);
    std::fs::create_dir_all(dir).map_err(err("creating the lock directory"))?;
    let path = dir.join(format!("{netns}-{iface}.lock"));
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(err("opening the interface lock"))?;
    // SAFETY: plain syscall on a descriptor we own.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let who = std::fs::read_to_string(&path).unwrap_or_default();
            return Err(XskError::Owned {
                iface: iface.to_owned(),
                owner: who.trim().to_owned(),
            });
        }
        return Err(err("locking the interface")(e));
    }
    f.set_len(0).map_err(err("writing the interface lock"))?;
    writeln!(f, "pid {} {}", std::process::id(), owner)
        .map_err(err("writing the interface lock"))?;
    Ok(f)
}

/// Our program on one port. Dropping it closes the program's and the
/// link's descriptors: a pinned link stays (the program keeps running in
/// its failure mode), an unpinned one is detached.
pub struct PortProgram {
    iface: String,
    ifindex: u32,
    mode: XdpMode,
    prog_id: u32,
    obj: Object,
    /// Held, not read: closing the last descriptor of an unpinned link
    /// detaches the program.
    _link: OwnedFd,
    pin_dir: Option<PathBuf>,
    takeover: Takeover,
    baseline: XdpStats,
    private_bpffs: bool,
    _lock: File,
}

impl std::fmt::Debug for PortProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortProgram")
            .field("iface", &self.iface)
            .field("mode", &self.mode)
            .field("prog_id", &self.prog_id)
            .field("pin_dir", &self.pin_dir)
            .field("takeover", &self.takeover)
            .finish_non_exhaustive()
    }
}

fn map_err<'a>(iface: &'a str, what: &'static str) -> impl Fn(libbpf_rs::Error) -> XskError + 'a {
    move |e| XskError::Bpf {
        iface: iface.to_owned(),
        what,
        source: io::Error::other(e.to_string()),
    }
}

impl PortProgram {
    /// Takes ownership of `iface` and attaches our program to it,
    /// configured as `fp` (see the module docs for the takeover rules).
    pub fn attach(iface: &str, fp: &FastPath, o: &AttachOptions) -> Result<PortProgram, XskError> {
        Self::attach_sharing(iface, fp, o, None)
    }

    /// As [`attach`](Self::attach), with the SYN policer's budgets of
    /// `share` (another port's program): one global budget and one table of
    /// sources for the whole appliance. `None`: budgets of its own.
    pub fn attach_sharing(
        iface: &str,
        fp: &FastPath,
        o: &AttachOptions,
        share: Option<&PortProgram>,
    ) -> Result<PortProgram, XskError> {
        let ifindex = crate::afxdp::ifindex(iface)?;
        let bpf_err = |what| bpf_error(iface, what);
        let netns = netns_id().map_err(bpf_err("reading the network namespace"))?;
        // Ownership first: nothing is touched if another live mtugate has it.
        let lock = lock(&o.lock_dir, netns, iface, &o.owner)?;

        let mut private_bpffs = false;
        let pin_dir = if o.persist {
            private_bpffs = ensure_bpffs(&o.bpffs).map_err(bpf_err("mounting bpffs"))?;
            let d = o.bpffs.join("mtugate").join(netns.to_string()).join(iface);
            std::fs::create_dir_all(&d).map_err(bpf_err("creating the pin directory"))?;
            Some(d)
        } else {
            None
        };

        // A pinned link of ours on this interface, from a run that is gone.
        let mut old_link = None;
        if let Some(d) = &pin_dir {
            let p = d.join("link");
            if let Ok(fd) = obj_get(&p) {
                match xdp_link_info(fd.as_raw_fd()) {
                    Ok(Some((prog, idx))) if idx == ifindex => old_link = Some((fd, prog)),
                    // Defunct (its interface went away) or not ours: unpin.
                    _ => std::fs::remove_file(&p).map_err(bpf_err("removing a stale pin"))?,
                }
            }
        }
        let stats_pin = pin_dir.as_ref().map(|d| d.join("mtg_stats"));
        if let Some(p) = &stats_pin {
            // Counters of a link that no longer exists mean nothing, and a
            // counter map of another layout (an older mtugate) cannot be
            // reused: its inherited counts are lost with it.
            let reusable = old_link.is_some()
                && libbpf_rs::MapHandle::from_pinned_path(p)
                    .is_ok_and(|m| m.max_entries() == STAT_COUNT as u32);
            if !reusable {
                let _ = std::fs::remove_file(p);
            }
        }

        // Load a fresh program, reusing the pinned counters if any.
        let mut builder = ObjectBuilder::default();
        let mut open = builder
            .open_memory(OBJECT)
            .map_err(map_err(iface, "opening the XDP object"))?;
        for mut m in open.maps_mut() {
            let name = m.name().to_owned();
            if let (Some(p), true) = (&stats_pin, name == "mtg_stats") {
                m.set_pin_path(p)
                    .map_err(map_err(iface, "setting the counters' pin path"))?;
            }
            if let (Some(other), true) = (share, SHARED_MAPS.iter().any(|&n| name == n)) {
                let theirs = find_map(&other.obj, name.to_str().unwrap_or_default())?;
                m.reuse_fd(theirs.as_fd())
                    .map_err(map_err(iface, "sharing the appliance's maps between ports"))?;
            }
        }
        let obj = open
            .load()
            .map_err(map_err(iface, "loading the XDP program (verifier)"))?;
        let prog_fd = {
            let prog = obj
                .progs()
                .find(|p| p.name() == PROG_NAME)
                .ok_or_else(|| XskError::Config("the XDP object has no mtugate_xdp".into()))?;
            prog.as_fd().as_raw_fd()
        };
        let (prog_id, _) = prog_info(prog_fd).map_err(bpf_err("reading the program id"))?;

        // Configure before the program sees a frame.
        configure_obj(&obj, iface, fp)?;
        if share.is_none() {
            // Also when there is nothing to mirror: the smallest MTUs are
            // then written as "none", and no frame searches the tries (an
            // unwritten minimum, 0, sends every frame to them).
            RouteMtuTable::of(&obj, iface)?
                .install(&o.routes)
                .map_err(bpf_err("filling the route mirror"))?;
        }
        let baseline = stats_obj(&obj).map_err(bpf_err("reading the XDP counters"))?;

        let (link, takeover) = if let Some((fd, previous_prog_id)) = old_link {
            link_update(fd.as_raw_fd(), prog_fd).map_err(bpf_err("swapping the program in"))?;
            (fd, Takeover::PinnedLink { previous_prog_id })
        } else {
            let takeover = match remove_unlinked(iface, ifindex, o.replace_foreign)? {
                Some(r) => Takeover::Replaced(r),
                None => Takeover::Fresh,
            };
            let modes: &[u32] = match o.mode {
                AttachMode::Auto => &[XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE],
                AttachMode::Native => &[XDP_FLAGS_DRV_MODE],
                AttachMode::Generic => &[XDP_FLAGS_SKB_MODE],
            };
            let mut result = Err(io::Error::other("no attach mode"));
            for &m in modes {
                result = link_create(prog_fd, ifindex, m);
                if result.is_ok() {
                    break;
                }
            }
            let fd = result.map_err(bpf_err("attaching the XDP program"))?;
            if let Some(d) = &pin_dir {
                obj_pin(fd.as_raw_fd(), &d.join("link"))
                    .map_err(bpf_err("pinning the XDP link"))?;
            }
            (fd, takeover)
        };
        let q = query(ifindex).map_err(bpf_err("querying the attach mode"))?;
        let mode = if q.skb_prog_id == prog_id {
            XdpMode::Generic
        } else {
            XdpMode::Native
        };
        Ok(PortProgram {
            iface: iface.to_owned(),
            ifindex,
            mode,
            prog_id,
            obj,
            _link: link,
            pin_dir,
            takeover,
            baseline,
            private_bpffs,
            _lock: lock,
        })
    }

    /// Detaches the program of `iface` for good: takes the interface's lock
    /// (so a running owner is never cut off), removes the pinned link and
    /// its pins. Returns whether there was one.
    pub fn detach(iface: &str, o: &AttachOptions) -> Result<bool, XskError> {
        let bpf_err = |what| bpf_error(iface, what);
        let netns = netns_id().map_err(bpf_err("reading the network namespace"))?;
        let _lock = lock(&o.lock_dir, netns, iface, &o.owner)?;
        if !is_bpffs(&o.bpffs) {
            return Ok(false);
        }
        let d = o.bpffs.join("mtugate").join(netns.to_string()).join(iface);
        let p = d.join("link");
        let found = match obj_get(&p) {
            Ok(fd) => {
                // SAFETY: plain syscall wrapper on a link descriptor we own.
                let r = unsafe { sys::bpf_link_detach(fd.as_raw_fd()) };
                // A defunct link (interface gone) cannot be detached twice.
                if r < 0 && -r != libc::EINVAL {
                    return Err(bpf_err("detaching the XDP link")(
                        io::Error::from_raw_os_error(-r),
                    ));
                }
                true
            }
            Err(_) => false,
        };
        let _ = std::fs::remove_file(&p);
        let _ = std::fs::remove_file(d.join("mtg_stats"));
        let _ = std::fs::remove_dir(&d);
        Ok(found)
    }

    /// Detaches this program and removes its pins, for good (a start that
    /// failed after attaching a fresh program leaves nothing behind).
    pub fn remove(&self) -> Result<(), XskError> {
        // SAFETY: plain syscall wrapper on the link descriptor we own.
        let r = unsafe { sys::bpf_link_detach(self._link.as_raw_fd()) };
        if r < 0 && -r != libc::EINVAL {
            return Err(XskError::Bpf {
                iface: self.iface.clone(),
                what: "detaching the XDP link",
                source: io::Error::from_raw_os_error(-r),
            });
        }
        if let Some(d) = &self.pin_dir {
            let _ = std::fs::remove_file(d.join("link"));
            let _ = std::fs::remove_file(d.join("mtg_stats"));
            let _ = std::fs::remove_dir(d);
        }
        Ok(())
    }

    /// Applies `fp` (a reload: the egress MTU, the failure mode) with no
    /// loss: one map element written.
    pub fn configure(&self, fp: &FastPath) -> Result<(), XskError> {
        configure_obj(&self.obj, &self.iface, fp)
    }

    /// Router mode: the interfaces (by index) this port's program may
    /// forward to; a FIB result naming any other goes to the kernel.
    pub fn set_router_ports(&self, ifindexes: &[u32]) -> Result<(), XskError> {
        if ifindexes.len() > MAX_PORTS as usize {
            return Err(XskError::Config(format!(
                "{} ports: a router takes at most {MAX_PORTS}",
                ifindexes.len()
            )));
        }
        let map = find_map(&self.obj, "mtg_ports")?;
        for i in ifindexes {
            let k = i.to_ne_bytes();
            map.update(&k, &k, MapFlags::ANY)
                .map_err(map_err(&self.iface, "adding a port to the router's devmap"))?;
        }
        Ok(())
    }

    /// The appliance's route mirror (shared by every port's program).
    pub fn route_table(&self) -> Result<RouteMtuTable, XskError> {
        RouteMtuTable::of(&self.obj, &self.iface)
    }

    /// Steers RX queue `queue` of this port to the AF_XDP socket `fd`.
    pub fn register(&self, queue: u32, fd: RawFd) -> Result<(), XskError> {
        if queue >= MAX_QUEUES {
            return Err(XskError::Config(format!(
                "{}: queue {queue} is beyond the program's {MAX_QUEUES} queues",
                self.iface
            )));
        }
        let map = find_map(&self.obj, "mtg_xsks")?;
        map.update(
            &queue.to_ne_bytes(),
            &(fd as u32).to_ne_bytes(),
            MapFlags::ANY,
        )
        .map_err(map_err(&self.iface, "adding the socket to the XSKMAP"))
    }

    /// The program's counters since this process attached it.
    pub fn stats(&self) -> io::Result<XdpStats> {
        Ok(stats_obj(&self.obj)?.since(self.baseline))
    }

    /// What the program counted before this process took over (since the
    /// pinned link was created): frames bypassed or blocked while no
    /// mtugate ran. All zero after a fresh attach.
    pub fn inherited_stats(&self) -> XdpStats {
        self.baseline
    }

    /// Interface name.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// Interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Native or generic.
    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    /// Kernel id of the program.
    pub fn prog_id(&self) -> u32 {
        self.prog_id
    }

    /// How it was attached.
    pub fn takeover(&self) -> &Takeover {
        &self.takeover
    }

    /// Where the link is pinned, if it is.
    pub fn pin_dir(&self) -> Option<&Path> {
        self.pin_dir.as_deref()
    }

    /// The bpffs was mounted by this process in a private mount namespace:
    /// the pin, and with it the failure mode, ends with the process.
    pub fn pin_is_private(&self) -> bool {
        self.private_bpffs
    }
}

/// A route's destination prefix, as a key of the route mirror.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RoutePrefix {
    /// IPv4 network (address, prefix length).
    V4([u8; 4], u8),
    /// IPv6 network.
    V6([u8; 16], u8),
}

impl RoutePrefix {
    /// The prefix with its host bits cleared (prefix lengths beyond the
    /// address are cut to its size).
    pub fn new_v4(addr: [u8; 4], len: u8) -> RoutePrefix {
        let len = len.min(32);
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        RoutePrefix::V4((u32::from_be_bytes(addr) & mask).to_be_bytes(), len)
    }

    /// As [`new_v4`](Self::new_v4), for IPv6.
    pub fn new_v6(addr: [u8; 16], len: u8) -> RoutePrefix {
        let len = len.min(128);
        let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
        RoutePrefix::V6((u128::from_be_bytes(addr) & mask).to_be_bytes(), len)
    }

    /// Whether `other` lies within this prefix and is longer.
    pub fn strictly_covers(&self, other: &RoutePrefix) -> bool {
        match (*self, *other) {
            (RoutePrefix::V4(a, l), RoutePrefix::V4(b, m)) if l < m => {
                RoutePrefix::new_v4(b, l) == RoutePrefix::V4(a, l)
            }
            (RoutePrefix::V6(a, l), RoutePrefix::V6(b, m)) if l < m => {
                RoutePrefix::new_v6(b, l) == RoutePrefix::V6(a, l)
            }
            _ => false,
        }
    }

    /// IPv6.
    pub fn is_v6(&self) -> bool {
        matches!(self, RoutePrefix::V6(..))
    }

    /// `struct mtg_lpm4` / `struct mtg_lpm6`.
    fn key(&self) -> Vec<u8> {
        let (addr, len): (&[u8], u8) = match self {
            RoutePrefix::V4(a, l) => (a, *l),
            RoutePrefix::V6(a, l) => (a, *l),
        };
        let mut k = u32::from(len).to_ne_bytes().to_vec();
        k.extend_from_slice(addr);
        k
    }
}

impl std::fmt::Display for RoutePrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RoutePrefix::V4(a, l) => write!(f, "{}/{l}", std::net::Ipv4Addr::from(*a)),
            RoutePrefix::V6(a, l) => write!(f, "{}/{l}", std::net::Ipv6Addr::from(*a)),
        }
    }
}

/// What the mirror holds of a route (`struct mtg_route_mtu`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RouteMetrics {
    /// Its egress interface; 0: several (multipath) or unknown.
    pub oif: u32,
    /// Its `mtu` metric; 0: none (the device's MTU stands).
    pub mtu: u16,
    /// Its `advmss` metric; 0: none.
    pub advmss: u16,
}

impl RouteMetrics {
    fn value(&self) -> [u8; 8] {
        let mut v = [0u8; 8];
        v[..4].copy_from_slice(&self.oif.to_ne_bytes());
        v[4..6].copy_from_slice(&self.mtu.to_ne_bytes());
        v[6..].copy_from_slice(&self.advmss.to_ne_bytes());
        v
    }
}

/// The appliance's route mirror in the XDP stage: the tries of route
/// metrics and the smallest MTU of each family (frames up to it skip the
/// lookup). Its own descriptors: it can live on another thread than the
/// programs.
#[derive(Debug)]
pub struct RouteMtuTable {
    v4: libbpf_rs::MapHandle,
    v6: libbpf_rs::MapHandle,
    min: libbpf_rs::MapHandle,
    iface: String,
}

/// The smallest route MTU of each family among `entries` (65535: none).
pub fn smallest_route_mtus<'a>(
    entries: impl IntoIterator<Item = (&'a RoutePrefix, &'a RouteMetrics)>,
) -> [u16; 2] {
    let mut min = [u16::MAX; 2];
    for (p, m) in entries {
        let f = usize::from(p.is_v6());
        if m.mtu != 0 {
            min[f] = min[f].min(m.mtu);
        }
    }
    min
}

impl RouteMtuTable {
    fn of(obj: &Object, iface: &str) -> Result<RouteMtuTable, XskError> {
        let handle = |name: &str| -> Result<libbpf_rs::MapHandle, XskError> {
            libbpf_rs::MapHandle::try_from(&find_map(obj, name)?)
                .map_err(map_err(iface, "opening the route mirror"))
        };
        Ok(RouteMtuTable {
            v4: handle("mtg_rmtu4")?,
            v6: handle("mtg_rmtu6")?,
            min: handle("mtg_rmtu_min")?,
            iface: iface.to_owned(),
        })
    }

    fn trie(&self, p: &RoutePrefix) -> &libbpf_rs::MapHandle {
        if p.is_v6() {
            &self.v6
        } else {
            &self.v4
        }
    }

    fn write_min(&self, min: [u16; 2]) -> io::Result<()> {
        for (f, m) in min.iter().enumerate() {
            self.min
                .update(
                    &(f as u32).to_ne_bytes(),
                    &u32::from(*m).to_ne_bytes(),
                    MapFlags::ANY,
                )
                .map_err(|e| io::Error::other(e.to_string()))?;
        }
        Ok(())
    }

    fn read_min(&self) -> io::Result<[u16; 2]> {
        let mut out = [0u16; 2];
        for (f, o) in out.iter_mut().enumerate() {
            let v = self
                .min
                .lookup(&(f as u32).to_ne_bytes(), MapFlags::ANY)
                .map_err(|e| io::Error::other(e.to_string()))?
                .unwrap_or_default();
            let mut b = [0u8; 4];
            b.copy_from_slice(v.get(..4).unwrap_or(&[0; 4]));
            *o = u16::try_from(u32::from_ne_bytes(b)).unwrap_or(u16::MAX);
        }
        Ok(out)
    }

    /// Writes `entries` into empty tries (a fresh program's).
    pub fn install(&self, entries: &[(RoutePrefix, RouteMetrics)]) -> io::Result<()> {
        self.update(
            entries,
            &[],
            smallest_route_mtus(entries.iter().map(|(p, m)| (p, m))),
        )
    }

    /// Sets `set`, removes `remove`, and records `min` as the tries'
    /// smallest MTUs (what [`smallest_route_mtus`] gives for their new
    /// content). A lower minimum is written first and a higher one last, so
    /// no frame skips a lookup it needs while the tries change.
    pub fn update(
        &self,
        set: &[(RoutePrefix, RouteMetrics)],
        remove: &[RoutePrefix],
        min: [u16; 2],
    ) -> io::Result<()> {
        let old = self.read_min()?;
        // 0 is "not written yet" (every frame looks): never kept as lower.
        let lower = [0, 1].map(|f| {
            if old[f] == 0 {
                min[f]
            } else {
                old[f].min(min[f])
            }
        });
        if lower != old {
            self.write_min(lower)?;
        }
        for (p, m) in set {
            self.trie(p)
                .update(&p.key(), &m.value(), MapFlags::ANY)
                .map_err(|e| io::Error::other(format!("{}: route {p}: {e}", self.iface)))?;
        }
        for p in remove {
            match self.trie(p).delete(&p.key()) {
                // Already gone is fine: the mirror only wants it absent.
                Err(e) if e.kind() != libbpf_rs::ErrorKind::NotFound => {
                    return Err(io::Error::other(format!(
                        "{}: removing route {p}: {e}",
                        self.iface
                    )));
                }
                _ => {}
            }
        }
        if min != lower {
            self.write_min(min)?;
        }
        Ok(())
    }
}

fn find_map<'a>(obj: &'a Object, name: &str) -> Result<libbpf_rs::Map<'a>, XskError> {
    obj.maps()
        .find(|m| m.name() == name)
        .ok_or_else(|| XskError::Config(format!("the XDP object has no map {name}")))
}

/// Writes the program's configuration (and egress port) into its maps.
fn configure_obj(obj: &Object, iface: &str, fp: &FastPath) -> Result<(), XskError> {
    let zero = 0u32.to_ne_bytes();
    let bytes = fp.raw().to_bytes();
    if let Some((ifindex, _)) = fp.egress {
        // The egress first: the configuration that uses it comes after.
        find_map(obj, "mtg_egress")?
            .update(&zero, &ifindex.to_ne_bytes(), MapFlags::ANY)
            .map_err(map_err(iface, "setting the egress port"))?;
    }
    find_map(obj, "mtg_cfg")?
        .update(&zero, &bytes, MapFlags::ANY)
        .map_err(map_err(iface, "writing the program's configuration"))
}

/// The program's counters, summed over CPUs.
fn stats_obj(obj: &Object) -> io::Result<XdpStats> {
    let map = find_map(obj, "mtg_stats").map_err(|e| io::Error::other(e.to_string()))?;
    let mut sum = [0u64; STAT_COUNT];
    for (i, s) in sum.iter_mut().enumerate() {
        let per_cpu = map
            .lookup_percpu(&(i as u32).to_ne_bytes(), MapFlags::ANY)
            .map_err(|e| io::Error::other(e.to_string()))?
            .unwrap_or_default();
        for v in per_cpu {
            let mut b = [0u8; 8];
            b.copy_from_slice(&v[..8]);
            *s = s.wrapping_add(u64::from_ne_bytes(b));
        }
    }
    Ok(XdpStats::from_array(sum))
}

/// Detaches a program attached to `ifindex` without a link: ours from an
/// older mtugate (its owner is dead: we hold the lock), or a foreign one if
/// allowed.
fn remove_unlinked(
    iface: &str,
    ifindex: u32,
    replace_foreign: bool,
) -> Result<Option<ReplacedProgram>, XskError> {
    let bpf_err = |what| bpf_error(iface, what);
    let q = query(ifindex).map_err(bpf_err("querying attached XDP programs"))?;
    let mut replaced = None;
    for (id, flag) in [
        (q.drv_prog_id, XDP_FLAGS_DRV_MODE),
        (q.skb_prog_id, XDP_FLAGS_SKB_MODE),
        (q.hw_prog_id, XDP_FLAGS_HW_MODE),
    ] {
        if id == 0 {
            continue;
        }
        let fd = prog_fd_by_id(id).map_err(bpf_err("opening an attached XDP program"))?;
        let (_, name) =
            prog_info(fd.as_raw_fd()).map_err(bpf_err("inspecting an attached XDP program"))?;
        let foreign = name != PROG_NAME && name != LEGACY_PROG_NAME;
        if foreign && (!replace_foreign || flag == XDP_FLAGS_HW_MODE) {
            return Err(XskError::ForeignProgram {
                iface: iface.to_owned(),
                id,
                name,
            });
        }
        // Fails with EBUSY-like errors when the program is held by a link
        // we could not open: then it is not ours to remove.
        detach_legacy(ifindex, flag, &fd).map_err(bpf_err("detaching a stale XDP program"))?;
        replaced = Some(ReplacedProgram {
            iface: iface.to_owned(),
            id,
            name,
            foreign,
        });
    }
    Ok(replaced)
}

/// Runs the XDP program `prog` on copies of `frame`, `repeat` times, in
/// live-frames mode (`BPF_PROG_TEST_RUN` with `BPF_F_TEST_XDP_LIVE_FRAMES`,
/// Linux 5.18+): the kernel acts on the program's verdict (a redirect
/// transmits the frame), as on a frame a driver received. `batch` frames
/// per round (1..=256), which is also the size of the run's page pool.
/// The mtugate-perf generator `livegen`; libbpf-rs's `test_run` cannot set
/// the batch size.
///
/// A pending signal ends the run early with `ErrorKind::Interrupted`.
pub fn xdp_test_run_live(
    prog: std::os::fd::BorrowedFd<'_>,
    frame: &[u8],
    repeat: u32,
    batch: u32,
) -> io::Result<()> {
    /// `BPF_F_TEST_XDP_LIVE_FRAMES` (include/uapi/linux/bpf.h).
    const LIVE_FRAMES: u32 = 1 << 1;
    let len =
        u32::try_from(frame.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let repeat = i32::try_from(repeat).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `bpf_test_run_opts` is plain old data; all zeroes is valid
    // (no output buffers, no context), and the fields set below are in
    // range.
    let mut opts: sys::bpf_test_run_opts = unsafe { std::mem::zeroed() };
    opts.sz = size_of::<sys::bpf_test_run_opts>();
    opts.data_in = frame.as_ptr().cast();
    opts.data_size_in = len;
    opts.repeat = repeat;
    opts.flags = LIVE_FRAMES;
    opts.batch_size = batch;
    // SAFETY: `opts` is initialised and outlives the call; `data_in`
    // points at `len` readable bytes the kernel only reads; with no
    // `data_out` or `ctx_out` the kernel writes nothing back but the
    // scalar fields of `opts`.
    check(unsafe { sys::bpf_prog_test_run_opts(prog.as_raw_fd(), &mut opts) }).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Rust mirror of `bpf/mtugate.h` agrees with it.
    #[test]
    fn header_and_mirror_agree() {
        let h =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/bpf/mtugate.h")).unwrap();
        let def = |name: &str| -> u64 {
            let line = h
                .lines()
                .find(|l| l.starts_with(&format!("#define {name} ")))
                .unwrap_or_else(|| panic!("{name} not in mtugate.h"));
            line.split_whitespace().nth(2).unwrap().parse().unwrap()
        };
        assert_eq!(def("MTG_MAX_QUEUES"), u64::from(MAX_QUEUES));
        assert_eq!(def("MTG_STEER_EXCEPTIONS"), u64::from(STEER_EXCEPTIONS));
        assert_eq!(def("MTG_STEER_ALL"), u64::from(STEER_ALL));
        assert_eq!(def("MTG_FAIL_BYPASS"), u64::from(FAIL_BYPASS));
        assert_eq!(def("MTG_FAIL_BLOCK"), u64::from(FAIL_BLOCK));
        assert_eq!(def("MTG_FLAG_EGRESS"), u64::from(FLAG_EGRESS));
        assert_eq!(def("MTG_FLAG_CLAMP4"), u64::from(FLAG_CLAMP4));
        assert_eq!(def("MTG_FLAG_CLAMP6"), u64::from(FLAG_CLAMP6));
        assert_eq!(def("MTG_FLAG_POLICE"), u64::from(FLAG_POLICE));
        assert_eq!(def("MTG_FLAG_PMTU_ERRORS"), u64::from(FLAG_PMTU_ERRORS));
        assert_eq!(def("MTG_FLAG_ROUTER"), u64::from(FLAG_ROUTER));
        assert_eq!(def("MTG_FLAG_FRAG_KERNEL"), u64::from(FLAG_FRAG_KERNEL));
        assert_eq!(def("MTG_MAX_PORTS"), u64::from(MAX_PORTS));
        assert_eq!(def("MTG_OVER_DROP"), u64::from(OVER_DROP));
        assert_eq!(def("MTG_OVER_PASS"), u64::from(OVER_PASS));
        assert_eq!(def("MTG_SRC_ENTRIES"), u64::from(SRC_ENTRIES));
        assert_eq!(def("MTG_ROUTE_ENTRIES"), u64::from(ROUTE_ENTRIES));
        assert_eq!(def("MTG_STAT_COUNT"), STAT_COUNT as u64);
        for (i, n) in [
            "MTG_STAT_SEEN",
            "MTG_STAT_FAST",
            "MTG_STAT_STEERED",
            "MTG_STAT_BYPASSED",
            "MTG_STAT_BLOCKED",
            "MTG_STAT_REDIRECT_ERR",
            "MTG_STAT_PASSED",
            "MTG_STAT_SYN_SOURCE",
            "MTG_STAT_SYN_OVER_DROP",
            "MTG_STAT_SYN_OVER_PASS",
            "MTG_STAT_SYN_GRANTED",
            "MTG_STAT_TO_KERNEL",
            "MTG_STAT_NO_ROUTE",
            "MTG_STAT_FRAG_KERNEL",
        ]
        .iter()
        .enumerate()
        {
            assert_eq!(def(n), i as u64, "{n}");
        }
        // struct mtg_cfg: u32 flags, u16 egress_mtu, u8 steer, u8 on_failure.
        let s = &h[h.find("struct mtg_cfg {").unwrap()..];
        let body = &s[..s.find("};").unwrap()];
        let fields: Vec<&str> = body
            .lines()
            .skip(1)
            .filter_map(|l| l.split(';').next())
            .map(|l| l.split_whitespace().last().unwrap_or(""))
            .filter(|f| !f.is_empty())
            .collect();
        assert_eq!(
            fields,
            [
                "flags",
                "egress_mtu",
                "steer",
                "on_failure",
                "syn_over",
                "pad[7]",
                "global_interval",
                "global_tolerance",
                "source_interval",
                "source_tolerance"
            ]
        );
    }

    #[test]
    fn the_object_is_embedded_and_has_our_program() {
        assert!(OBJECT.starts_with(b"\x7fELF"));
        let needle = PROG_NAME.as_bytes();
        assert!(OBJECT.windows(needle.len()).any(|w| w == needle));
    }

    #[test]
    fn stats_arithmetic() {
        let a = XdpStats {
            seen: 10,
            fast: 6,
            steered: 3,
            bypassed: 1,
            ..XdpStats::default()
        };
        assert!(a.balanced());
        let b = XdpStats {
            seen: 4,
            fast: 4,
            ..XdpStats::default()
        };
        let d = a.since(b);
        assert_eq!((d.seen, d.fast, d.steered), (6, 2, 3));
        let mut s = a;
        s.add(&b);
        assert_eq!(s.seen, 14);
        assert!(!XdpStats {
            seen: 1,
            ..XdpStats::default()
        }
        .balanced());
    }

    #[test]
    fn raw_config() {
        let fp = FastPath {
            steer: Steer::Exceptions,
            on_failure: OnFailure::Block,
            egress: Some((7, 1400)),
            syn: SynPolice {
                clamp: [true, false],
                enabled: true,
                global: Some((3, 10)),
                per_source: Some((1000, 1)),
                over_pass: true,
            },
            pmtu_errors: true,
            router: false,
            frag_kernel: true,
        };
        assert_eq!(
            fp.raw(),
            RawCfg {
                flags: FLAG_EGRESS | FLAG_CLAMP4 | FLAG_POLICE | FLAG_PMTU_ERRORS,
                egress_mtu: 1400,
                steer: STEER_EXCEPTIONS,
                on_failure: FAIL_BLOCK,
                syn_over: OVER_PASS,
                pad: [0; 7],
                // 3/s: 333 333 334 ns a token (rounded up: never more than
                // the rate), 9 more tokens of burst.
                global_interval: 333_333_334,
                global_tolerance: 9 * 333_333_334,
                source_interval: 1_000_000,
                source_tolerance: 0,
            }
        );
        let b = fp.raw().to_bytes();
        assert_eq!(&b[16..24], &333_333_334u64.to_ne_bytes());
        assert_eq!(b[8], OVER_PASS);
        assert_eq!(FastPath::SOCKET_ONLY.raw().flags, 0);
        let router = FastPath {
            router: true,
            egress: None,
            ..fp
        };
        // The kernel fragments only in router mode (in wire mode it is no
        // router: frag_kernel is ignored, as above).
        assert_eq!(
            router.raw().flags,
            FLAG_ROUTER | FLAG_CLAMP4 | FLAG_POLICE | FLAG_PMTU_ERRORS | FLAG_FRAG_KERNEL
        );
        assert_eq!(gcra(None), (0, 0));
        assert_eq!(gcra(Some((0, 5))), (u64::MAX, 0));
    }

    #[test]
    fn route_prefixes_are_masked_and_nest() {
        let p = RoutePrefix::new_v4([10, 8, 3, 7], 16);
        assert_eq!(p, RoutePrefix::V4([10, 8, 0, 0], 16));
        assert_eq!(p.to_string(), "10.8.0.0/16");
        assert_eq!(
            RoutePrefix::new_v4([1, 2, 3, 4], 0),
            RoutePrefix::V4([0; 4], 0)
        );
        assert_eq!(
            RoutePrefix::new_v4([1, 2, 3, 4], 40),
            RoutePrefix::V4([1, 2, 3, 4], 32)
        );
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        a[15] = 1;
        let six = RoutePrefix::new_v6(a, 32);
        assert_eq!(six.to_string(), "2001:db8::/32");
        assert!(six.strictly_covers(&RoutePrefix::new_v6(a, 64)));
        assert!(!six.strictly_covers(&six));
        assert!(!six.strictly_covers(&p));
        assert!(p.strictly_covers(&RoutePrefix::new_v4([10, 8, 1, 0], 24)));
        assert!(!p.strictly_covers(&RoutePrefix::new_v4([10, 9, 1, 0], 24)));
        assert!(!p.strictly_covers(&RoutePrefix::new_v4([10, 0, 0, 0], 8)));
        assert!(RoutePrefix::new_v4([0; 4], 0).strictly_covers(&p));
        // struct mtg_lpm4: the prefix length (host order), then the address.
        let mut k = 16u32.to_ne_bytes().to_vec();
        k.extend_from_slice(&[10, 8, 0, 0]);
        assert_eq!(p.key(), k);
        assert_eq!(six.key().len(), 20);
        let m = RouteMetrics {
            oif: 3,
            mtu: 1400,
            advmss: 1300,
        };
        let mut v = 3u32.to_ne_bytes().to_vec();
        v.extend_from_slice(&1400u16.to_ne_bytes());
        v.extend_from_slice(&1300u16.to_ne_bytes());
        assert_eq!(m.value().to_vec(), v);
        let hole = RouteMetrics::default();
        let entries = [
            (p, m),
            (RoutePrefix::new_v4([10, 8, 1, 0], 24), hole),
            (six, hole),
        ];
        assert_eq!(
            smallest_route_mtus(entries.iter().map(|(p, m)| (p, m))),
            [1400, u16::MAX]
        );
    }
}
