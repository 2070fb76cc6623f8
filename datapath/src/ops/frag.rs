//! The IPv4 fragmenter (RFC 791 §2.3 "Fragmentation", §3.2 "An Example
//! Fragmentation Procedure"), without allocation.
//!
//! The first fragment is the original frame, rewritten in place: its payload
//! already sits where it must, only the header changes (total length, flags,
//! checksum) and the frame is cut short. Fragments 2..n are written into free
//! frames handed out by an [`ExtraFrames`] (the AF_XDP layer's UMEM free list;
//! a `Vec` in tests), each starting with a copy of the original link-layer
//! header whose MAC addresses the caller may rewrite ([`MacRewrite`]: wire
//! mode keeps them, a router writes the next hop's). Their IPv4 header is
//! emitted from an [`ipv4::Repr`](Repr). The caller learns up front how many
//! frames it needs ([`fragment_count`]) and [`fragment_ipv4`] takes none when
//! too few are free.
//!
//! Both take the [`L3Ctx`] the pipeline parsed: where the IP packet starts
//! and ends in the frame. The header's fields are read once, into the
//! `Repr`; the header checksum is the caller's to verify (the pipeline does
//! before it fragments, so a corrupt header is never laundered into fresh
//! checksums).
//!
//! # What every fragment looks like
//!
//! - Payload per fragment: `(mtu − H) & !7`, where `H` is the header length of
//!   the *original* packet, for every fragment (RFC 791 §3.2 step (3),
//!   `NFB <- (MTU-IHL*4)/8`); the last one takes the rest.
//! - Identification, TOS, TTL, protocol and addresses: as in the original.
//! - Flags/offset: offsets continue from the original's own offset (a packet
//!   that is already a fragment is fragmented again, RFC 791 §3.2 "FO <- OFO +
//!   NFB"); MF is set on every fragment but the last, and on the last only if
//!   the original had it (`MF <- OMF`); DF is cleared (whether a DF packet may be
//!   fragmented at all is the pipeline's policy decision, VECTORS F3: by
//!   default it is refused with ICMP 3/4 and never reaches this module); the
//!   reserved bit is passed through as it is.
//! - Options (RFC 791 §3.1): the first fragment keeps all of them; later
//!   fragments carry only the options whose copy bit (0x80) is set, in their
//!   original order, padded with End of Option List (0) to a multiple of 4.
//! - The header checksum is recomputed over the whole header of each fragment.
//!
//! # Later fragments' header length: DPDK, not Linux
//!
//! Implementations differ in what they do with the options that are not
//! copied. Linux (`ip_options_fragment`) overwrites them with NOPs in the
//! header it reuses for fragments 2..n, so every fragment carries a header as
//! long as the first. DPDK (`rte_ipv4_fragment_packet`) builds a shorter header
//! for fragments 2..n out of the copied options alone, but keeps the payload
//! size computed from the *original* header length, so later fragments come
//! out a few bytes shorter than the MTU allows. mtugate follows DPDK:
//!
//! - it is what RFC 791 §3.2's example procedure does (step (7) "selectively
//!   copy the internet header", step (9) recomputes `IHL` from the options that
//!   were copied), and it puts no dead NOP bytes on the tunnel;
//! - it is what the published DPDK vectors pin down (`shared/VECTORS.md` F4:
//!   offsets `0x46`, `0x8C` are 560-byte steps from a 40-byte header at MTU
//!   600, while the later fragments' headers are 28 bytes long), so our table
//!   tests can compare against them byte for byte;
//! - one payload size for all fragments keeps [`fragment_count`] a single
//!   division and every non-last fragment a multiple of 8 bytes by
//!   construction. (RFC 791's procedure, applied again to the rest of the
//!   datagram, would let later fragments grow by the bytes the header lost;
//!   that saves at most 32 bytes per fragment and would diverge from DPDK.)
//!
//! Options are walked as RFC 791 §3.1 lays them out: End of Option List (0)
//! ends the list, No Operation (1) is one byte, every other option carries a
//! length byte that counts the kind and length bytes too, so it must be at
//! least 2 and stay inside the options area. Anything else is
//! [`FragError::BadOptions`]: we do not guess which bytes of a malformed option
//! list a receiver would take as options.

use super::{L3Ctx, MacRewrite};
use crate::wire::ipv4::{
    Packet, Repr, FLAG_MF, MAX_HEADER_LEN, MIN_HEADER_LEN, MIN_MTU, OFFSET_MASK,
};

/// The reserved (evil) bit of the flags/offset word, passed through untouched.
const FLAG_RESERVED: u16 = 0x8000;
/// Room for options after the fixed header (RFC 791 §3.1: IHL ≤ 15).
const MAX_OPTIONS_LEN: usize = MAX_HEADER_LEN - MIN_HEADER_LEN;

/// IPv4 option kinds and bits (RFC 791 §3.1).
mod option {
    /// End of Option List.
    pub(super) const EOL: u8 = 0;
    /// No Operation.
    pub(super) const NOP: u8 = 1;
    /// The copied flag: the option goes into every fragment.
    pub(super) const COPIED: u8 = 0x80;
}

/// Free frames to write extra output packets into.
///
/// The AF_XDP layer implements it over its UMEM free list, tests over a
/// `Vec<Vec<u8>>`. [`fragment_ipv4`] asks for one frame per fragment after the
/// first (RFC 791 §3.2: fragments 2..n are new datagrams), calling
/// [`next_buf`](ExtraFrames::next_buf) and then, once the fragment is written,
/// [`commit`](ExtraFrames::commit). A buffer handed out by `next_buf` but not
/// committed (the fragmenter gave up on an error) is still free: the
/// implementation may hand it out again on the next call.
pub trait ExtraFrames {
    /// How many frames can still be handed out.
    fn available(&self) -> usize;

    /// The next free frame's whole buffer (its capacity, e.g. 2048 bytes) to
    /// write an output packet into, or `None` when none is left.
    fn next_buf(&mut self) -> Option<&mut [u8]>;

    /// The buffer last returned by [`next_buf`](ExtraFrames::next_buf) now
    /// holds a packet of `len` bytes to transmit.
    fn commit(&mut self, len: usize);
}

/// What [`fragment_ipv4`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragmented {
    /// The new length of the input frame, which now holds fragment 1:
    /// `l2_len` plus its IPv4 total length (Ethernet padding after the IP
    /// packet is dropped). When the packet already fit, the frame is untouched
    /// and this is `l2_len` plus the packet's total length.
    pub first_len: usize,
    /// How many extra frames were committed (fragments 2..n).
    pub extra: usize,
}

/// Why a packet could not be fragmented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FragError {
    /// The MTU is below 68, the smallest every IPv4 link must carry
    /// (RFC 791 §3.2; VECTORS F7).
    #[error("MTU below 68")]
    MtuTooSmall,
    /// The header leaves no room for even 8 bytes of payload under the MTU
    /// (`(mtu − header_len) & !7 == 0`). With an MTU of at least 68 and a
    /// header of at most 60 bytes this cannot happen (RFC 791 §3.2 chose 68
    /// for exactly that reason); kept so the arithmetic never underflows.
    #[error("header too long for the MTU")]
    HeaderTooLong,
    /// The options area breaks RFC 791 §3.1: an option's length byte is
    /// missing, below 2, or runs past the header.
    #[error("malformed IPv4 options")]
    BadOptions,
    /// Fewer free frames than fragments 2..n need; nothing was committed.
    #[error("not enough free frames")]
    NoFrame,
    /// An extra frame cannot hold the link-layer header plus a fragment.
    #[error("frame buffer too small for a fragment")]
    BufferTooSmall,
    /// The context does not fit the frame (see [`L3Ctx`]), the header fails
    /// [`Packet::check_len`] or disagrees with the context's total length,
    /// or the fragments' offsets would not fit the 13-bit offset field (RFC
    /// 791 §3.1).
    #[error("malformed IPv4 packet")]
    Malformed,
}

/// How a packet is cut up, shared by [`fragment_count`] and [`fragment_ipv4`].
struct Plan {
    /// Header length of the original (and of fragment 1).
    header_len: usize,
    /// Bytes of payload in the original.
    payload_len: usize,
    /// Bytes of payload per fragment (the last may carry fewer).
    chunk: usize,
    /// Number of fragments, 1 when the packet already fits.
    count: usize,
    /// The original flags/offset word.
    flags_offset: u16,
    /// The options with the copy bit, in order, unpadded.
    copied: [u8; MAX_OPTIONS_LEN],
    /// How many bytes of `copied` are used.
    copied_len: usize,
}

/// Payload bytes per fragment: `(mtu − header_len) & !7` (RFC 791 §3.2
/// step (3): `NFB <- (MTU-IHL*4)/8`, in bytes).
fn chunk_size(mtu: u16, header_len: usize) -> Result<usize, FragError> {
    match usize::from(mtu).saturating_sub(header_len) & !7 {
        0 => Err(FragError::HeaderTooLong),
        c => Ok(c),
    }
}

/// Walks the options area (RFC 791 §3.1) and writes the options that have the
/// copy bit into `out`, in order. Returns how many bytes were written.
fn copied_options(opts: &[u8], out: &mut [u8; MAX_OPTIONS_LEN]) -> Result<usize, FragError> {
    let mut i = 0;
    let mut n = 0;
    while let Some(&kind) = opts.get(i) {
        match kind {
            option::EOL => break,
            option::NOP => i += 1,
            _ => {
                let len = usize::from(*opts.get(i + 1).ok_or(FragError::BadOptions)?);
                if len < 2 || len > opts.len() - i {
                    return Err(FragError::BadOptions);
                }
                if kind & option::COPIED != 0 {
                    let dst = out.get_mut(n..n + len).ok_or(FragError::BadOptions)?;
                    dst.copy_from_slice(&opts[i..i + len]);
                    n += len;
                }
                i += len;
            }
        }
    }
    Ok(n)
}

/// The header of the IPv4 packet `l3` describes in `frame`, parsed; checks
/// that it agrees with the context.
fn header<'f>(frame: &'f [u8], l3: &L3Ctx) -> Result<Repr<'f>, FragError> {
    let ip = l3.ip(frame).ok_or(FragError::Malformed)?;
    let orig = Repr::parse(&Packet::new_unchecked(ip)).map_err(|_| FragError::Malformed)?;
    if orig.total_len() != ip.len() {
        return Err(FragError::Malformed);
    }
    Ok(orig)
}

/// Decides how to cut the packet with header `orig` for `mtu`.
#[inline]
fn plan(orig: &Repr<'_>, mtu: u16) -> Result<Plan, FragError> {
    let header_len = orig.buffer_len();
    let payload_len = orig.payload_len;
    let mut plan = Plan {
        header_len,
        payload_len,
        chunk: payload_len,
        count: 1,
        flags_offset: orig.flags_offset,
        copied: [0; MAX_OPTIONS_LEN],
        copied_len: 0,
    };
    if orig.total_len() <= usize::from(mtu) {
        return Ok(plan);
    }
    plan.chunk = chunk_size(mtu, header_len)?;
    plan.copied_len = copied_options(orig.options, &mut plan.copied)?;
    // total_len > mtu ≥ header_len + chunk, so at least two fragments.
    plan.count = payload_len.div_ceil(plan.chunk);
    debug_assert!(plan.count >= 2);
    // The last fragment's offset must fit the 13-bit field (RFC 791 §3.1).
    let last_offset =
        usize::from(plan.flags_offset & OFFSET_MASK) + (plan.count - 1) * plan.chunk / 8;
    if last_offset > usize::from(OFFSET_MASK) {
        return Err(FragError::Malformed);
    }
    Ok(plan)
}

/// How many fragments [`fragment_ipv4`] will produce for the IPv4 packet
/// `l3` describes in `frame` at `mtu`, or why it cannot fragment it.
///
/// `Ok(1)` means the packet already fits (its options are not looked at
/// then); otherwise the caller needs `n − 1` free frames. The checks and their
/// order are those of [`fragment_ipv4`]: [`FragError::MtuTooSmall`] for an MTU
/// below 68 (RFC 791 §3.2), [`FragError::Malformed`],
/// [`FragError::HeaderTooLong`], [`FragError::BadOptions`] (RFC 791 §3.1).
pub fn fragment_count(frame: &[u8], l3: &L3Ctx, mtu: u16) -> Result<usize, FragError> {
    if mtu < MIN_MTU {
        return Err(FragError::MtuTooSmall);
    }
    plan(&header(frame, l3)?, mtu).map(|p| p.count)
}

/// Fragments the IPv4 packet `l3` describes in `frame` so that every
/// fragment's total length is at most `mtu` (RFC 791 §2.3, §3.2).
///
/// `frame[..l3.l2_len]` is the link-layer header (Ethernet with any VLAN
/// tags) and the IPv4 packet is `l3.total_len` bytes after it; anything
/// after that is link-layer padding. The IPv4 header must pass
/// [`Packet::check_len`] and agree with the context, else
/// [`FragError::Malformed`]. A packet that already fits is left untouched
/// (`Fragmented { first_len: l2_len + total_len, extra: 0 }`).
///
/// Otherwise fragments 2..n are each written into a frame from `extra` (a copy
/// of `frame[..l2_len]` with `macs` applied, then the fragment) and
/// committed, reading from the original; then fragment 1 is rewritten in
/// place in `frame` (its payload is already in place, `macs` is applied to
/// its link-layer header too) and its new frame length returned. Fields and
/// options of each fragment are described in the [module
/// documentation](self): payload `(mtu − H) & !7` bytes for the original
/// header length `H`, ID kept, DF cleared, offsets and MF continued from the
/// original, only copied options after the first fragment (RFC 791 §3.1),
/// header checksum recomputed.
///
/// All-or-nothing on [`FragError::NoFrame`]: `extra.available()` is checked
/// before anything is written. [`FragError::BufferTooSmall`] is found on the
/// first extra buffer before anything is committed, since fragment 2 is the
/// longest extra fragment; only an `extra` whose later buffers are smaller
/// than its first (never the case for one UMEM) or that hands out fewer
/// buffers than `available()` promised can see an error after a commit. On
/// every error `frame` is unchanged.
///
/// Allocates nothing and does not panic, whatever the bytes and the context.
pub fn fragment_ipv4(
    frame: &mut [u8],
    l3: &L3Ctx,
    mtu: u16,
    macs: MacRewrite,
    extra: &mut impl ExtraFrames,
) -> Result<Fragmented, FragError> {
    if mtu < MIN_MTU {
        return Err(FragError::MtuTooSmall);
    }
    let l2_len = l3.l2_len;
    let orig = header(frame, l3)?;
    let plan = plan(&orig, mtu)?;
    if plan.count == 1 {
        return Ok(Fragmented {
            first_len: l2_len + orig.total_len(),
            extra: 0,
        });
    }
    let extra_count = plan.count - 1;
    if extra.available() < extra_count {
        return Err(FragError::NoFrame);
    }

    // The header of fragments 2..n: the original's fields, then the copied
    // options padded with EOL (0) to a multiple of 4 (RFC 791 §3.2 step
    // (7)). The padding is already zero.
    let mut later = Repr {
        options: &plan.copied[..plan.copied_len.next_multiple_of(4)],
        ..orig
    };
    let later_hlen = later.buffer_len();

    // DF cleared; the reserved bit kept; offsets continue from the original's
    // (RFC 791 §3.2 step (9): FO <- OFO + NFB, MF <- OMF on the last).
    let keep = plan.flags_offset & FLAG_RESERVED;
    let first_offset = plan.flags_offset & OFFSET_MASK;
    let last_mf = plan.flags_offset & FLAG_MF;
    // `plan` checked that every offset fits 13 bits.
    let offset_of = |start: usize| first_offset + (start / 8) as u16;

    let payload_at = l2_len + plan.header_len;
    for k in 1..plan.count {
        let start = k * plan.chunk;
        let end = (start + plan.chunk).min(plan.payload_len);
        let out_len = l2_len + later_hlen + (end - start);
        let buf = extra.next_buf().ok_or(FragError::NoFrame)?;
        let out = buf.get_mut(..out_len).ok_or(FragError::BufferTooSmall)?;
        let (l2, ip) = out.split_at_mut(l2_len);
        l2.copy_from_slice(&frame[..l2_len]);
        macs.apply(l2);
        let mf = if k + 1 == plan.count {
            last_mf
        } else {
            FLAG_MF
        };
        later.flags_offset = keep | mf | offset_of(start);
        later.payload_len = end - start;
        // later.total_len() ≤ mtu, a u16.
        later.emit(&mut Packet::new_unchecked(&mut *ip));
        ip[later_hlen..].copy_from_slice(&frame[payload_at + start..payload_at + end]);
        extra.commit(out_len);
    }

    // Fragment 1, in place: the original header with all its options (RFC 791
    // §3.2 steps (4), (5)).
    let first_ip_len = plan.header_len + plan.chunk;
    let mut p = Packet::new_unchecked(&mut frame[l2_len..l2_len + first_ip_len]);
    // first_ip_len ≤ mtu, a u16.
    p.set_total_len(first_ip_len as u16);
    p.set_flags_offset(keep | FLAG_MF | offset_of(0));
    p.fill_checksum();
    macs.apply(&mut frame[..l2_len]);
    Ok(Fragmented {
        first_len: l2_len + first_ip_len,
        extra: extra_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::UpperLayer;
    use etherparse::Ipv4HeaderSlice;
    use proptest::prelude::*;

    // ---- helpers -------------------------------------------------------

    /// Vec-backed free frames: `count` frames of `size` bytes each.
    struct VecFrames {
        frames: Vec<Vec<u8>>,
        lens: Vec<usize>,
        handed_out: bool,
    }

    impl VecFrames {
        fn new(count: usize, size: usize) -> Self {
            VecFrames {
                frames: vec![vec![0xee; size]; count],
                lens: Vec::new(),
                handed_out: false,
            }
        }

        /// The committed packets, in commit order.
        fn packets(&self) -> Vec<&[u8]> {
            self.lens
                .iter()
                .zip(&self.frames)
                .map(|(&l, f)| &f[..l])
                .collect()
        }
    }

    impl ExtraFrames for VecFrames {
        fn available(&self) -> usize {
            self.frames.len() - self.lens.len()
        }

        fn next_buf(&mut self) -> Option<&mut [u8]> {
            let buf = self.frames.get_mut(self.lens.len())?;
            self.handed_out = true;
            Some(buf)
        }

        fn commit(&mut self, len: usize) {
            assert!(self.handed_out, "commit without next_buf");
            assert!(len <= self.frames[self.lens.len()].len());
            self.lens.push(len);
            self.handed_out = false;
        }
    }

    const SRC: [u8; 4] = [192, 0, 2, 1];
    const DST: [u8; 4] = [198, 51, 100, 7];

    /// Record Route (not copied), LSRR (copied), EOL padding: VECTORS F4.
    const F4_OPTIONS: [u8; 20] = [
        0x07, 0x0b, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, // RR, 11 bytes
        0x83, 0x07, 0x04, 0xc0, 0xa8, 0xe3, 0x96, // LSRR, 7 bytes
        0x00, 0x00,
    ];
    /// What later fragments of F4 carry.
    const F4_LATER_OPTIONS: [u8; 8] = [0x83, 0x07, 0x04, 0xc0, 0xa8, 0xe3, 0x96, 0x00];
    /// Record Route alone, padded (DPDK's "not copied" first-fragment input).
    const RR_OPTIONS: [u8; 12] = [0x07, 0x0b, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0];

    /// An input packet.
    #[derive(Debug, Clone)]
    struct Spec {
        l2_len: usize,
        /// Options, already padded to a multiple of 4.
        options: Vec<u8>,
        payload: Vec<u8>,
        flags_offset: u16,
        ident: u16,
        tos: u8,
        ttl: u8,
        proto: u8,
        /// Bytes of link-layer padding after the IP packet.
        trailer: usize,
    }

    impl Spec {
        fn new(options: &[u8], payload_len: usize, flags_offset: u16) -> Self {
            Spec {
                l2_len: 14,
                options: options.to_vec(),
                payload: (0..payload_len).map(|i| (i * 7 + 3) as u8).collect(),
                flags_offset,
                ident: 0xbeef,
                tos: 0x28,
                ttl: 61,
                proto: 1,
                trailer: 0,
            }
        }

        fn header_len(&self) -> usize {
            20 + self.options.len()
        }

        /// The context the pipeline would hand down for `frame()`, from
        /// the spec (not from our parser).
        fn ctx(&self) -> L3Ctx {
            let off = self.flags_offset & OFFSET_MASK;
            let mf = self.flags_offset & FLAG_MF != 0;
            L3Ctx {
                l2_len: self.l2_len,
                header_len: self.header_len(),
                total_len: self.header_len() + self.payload.len(),
                upper: Some(UpperLayer {
                    protocol: self.proto,
                    offset: self.header_len(),
                    fragment: (off != 0 || mf).then_some((off, mf)),
                }),
            }
        }

        /// The whole frame: L2 header, IPv4 header (checksum by etherparse),
        /// payload, trailer.
        fn frame(&self) -> Vec<u8> {
            assert!(self.options.len() % 4 == 0 && self.options.len() <= 40);
            let hl = self.header_len();
            let total = hl + self.payload.len();
            let mut f: Vec<u8> = (0..self.l2_len).map(|i| 0xa0 ^ i as u8).collect();
            let mut h = vec![0u8; hl];
            h[0] = 0x40 | (hl / 4) as u8;
            h[1] = self.tos;
            h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            h[4..6].copy_from_slice(&self.ident.to_be_bytes());
            h[6..8].copy_from_slice(&self.flags_offset.to_be_bytes());
            h[8] = self.ttl;
            h[9] = self.proto;
            h[12..16].copy_from_slice(&SRC);
            h[16..20].copy_from_slice(&DST);
            h[20..].copy_from_slice(&self.options);
            let c = Ipv4HeaderSlice::from_slice(&h)
                .unwrap()
                .to_header()
                .calc_header_checksum();
            h[10..12].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&h);
            f.extend_from_slice(&self.payload);
            f.extend(std::iter::repeat_n(0x5a, self.trailer));
            f
        }
    }

    /// Checks one output IP packet with etherparse (not our checksum code)
    /// and returns the parsed header.
    fn check_ip(ip: &[u8]) -> Ipv4HeaderSlice<'_> {
        let h = Ipv4HeaderSlice::from_slice(ip).expect("etherparse rejects a fragment");
        assert_eq!(
            h.header_checksum(),
            h.to_header().calc_header_checksum(),
            "bad header checksum"
        );
        assert_eq!(
            usize::from(h.total_len()),
            ip.len(),
            "total length vs frame"
        );
        h
    }

    /// Runs the fragmenter on `spec` with `frames` free frames of `size`
    /// bytes; returns the IP packets (fragment 1 first) and the result.
    fn run(spec: &Spec, mtu: u16, frames: usize, size: usize) -> (Vec<Vec<u8>>, Fragmented) {
        let mut frame = spec.frame();
        let mut extra = VecFrames::new(frames, size);
        let r = fragment_ipv4(&mut frame, &spec.ctx(), mtu, MacRewrite::Keep, &mut extra).unwrap();
        assert_eq!(r.extra, extra.lens.len());
        let mut out = vec![frame[spec.l2_len..r.first_len].to_vec()];
        for p in extra.packets() {
            assert_eq!(&p[..spec.l2_len], &frame[..spec.l2_len], "L2 header copy");
            out.push(p[spec.l2_len..].to_vec());
        }
        (out, r)
    }

    /// The copied options padded with zeros to a multiple of 4.
    fn pad4(opts: &[u8]) -> Vec<u8> {
        let mut v = opts.to_vec();
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    /// An independent reassembler (RFC 815 in spirit): places each fragment's
    /// payload at offset × 8 and checks that the pieces are contiguous, start
    /// at the original's offset, and that exactly the last one has the
    /// original's MF. Also checks the fields every fragment must keep.
    fn reassemble_and_check(spec: &Spec, frags: &[Vec<u8>], mtu: u16, later_opts: &[u8]) {
        let orig_off = usize::from(spec.flags_offset & OFFSET_MASK) * 8;
        let orig_mf = spec.flags_offset & FLAG_MF != 0;
        let mut data = vec![None::<u8>; orig_off + spec.payload.len()];
        let mut next = orig_off;
        for (i, ip) in frags.iter().enumerate() {
            let last = i + 1 == frags.len();
            assert!(ip.len() <= usize::from(mtu), "fragment {i} longer than MTU");
            let h = check_ip(ip);
            assert_eq!(h.identification(), spec.ident);
            assert_eq!(h.ttl(), spec.ttl);
            assert_eq!(h.protocol().0, spec.proto);
            assert_eq!(ip[1], spec.tos);
            assert_eq!(h.source(), SRC);
            assert_eq!(h.destination(), DST);
            assert!(!h.dont_fragment(), "DF must be cleared");
            assert_eq!(
                ip[6] & 0x80,
                (spec.flags_offset >> 8) as u8 & 0x80,
                "reserved bit"
            );
            let expect_opts = if i == 0 {
                &spec.options[..]
            } else {
                later_opts
            };
            assert_eq!(h.options(), expect_opts, "options of fragment {i}");
            assert_eq!(h.more_fragments(), if last { orig_mf } else { true });
            let off = usize::from(h.fragments_offset().value()) * 8;
            assert_eq!(off, next, "fragment {i} not contiguous");
            let payload = &ip[h.slice().len()..];
            if !last {
                assert_eq!(payload.len() % 8, 0);
                assert!(!payload.is_empty());
            }
            for (j, &b) in payload.iter().enumerate() {
                let slot = &mut data[off + j];
                assert!(slot.is_none(), "overlap");
                *slot = Some(b);
            }
            next = off + payload.len();
        }
        assert_eq!(
            next,
            orig_off + spec.payload.len(),
            "payload missing at the end"
        );
        let got: Vec<u8> = data[orig_off..].iter().map(|b| b.unwrap()).collect();
        assert_eq!(got, spec.payload, "reassembly differs");
    }

    fn words(frags: &[Vec<u8>]) -> Vec<u16> {
        frags
            .iter()
            .map(|f| u16::from_be_bytes([f[6], f[7]]))
            .collect()
    }

    fn totals(frags: &[Vec<u8>]) -> Vec<usize> {
        frags.iter().map(Vec::len).collect()
    }

    // ---- VECTORS F rows ------------------------------------------------

    struct Row {
        name: &'static str,
        mtu: u16,
        options: &'static [u8],
        payload: usize,
        flags_offset: u16,
        words: &'static [u16],
        totals: &'static [usize],
        later_options: &'static [u8],
    }

    const LSRR: &[u8] = &F4_LATER_OPTIONS;

    const ROWS: &[Row] = &[
        Row {
            name: "F1: 1400 payload at MTU 1280",
            mtu: 1280,
            options: &[],
            payload: 1400,
            flags_offset: 0,
            words: &[0x2000, 0x009D],
            totals: &[1276, 164],
            later_options: &[],
        },
        Row {
            name: "F2: 1400 payload at MTU 600",
            mtu: 600,
            options: &[],
            payload: 1400,
            flags_offset: 0,
            words: &[0x2000, 0x2048, 0x0090],
            totals: &[596, 596, 268],
            later_options: &[],
        },
        Row {
            name: "F4: 40-byte header at MTU 600",
            mtu: 600,
            options: &F4_OPTIONS,
            payload: 1400,
            flags_offset: 0,
            words: &[0x2000, 0x2046, 0x008C],
            totals: &[600, 588, 308],
            later_options: &F4_LATER_OPTIONS,
        },
        // DPDK test_ipfrag's "first fragment" rows (same table as F5/F6,
        // not listed in VECTORS): a first fragment with MF at MTU 68.
        Row {
            name: "DPDK: first fragment, F4 options, MTU 68",
            mtu: 68,
            options: &F4_OPTIONS,
            payload: 104,
            flags_offset: 0x2000,
            words: &[0x2000, 0x2003, 0x2006, 0x2009, 0x200C],
            totals: &[64, 52, 52, 52, 36],
            later_options: &F4_LATER_OPTIONS,
        },
        Row {
            name: "DPDK: first fragment, Record Route only, MTU 68",
            mtu: 68,
            options: &RR_OPTIONS,
            payload: 104,
            flags_offset: 0x2000,
            words: &[0x2000, 0x2004, 0x2008, 0x200C],
            totals: &[64, 52, 52, 28],
            later_options: &[],
        },
        // F5/F6: DPDK's inputs are non-first fragments, so (as after an
        // earlier fragmentation) they carry only the copied LSRR option, or
        // none; the F4 header would give 24-byte steps, not these.
        Row {
            name: "F5: middle fragment at offset 13, copied options",
            mtu: 68,
            options: LSRR,
            payload: 104,
            flags_offset: 0x2000 | 13,
            words: &[0x200D, 0x2012, 0x2017],
            totals: &[68, 68, 52],
            later_options: LSRR,
        },
        Row {
            name: "F5: middle fragment at offset 13, no options",
            mtu: 68,
            options: &[],
            payload: 104,
            flags_offset: 0x2000 | 13,
            words: &[0x200D, 0x2013, 0x2019],
            totals: &[68, 68, 28],
            later_options: &[],
        },
        Row {
            name: "F6: last fragment at offset 26, copied options",
            mtu: 68,
            options: LSRR,
            payload: 104,
            flags_offset: 26,
            words: &[0x201A, 0x201F, 0x0024],
            totals: &[68, 68, 52],
            later_options: LSRR,
        },
        Row {
            name: "F6: last fragment at offset 26, no options",
            mtu: 68,
            options: &[],
            payload: 104,
            flags_offset: 26,
            words: &[0x201A, 0x2020, 0x0026],
            totals: &[68, 68, 28],
            later_options: &[],
        },
        Row {
            name: "F8: 1500-byte packet at MTU 620",
            mtu: 620,
            options: &[],
            payload: 1480,
            flags_offset: 0,
            words: &[0x2000, 0x2000 | 75, 150],
            totals: &[620, 620, 300],
            later_options: &[],
        },
        Row {
            name: "F9: 1288-byte ICMP echo at MTU 1280",
            mtu: 1280,
            options: &[],
            payload: 1268,
            flags_offset: 0,
            words: &[0x2000, 0x009D],
            totals: &[1276, 32],
            later_options: &[],
        },
    ];

    #[test]
    fn vectors_f_rows() {
        for row in ROWS {
            let spec = Spec::new(row.options, row.payload, row.flags_offset);
            let frame = spec.frame();
            let n = fragment_count(&frame, &spec.ctx(), row.mtu).unwrap();
            assert_eq!(n, row.words.len(), "{}: count", row.name);
            let (frags, r) = run(&spec, row.mtu, n - 1, 2048);
            assert_eq!(words(&frags), row.words, "{}: flags/offset", row.name);
            assert_eq!(totals(&frags), row.totals, "{}: total lengths", row.name);
            assert_eq!(r.first_len, 14 + row.totals[0], "{}: first_len", row.name);
            assert_eq!(r.extra, n - 1, "{}", row.name);
            for f in &frags[1..] {
                assert_eq!(
                    &f[20..usize::from(f[0] & 0xf) * 4],
                    row.later_options,
                    "{}",
                    row.name
                );
            }
            reassemble_and_check(&spec, &frags, row.mtu, row.later_options);
        }
    }

    #[test]
    fn f4_later_fragments_carry_exactly_the_copied_option() {
        let spec = Spec::new(&F4_OPTIONS, 1400, 0);
        let (frags, _) = run(&spec, 600, 2, 2048);
        assert_eq!(frags[0][0], 0x4a);
        assert_eq!(&frags[0][20..40], &F4_OPTIONS);
        for f in &frags[1..] {
            assert_eq!(f[0], 0x47, "IHL 7");
            assert_eq!(
                &f[20..28],
                &[0x83, 0x07, 0x04, 0xc0, 0xa8, 0xe3, 0x96, 0x00]
            );
        }
    }

    // The caller decides the MAC addresses of every fragment; the rest of
    // the link-layer header (VLAN tags, EtherType) is the input's.
    #[test]
    fn macs_are_the_callers() {
        let mut spec = Spec::new(&[], 1400, 0);
        spec.l2_len = 18;
        let orig = spec.frame();
        let (dst, src) = ([0x02, 0, 0, 0, 0, 0xd], [0x02, 0, 0, 0, 0, 0x5]);
        for macs in [
            MacRewrite::Keep,
            MacRewrite::Swap,
            MacRewrite::Set { dst, src },
        ] {
            let mut frame = orig.clone();
            let mut extra = VecFrames::new(2, 2048);
            fragment_ipv4(&mut frame, &spec.ctx(), 600, macs, &mut extra).unwrap();
            let (want_dst, want_src) = match macs {
                MacRewrite::Keep => (&orig[..6], &orig[6..12]),
                MacRewrite::Swap => (&orig[6..12], &orig[..6]),
                MacRewrite::Set { .. } => (&dst[..], &src[..]),
            };
            let mut all = vec![&frame[..]];
            all.extend(extra.packets());
            assert_eq!(all.len(), 3);
            for f in all {
                assert_eq!(&f[..6], want_dst, "{macs:?}");
                assert_eq!(&f[6..12], want_src, "{macs:?}");
                assert_eq!(&f[12..18], &orig[12..18], "{macs:?}");
            }
        }
    }

    #[test]
    fn f3_df_is_cleared_here_policy_is_the_pipelines() {
        // VECTORS F3 (DF set → ICMP 3/4) is the pipeline's decision; when
        // policy lets a DF packet through to us, no fragment keeps DF.
        let spec = Spec::new(&[], 1400, 0x4000);
        let (frags, _) = run(&spec, 600, 2, 2048);
        assert_eq!(words(&frags), [0x2000, 0x2048, 0x0090]);
        reassemble_and_check(&spec, &frags, 600, &[]);
    }

    #[test]
    fn f7_mtu_below_68_is_refused() {
        let spec = Spec::new(&[], 1400, 0);
        for mtu in [0, 4, 67] {
            let mut frame = spec.frame();
            let before = frame.clone();
            let mut extra = VecFrames::new(64, 2048);
            assert_eq!(
                fragment_count(&frame, &spec.ctx(), mtu),
                Err(FragError::MtuTooSmall)
            );
            assert_eq!(
                fragment_ipv4(&mut frame, &spec.ctx(), mtu, MacRewrite::Keep, &mut extra),
                Err(FragError::MtuTooSmall)
            );
            assert!(extra.lens.is_empty());
            assert_eq!(frame, before);
        }
        // Even a packet that would fit is refused at such an MTU.
        let small = Spec::new(&[], 8, 0);
        assert_eq!(
            fragment_count(&small.frame(), &small.ctx(), 60),
            Err(FragError::MtuTooSmall)
        );
    }

    #[test]
    fn mtu_68_carries_the_longest_header() {
        // RFC 791 §3.2: 60-byte header + 8 bytes always fits in 68.
        let mut opts = vec![0x83, 38];
        opts.extend(0..36u8);
        opts.extend([0, 0]);
        let spec = Spec::new(&opts, 100, 0);
        let (frags, _) = run(&spec, 68, 12, 2048);
        assert_eq!(frags.len(), 13);
        assert!(frags.iter().all(|f| f.len() <= 68));
        reassemble_and_check(&spec, &frags, 68, &pad4(&opts[..38]));
    }

    #[test]
    fn header_too_long() {
        assert_eq!(chunk_size(67, 60), Err(FragError::HeaderTooLong));
        assert_eq!(chunk_size(27, 20), Err(FragError::HeaderTooLong));
        assert_eq!(chunk_size(28, 20), Ok(8));
        assert_eq!(chunk_size(68, 60), Ok(8));
        assert_eq!(chunk_size(0, 60), Err(FragError::HeaderTooLong));
        assert_eq!(chunk_size(1500, 20), Ok(1480));
        assert_eq!(chunk_size(1499, 20), Ok(1472));
    }

    #[test]
    fn packet_that_fits_is_untouched() {
        let mut spec = Spec::new(&F4_OPTIONS, 560, 0x4000);
        spec.trailer = 6;
        let mut frame = spec.frame();
        let before = frame.clone();
        let len = frame.len();
        assert_eq!(fragment_count(&frame, &spec.ctx(), 600), Ok(1));
        let mut extra = VecFrames::new(0, 2048);
        let r = fragment_ipv4(&mut frame, &spec.ctx(), 600, MacRewrite::Keep, &mut extra).unwrap();
        // Untouched; its length without the 6 bytes of padding.
        assert_eq!(
            r,
            Fragmented {
                first_len: len - 6,
                extra: 0
            }
        );
        assert_eq!(frame, before);
        // One byte more and it splits.
        let spec = Spec::new(&F4_OPTIONS, 561, 0);
        assert_eq!(fragment_count(&spec.frame(), &spec.ctx(), 600), Ok(2));
    }

    #[test]
    fn ethernet_padding_is_dropped_from_fragment_1() {
        let mut spec = Spec::new(&[], 100, 0);
        spec.l2_len = 18;
        spec.trailer = 10;
        let (frags, r) = run(&spec, 68, 2, 2048);
        assert_eq!(r.first_len, 18 + 68);
        assert_eq!(totals(&frags), [68, 68, 24]);
        reassemble_and_check(&spec, &frags, 68, &[]);
    }

    #[test]
    fn reserved_bit_is_kept() {
        // etherparse drops the reserved bit, so check the sum by hand.
        fn sum_ok(h: &[u8]) -> bool {
            let mut s: u32 = h
                .chunks(2)
                .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
                .sum();
            while s > 0xffff {
                s = (s & 0xffff) + (s >> 16);
            }
            s == 0xffff
        }
        let spec = Spec::new(&[], 1400, 0x8000 | 0x4000);
        let mut frame = spec.frame();
        let mut extra = VecFrames::new(2, 2048);
        fragment_ipv4(&mut frame, &spec.ctx(), 600, MacRewrite::Keep, &mut extra).unwrap();
        let mut all = vec![frame[14..34].to_vec()];
        all.extend(extra.packets().iter().map(|p| p[14..34].to_vec()));
        let w: Vec<u16> = all
            .iter()
            .map(|h| u16::from_be_bytes([h[6], h[7]]))
            .collect();
        assert_eq!(w, [0xA000, 0xA048, 0x8090]);
        assert!(all.iter().all(|h| sum_ok(h)));
    }

    #[test]
    fn options_walk() {
        let mut out = [0u8; MAX_OPTIONS_LEN];
        // NOP is not copied; a copied option after EOL is padding, ignored.
        assert_eq!(
            copied_options(&[1, 0x83, 3, 9, 0, 0x83, 3, 9], &mut out),
            Ok(3)
        );
        assert_eq!(&out[..3], &[0x83, 3, 9]);
        // Copied options keep their order, non-copied ones vanish.
        let opts = [0x94, 4, 0, 0, 0x07, 3, 4, 0x82, 2, 1, 0, 0];
        assert_eq!(copied_options(&opts, &mut out), Ok(6));
        assert_eq!(&out[..6], &[0x94, 4, 0, 0, 0x82, 2]);
        // Malformed: length 0, 1, past the end, missing.
        for bad in [
            &[0x83, 0, 0, 0][..],
            &[0x07, 1, 0, 0],
            &[1, 0x83, 4, 0],
            &[1, 1, 1, 0x44],
        ] {
            assert_eq!(
                copied_options(bad, &mut out),
                Err(FragError::BadOptions),
                "{bad:?}"
            );
        }
        // Exactly filling the area is fine.
        let mut full = vec![0x89, 40];
        full.extend([7u8; 38]);
        assert_eq!(copied_options(&full, &mut out), Ok(40));
    }

    #[test]
    fn bad_options_refused_without_side_effects() {
        let spec = Spec::new(&[1, 0x83, 9, 0], 1400, 0);
        let mut frame = spec.frame();
        let before = frame.clone();
        let mut extra = VecFrames::new(8, 2048);
        assert_eq!(
            fragment_count(&frame, &spec.ctx(), 600),
            Err(FragError::BadOptions)
        );
        assert_eq!(
            fragment_ipv4(&mut frame, &spec.ctx(), 600, MacRewrite::Keep, &mut extra),
            Err(FragError::BadOptions)
        );
        assert!(extra.lens.is_empty());
        assert_eq!(frame, before);
    }

    #[test]
    fn no_frame_commits_nothing() {
        let spec = Spec::new(&F4_OPTIONS, 1400, 0);
        let mut frame = spec.frame();
        let before = frame.clone();
        for have in 0..2 {
            let mut extra = VecFrames::new(have, 2048);
            assert_eq!(
                fragment_ipv4(&mut frame, &spec.ctx(), 600, MacRewrite::Keep, &mut extra),
                Err(FragError::NoFrame)
            );
            assert!(extra.lens.is_empty());
            assert_eq!(frame, before);
        }
    }

    #[test]
    fn buffer_too_small() {
        // F2: fragment 2 needs 14 + 596 bytes.
        let spec = Spec::new(&[], 1400, 0);
        let mut frame = spec.frame();
        let before = frame.clone();
        let mut extra = VecFrames::new(2, 14 + 595);
        assert_eq!(
            fragment_ipv4(&mut frame, &spec.ctx(), 600, MacRewrite::Keep, &mut extra),
            Err(FragError::BufferTooSmall)
        );
        assert!(extra.lens.is_empty());
        assert_eq!(frame, before);
        let (frags, _) = run(&spec, 600, 2, 14 + 596);
        assert_eq!(totals(&frags), [596, 596, 268]);
    }

    #[test]
    fn offsets_must_fit_13_bits() {
        // 1400 bytes at offset 0x1fc0 at MTU 600: the third fragment would
        // start at 0x1fc0 + 144 > 0x1fff.
        let spec = Spec::new(&[], 1400, 0x1fc0);
        assert_eq!(
            fragment_count(&spec.frame(), &spec.ctx(), 600),
            Err(FragError::Malformed)
        );
        // The largest offset that still fits: last fragment at 0x1fff.
        let spec = Spec::new(&[], 600, 0x1fff - 72);
        let (frags, _) = run(&spec, 600, 1, 2048);
        assert_eq!(words(&frags), [0x2000 | (0x1fff - 72), 0x1fff]);
        reassemble_and_check(&spec, &frags, 600, &[]);
    }

    #[test]
    fn bad_lengths_are_malformed() {
        let spec = Spec::new(&[], 1400, 0);
        let mut frame = spec.frame();
        let len = frame.len();
        let before = frame.clone();
        let good = spec.ctx();
        assert_eq!(good.l2_len + good.total_len, len);
        let mut extra = VecFrames::new(4, 2048);
        for bad in [
            // Past the end of the frame.
            L3Ctx {
                total_len: good.total_len + 1,
                ..good
            },
            L3Ctx {
                l2_len: len + 1,
                ..good
            },
            // Shorter than its header, or than the header's total length.
            L3Ctx {
                total_len: 10,
                ..good
            },
            L3Ctx {
                total_len: good.total_len - 1,
                ..good
            },
            // No room for an Ethernet header.
            L3Ctx { l2_len: 0, ..good },
            L3Ctx { l2_len: 13, ..good },
        ] {
            assert_eq!(
                fragment_ipv4(&mut frame, &bad, 600, MacRewrite::Keep, &mut extra),
                Err(FragError::Malformed),
                "{bad:?}"
            );
            assert_eq!(
                fragment_count(&frame, &bad, 600),
                Err(FragError::Malformed),
                "{bad:?}"
            );
        }
        assert!(extra.lens.is_empty());
        assert_eq!(frame, before);
    }

    #[test]
    fn every_prefix_errors_or_fragments() {
        let mut spec = Spec::new(&F4_OPTIONS, 300, 0x2000 | 5);
        spec.l2_len = 18;
        let full = spec.frame();
        let l3 = spec.ctx();
        for n in 0..=full.len() {
            let mut frame = full[..n].to_vec();
            let mut extra = VecFrames::new(16, 2048);
            let r = fragment_ipv4(&mut frame, &l3, 68, MacRewrite::Keep, &mut extra);
            if n == full.len() {
                // 300 bytes in 24-byte pieces under a 40-byte header.
                assert_eq!(r.map(|r| r.extra), Ok(12));
            } else {
                assert_eq!(r, Err(FragError::Malformed), "prefix {n}");
                assert!(extra.lens.is_empty());
            }
            let c = fragment_count(&full[..n], &l3, 68);
            if n == full.len() {
                assert_eq!(c, Ok(13));
            } else {
                assert_eq!(c, Err(FragError::Malformed), "prefix {n}");
            }
        }
    }

    // ---- properties ----------------------------------------------------

    /// One option in a generated layout.
    #[derive(Debug, Clone)]
    enum Opt {
        Nop,
        Copied(u8, Vec<u8>),
        NotCopied(u8, Vec<u8>),
    }

    fn opt() -> impl Strategy<Value = Opt> {
        let data = || proptest::collection::vec(any::<u8>(), 0..10);
        prop_oneof![
            Just(Opt::Nop),
            (0x80u8..=0xff, data()).prop_map(|(k, d)| Opt::Copied(k, d)),
            (2u8..0x80, data()).prop_map(|(k, d)| Opt::NotCopied(k, d)),
        ]
    }

    /// Lays options out (dropping those that do not fit), pads with EOL to a
    /// multiple of 4; returns (options area, what later fragments carry).
    fn layout(opts: &[Opt]) -> (Vec<u8>, Vec<u8>) {
        let mut area = Vec::new();
        let mut copied = Vec::new();
        for o in opts {
            let bytes = match o {
                Opt::Nop => vec![1],
                Opt::Copied(k, d) | Opt::NotCopied(k, d) => {
                    let mut b = vec![*k, d.len() as u8 + 2];
                    b.extend(d);
                    b
                }
            };
            if area.len() + bytes.len() > 40 {
                continue;
            }
            if let Opt::Copied(..) = o {
                copied.extend(&bytes);
            }
            area.extend(bytes);
        }
        (pad4(&area), pad4(&copied))
    }

    prop_compose! {
        fn packet()(
            opts in proptest::collection::vec(opt(), 0..10),
            payload in proptest::collection::vec(any::<u8>(), 0..3000),
            df in any::<bool>(),
            frag in proptest::option::of((0u16..7800, any::<bool>())),
            l2_len in prop_oneof![Just(14usize), Just(18), Just(22)],
            ident in any::<u16>(),
            tos in any::<u8>(),
            ttl in any::<u8>(),
            proto in any::<u8>(),
            trailer in 0usize..8,
        ) -> (Spec, Vec<u8>) {
            let (options, later) = layout(&opts);
            let (off, mf) = frag.unwrap_or((0, false));
            let flags_offset = (if df { 0x4000 } else { 0 }) | (if mf { 0x2000 } else { 0 }) | off;
            (Spec { l2_len, options, payload, flags_offset, ident, tos, ttl, proto, trailer }, later)
        }
    }

    proptest! {
        #[test]
        fn fragments_fit_verify_and_reassemble(
            (spec, later) in packet(),
            mtu in prop_oneof![68u16..600, 68u16..9000],
        ) {
            let frame = spec.frame();
            let l2 = spec.l2_len;
            let l3 = spec.ctx();
            let n = fragment_count(&frame, &l3, mtu).unwrap();
            let total = spec.header_len() + spec.payload.len();
            if total <= usize::from(mtu) {
                prop_assert_eq!(n, 1);
                let mut f = frame.clone();
                let mut extra = VecFrames::new(0, 0);
                let r = fragment_ipv4(&mut f, &l3, mtu, MacRewrite::Keep, &mut extra).unwrap();
                prop_assert_eq!(r, Fragmented { first_len: l2 + total, extra: 0 });
                prop_assert_eq!(f, frame);
                return Ok(());
            }
            prop_assert!(n >= 2);
            // One frame short: NoFrame, nothing committed, frame unchanged.
            let mut f = frame.clone();
            let mut short = VecFrames::new(n - 2, usize::from(mtu) + l2);
            prop_assert_eq!(
                fragment_ipv4(&mut f, &l3, mtu, MacRewrite::Keep, &mut short),
                Err(FragError::NoFrame)
            );
            prop_assert!(short.lens.is_empty());
            prop_assert_eq!(&f, &frame);
            // Frames exactly MTU + L2 long, exactly as many as needed.
            let (frags, r) = run(&spec, mtu, n - 1, usize::from(mtu) + l2);
            prop_assert_eq!(frags.len(), n);
            prop_assert_eq!(r.first_len, l2 + frags[0].len());
            reassemble_and_check(&spec, &frags, mtu, &later);
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            mut frame in proptest::collection::vec(any::<u8>(), 0..400),
            l2_len in 0usize..30,
            header_len in 0usize..70,
            total_len in 0usize..450,
            ip_version in any::<bool>(),
            mtu in any::<u16>(),
            frames in 0usize..8,
            size in 0usize..300,
        ) {
            if ip_version && frame.len() > l2_len {
                frame[l2_len] = 0x40 | (frame[l2_len] & 0x0f);
            }
            // Any context at all: the ops check it against the frame.
            let l3 = L3Ctx { l2_len, header_len, total_len, upper: None };
            let mut extra = VecFrames::new(frames, size);
            let _ = fragment_count(&frame, &l3, mtu);
            if let Ok(r) = fragment_ipv4(&mut frame, &l3, mtu, MacRewrite::Keep, &mut extra) {
                prop_assert!(r.first_len <= frame.len());
                prop_assert_eq!(r.extra, extra.lens.len());
            }
        }
    }
}
