//! IPv6 packets (RFC 8200) and the walk through extension headers.

use super::WireError;

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;
/// The minimum link MTU for IPv6 (RFC 8200 §5).
pub const MIN_MTU: u16 = 1280;
/// The most extension headers [`Packet::upper_layer`] walks before giving up.
pub const MAX_EXT_HEADERS: usize = 8;

/// Next Header values of the extension headers we walk through.
pub mod next_header {
    /// Hop-by-Hop Options.
    pub const HOP_BY_HOP: u8 = 0;
    /// Routing.
    pub const ROUTING: u8 = 43;
    /// Fragment.
    pub const FRAGMENT: u8 = 44;
    /// Destination Options.
    pub const DEST_OPTS: u8 = 60;
    /// No Next Header.
    pub const NONE: u8 = 59;
}

mod field {
    use core::ops::Range;
    pub(super) const PAYLOAD_LEN: Range<usize> = 4..6;
    pub(super) const NEXT_HEADER: usize = 6;
    pub(super) const HOP_LIMIT: usize = 7;
    pub(super) const SRC: Range<usize> = 8..24;
    pub(super) const DST: Range<usize> = 24..40;
}

/// A typed view of an IPv6 packet.
///
/// After [`Packet::check_len`] succeeds no accessor panics. Bytes after the
/// payload length (Ethernet padding) are allowed and ignored.
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

pub use super::UpperLayer;

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps a buffer and checks it with [`Packet::check_len`].
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks that the buffer holds the fixed header and the whole payload,
    /// and that the version is 6. A payload length of zero with a Hop-by-Hop
    /// header (a jumbogram, RFC 2675) is refused as unsupported.
    pub fn check_len(&self) -> Result<(), WireError> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if b[0] >> 4 != 6 {
            return Err(WireError::BadVersion);
        }
        if self.payload_len() == 0 && self.next_header() == next_header::HOP_BY_HOP {
            return Err(WireError::Unsupported);
        }
        if b.len() < self.total_len() {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Consumes the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Payload length (everything after the fixed header).
    pub fn payload_len(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[4], b[5]])
    }

    /// Length of the whole packet: fixed header plus payload.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + usize::from(self.payload_len())
    }

    /// Next Header of the fixed header.
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }

    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    pub fn src(&self) -> [u8; 16] {
        let mut a = [0; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        a
    }

    /// Destination address.
    pub fn dst(&self) -> [u8; 16] {
        let mut a = [0; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        a
    }

    /// Walks Hop-by-Hop, Routing, Destination Options and Fragment headers
    /// (RFC 8200 §4) to the upper-layer header.
    ///
    /// Any other Next Header value ends the walk and is reported as the
    /// upper-layer protocol (AH and ESP included: what is behind them must
    /// not be touched). An extension header that runs past the payload is
    /// `Truncated`; more than [`MAX_EXT_HEADERS`] is `Unsupported`.
    pub fn upper_layer(&self) -> Result<UpperLayer, WireError> {
        let b = self.buffer.as_ref();
        let end = self.total_len();
        let mut nh = self.next_header();
        let mut off = HEADER_LEN;
        let mut fragment = None;
        for _ in 0..=MAX_EXT_HEADERS {
            let len = match nh {
                next_header::HOP_BY_HOP | next_header::ROUTING | next_header::DEST_OPTS => {
                    if off + 2 > end {
                        return Err(WireError::Truncated);
                    }
                    (usize::from(b[off + 1]) + 1) * 8
                }
                next_header::FRAGMENT => {
                    if off + 8 > end {
                        return Err(WireError::Truncated);
                    }
                    let w = u16::from_be_bytes([b[off + 2], b[off + 3]]);
                    fragment = Some((w >> 3, w & 1 != 0));
                    8
                }
                _ => {
                    return Ok(UpperLayer {
                        protocol: nh,
                        offset: off,
                        fragment,
                    })
                }
            };
            if off + len > end {
                return Err(WireError::Truncated);
            }
            nh = b[off];
            off += len;
            if let Some((o, _)) = fragment {
                if o != 0 {
                    // A non-first fragment: what follows is not a header.
                    return Ok(UpperLayer {
                        protocol: nh,
                        offset: off,
                        fragment,
                    });
                }
            }
        }
        Err(WireError::Unsupported)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version 6, traffic class and flow label to zero.
    pub fn set_version_clear(&mut self) {
        self.buffer.as_mut()[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
    }

    /// Sets the payload length.
    pub fn set_payload_len(&mut self, v: u16) {
        self.buffer.as_mut()[field::PAYLOAD_LEN].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets Next Header.
    pub fn set_next_header(&mut self, v: u8) {
        self.buffer.as_mut()[field::NEXT_HEADER] = v;
    }

    /// Sets the hop limit.
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = v;
    }

    /// Sets the source address.
    pub fn set_src(&mut self, a: [u8; 16]) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a);
    }

    /// Sets the destination address.
    pub fn set_dst(&mut self, a: [u8; 16]) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a);
    }
}

/// An IPv6 fixed header we originate (an ICMPv6 error's) in parsed,
/// valid-by-construction form, after smoltcp's `Ipv6Repr`.
///
/// Only for headers we write: forwarding edits bytes in place through
/// [`Packet`]. Traffic class and flow label are not kept: what we emit has
/// both zero. [`Repr::parse`] guarantees, and [`Repr::emit`] assumes, that
/// `payload_len` fits 16 bits (no jumbograms, RFC 2675).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source address.
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// Next Header of the fixed header.
    pub next_header: u8,
    /// Bytes after the fixed header.
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
}

impl Repr {
    /// Checks `packet` with [`Packet::check_len`] and parses its fixed
    /// header.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, WireError> {
        packet.check_len()?;
        Ok(Repr {
            src: packet.src(),
            dst: packet.dst(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.payload_len()),
            hop_limit: packet.hop_limit(),
        })
    }

    /// The bytes [`Repr::emit`] writes: the fixed header.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the fixed header into `packet`: version 6, traffic class and
    /// flow label zero, then every field (RFC 8200 §3). The payload is not
    /// touched.
    ///
    /// Panics if the buffer is shorter than [`HEADER_LEN`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_version_clear();
        // At most u16::MAX: the invariant.
        packet.set_payload_len(self.payload_len as u16);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src(self.src);
        packet.set_dst(self.dst);
    }
}

/// Whether an IPv6 address may be the source of a packet we answer with an
/// ICMPv6 error (RFC 4443 §2.4 (e)): not unspecified, loopback or multicast.
pub fn is_unicast_source(a: &[u8; 16]) -> bool {
    let unspecified = a.iter().all(|&x| x == 0);
    let loopback = a[..15].iter().all(|&x| x == 0) && a[15] == 1;
    !(unspecified || loopback || a[0] == 0xff)
}

/// Whether an IPv6 destination is multicast. RFC 4443 §2.4 (e.3) allows a
/// Packet Too Big about a multicast packet (PMTU discovery for multicast), so
/// the ICMP builder does not refuse on this; it is exposed for policy.
pub fn is_multicast(a: &[u8; 16]) -> bool {
    a[0] == 0xff
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2001:db8:1::1 -> 2001:db8:1::2, hop-by-hop (8 bytes, PadN) then
    // destination options (8) then a fragment header (offset 0, M) then TCP
    // (4 bytes of stand-in payload).
    fn packet() -> Vec<u8> {
        let mut b = vec![0x60, 0, 0, 0, 0, 28, next_header::HOP_BY_HOP, 64];
        b.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        b.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        b.extend_from_slice(&[next_header::DEST_OPTS, 0, 1, 4, 0, 0, 0, 0]);
        b.extend_from_slice(&[next_header::FRAGMENT, 0, 1, 4, 0, 0, 0, 0]);
        b.extend_from_slice(&[6, 0, 0x00, 0x01, 0xca, 0xfe, 0xba, 0xbe]);
        b.extend_from_slice(&[1, 2, 3, 4]);
        b
    }

    #[test]
    fn deconstruct() {
        let b = packet();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.payload_len(), 28);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src()[15], 1);
        assert_eq!(p.dst()[15], 2);
        let u = p.upper_layer().unwrap();
        assert_eq!(u.protocol, 6);
        assert_eq!(u.offset, 64);
        assert_eq!(u.fragment, Some((0, true)));
        assert!(u.has_header());
        let e = etherparse::Ipv6Slice::from_slice(&b).unwrap();
        assert_eq!(u8::from(e.payload().ip_number), u.protocol);
        assert_eq!(e.payload().payload.len(), b.len() - u.offset);
    }

    #[test]
    fn non_first_fragment_has_no_header() {
        let mut b = packet();
        b[58..60].copy_from_slice(&[0x00, 0x08]); // offset 1, M clear
        let u = Packet::new_checked(&b[..]).unwrap().upper_layer().unwrap();
        assert_eq!(u.fragment, Some((1, false)));
        assert!(!u.has_header());
    }

    #[test]
    fn construct() {
        let mut b = vec![0xffu8; 40];
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_version_clear();
        p.set_payload_len(0);
        p.set_next_header(next_header::NONE);
        p.set_hop_limit(255);
        p.set_src([0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]);
        p.set_dst([0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8]);
        let e = etherparse::Ipv6HeaderSlice::from_slice(&b).unwrap();
        assert_eq!(e.hop_limit(), 255);
        assert_eq!(e.payload_length(), 0);
        assert_eq!(e.source_addr().octets()[15], 9);
        assert_eq!(e.destination_addr().octets()[15], 8);
        let u = Packet::new_checked(&b[..]).unwrap().upper_layer().unwrap();
        assert!(!u.has_header());
    }

    #[test]
    fn repr_deconstruct_and_construct() {
        let b = packet();
        let r = Repr::parse(&Packet::new_checked(&b[..]).unwrap()).unwrap();
        assert_eq!(r.next_header, next_header::HOP_BY_HOP);
        assert_eq!(r.payload_len, 28);
        assert_eq!(r.hop_limit, 64);
        assert_eq!((r.src[15], r.dst[15]), (1, 2));
        assert_eq!(r.buffer_len(), HEADER_LEN);
        // Emitted over junk with a traffic class and flow label: those are
        // cleared, the rest of the fixed header is the same, the payload
        // untouched.
        let mut out = b.clone();
        out[..4].copy_from_slice(&[0x6a, 0xbc, 0xde, 0xf0]);
        out[4..40].fill(0xee);
        r.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, b);
        let e = etherparse::Ipv6HeaderSlice::from_slice(&out).unwrap();
        assert_eq!(e.traffic_class(), 0);
        assert_eq!(e.flow_label().value(), 0);
        assert_eq!(e.payload_length(), 28);
        assert_eq!(e.next_header().0, next_header::HOP_BY_HOP);
        assert_eq!(Repr::parse(&Packet::new_checked(&out[..]).unwrap()), Ok(r));
    }

    #[test]
    fn truncation_at_every_length() {
        let b = packet();
        for n in 0..b.len() {
            assert_eq!(
                Packet::new_checked(&b[..n]).err(),
                Some(WireError::Truncated),
                "len {n}"
            );
            assert_eq!(
                Repr::parse(&Packet::new_unchecked(&b[..n])),
                Err(WireError::Truncated),
                "len {n}"
            );
        }
        // Claimed payload shorter than the extension headers need.
        let mut b = packet();
        b[5] = 20;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.upper_layer(), Err(WireError::Truncated));
    }

    #[test]
    fn too_many_extension_headers() {
        let mut b = vec![0x60, 0, 0, 0, 0, 0, next_header::DEST_OPTS, 64];
        b.extend_from_slice(&[0; 32]);
        for _ in 0..MAX_EXT_HEADERS + 1 {
            b.extend_from_slice(&[next_header::DEST_OPTS, 0, 1, 4, 0, 0, 0, 0]);
        }
        let pl = (b.len() - 40) as u16;
        b[4..6].copy_from_slice(&pl.to_be_bytes());
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.upper_layer(), Err(WireError::Unsupported));
    }

    #[test]
    fn jumbogram_refused() {
        let mut b = packet();
        b[4..6].copy_from_slice(&[0, 0]);
        assert_eq!(
            Packet::new_checked(&b[..]).err(),
            Some(WireError::Unsupported)
        );
    }

    #[test]
    fn address_classes() {
        let mut a = [0u8; 16];
        assert!(!is_unicast_source(&a));
        a[15] = 1;
        assert!(!is_unicast_source(&a));
        a[0] = 0x20;
        assert!(is_unicast_source(&a));
        a[0] = 0xff;
        assert!(!is_unicast_source(&a));
        assert!(is_multicast(&a));
    }
}
