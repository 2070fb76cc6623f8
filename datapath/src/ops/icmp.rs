//! ICMP errors built in place: IPv4 Destination Unreachable / Fragmentation
//! Needed (RFC 792, RFC 1191 §4) and ICMPv6 Packet Too Big (RFC 4443 §3.2);
//! in router mode also Time Exceeded (RFC 792 type 11, RFC 4443 §3.3).
//!
//! When a packet is too big for the port it would leave by and may not be
//! fragmented, mtugate drops it and answers its sender. The offending frame is
//! dropped anyway, so the error is written into the same frame buffer (a UMEM
//! chunk): no second frame is taken and nothing is allocated.
//!
//! Layout of the frame after a build:
//!
//! ```text
//! | Ethernet (MACs per MacRewrite) | VLAN tags, EtherType (unchanged) | new IP header | ICMP header | quote |
//! ```
//!
//! The quote (as much of the offending IP packet as fits, from its IP header
//! up to its total length, never Ethernet padding) is moved forward with
//! `copy_within` to make room for the new headers in front of it, which are
//! then emitted from their `Repr`s ([`ipv4::Repr`], [`ipv6::Repr`],
//! [`icmp::v4::Repr`], [`icmp::v6::Repr`]).
//!
//! Parse once: every function here takes the [`L3Ctx`] the pipeline parsed
//! (where the IP packet is, its header length, its upper layer found by the
//! IPv6 extension header walk) and reads the few fields it needs at those
//! offsets; nothing walks Ethernet, VLAN tags or extension headers again.
//! The IPv4 header checksum is the caller's to verify before asking for an
//! error (RFC 1812 §5.2.2: a packet with a bad one is discarded silently; the
//! pipeline drops it as `bad_ipv4_checksum`).
//!
//! Whether an error may be sent at all is decided by [`check_v4`] and
//! [`check_v6`], cheap enough to run before a rate-limit token is spent; the
//! builders apply the same rules. The rules (RFC 1122 §3.2.2, RFC 1812
//! §4.3.2.7, RFC 4443 §2.4 (e)): never about an ICMP error, a non-first
//! fragment, a packet from an address that does not name one host, or a
//! packet sent to a group (IPv4 multicast/broadcast, Ethernet group address).
//!
//! Deliberately left out: the rate limit (see `ops::bucket`), the decision
//! that a packet is too big (the pipeline's), and subnet-directed broadcasts,
//! which a bump in the wire cannot recognise.

use super::{L3Ctx, MacRewrite};
use crate::wire::{ethernet, icmp, ipv4, ipv6, UpperLayer};

/// The largest IPv4 ICMP error a router should send (RFC 1812 §4.3.2.3): the
/// usual `max_len` for [`build_frag_needed`].
pub const V4_MAX_ERROR_LEN: usize = 576;
/// The largest ICMPv6 error (RFC 4443 §2.4 (c): the IPv6 minimum MTU): the
/// usual `max_len` for [`build_packet_too_big`].
pub const V6_MAX_ERROR_LEN: usize = 1280;
/// Bytes an IPv4 error puts in front of the quote: IPv4 header (no options)
/// and ICMP header.
pub const V4_ERROR_HEADERS: usize = ipv4::MIN_HEADER_LEN + icmp::HEADER_LEN;
/// Bytes an ICMPv6 error puts in front of the quote: IPv6 header and ICMPv6
/// header.
pub const V6_ERROR_HEADERS: usize = ipv6::HEADER_LEN + icmp::HEADER_LEN;

/// TOS of the errors we send: precedence 6, internetwork control (RFC 791
/// §3.1, RFC 1812 §4.3.2.5), as Linux sets for ICMP errors.
const V4_ERROR_TOS: u8 = 0xc0;
/// TTL / hop limit of the errors we send (VECTORS I1, I3).
const ERROR_TTL: u8 = 255;
/// The largest IPv4 total length.
const V4_MAX_TOTAL_LEN: usize = u16::MAX as usize;
/// The largest IPv6 packet without a jumbo payload (RFC 2675).
const V6_MAX_TOTAL_LEN: usize = ipv6::HEADER_LEN + u16::MAX as usize;

/// Why no ICMP error is sent about a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IcmpRefusal {
    /// The offending packet is itself an ICMP or ICMPv6 error message
    /// (RFC 1122 §3.2.2, RFC 1812 §4.3.2.7, RFC 4443 §2.4 (e.1)).
    #[error("the packet is an ICMP error")]
    AboutIcmpError,
    /// The offending packet is a fragment other than the first: IPv4 fragment
    /// offset non-zero, or an IPv6 Fragment header with a non-zero offset
    /// (RFC 1812 §4.3.2.7, RFC 4443 §2.4 (e)).
    #[error("the packet is a non-first fragment")]
    NonFirstFragment,
    /// The offending packet's source does not name one host: unspecified,
    /// loopback, multicast, limited broadcast or class E (RFC 1812 §4.3.2.7,
    /// §5.3.7; RFC 4443 §2.4 (e.6)), or its Ethernet source is a group
    /// address. The builders also return it when `src` is `None` and the
    /// offending packet's destination (which would become the error's
    /// source) is unspecified, loopback or class E.
    #[error("the packet's source is not a unicast address")]
    BadSource,
    /// The offending packet was sent to a group: an IPv4 multicast or limited
    /// broadcast destination, or an Ethernet group (multicast or broadcast)
    /// destination MAC (RFC 1812 §4.3.2.7). An IPv6 multicast destination is
    /// allowed for Packet Too Big (RFC 4443 §2.4 (e.3)) when the error
    /// has a source of its own; with `src` `None` the builder refuses it,
    /// since an error's source must be unicast (RFC 4443 §2.2). An Ethernet
    /// group destination is refused for IPv6 too, which is stricter than
    /// RFC 4443 §2.4 (e.4), (e.5) (they allow Packet Too Big): in practice
    /// this means no Packet Too Big about IPv6 multicast over Ethernet.
    #[error("the packet was sent to a group address")]
    GroupDestination,
    /// The frame buffer cannot hold the error, or `max_len` leaves no room to
    /// quote at least the offending packet's IP header and the first 8 bytes
    /// of its data (RFC 792, RFC 4443 §3.2).
    #[error("no room for the ICMP error")]
    NoRoom,
    /// The context does not fit the frame (see [`L3Ctx`]) or does not
    /// describe a packet of the builder's IP version, the IPv6 extension
    /// header chain could not be walked (`upper` is `None`), or the ICMP
    /// header of the offending packet is truncated.
    #[error("malformed packet")]
    Malformed,
}

/// What a builder needs to know about the offending packet, `A` its address.
struct Offending<A> {
    header_len: usize,
    total_len: usize,
    src: A,
    dst: A,
}

/// The link-layer rules and the one check of the context: returns the IP
/// packet `l3` describes in `frame` if it fits, is of IP version `version`,
/// was not sent to an Ethernet group address and not from one.
fn check_l2<'f>(frame: &'f [u8], l3: &L3Ctx, version: u8) -> Result<&'f [u8], IcmpRefusal> {
    let ip = l3.ip(frame).ok_or(IcmpRefusal::Malformed)?;
    // A context meant for the other family: the version nibble says so.
    if ip.first().map(|b| b >> 4) != Some(version) {
        return Err(IcmpRefusal::Malformed);
    }
    // `l3.ip` checked that the frame holds an Ethernet header.
    let eth = ethernet::Frame::new_unchecked(frame);
    // RFC 1812 §4.3.2.7: not about a link-layer broadcast (or multicast).
    if eth.dst_is_group() {
        return Err(IcmpRefusal::GroupDestination);
    }
    // A group source MAC names no host; the error would go to a group.
    if eth.src()[0] & 1 != 0 {
        return Err(IcmpRefusal::BadSource);
    }
    Ok(ip)
}

/// The rules on the upper layer: not a non-first fragment, not an ICMP error
/// (`proto` the ICMP protocol of the family, `is_error` its error types).
fn check_upper(
    ip: &[u8],
    upper: Option<UpperLayer>,
    proto: u8,
    is_error: fn(u8) -> bool,
) -> Result<(), IcmpRefusal> {
    let ul = upper.ok_or(IcmpRefusal::Malformed)?;
    if matches!(ul.fragment, Some((offset, _)) if offset != 0) {
        return Err(IcmpRefusal::NonFirstFragment);
    }
    if ul.protocol == proto {
        let body = ip.get(ul.offset..).ok_or(IcmpRefusal::Malformed)?;
        let m = icmp::Message::new_checked(body).map_err(|_| IcmpRefusal::Malformed)?;
        if is_error(m.msg_type()) {
            return Err(IcmpRefusal::AboutIcmpError);
        }
    }
    Ok(())
}

fn inspect_v4(frame: &[u8], l3: &L3Ctx) -> Result<Offending<[u8; 4]>, IcmpRefusal> {
    let ip = check_l2(frame, l3, 4)?;
    if l3.header_len < ipv4::MIN_HEADER_LEN {
        return Err(IcmpRefusal::Malformed);
    }
    // `check_l2` checked that `ip` holds `header_len` ≥ 20 bytes.
    let p = ipv4::Packet::new_unchecked(ip);
    let (src, dst) = (p.src(), p.dst());
    if ipv4::is_group_dest(dst) {
        return Err(IcmpRefusal::GroupDestination);
    }
    if !ipv4::is_unicast_source(src) {
        return Err(IcmpRefusal::BadSource);
    }
    check_upper(ip, l3.upper, ipv4::protocol::ICMP, icmp::v4::is_error)?;
    Ok(Offending {
        header_len: l3.header_len,
        total_len: l3.total_len,
        src,
        dst,
    })
}

fn inspect_v6(frame: &[u8], l3: &L3Ctx) -> Result<Offending<[u8; 16]>, IcmpRefusal> {
    let ip = check_l2(frame, l3, 6)?;
    if l3.header_len != ipv6::HEADER_LEN {
        return Err(IcmpRefusal::Malformed);
    }
    // `check_l2` checked that `ip` holds the 40-byte header.
    let p = ipv6::Packet::new_unchecked(ip);
    let (src, dst) = (p.src(), p.dst());
    if !ipv6::is_unicast_source(&src) {
        return Err(IcmpRefusal::BadSource);
    }
    // A multicast destination is allowed for Packet Too Big (RFC 4443 §2.4
    // (e.3)); the Ethernet group check above still applies.
    check_upper(ip, l3.upper, ipv4::protocol::ICMPV6, icmp::v6::is_error)?;
    Ok(Offending {
        header_len: l3.header_len,
        total_len: l3.total_len,
        src,
        dst,
    })
}

/// How many bytes of an `orig_len`-byte packet to quote in an error of at
/// most `max_len` bytes with `headers` bytes in front of the quote and an IP
/// length limit of `limit`; `NoRoom` if that is less than `min_quote`.
fn quote_len(
    orig_len: usize,
    max_len: usize,
    headers: usize,
    limit: usize,
    min_quote: usize,
) -> Result<usize, IcmpRefusal> {
    let room = max_len.min(limit).saturating_sub(headers);
    let quote = orig_len.min(room);
    if quote < orig_len.min(min_quote) {
        return Err(IcmpRefusal::NoRoom);
    }
    Ok(quote)
}

/// Moves the quote (`quote` bytes at `l2_len`) forward by `headers` bytes and
/// rewrites the MAC addresses. Returns the new frame length.
fn make_room(
    frame: &mut [u8],
    l2_len: usize,
    headers: usize,
    quote: usize,
    macs: MacRewrite,
) -> Result<usize, IcmpRefusal> {
    let new_len = l2_len
        .checked_add(headers)
        .and_then(|n| n.checked_add(quote))
        .filter(|&n| n <= frame.len())
        .ok_or(IcmpRefusal::NoRoom)?;
    frame.copy_within(l2_len..l2_len + quote, l2_len + headers);
    macs.apply(&mut frame[..l2_len]);
    Ok(new_len)
}

/// Checks whether an ICMP Fragmentation Needed may be sent about the IPv4
/// packet `l3` describes in `frame` (the whole buffer).
///
/// Cheap (a few fields read at the context's offsets): call it before a
/// rate-limit token is spent. Refuses (RFC 1122 §3.2.2, RFC 1812 §4.3.2.7)
/// an ICMP error message, a non-first fragment, a source that is not a
/// host's unicast address, a multicast or broadcast destination, and an
/// Ethernet group destination or source; see [`IcmpRefusal`].
pub fn check_v4(frame: &[u8], l3: &L3Ctx) -> Result<(), IcmpRefusal> {
    inspect_v4(frame, l3).map(|_| ())
}

/// Checks whether an ICMPv6 Packet Too Big may be sent about the IPv6 packet
/// `l3` describes in `frame`; as [`check_v4`].
///
/// Refuses (RFC 4443 §2.4 (e)) an ICMPv6 error message (found behind the
/// extension headers the context's walk went through, RFC 8200 §4), a
/// non-first fragment, an unspecified, loopback or multicast source, and an
/// Ethernet group destination or source. A multicast IPv6 destination is
/// allowed (RFC 4443 §2.4 (e.3)).
pub fn check_v6(frame: &[u8], l3: &L3Ctx) -> Result<(), IcmpRefusal> {
    inspect_v6(frame, l3).map(|_| ())
}

/// Rewrites `frame` in place into an ICMP Destination Unreachable /
/// Fragmentation Needed (type 3 code 4, RFC 792; next-hop MTU in the low 16
/// bits of the second word, RFC 1191 §4) about the IPv4 packet `l3`
/// describes, addressed back to that packet's source, and returns the new
/// frame length.
///
/// - `frame`, `l3`: as for [`check_v4`], whose rules apply; on a refusal the
///   frame is left untouched.
/// - `macs`: the link-layer addresses of the error; [`MacRewrite::Swap`]
///   sends it back to the host that sent the packet.
/// - `src`: the error's source address; `None` uses the offending packet's
///   destination address (a transparent bump in the wire has no address of
///   its own).
/// - `mtu`: the next-hop MTU to report.
/// - `max_len`: the largest IP packet the error may be, normally
///   [`V4_MAX_ERROR_LEN`] (RFC 1812 §4.3.2.3) or less when the port it leaves
///   by has a smaller MTU.
///
/// The error: version 4, IHL 5, TOS 0xc0 (internetwork control), ID 0, DF
/// clear, TTL 255, protocol 1, header checksum; then the ICMP header and its
/// checksum (RFC 792) over the header and the quote. The quote is as much of
/// the original IP packet, from its header up to its total length, as fits
/// in `max_len` (RFC 1812 §4.3.2.3); [`IcmpRefusal::NoRoom`] if that is less
/// than its header and 8 bytes of data (RFC 792) or the buffer is too short.
/// VLAN tags and EtherType are kept.
pub fn build_frag_needed(
    frame: &mut [u8],
    l3: &L3Ctx,
    macs: MacRewrite,
    src: Option<[u8; 4]>,
    mtu: u16,
    max_len: usize,
) -> Result<usize, IcmpRefusal> {
    let repr = icmp::v4::Repr::FragNeeded { next_hop_mtu: mtu };
    build_v4(frame, l3, macs, src, repr, max_len)
}

/// Rewrites `frame` in place into an ICMP Time Exceeded, TTL exceeded in
/// transit (type 11 code 0, RFC 792; RFC 1812 §5.3.1: a router that drops
/// a packet whose TTL would reach zero), about the IPv4 packet `l3`
/// describes. Arguments, rules and layout as for [`build_frag_needed`].
pub fn build_time_exceeded_v4(
    frame: &mut [u8],
    l3: &L3Ctx,
    macs: MacRewrite,
    src: Option<[u8; 4]>,
    max_len: usize,
) -> Result<usize, IcmpRefusal> {
    build_v4(frame, l3, macs, src, icmp::v4::Repr::TimeExceeded, max_len)
}

/// The IPv4 errors: `repr` in front of the quote.
fn build_v4(
    frame: &mut [u8],
    l3: &L3Ctx,
    macs: MacRewrite,
    src: Option<[u8; 4]>,
    repr: icmp::v4::Repr,
    max_len: usize,
) -> Result<usize, IcmpRefusal> {
    let orig = inspect_v4(frame, l3)?;
    let err_src = match src {
        Some(a) => a,
        None if ipv4::is_unicast_source(orig.dst) => orig.dst,
        None => return Err(IcmpRefusal::BadSource),
    };
    let quote = quote_len(
        orig.total_len,
        max_len,
        V4_ERROR_HEADERS,
        V4_MAX_TOTAL_LEN,
        orig.header_len + 8,
    )?;
    let new_len = make_room(frame, l3.l2_len, V4_ERROR_HEADERS, quote, macs)?;
    let (ip_hdr, icmp_msg) = frame[l3.l2_len..new_len].split_at_mut(ipv4::MIN_HEADER_LEN);
    repr.emit(&mut icmp::Message::new_unchecked(icmp_msg));
    ipv4::Repr {
        tos: V4_ERROR_TOS,
        ident: 0,
        flags_offset: 0,
        ttl: ERROR_TTL,
        protocol: ipv4::protocol::ICMP,
        src: err_src,
        dst: orig.src,
        options: &[],
        // At most V4_MAX_TOTAL_LEN in all, by `quote_len`.
        payload_len: icmp::HEADER_LEN + quote,
    }
    .emit(&mut ipv4::Packet::new_unchecked(ip_hdr));
    Ok(new_len)
}

/// Rewrites `frame` in place into an ICMPv6 Packet Too Big (type 2 code 0,
/// RFC 4443 §3.2: the MTU as 32 bits) about the IPv6 packet `l3` describes,
/// addressed back to that packet's source, and returns the new frame length.
///
/// Arguments as for [`build_frag_needed`], with the rules of [`check_v6`];
/// `max_len` is normally [`V6_MAX_ERROR_LEN`] (RFC 4443 §2.4 (c)). With `src`
/// `None` and a multicast destination the error would have no unicast source
/// (RFC 4443 §2.2) and is refused with [`IcmpRefusal::GroupDestination`].
///
/// The error: version 6, traffic class and flow label 0, next header 58, hop
/// limit 255, payload length 8 + quote; the ICMPv6 checksum covers the RFC
/// 8200 §8.1 pseudo-header (RFC 4443 §2.3). The quote is as much of the
/// original packet, from its IPv6 header up to its payload length, as fits
/// in `max_len` (RFC 4443 §3.2); [`IcmpRefusal::NoRoom`] if that is less than
/// the fixed header and 8 bytes or the buffer is too short.
pub fn build_packet_too_big(
    frame: &mut [u8],
    l3: &L3Ctx,
    macs: MacRewrite,
    src: Option<[u8; 16]>,
    mtu: u32,
    max_len: usize,
) -> Result<usize, IcmpRefusal> {
    build_v6(
        frame,
        l3,
        macs,
        src,
        icmp::v6::Repr::PacketTooBig { mtu },
        max_len,
    )
}

/// Rewrites `frame` in place into an ICMPv6 Time Exceeded, hop limit
/// exceeded in transit (type 3 code 0, RFC 4443 §3.3), about the IPv6
/// packet `l3` describes. Arguments and layout as for
/// [`build_packet_too_big`]; unlike Packet Too Big it is never sent about a
/// packet to a multicast group (RFC 4443 §2.4 (e.3)).
pub fn build_time_exceeded_v6(
    frame: &mut [u8],
    l3: &L3Ctx,
    macs: MacRewrite,
    src: Option<[u8; 16]>,
    max_len: usize,
) -> Result<usize, IcmpRefusal> {
    build_v6(frame, l3, macs, src, icmp::v6::Repr::TimeExceeded, max_len)
}

/// The ICMPv6 errors: `repr` in front of the quote.
fn build_v6(
    frame: &mut [u8],
    l3: &L3Ctx,
    macs: MacRewrite,
    src: Option<[u8; 16]>,
    repr: icmp::v6::Repr,
    max_len: usize,
) -> Result<usize, IcmpRefusal> {
    let orig = inspect_v6(frame, l3)?;
    if repr == icmp::v6::Repr::TimeExceeded && ipv6::is_multicast(&orig.dst) {
        return Err(IcmpRefusal::GroupDestination);
    }
    let err_src = match src {
        Some(a) => a,
        None if ipv6::is_multicast(&orig.dst) => return Err(IcmpRefusal::GroupDestination),
        None if ipv6::is_unicast_source(&orig.dst) => orig.dst,
        None => return Err(IcmpRefusal::BadSource),
    };
    let quote = quote_len(
        orig.total_len,
        max_len,
        V6_ERROR_HEADERS,
        V6_MAX_TOTAL_LEN,
        orig.header_len + 8,
    )?;
    let new_len = make_room(frame, l3.l2_len, V6_ERROR_HEADERS, quote, macs)?;
    let (ip_hdr, icmp_msg) = frame[l3.l2_len..new_len].split_at_mut(ipv6::HEADER_LEN);
    repr.emit(
        &mut icmp::Message::new_unchecked(icmp_msg),
        &err_src,
        &orig.src,
    );
    ipv6::Repr {
        src: err_src,
        dst: orig.src,
        next_header: ipv4::protocol::ICMPV6,
        // At most u16::MAX by `quote_len`.
        payload_len: icmp::HEADER_LEN + quote,
        hop_limit: ERROR_TTL,
    }
    .emit(&mut ipv6::Packet::new_unchecked(ip_hdr));
    Ok(new_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::WireError;
    use etherparse::icmpv4::DestUnreachableHeader;
    use etherparse::{
        Icmpv4Type, Icmpv6Type, IpFragOffset, IpHeaders, IpNumber, Ipv4Header, Ipv4HeaderSlice,
        Ipv4Options, Ipv6Header, LinkSlice, NetSlice, PacketBuilder, SlicedPacket, TransportSlice,
    };
    use proptest::prelude::*;

    /// The host that sent the offending packet, and the one it was sent to.
    const MAC_CLIENT: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
    const MAC_SERVER: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
    const CLIENT4: [u8; 4] = [192, 0, 2, 1];
    const SERVER4: [u8; 4] = [198, 51, 100, 2];
    const OWN4: [u8; 4] = [203, 0, 113, 9];
    const CLIENT6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const SERVER6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    const OWN6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
    /// A UMEM chunk.
    const CHUNK: usize = 2048;

    /// Ethernet header from the client to the server with `vlans` tags.
    fn l2(vlans: usize, et: u16) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&MAC_SERVER);
        v.extend_from_slice(&MAC_CLIENT);
        match vlans {
            0 => {}
            1 => v.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]),
            _ => v.extend_from_slice(&[0x88, 0xa8, 0x00, 0xc8, 0x81, 0x00, 0x00, 0x64]),
        }
        v.extend_from_slice(&et.to_be_bytes());
        v
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + 3) as u8).collect()
    }

    #[derive(Clone, Copy)]
    enum T4 {
        Udp,
        Tcp,
        Echo,
        Raw(u8, u8),
    }

    fn v4_header(src: [u8; 4], dst: [u8; 4], df: bool) -> Ipv4Header {
        let mut h = Ipv4Header::new(0, 64, IpNumber::UDP, src, dst).unwrap();
        h.dont_fragment = df;
        h.identification = 0x1234;
        h
    }

    /// An IPv4 packet written by etherparse: `payload_len` bytes after the
    /// transport header.
    fn v4_packet(h: Ipv4Header, t: T4, payload_len: usize) -> Vec<u8> {
        let b = PacketBuilder::ip(IpHeaders::Ipv4(h, Default::default()));
        let payload = pattern(payload_len);
        let mut out = Vec::new();
        match t {
            T4::Udp => b.udp(40000, 53).write(&mut out, &payload),
            T4::Tcp => b.tcp(40000, 80, 1, 65535).write(&mut out, &payload),
            T4::Echo => b.icmpv4_echo_request(7, 1).write(&mut out, &payload),
            T4::Raw(ty, code) => b
                .icmpv4_raw(ty, code, [0, 0, 0, 0])
                .write(&mut out, &payload),
        }
        .unwrap();
        out
    }

    /// An IPv4 packet with a verbatim payload (no transport header).
    fn v4_raw(mut h: Ipv4Header, proto: u8, payload: &[u8]) -> Vec<u8> {
        h.protocol = IpNumber(proto);
        h.total_len = (h.header_len() + payload.len()) as u16;
        h.header_checksum = h.calc_header_checksum();
        let mut v = h.to_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    }

    fn v6_header(src: [u8; 16], dst: [u8; 16]) -> Ipv6Header {
        Ipv6Header {
            traffic_class: 0x28,
            hop_limit: 64,
            source: src,
            destination: dst,
            ..Default::default()
        }
    }

    /// An IPv6 UDP packet written by etherparse.
    fn v6_udp(src: [u8; 16], dst: [u8; 16], payload_len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ip(IpHeaders::Ipv6(v6_header(src, dst), Default::default()))
            .udp(40000, 53)
            .write(&mut out, &pattern(payload_len))
            .unwrap();
        out
    }

    /// An IPv6 packet whose fixed header says `first` and whose payload
    /// (extension headers and all) is `rest`, verbatim.
    fn v6_raw(src: [u8; 16], dst: [u8; 16], first: u8, rest: &[u8]) -> Vec<u8> {
        let mut h = v6_header(src, dst);
        h.next_header = IpNumber(first);
        h.payload_length = rest.len() as u16;
        let mut v = h.to_bytes().to_vec();
        v.extend_from_slice(rest);
        v
    }

    fn frame(vlans: usize, et: u16, ip: &[u8]) -> Vec<u8> {
        let mut f = l2(vlans, et);
        f.extend_from_slice(ip);
        f
    }

    fn frame4(vlans: usize, ip: &[u8]) -> Vec<u8> {
        frame(vlans, 0x0800, ip)
    }

    fn frame6(vlans: usize, ip: &[u8]) -> Vec<u8> {
        frame(vlans, 0x86dd, ip)
    }

    /// The frame in a UMEM-chunk-sized buffer filled with junk after it.
    fn chunk(f: &[u8]) -> Vec<u8> {
        let mut b = f.to_vec();
        b.resize(CHUNK, 0xee);
        b
    }

    fn l2_len(vlans: usize) -> usize {
        14 + 4 * vlans
    }

    /// The context the pipeline would hand down for `f`.
    fn ctx(f: &[u8]) -> L3Ctx {
        L3Ctx::parse(f).unwrap()
    }

    /// Checks an IPv4 error with etherparse: `out` is the error frame,
    /// `orig` the offending frame.
    fn verify_v4(out: &[u8], orig: &[u8], vlans: usize, err_src: [u8; 4], mtu: u16) {
        let l2 = l2_len(vlans);
        let orig_ip = Ipv4HeaderSlice::from_slice(&orig[l2..]).unwrap();
        let p = SlicedPacket::from_ethernet(out).unwrap();
        let Some(LinkSlice::Ethernet2(eth)) = &p.link else {
            panic!("no Ethernet: {:?}", p.link)
        };
        assert_eq!(eth.destination(), MAC_CLIENT);
        assert_eq!(eth.source(), MAC_SERVER);
        assert_eq!(p.link_exts.len(), vlans);
        assert_eq!(out[12..l2], orig[12..l2], "VLAN tags and EtherType kept");

        let Some(NetSlice::Ipv4(ip)) = &p.net else {
            panic!("no IPv4: {:?}", p.net)
        };
        let h = ip.header();
        assert_eq!(h.ihl(), 5);
        assert_eq!(h.slice()[1], 0xc0, "TOS internetwork control");
        assert_eq!(usize::from(h.total_len()), out.len() - l2);
        assert_eq!(h.identification(), 0);
        assert!(!h.dont_fragment() && !h.more_fragments());
        assert_eq!(h.fragments_offset().value(), 0);
        assert_eq!(h.ttl(), 255);
        assert_eq!(h.protocol(), IpNumber::ICMP);
        assert_eq!(h.source(), err_src);
        assert_eq!(h.destination(), orig_ip.source());
        assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum());

        let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
            panic!("no ICMP: {:?}", p.transport)
        };
        assert_eq!(
            icmp.icmp_type(),
            Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
                next_hop_mtu: mtu
            })
        );
        assert_eq!(icmp.bytes5to8(), [0, 0, (mtu >> 8) as u8, mtu as u8]);
        assert_eq!(
            icmp.checksum(),
            icmp.icmp_type().calc_checksum(icmp.payload())
        );
        let quote = icmp.payload();
        assert_eq!(quote.len(), out.len() - l2 - 28);
        assert_eq!(quote, &orig[l2..l2 + quote.len()]);
    }

    /// Checks an ICMPv6 Packet Too Big with etherparse.
    fn verify_v6(out: &[u8], orig: &[u8], vlans: usize, err_src: [u8; 16], mtu: u32) {
        let l2 = l2_len(vlans);
        let p = SlicedPacket::from_ethernet(out).unwrap();
        let Some(LinkSlice::Ethernet2(eth)) = &p.link else {
            panic!("no Ethernet: {:?}", p.link)
        };
        assert_eq!(eth.destination(), MAC_CLIENT);
        assert_eq!(eth.source(), MAC_SERVER);
        assert_eq!(p.link_exts.len(), vlans);
        assert_eq!(out[12..l2], orig[12..l2], "VLAN tags and EtherType kept");

        let Some(NetSlice::Ipv6(ip)) = &p.net else {
            panic!("no IPv6: {:?}", p.net)
        };
        let h = ip.header();
        assert_eq!(h.traffic_class(), 0);
        assert_eq!(h.flow_label().value(), 0);
        assert_eq!(usize::from(h.payload_length()), out.len() - l2 - 40);
        assert_eq!(h.next_header(), IpNumber::IPV6_ICMP);
        assert_eq!(h.hop_limit(), 255);
        assert_eq!(h.source(), err_src);
        let orig_src: [u8; 16] = orig[l2 + 8..l2 + 24].try_into().unwrap();
        assert_eq!(h.destination(), orig_src);

        let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else {
            panic!("no ICMPv6: {:?}", p.transport)
        };
        assert_eq!(icmp.icmp_type(), Icmpv6Type::PacketTooBig { mtu });
        assert!(icmp.is_checksum_valid(err_src, orig_src));
        assert_eq!(
            icmp.checksum(),
            icmp.icmp_type()
                .calc_checksum(err_src, orig_src, icmp.payload())
                .unwrap()
        );
        let quote = icmp.payload();
        assert_eq!(quote.len(), out.len() - l2 - 48);
        assert_eq!(quote, &orig[l2..l2 + quote.len()]);
    }

    // VECTORS I1: MTU 576, a 1500-byte IPv4 DF packet (UDP and TCP).
    #[test]
    fn i1_frag_needed_576() {
        for (t, l4) in [(T4::Udp, 8), (T4::Tcp, 20)] {
            let ip = v4_packet(v4_header(CLIENT4, SERVER4, true), t, 1500 - 20 - l4);
            assert_eq!(ip.len(), 1500);
            let f = frame4(0, &ip);
            assert_eq!(check_v4(&f, &ctx(&f)), Ok(()));
            let mut b = chunk(&f);
            let n = build_frag_needed(
                &mut b,
                &ctx(&f),
                MacRewrite::Swap,
                None,
                576,
                V4_MAX_ERROR_LEN,
            )
            .unwrap();
            assert_eq!(n, 14 + 576);
            let out = &b[..n];
            verify_v4(out, &f, 0, SERVER4, 576);
            let p = SlicedPacket::from_ethernet(out).unwrap();
            let Some(TransportSlice::Icmpv4(icmp)) = p.transport else {
                panic!("no ICMP")
            };
            assert_eq!(icmp.payload(), &ip[..548]);
            let quoted = Ipv4HeaderSlice::from_slice(icmp.payload()).unwrap();
            assert!(quoted.dont_fragment());
            assert_eq!(quoted.ttl(), 64);
            assert_eq!(quoted.total_len(), 1500);
            assert_eq!(
                quoted.header_checksum(),
                quoted.to_header().calc_header_checksum()
            );
        }
    }

    // VECTORS I2: MTU 1280, a 1288-byte ICMP echo request with DF.
    #[test]
    fn i2_echo_request_1288() {
        let ip = v4_packet(v4_header(CLIENT4, SERVER4, true), T4::Echo, 1288 - 28);
        assert_eq!(ip.len(), 1288);
        let f = frame4(0, &ip);
        assert_eq!(check_v4(&f, &ctx(&f)), Ok(()));
        let mut b = chunk(&f);
        let n = build_frag_needed(
            &mut b,
            &ctx(&f),
            MacRewrite::Swap,
            None,
            1280,
            V4_MAX_ERROR_LEN,
        )
        .unwrap();
        assert_eq!(n, 14 + 576);
        verify_v4(&b[..n], &f, 0, SERVER4, 1280);
    }

    // VECTORS I3: MTU 1280, an IPv6 packet larger than 1280.
    #[test]
    fn i3_packet_too_big_1280() {
        let ip = v6_udp(CLIENT6, SERVER6, 1500 - 48);
        assert_eq!(ip.len(), 1500);
        let f = frame6(0, &ip);
        assert_eq!(check_v6(&f, &ctx(&f)), Ok(()));
        let mut b = chunk(&f);
        let n = build_packet_too_big(
            &mut b,
            &ctx(&f),
            MacRewrite::Swap,
            None,
            1280,
            V6_MAX_ERROR_LEN,
        )
        .unwrap();
        assert_eq!(n, 1294);
        let out = &b[..n];
        verify_v6(out, &f, 0, SERVER6, 1280);
        let p = SlicedPacket::from_ethernet(out).unwrap();
        let Some(NetSlice::Ipv6(v6)) = &p.net else {
            panic!()
        };
        assert_eq!(v6.header().payload_length(), 1240);
        let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else {
            panic!()
        };
        assert_eq!(icmp.payload(), &ip[..1232]);
    }

    /// Asserts that both check and build refuse `f` with `want` and that the
    /// build leaves the buffer untouched.
    fn refused_v4(f: &[u8], vlans: usize, want: IcmpRefusal) {
        assert_eq!(ctx(f).l2_len, l2_len(vlans));
        assert_eq!(check_v4(f, &ctx(f)), Err(want));
        for src in [None, Some(OWN4)] {
            let mut b = chunk(f);
            let r = build_frag_needed(
                &mut b,
                &ctx(f),
                MacRewrite::Swap,
                src,
                576,
                V4_MAX_ERROR_LEN,
            );
            assert_eq!(r, Err(want));
            assert_eq!(b, chunk(f), "frame changed on refusal");
        }
    }

    fn refused_v6(f: &[u8], vlans: usize, want: IcmpRefusal) {
        assert_eq!(ctx(f).l2_len, l2_len(vlans));
        assert_eq!(check_v6(f, &ctx(f)), Err(want));
        for src in [None, Some(OWN6)] {
            let mut b = chunk(f);
            let r = build_packet_too_big(
                &mut b,
                &ctx(f),
                MacRewrite::Swap,
                src,
                1280,
                V6_MAX_ERROR_LEN,
            );
            assert_eq!(r, Err(want));
            assert_eq!(b, chunk(f), "frame changed on refusal");
        }
    }

    // VECTORS I4, IPv4.
    #[test]
    fn i4_refusals_v4() {
        use IcmpRefusal::*;
        let udp = |src, dst| frame4(0, &v4_packet(v4_header(src, dst, true), T4::Udp, 1000));
        // About ICMP errors: Destination Unreachable, Source Quench,
        // Redirect, Time Exceeded, Parameter Problem.
        for (ty, code) in [(3, 4), (3, 1), (4, 0), (5, 1), (11, 0), (12, 0)] {
            let f = frame4(
                0,
                &v4_packet(v4_header(CLIENT4, SERVER4, true), T4::Raw(ty, code), 1000),
            );
            refused_v4(&f, 0, AboutIcmpError);
        }
        // A truncated ICMP header.
        let f = frame4(
            0,
            &v4_raw(v4_header(CLIENT4, SERVER4, true), 1, &[8, 0, 0, 0]),
        );
        refused_v4(&f, 0, Malformed);
        // A non-first fragment (whatever it carries), and the first one is fine.
        let mut h = v4_header(CLIENT4, SERVER4, false);
        h.fragment_offset = IpFragOffset::try_new(185).unwrap();
        refused_v4(
            &frame4(0, &v4_packet(h.clone(), T4::Udp, 1000)),
            0,
            NonFirstFragment,
        );
        refused_v4(
            &frame4(0, &v4_raw(h.clone(), 1, &[3, 4, 0, 0])),
            0,
            NonFirstFragment,
        );
        h.fragment_offset = IpFragOffset::ZERO;
        h.more_fragments = true;
        let f = frame4(0, &v4_packet(h, T4::Udp, 1000));
        assert_eq!(check_v4(&f, &ctx(&f)), Ok(()));
        // Sources that name no host.
        for src in [
            [0, 0, 0, 0],
            [0, 1, 2, 3],
            [127, 0, 0, 1],
            [224, 0, 0, 5],
            [239, 255, 255, 250],
            [240, 0, 0, 1],
            [255, 255, 255, 255],
        ] {
            refused_v4(&udp(src, SERVER4), 0, BadSource);
        }
        // Group destinations.
        for dst in [[224, 0, 0, 1], [239, 1, 2, 3], [255, 255, 255, 255]] {
            refused_v4(&udp(CLIENT4, dst), 0, GroupDestination);
        }
        // Ethernet broadcast / multicast destinations, unicast IP.
        for mac in [
            [0xff; 6],
            [0x01, 0x00, 0x5e, 0, 0, 1],
            [0x33, 0x33, 0, 0, 0, 1],
        ] {
            let mut f = udp(CLIENT4, SERVER4);
            f[..6].copy_from_slice(&mac);
            refused_v4(&f, 0, GroupDestination);
        }
        // A group Ethernet source.
        let mut f = udp(CLIENT4, SERVER4);
        f[6] |= 1;
        refused_v4(&f, 0, BadSource);
        // Parse once: the header checksum is the caller's to verify (the
        // pipeline drops such a packet as bad_ipv4_checksum before it asks,
        // tests/pipeline.rs), so the op does not sum the header again.
        let mut f = udp(CLIENT4, SERVER4);
        f[14 + 10] ^= 0x40;
        assert_eq!(check_v4(&f, &ctx(&f)), Ok(()));
        // Not IPv4 at all, or a context that does not fit the frame.
        let f = frame6(0, &v6_udp(CLIENT6, SERVER6, 1000));
        refused_v4(&f, 0, Malformed);
        let f = udp(CLIENT4, SERVER4);
        let good = ctx(&f);
        for bad in [
            L3Ctx { l2_len: 18, ..good },
            L3Ctx {
                total_len: good.total_len + 1,
                ..good
            },
            L3Ctx {
                header_len: 16,
                ..good
            },
            L3Ctx {
                upper: None,
                ..good
            },
        ] {
            assert_eq!(check_v4(&f, &bad), Err(Malformed), "{bad:?}");
        }
        // An ICMP echo request (and reply, and timestamp) IS answered.
        for t in [T4::Echo, T4::Raw(0, 0), T4::Raw(13, 0)] {
            let f = frame4(0, &v4_packet(v4_header(CLIENT4, SERVER4, true), t, 1000));
            assert_eq!(check_v4(&f, &ctx(&f)), Ok(()));
            let mut b = chunk(&f);
            let n = build_frag_needed(&mut b, &ctx(&f), MacRewrite::Swap, None, 1000, 576).unwrap();
            verify_v4(&b[..n], &f, 0, SERVER4, 1000);
        }
    }

    // Extension headers for the IPv6 tests.
    const HBH: u8 = 0;
    const DOPT: u8 = 60;
    const FRAG: u8 = 44;
    const ICMPV6: u8 = 58;
    const UDP: u8 = 17;

    /// An 8-byte extension header (options: PadN) followed by `next`.
    fn ext8(next: u8) -> [u8; 8] {
        [next, 0, 1, 4, 0, 0, 0, 0]
    }

    /// A Fragment header followed by `next`, at `offset` (8-byte units).
    fn frag_hdr(next: u8, offset: u16, more: bool) -> [u8; 8] {
        let w = (offset << 3) | u16::from(more);
        let [a, b] = w.to_be_bytes();
        [next, 0, a, b, 0xca, 0xfe, 0xba, 0xbe]
    }

    fn icmp6(ty: u8, len: usize) -> Vec<u8> {
        let mut v = vec![ty, 0, 0x12, 0x34, 0, 0, 0x05, 0x00];
        v.extend_from_slice(&pattern(len));
        v
    }

    // VECTORS I4, IPv6.
    #[test]
    fn i4_refusals_v6() {
        use IcmpRefusal::*;
        // ICMPv6 errors: Destination Unreachable, Packet Too Big, Time
        // Exceeded, Parameter Problem, and an unassigned error type.
        for ty in [1, 2, 3, 4, 100, 127] {
            let f = frame6(0, &v6_raw(CLIENT6, SERVER6, ICMPV6, &icmp6(ty, 1400)));
            refused_v6(&f, 0, AboutIcmpError);
            // Behind Hop-by-Hop and Destination Options.
            let mut rest = ext8(DOPT).to_vec();
            rest.extend_from_slice(&ext8(ICMPV6));
            rest.extend_from_slice(&icmp6(ty, 1400));
            refused_v6(
                &frame6(1, &v6_raw(CLIENT6, SERVER6, HBH, &rest)),
                1,
                AboutIcmpError,
            );
            // Behind a first Fragment header.
            let mut rest = frag_hdr(ICMPV6, 0, true).to_vec();
            rest.extend_from_slice(&icmp6(ty, 1400));
            refused_v6(
                &frame6(0, &v6_raw(CLIENT6, SERVER6, FRAG, &rest)),
                0,
                AboutIcmpError,
            );
        }
        // A truncated ICMPv6 header, directly and behind an extension header.
        let f = frame6(0, &v6_raw(CLIENT6, SERVER6, ICMPV6, &[128, 0, 0, 0]));
        refused_v6(&f, 0, Malformed);
        let mut rest = ext8(ICMPV6).to_vec();
        rest.extend_from_slice(&[1, 0, 0]);
        refused_v6(
            &frame6(0, &v6_raw(CLIENT6, SERVER6, HBH, &rest)),
            0,
            Malformed,
        );
        // An extension header running past the payload.
        refused_v6(
            &frame6(0, &v6_raw(CLIENT6, SERVER6, HBH, &[UDP, 1, 0, 0])),
            0,
            Malformed,
        );
        // Non-first fragments, whatever they seem to carry.
        for next in [UDP, ICMPV6] {
            let mut rest = ext8(FRAG).to_vec();
            rest.extend_from_slice(&frag_hdr(next, 160, true));
            rest.extend_from_slice(&icmp6(1, 1400));
            let f = frame6(0, &v6_raw(CLIENT6, SERVER6, HBH, &rest));
            refused_v6(&f, 0, NonFirstFragment);
        }
        // Sources that name no host: unspecified, loopback, multicast.
        let mut lo = [0u8; 16];
        lo[15] = 1;
        let mut mc = [0u8; 16];
        mc[0] = 0xff;
        mc[1] = 0x02;
        mc[15] = 1;
        for src in [[0u8; 16], lo, mc] {
            refused_v6(&frame6(0, &v6_udp(src, SERVER6, 1400)), 0, BadSource);
        }
        // Ethernet broadcast / multicast destination.
        for mac in [[0xff; 6], [0x33, 0x33, 0, 0, 0, 1]] {
            let mut f = frame6(2, &v6_udp(CLIENT6, SERVER6, 1400));
            f[..6].copy_from_slice(&mac);
            refused_v6(&f, 2, GroupDestination);
        }
        // Not IPv6.
        let f = frame4(
            0,
            &v4_packet(v4_header(CLIENT4, SERVER4, true), T4::Udp, 1400),
        );
        refused_v6(&f, 0, Malformed);
        // An echo request IS answered, behind extension headers too.
        let f = frame6(0, &v6_raw(CLIENT6, SERVER6, ICMPV6, &icmp6(128, 1400)));
        assert_eq!(check_v6(&f, &ctx(&f)), Ok(()));
        let mut rest = ext8(FRAG).to_vec();
        rest.extend_from_slice(&frag_hdr(ICMPV6, 0, true));
        rest.extend_from_slice(&icmp6(128, 1400));
        let f = frame6(0, &v6_raw(CLIENT6, SERVER6, HBH, &rest));
        assert_eq!(check_v6(&f, &ctx(&f)), Ok(()));
        let mut b = chunk(&f);
        let n = build_packet_too_big(&mut b, &ctx(&f), MacRewrite::Swap, None, 1400, 1280).unwrap();
        assert_eq!(n, 14 + 1280);
        verify_v6(&b[..n], &f, 0, SERVER6, 1400);
    }

    // RFC 4443 §2.4 (e.3): a Packet Too Big about a multicast packet is
    // allowed, but only from an address of our own (§2.2).
    #[test]
    fn v6_multicast_destination() {
        let mut mc = [0u8; 16];
        mc[0] = 0xff;
        mc[1] = 0x0e;
        mc[15] = 0x42;
        let f = frame6(0, &v6_udp(CLIENT6, mc, 1400));
        assert_eq!(check_v6(&f, &ctx(&f)), Ok(()));
        let mut b = chunk(&f);
        assert_eq!(
            build_packet_too_big(&mut b, &ctx(&f), MacRewrite::Swap, None, 1280, 1280),
            Err(IcmpRefusal::GroupDestination)
        );
        assert_eq!(b, chunk(&f));
        let n = build_packet_too_big(&mut b, &ctx(&f), MacRewrite::Swap, Some(OWN6), 1280, 1280)
            .unwrap();
        verify_v6(&b[..n], &f, 0, OWN6, 1280);
    }

    // With `src` None the offending destination becomes the error's source;
    // it must be usable as one.
    #[test]
    fn unusable_destination_as_source() {
        for dst in [[0, 0, 0, 0], [127, 0, 0, 1], [240, 0, 0, 1]] {
            let f = frame4(0, &v4_packet(v4_header(CLIENT4, dst, true), T4::Udp, 1000));
            assert_eq!(check_v4(&f, &ctx(&f)), Ok(()));
            let mut b = chunk(&f);
            let r = build_frag_needed(&mut b, &ctx(&f), MacRewrite::Swap, None, 576, 576);
            assert_eq!(r, Err(IcmpRefusal::BadSource));
            let n = build_frag_needed(&mut b, &ctx(&f), MacRewrite::Swap, Some(OWN4), 576, 576);
            verify_v4(&b[..n.unwrap()], &f, 0, OWN4, 576);
        }
        let mut lo = [0u8; 16];
        lo[15] = 1;
        let f = frame6(0, &v6_udp(CLIENT6, lo, 1400));
        let mut b = chunk(&f);
        let r = build_packet_too_big(&mut b, &ctx(&f), MacRewrite::Swap, None, 1280, 1280);
        assert_eq!(r, Err(IcmpRefusal::BadSource));
    }

    #[test]
    fn src_none_and_some() {
        let f = frame4(
            0,
            &v4_packet(v4_header(CLIENT4, SERVER4, true), T4::Udp, 1400),
        );
        let mut b = chunk(&f);
        let n = build_frag_needed(&mut b, &ctx(&f), MacRewrite::Swap, None, 1400, 576).unwrap();
        verify_v4(&b[..n], &f, 0, SERVER4, 1400);
        let mut b = chunk(&f);
        let n =
            build_frag_needed(&mut b, &ctx(&f), MacRewrite::Swap, Some(OWN4), 1400, 576).unwrap();
        verify_v4(&b[..n], &f, 0, OWN4, 1400);

        let f = frame6(0, &v6_udp(CLIENT6, SERVER6, 1400));
        let mut b = chunk(&f);
        let n = build_packet_too_big(&mut b, &ctx(&f), MacRewrite::Swap, None, 1400, 1280).unwrap();
        verify_v6(&b[..n], &f, 0, SERVER6, 1400);
        let mut b = chunk(&f);
        let n = build_packet_too_big(&mut b, &ctx(&f), MacRewrite::Swap, Some(OWN6), 1400, 1280)
            .unwrap();
        verify_v6(&b[..n], &f, 0, OWN6, 1400);
    }

    #[test]
    fn vlan_tags_kept_and_macs_swapped() {
        for vlans in 0..=2 {
            let l2 = l2_len(vlans);
            let f = frame4(
                vlans,
                &v4_packet(v4_header(CLIENT4, SERVER4, true), T4::Tcp, 1400),
            );
            let mut b = chunk(&f);
            let n = build_frag_needed(&mut b, &ctx(&f), MacRewrite::Swap, None, 1400, 576).unwrap();
            assert_eq!(n, l2 + 576);
            assert_eq!(b[..6], MAC_CLIENT);
            assert_eq!(b[6..12], MAC_SERVER);
            verify_v4(&b[..n], &f, vlans, SERVER4, 1400);

            let f = frame6(vlans, &v6_udp(CLIENT6, SERVER6, 1400));
            let mut b = chunk(&f);
            let n =
                build_packet_too_big(&mut b, &ctx(&f), MacRewrite::Swap, None, 1400, 1280).unwrap();
            assert_eq!(n, l2 + 1280);
            assert_eq!(b[..6], MAC_CLIENT);
            assert_eq!(b[6..12], MAC_SERVER);
            verify_v6(&b[..n], &f, vlans, SERVER6, 1400);
        }
    }

    #[test]
    fn small_max_len_bounds_the_quote() {
        let f = frame4(
            1,
            &v4_packet(v4_header(CLIENT4, SERVER4, true), T4::Udp, 1400),
        );
        let mut b = chunk(&f);
        let n = build_frag_needed(&mut b, &ctx(&f), MacRewrite::Swap, None, 1400, 100).unwrap();
        assert_eq!(n, 18 + 100);
        verify_v4(&b[..n], &f, 1, SERVER4, 1400);

        let f = frame6(1, &v6_udp(CLIENT6, SERVER6, 1400));
        let mut b = chunk(&f);
        let n = build_packet_too_big(&mut b, &ctx(&f), MacRewrite::Swap, None, 1400, 100).unwrap();
        assert_eq!(n, 18 + 100);
        verify_v6(&b[..n], &f, 1, SERVER6, 1400);

        // RFC 792: at least the header and 8 bytes of data, else nothing.
        let f = frame4(
            0,
            &v4_packet(v4_header(CLIENT4, SERVER4, true), T4::Udp, 1400),
        );
        let mut b = chunk(&f);
        let n = build_frag_needed(&mut b, &ctx(&f), MacRewrite::Swap, None, 1400, 28 + 28).unwrap();
        verify_v4(&b[..n], &f, 0, SERVER4, 1400);
        let mut b = chunk(&f);
        let r = build_frag_needed(&mut b, &ctx(&f), MacRewrite::Swap, None, 1400, 28 + 27);
        assert_eq!(r, Err(IcmpRefusal::NoRoom));
        assert_eq!(b, chunk(&f));
        let f = frame6(0, &v6_udp(CLIENT6, SERVER6, 1400));
        let mut b = chunk(&f);
        let n = build_packet_too_big(&mut b, &ctx(&f), MacRewrite::Swap, None, 1400, 48 + 48);
        verify_v6(&b[..n.unwrap()], &f, 0, SERVER6, 1400);
        let mut b = chunk(&f);
        let r = build_packet_too_big(&mut b, &ctx(&f), MacRewrite::Swap, None, 1400, 48 + 47);
        assert_eq!(r, Err(IcmpRefusal::NoRoom));
        // An IPv4 header with 40 bytes of options needs 28 + 68.
        let mut h = v4_header(CLIENT4, SERVER4, true);
        h.options = Ipv4Options::try_from(&[1u8; 40][..]).unwrap();
        let f = frame4(0, &v4_packet(h, T4::Udp, 1400));
        let mut b = chunk(&f);
        let r = build_frag_needed(&mut b, &ctx(&f), MacRewrite::Swap, None, 1400, 28 + 67);
        assert_eq!(r, Err(IcmpRefusal::NoRoom));
        let n = build_frag_needed(&mut b, &ctx(&f), MacRewrite::Swap, None, 1400, 28 + 68).unwrap();
        verify_v4(&b[..n], &f, 0, SERVER4, 1400);
    }

    #[test]
    fn no_room_in_a_short_buffer() {
        // A 300-byte packet is quoted whole: the error is 28 bytes longer
        // than the frame.
        let f = frame4(
            0,
            &v4_packet(v4_header(CLIENT4, SERVER4, true), T4::Udp, 272),
        );
        let mut b = f.clone();
        let r = build_frag_needed(&mut b, &ctx(&f), MacRewrite::Swap, None, 68, 576);
        assert_eq!(r, Err(IcmpRefusal::NoRoom));
        assert_eq!(b, f);
        b.resize(f.len() + 27, 0);
        let r = build_frag_needed(&mut b, &ctx(&f), MacRewrite::Swap, None, 68, 576);
        assert_eq!(r, Err(IcmpRefusal::NoRoom));
        b.resize(f.len() + 28, 0);
        let n = build_frag_needed(&mut b, &ctx(&f), MacRewrite::Swap, None, 68, 576).unwrap();
        assert_eq!(n, b.len());
        verify_v4(&b[..n], &f, 0, SERVER4, 68);

        let f = frame6(0, &v6_udp(CLIENT6, SERVER6, 300));
        let mut b = f.clone();
        b.resize(f.len() + 47, 0);
        let r = build_packet_too_big(&mut b, &ctx(&f), MacRewrite::Swap, None, 1280, 1280);
        assert_eq!(r, Err(IcmpRefusal::NoRoom));
        b.resize(f.len() + 48, 0);
        let n = build_packet_too_big(&mut b, &ctx(&f), MacRewrite::Swap, None, 1280, 1280).unwrap();
        verify_v6(&b[..n], &f, 0, SERVER6, 1280);
    }

    fn test_frames() -> Vec<(Vec<u8>, usize, bool)> {
        let mut rest = ext8(FRAG).to_vec();
        rest.extend_from_slice(&frag_hdr(ICMPV6, 0, true));
        rest.extend_from_slice(&icmp6(128, 100));
        vec![
            (
                frame4(
                    0,
                    &v4_packet(v4_header(CLIENT4, SERVER4, true), T4::Udp, 600),
                ),
                0,
                true,
            ),
            (
                frame4(
                    2,
                    &v4_packet(v4_header(CLIENT4, SERVER4, true), T4::Echo, 100),
                ),
                2,
                true,
            ),
            (frame6(0, &v6_udp(CLIENT6, SERVER6, 600)), 0, false),
            (frame6(1, &v6_raw(CLIENT6, SERVER6, HBH, &rest)), 1, false),
        ]
    }

    #[test]
    fn every_truncated_prefix_is_refused() {
        for (f, vlans, v4) in test_frames() {
            let l2 = l2_len(vlans);
            let l3 = ctx(&f);
            assert_eq!(l3.l2_len, l2);
            let run = |b: &mut [u8], l3: &L3Ctx| {
                if v4 {
                    build_frag_needed(b, l3, MacRewrite::Swap, None, 576, 576).map(|_| ())
                } else {
                    build_packet_too_big(b, l3, MacRewrite::Swap, None, 1280, 1280).map(|_| ())
                }
            };
            let check = |b: &[u8], l3: &L3Ctx| {
                if v4 {
                    check_v4(b, l3)
                } else {
                    check_v6(b, l3)
                }
            };
            // The whole frame is fine.
            assert_eq!(check(&f, &l3), Ok(()));
            assert_eq!(run(&mut chunk(&f), &l3), Ok(()));
            for n in 0..f.len() {
                // No context is parsed from a prefix...
                assert_eq!(L3Ctx::parse(&f[..n]), Err(WireError::Truncated), "len {n}");
                // ...and the whole frame's context does not fit one.
                let mut b = f[..n].to_vec();
                assert_eq!(check(&b, &l3), Err(IcmpRefusal::Malformed), "len {n}");
                assert_eq!(run(&mut b, &l3), Err(IcmpRefusal::Malformed), "len {n}");
                assert_eq!(b, f[..n]);
            }
            // Contexts that disagree with the frame.
            for bad in [
                L3Ctx { l2_len: 0, ..l3 },
                L3Ctx { l2_len: 12, ..l3 },
                L3Ctx {
                    l2_len: l2 + 2,
                    ..l3
                },
                L3Ctx {
                    l2_len: l2 + 4,
                    ..l3
                },
                L3Ctx {
                    l2_len: usize::MAX,
                    ..l3
                },
                L3Ctx {
                    total_len: usize::MAX,
                    ..l3
                },
                L3Ctx {
                    header_len: l3.total_len + 1,
                    ..l3
                },
                L3Ctx { upper: None, ..l3 },
            ] {
                let mut b = chunk(&f);
                assert_eq!(check(&b, &bad), Err(IcmpRefusal::Malformed), "{bad:?}");
                assert_eq!(run(&mut b, &bad), Err(IcmpRefusal::Malformed), "{bad:?}");
                assert_eq!(b, chunk(&f));
            }
        }
    }

    proptest! {
        #[test]
        fn v4_quote_and_checksums(
            payload in 0usize..1500,
            options in 0usize..=10,
            max_len in 0usize..1700,
            vlans in 0usize..=2,
            own in any::<bool>(),
            mtu in any::<u16>(),
            padding in 0usize..40,
        ) {
            let mut h = v4_header(CLIENT4, SERVER4, true);
            h.options = Ipv4Options::try_from(&vec![1u8; options * 4][..]).unwrap();
            let ip = v4_packet(h, T4::Udp, payload);
            let mut f = frame4(vlans, &ip);
            let orig = f.clone();
            // Ethernet padding is never quoted.
            f.extend(std::iter::repeat_n(0x55, padding));
            let l2 = l2_len(vlans);
            let src = own.then_some(OWN4);
            let mut b = chunk(&f);
            let r = build_frag_needed(&mut b, &ctx(&f), MacRewrite::Swap, src, mtu, max_len);
            let quote = ip.len().min(max_len.saturating_sub(28));
            if quote < ip.len().min(20 + options * 4 + 8) {
                prop_assert_eq!(r, Err(IcmpRefusal::NoRoom));
                prop_assert_eq!(&b, &chunk(&f));
            } else {
                let n = r.unwrap();
                prop_assert_eq!(n, l2 + 28 + quote);
                prop_assert!(n - l2 <= max_len);
                verify_v4(&b[..n], &orig, vlans, src.unwrap_or(SERVER4), mtu);
            }
        }

        #[test]
        fn v6_quote_and_checksums(
            payload in 0usize..1500,
            max_len in 0usize..1700,
            vlans in 0usize..=2,
            own in any::<bool>(),
            mtu in any::<u32>(),
            padding in 0usize..40,
        ) {
            let ip = v6_udp(CLIENT6, SERVER6, payload);
            let mut f = frame6(vlans, &ip);
            let orig = f.clone();
            f.extend(std::iter::repeat_n(0x55, padding));
            let l2 = l2_len(vlans);
            let src = own.then_some(OWN6);
            let mut b = chunk(&f);
            let r = build_packet_too_big(&mut b, &ctx(&f), MacRewrite::Swap, src, mtu, max_len);
            let quote = ip.len().min(max_len.saturating_sub(48));
            if quote < 48 {
                prop_assert_eq!(r, Err(IcmpRefusal::NoRoom));
                prop_assert_eq!(&b, &chunk(&f));
            } else {
                let n = r.unwrap();
                prop_assert_eq!(n, l2 + 48 + quote);
                prop_assert!(n - l2 <= max_len);
                verify_v6(&b[..n], &orig, vlans, src.unwrap_or(SERVER6), mtu);
            }
        }

        // Damaged frames and wrong contexts never panic, and an error built
        // from the context the pipeline would parse is a valid one.
        #[test]
        fn damaged_frames_never_panic(
            which in 0usize..4,
            flips in proptest::collection::vec((0usize..120, any::<u8>()), 0..4),
            deltas in proptest::option::of((-30isize..30, -6isize..6, -8isize..8, -8isize..8)),
            max_len in 0usize..2000,
            buf_len in 0usize..=CHUNK,
        ) {
            let (f, _, v4) = test_frames().swap_remove(which);
            let mut b = chunk(&f);
            for (at, x) in flips {
                let at = at % f.len();
                b[at] ^= x;
            }
            b.truncate(buf_len);
            // The context: what the pipeline parses from the damaged frame,
            // or the original's with its fields pushed off.
            let (l3, parsed) = match (deltas, L3Ctx::parse(&b)) {
                (None, Ok(l3)) => (l3, true),
                (d, _) => {
                    let (dt, dl, dh, du) = d.unwrap_or_default();
                    let l3 = ctx(&f);
                    let upper = l3.upper.map(|u| UpperLayer {
                        offset: u.offset.saturating_add_signed(du),
                        ..u
                    });
                    let l3 = L3Ctx {
                        l2_len: l3.l2_len.saturating_add_signed(dl),
                        header_len: l3.header_len.saturating_add_signed(dh),
                        total_len: l3.total_len.saturating_add_signed(dt),
                        upper,
                    };
                    (l3, false)
                }
            };
            let r = if v4 {
                let _ = check_v4(&b, &l3);
                build_frag_needed(&mut b, &l3, MacRewrite::Swap, None, 1280, max_len)
            } else {
                let _ = check_v6(&b, &l3);
                build_packet_too_big(&mut b, &l3, MacRewrite::Swap, None, 1280, max_len)
            };
            if let Ok(n) = r {
                prop_assert!(n <= b.len());
                if parsed {
                    let p = SlicedPacket::from_ethernet(&b[..n]);
                    match (p.map(|p| p.transport), v4) {
                        (Ok(Some(TransportSlice::Icmpv4(icmp))), true) => {
                            prop_assert_eq!(icmp.type_u8(), 3);
                            prop_assert_eq!(icmp.code_u8(), 4);
                            prop_assert_eq!(
                                icmp.checksum(),
                                icmp.icmp_type().calc_checksum(icmp.payload())
                            );
                        }
                        (Ok(Some(TransportSlice::Icmpv6(icmp))), false) => {
                            prop_assert_eq!(icmp.icmp_type(), Icmpv6Type::PacketTooBig { mtu: 1280 });
                        }
                        (other, _) => prop_assert!(false, "not an ICMP error: {:?}", other),
                    }
                }
            }
        }
    }
}
