//! The XDP program that steers each RX queue of a port into its AF_XDP
//! socket, and its lifecycle.
//!
//! mtugate does not let libxdp load its default program (the sockets are
//! created with `XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD`). libxdp's way has two
//! problems for an appliance:
//!
//! - it keeps a reference count of the sockets using the program in the
//!   program's own `.bss`; a process that is killed never decrements it, so
//!   the next run finds the program, reuses it, counts itself on top of the
//!   stale count, and never detaches it on exit either;
//! - with its dispatcher (the default) it needs bpffs, which `ip netns exec`
//!   does not mount (`LIBXDP_SKIP_DISPATCHER=1` works around that).
//!
//! Instead this module loads its own program, six instructions named
//! `mtugate_xsk`:
//!
//! ```text
//! r2 = *(u32 *)(r1 + 16)        ; ctx->rx_queue_index
//! r1 = map_fd ll                ; the port's XSKMAP
//! r3 = XDP_PASS                 ; fallback action when the slot is empty
//! call bpf_redirect_map
//! exit
//! ```
//!
//! attaches it as the only program of the interface (no dispatcher, no
//! bpffs), and keeps one attachment per interface per process, shared by all
//! the queues of that process and detached when the last one is dropped.
//!
//! A program still attached when the first queue of a process opens an
//! interface is stale by definition (mtugate owns its ports): if it is named
//! `mtugate_xsk` it was left by a run that was killed before it could detach,
//! and it is detached and replaced, so programs never pile up. Anything else
//! is foreign and reported as an error unless
//! [`XskConfig::replace_foreign_program`](crate::XskConfig) is set. Until a
//! socket is in the map, frames fall back to `XDP_PASS` (the kernel stack).
//!
//! Detaching is `ip link set dev X xdp off` (a netlink `IFLA_XDP` with fd -1),
//! issued with `XDP_FLAGS_REPLACE` and our program's fd so that it can never
//! remove a program someone else attached in the meantime.

use std::{
    ffi::CStr,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    ptr,
    sync::{Arc, Mutex, PoisonError, Weak},
};

use libxdp_sys as sys;

use crate::{AttachMode, XskError};

/// Name of our XDP program as the kernel reports it (at most 15 bytes).
pub(crate) const PROG_NAME: &str = "mtugate_xsk";
const PROG_NAME_C: &CStr = c"mtugate_xsk";
const MAP_NAME_C: &CStr = c"mtugate_xsks";
const LICENSE_C: &CStr = c"Dual MIT/GPL";

// include/uapi/linux/if_link.h
const XDP_FLAGS_UPDATE_IF_NOEXIST: u32 = 1 << 0;
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const XDP_FLAGS_HW_MODE: u32 = 1 << 3;
const XDP_FLAGS_REPLACE: u32 = 1 << 4;

/// The attach mode obtained on a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// Driver (native) XDP.
    Native,
    /// Generic (skb) XDP.
    Generic,
}

impl XdpMode {
    fn flag(self) -> u32 {
        match self {
            XdpMode::Native => XDP_FLAGS_DRV_MODE,
            XdpMode::Generic => XDP_FLAGS_SKB_MODE,
        }
    }
}

/// An XDP program found attached to a port and detached by
/// [`XdpBackend::open`](crate::XdpBackend::open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplacedProgram {
    /// Interface name.
    pub iface: String,
    /// Kernel program id.
    pub id: u32,
    /// Kernel program name (`mtugate_xsk` for a run that was killed).
    pub name: String,
    /// `true` when it was not mtugate's own program.
    pub foreign: bool,
}

/// One BPF instruction, laid out as `struct bpf_insn`.
#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const _: () = assert!(size_of::<Insn>() == size_of::<sys::bpf_insn>());

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        // `dst_reg:4, src_reg:4` bit-field: dst in the low nibble on little
        // endian targets, in the high nibble on big endian ones.
        #[cfg(target_endian = "little")]
        let regs = (src << 4) | (dst & 0x0f);
        #[cfg(target_endian = "big")]
        let regs = (dst << 4) | (src & 0x0f);
        Self {
            code,
            regs,
            off,
            imm,
        }
    }
}

/// The program, with `map_fd` as its XSKMAP.
fn program(map_fd: RawFd) -> [Insn; 6] {
    const BPF_LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
    const BPF_LD_IMM_DW: u8 = 0x18; // BPF_LD | BPF_IMM | BPF_DW
    const BPF_MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
    const BPF_CALL: u8 = 0x85; // BPF_JMP | BPF_CALL
    const BPF_EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT
    const BPF_PSEUDO_MAP_FD: u8 = 1;
    const RX_QUEUE_INDEX: i16 = 16; // offsetof(struct xdp_md, rx_queue_index)
    const FUNC_REDIRECT_MAP: i32 = 51; // BPF_FUNC_redirect_map
    [
        Insn::new(BPF_LDX_MEM_W, 2, 1, RX_QUEUE_INDEX, 0),
        Insn::new(BPF_LD_IMM_DW, 1, BPF_PSEUDO_MAP_FD, 0, map_fd),
        Insn::new(0, 0, 0, 0, 0),
        Insn::new(BPF_MOV64_K, 3, 0, 0, sys::xdp_action_XDP_PASS as i32),
        Insn::new(BPF_CALL, 0, 0, 0, FUNC_REDIRECT_MAP),
        Insn::new(BPF_EXIT, 0, 0, 0, 0),
    ]
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

fn prog_info(fd: &OwnedFd) -> io::Result<(u32, String)> {
    // SAFETY: `bpf_prog_info` is plain old data; all zeroes is valid.
    let mut info: sys::bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut len = size_of::<sys::bpf_prog_info>() as u32;
    // SAFETY: `info` and `len` are valid for writes and `len` is the size of
    // `info`, so the kernel writes at most that many bytes.
    check(unsafe { sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) })?;
    let name: Vec<u8> = info
        .name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok((info.id, String::from_utf8_lossy(&name).into_owned()))
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
        offset_of!(XdpQueryOpts, hw_prog_id) == offset_of!(sys::bpf_xdp_query_opts, hw_prog_id)
    );
    assert!(
        offset_of!(XdpQueryOpts, skb_prog_id) == offset_of!(sys::bpf_xdp_query_opts, skb_prog_id)
    );
    assert!(
        offset_of!(XdpQueryOpts, feature_flags)
            == offset_of!(sys::bpf_xdp_query_opts, feature_flags)
    );
    assert!(
        offset_of!(XdpQueryOpts, xdp_zc_max_segs)
            == offset_of!(sys::bpf_xdp_query_opts, xdp_zc_max_segs)
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

/// Detaches the program `prog` (attached in mode `mode_flag`) from
/// `ifindex`, only if it is still the one attached.
fn detach(ifindex: u32, mode_flag: u32, prog: &OwnedFd) -> io::Result<()> {
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

/// Number of RX queues of `iface` from sysfs (of the caller's network
/// namespace), if it can be read.
fn rx_queue_count(iface: &str) -> Option<u32> {
    let dir = std::fs::read_dir(format!("/sys/class/net/{iface}/queues")).ok()?;
    let n = dir
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
        .count();
    u32::try_from(n).ok().filter(|&n| n > 0)
}

/// Our program attached to one interface, shared by the queues of this
/// process. Detached when the last one is dropped.
#[derive(Debug)]
pub(crate) struct Attached {
    iface: String,
    ifindex: u32,
    mode: XdpMode,
    map_entries: u32,
    prog_id: u32,
    prog: OwnedFd,
    map: OwnedFd,
}

impl Attached {
    pub(crate) fn mode(&self) -> XdpMode {
        self.mode
    }

    pub(crate) fn prog_id(&self) -> u32 {
        self.prog_id
    }

    /// Steers RX queue `queue_id` of this interface to socket `xsk_fd`.
    pub(crate) fn register(&self, queue_id: u32, xsk_fd: RawFd) -> Result<(), XskError> {
        let (key, value) = (queue_id, xsk_fd);
        // SAFETY: key and value are 4-byte integers, matching the XSKMAP's
        // key and value sizes, and live across the call.
        check(unsafe {
            sys::bpf_map_update_elem(
                self.map.as_raw_fd(),
                ptr::from_ref(&key).cast(),
                ptr::from_ref(&value).cast(),
                u64::from(sys::BPF_ANY),
            )
        })
        .map_err(|source| XskError::Bpf {
            iface: self.iface.clone(),
            what: "adding the socket to the XSKMAP",
            source,
        })?;
        Ok(())
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        // Serialise with `acquire` so that a concurrent open of the same
        // interface sees either our program or none.
        let _registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
        // Fails harmlessly (EEXIST) when our program is no longer the one
        // attached; nothing else to do about it in a destructor.
        let _ = detach(self.ifindex, self.mode.flag(), &self.prog);
    }
}

/// Interfaces (by ifindex) on which this process has our program attached.
static REGISTRY: Mutex<Vec<(u32, Weak<Attached>)>> = Mutex::new(Vec::new());

/// Returns this process's attachment on `iface`, attaching our program first
/// if there is none (after removing a stale program, see the module docs).
pub(crate) fn acquire(
    iface: &str,
    ifindex: u32,
    queue_id: u32,
    mode: AttachMode,
    replace_foreign: bool,
    replaced: &mut Vec<ReplacedProgram>,
) -> Result<Arc<Attached>, XskError> {
    let mut registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    registry.retain(|(_, w)| w.strong_count() > 0);
    if let Some(att) = registry
        .iter()
        .find(|(i, _)| *i == ifindex)
        .and_then(|(_, w)| w.upgrade())
    {
        // Not dropping an `Arc` under the lock: `Attached::drop` takes it.
        drop(registry);
        if queue_id >= att.map_entries {
            return Err(XskError::Config(format!(
                "{iface}: queue {queue_id} is beyond the {} entries of the XSKMAP attached at start",
                att.map_entries
            )));
        }
        return Ok(att);
    }

    let bpf_err = |what: &'static str| {
        let iface = iface.to_owned();
        move |source| XskError::Bpf {
            iface,
            what,
            source,
        }
    };

    remove_stale(iface, ifindex, replace_foreign, replaced)?;

    let map_entries = rx_queue_count(iface).unwrap_or(64).max(queue_id + 1);
    // SAFETY: the name is a NUL-terminated string; a null opts pointer
    // means defaults.
    let map = owned(unsafe {
        sys::bpf_map_create(
            sys::bpf_map_type_BPF_MAP_TYPE_XSKMAP,
            MAP_NAME_C.as_ptr(),
            4,
            4,
            map_entries,
            ptr::null(),
        )
    })
    .map_err(bpf_err("creating the XSKMAP"))?;

    let insns = program(map.as_raw_fd());
    // SAFETY: `Insn` has the size and layout of `struct bpf_insn` (checked
    // at compile time above); the instructions, name and license outlive the
    // call; a null opts pointer means defaults.
    let prog = owned(unsafe {
        sys::bpf_prog_load(
            sys::bpf_prog_type_BPF_PROG_TYPE_XDP,
            PROG_NAME_C.as_ptr(),
            LICENSE_C.as_ptr(),
            insns.as_ptr().cast::<sys::bpf_insn>(),
            insns.len(),
            ptr::null_mut(),
        )
    })
    .map_err(bpf_err("loading the XDP program"))?;
    let (prog_id, _) = prog_info(&prog).map_err(bpf_err("reading the program id"))?;

    let candidates: &[XdpMode] = match mode {
        AttachMode::Auto => &[XdpMode::Native, XdpMode::Generic],
        AttachMode::Native => &[XdpMode::Native],
        AttachMode::Generic => &[XdpMode::Generic],
    };
    let mut last = None;
    let mut obtained = None;
    for &m in candidates {
        // SAFETY: plain syscall wrapper; a null opts pointer means defaults.
        let ret = unsafe {
            sys::bpf_xdp_attach(
                ifindex as i32,
                prog.as_raw_fd(),
                XDP_FLAGS_UPDATE_IF_NOEXIST | m.flag(),
                ptr::null(),
            )
        };
        match check(ret) {
            Ok(_) => {
                obtained = Some(m);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let Some(mode) = obtained else {
        return Err(bpf_err("attaching the XDP program")(
            last.unwrap_or_else(|| io::Error::other("no attach mode")),
        ));
    };

    let att = Arc::new(Attached {
        iface: iface.to_owned(),
        ifindex,
        mode,
        map_entries,
        prog_id,
        prog,
        map,
    });
    registry.push((ifindex, Arc::downgrade(&att)));
    Ok(att)
}

/// Detaches whatever XDP program is attached to `ifindex` (see the module
/// docs for when that is allowed).
fn remove_stale(
    iface: &str,
    ifindex: u32,
    replace_foreign: bool,
    replaced: &mut Vec<ReplacedProgram>,
) -> Result<(), XskError> {
    let bpf_err = |what: &'static str| {
        let iface = iface.to_owned();
        move |source| XskError::Bpf {
            iface,
            what,
            source,
        }
    };
    let q = query(ifindex).map_err(bpf_err("querying attached XDP programs"))?;
    for (id, flag) in [
        (q.drv_prog_id, XDP_FLAGS_DRV_MODE),
        (q.skb_prog_id, XDP_FLAGS_SKB_MODE),
        (q.hw_prog_id, XDP_FLAGS_HW_MODE),
    ] {
        if id == 0 {
            continue;
        }
        let fd = prog_fd_by_id(id).map_err(bpf_err("opening an attached XDP program"))?;
        let (_, name) = prog_info(&fd).map_err(bpf_err("inspecting an attached XDP program"))?;
        let foreign = name != PROG_NAME;
        if foreign && (!replace_foreign || flag == XDP_FLAGS_HW_MODE) {
            return Err(XskError::ForeignProgram {
                iface: iface.to_owned(),
                id,
                name,
            });
        }
        detach(ifindex, flag, &fd).map_err(bpf_err("detaching a stale XDP program"))?;
        replaced.push(ReplacedProgram {
            iface: iface.to_owned(),
            id,
            name,
            foreign,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_encoding() {
        let p = program(7);
        // SAFETY: `Insn` is 8 plain bytes.
        let bytes: [u8; 48] = unsafe { std::mem::transmute(p) };
        #[cfg(target_endian = "little")]
        assert_eq!(
            bytes,
            [
                0x61, 0x12, 16, 0, 0, 0, 0, 0, // r2 = *(u32 *)(r1 + 16)
                0x18, 0x11, 0, 0, 7, 0, 0, 0, // r1 = map fd 7
                0, 0, 0, 0, 0, 0, 0, 0, //
                0xb7, 0x03, 0, 0, 2, 0, 0, 0, // r3 = XDP_PASS
                0x85, 0x00, 0, 0, 51, 0, 0, 0, // call redirect_map
                0x95, 0x00, 0, 0, 0, 0, 0, 0, // exit
            ]
        );
        let _ = bytes;
    }

    #[test]
    fn name_fits_the_kernel() {
        assert!(PROG_NAME.len() < 16);
        assert_eq!(PROG_NAME_C.to_str().unwrap(), PROG_NAME);
    }
}
