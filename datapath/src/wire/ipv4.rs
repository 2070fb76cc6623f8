//! IPv4 packets (RFC 791), with options.

use super::{checksum, WireError};

/// Length of an IPv4 header without options.
pub const MIN_HEADER_LEN: usize = 20;
/// Length of the longest IPv4 header (IHL 15).
pub const MAX_HEADER_LEN: usize = 60;
/// Don't Fragment flag in the flags/fragment-offset word.
pub const FLAG_DF: u16 = 0x4000;
/// More Fragments flag in the flags/fragment-offset word.
pub const FLAG_MF: u16 = 0x2000;
/// Mask of the fragment offset (in 8-byte units) in the flags/offset word.
pub const OFFSET_MASK: u16 = 0x1fff;
/// The minimum MTU every IPv4 link must carry without fragmenting (RFC 791 §3.2).
pub const MIN_MTU: u16 = 68;

/// IP protocol numbers mtugate looks at.
pub mod protocol {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
}

mod field {
    use core::ops::Range;
    pub(super) const VER_IHL: usize = 0;
    pub(super) const TOS: usize = 1;
    pub(super) const LENGTH: Range<usize> = 2..4;
    pub(super) const IDENT: Range<usize> = 4..6;
    pub(super) const FLG_OFF: Range<usize> = 6..8;
    pub(super) const TTL: usize = 8;
    pub(super) const PROTOCOL: usize = 9;
    pub(super) const CHECKSUM: Range<usize> = 10..12;
    pub(super) const SRC: Range<usize> = 12..16;
    pub(super) const DST: Range<usize> = 16..20;
}

/// A typed view of an IPv4 packet.
///
/// [`Packet::check_len`] validates version, IHL and total length against the
/// buffer; afterwards no accessor panics. Bytes after `total_len` (Ethernet
/// padding) are allowed and ignored.
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

#[inline]
fn be16(b: &[u8], r: core::ops::Range<usize>) -> u16 {
    u16::from_be_bytes([b[r.start], b[r.start + 1]])
}

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

    /// Checks that the buffer holds a whole, well-formed IPv4 header and the
    /// whole packet its total length announces.
    pub fn check_len(&self) -> Result<(), WireError> {
        let b = self.buffer.as_ref();
        if b.len() < MIN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if b[field::VER_IHL] >> 4 != 4 {
            return Err(WireError::BadVersion);
        }
        let hl = self.header_len();
        if hl < MIN_HEADER_LEN {
            return Err(WireError::BadHeaderLen);
        }
        let tl = usize::from(self.total_len());
        if tl < hl {
            return Err(WireError::BadTotalLen);
        }
        if b.len() < tl {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Consumes the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The version field.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL × 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The DSCP/ECN byte.
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::TOS]
    }

    /// Total length of the packet (header and payload) in bytes.
    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Identification.
    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::IDENT)
    }

    /// The raw flags/fragment-offset word.
    pub fn flags_offset(&self) -> u16 {
        be16(self.buffer.as_ref(), field::FLG_OFF)
    }

    /// Don't Fragment.
    pub fn dont_frag(&self) -> bool {
        self.flags_offset() & FLAG_DF != 0
    }

    /// More Fragments.
    pub fn more_frags(&self) -> bool {
        self.flags_offset() & FLAG_MF != 0
    }

    /// Fragment offset in 8-byte units.
    pub fn frag_offset(&self) -> u16 {
        self.flags_offset() & OFFSET_MASK
    }

    /// Whether this packet is a fragment (offset non-zero or MF set).
    pub fn is_fragment(&self) -> bool {
        self.flags_offset() & (FLAG_MF | OFFSET_MASK) != 0
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Protocol of the payload.
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// Header checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Source address.
    pub fn src(&self) -> [u8; 4] {
        let b = self.buffer.as_ref();
        [b[12], b[13], b[14], b[15]]
    }

    /// Destination address.
    pub fn dst(&self) -> [u8; 4] {
        let b = self.buffer.as_ref();
        [b[16], b[17], b[18], b[19]]
    }

    /// The header, options included.
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }

    /// The options (between byte 20 and the header length).
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[MIN_HEADER_LEN..self.header_len()]
    }

    /// The payload (between the header and the total length).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }

    /// Whether the header checksum is valid.
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(self.header()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version 4 and the header length in bytes (a multiple of 4).
    pub fn set_header_len(&mut self, len: usize) {
        debug_assert!(len % 4 == 0 && (MIN_HEADER_LEN..=MAX_HEADER_LEN).contains(&len));
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | ((len / 4) as u8 & 0x0f);
    }

    /// Sets the DSCP/ECN byte.
    pub fn set_tos(&mut self, v: u8) {
        self.buffer.as_mut()[field::TOS] = v;
    }

    /// Sets the total length.
    pub fn set_total_len(&mut self, v: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the identification.
    pub fn set_ident(&mut self, v: u16) {
        self.buffer.as_mut()[field::IDENT].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the raw flags/fragment-offset word.
    pub fn set_flags_offset(&mut self, v: u16) {
        self.buffer.as_mut()[field::FLG_OFF].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the time to live.
    pub fn set_ttl(&mut self, v: u8) {
        self.buffer.as_mut()[field::TTL] = v;
    }

    /// Sets the protocol.
    pub fn set_protocol(&mut self, v: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = v;
    }

    /// Sets the header checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the source address.
    pub fn set_src(&mut self, a: [u8; 4]) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a);
    }

    /// Sets the destination address.
    pub fn set_dst(&mut self, a: [u8; 4]) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a);
    }

    /// Recomputes the header checksum over the current header.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.header());
        self.set_checksum(c);
    }

    /// Changes the total length and updates the header checksum incrementally
    /// (RFC 1624), preserving any error already in it.
    pub fn update_total_len(&mut self, v: u16) {
        let old = self.total_len();
        self.set_total_len(v);
        let c = checksum::update16(self.checksum(), old, v);
        self.set_checksum(c);
    }

    /// The payload, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (h, t) = (self.header_len(), usize::from(self.total_len()));
        &mut self.buffer.as_mut()[h..t]
    }
}

/// An IPv4 header we originate (a fragment's, an ICMP error's) in parsed,
/// valid-by-construction form, after smoltcp's `Ipv4Repr` (with options).
///
/// Only for headers we write: forwarding edits bytes in place through
/// [`Packet`]. [`Repr::parse`] guarantees, and [`Repr::emit`] assumes, that
/// `options` is a whole number of 4-byte words, at most 40 bytes (RFC 791
/// §3.1: IHL ≤ 15), and that the total length fits 16 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr<'a> {
    /// The DSCP/ECN byte.
    pub tos: u8,
    /// Identification.
    pub ident: u16,
    /// The raw flags/fragment-offset word: reserved bit, DF, MF, offset.
    pub flags_offset: u16,
    /// Time to live.
    pub ttl: u8,
    /// Protocol of the payload.
    pub protocol: u8,
    /// Source address.
    pub src: [u8; 4],
    /// Destination address.
    pub dst: [u8; 4],
    /// The options area, padding included.
    pub options: &'a [u8],
    /// Bytes of payload after the header.
    pub payload_len: usize,
}

impl<'a> Repr<'a> {
    /// Checks `packet` with [`Packet::check_len`] and parses its header.
    ///
    /// The header checksum is not verified: whether a corrupt header may be
    /// used is the caller's decision (the pipeline checks it once before it
    /// originates anything from a header, RFC 1812 §5.2.2), and
    /// [`Repr::emit`] always writes a correct one.
    pub fn parse(packet: &Packet<&'a [u8]>) -> Result<Repr<'a>, WireError> {
        packet.check_len()?;
        let b: &'a [u8] = packet.into_inner();
        let hl = packet.header_len();
        // The fixed part through a view of exactly its length: the field
        // reads need no bounds checks of their own.
        let p = Packet::new_unchecked(&b[..MIN_HEADER_LEN]);
        Ok(Repr {
            tos: p.tos(),
            ident: p.ident(),
            flags_offset: p.flags_offset(),
            ttl: p.ttl(),
            protocol: p.protocol(),
            src: p.src(),
            dst: p.dst(),
            options: &b[MIN_HEADER_LEN..hl],
            payload_len: usize::from(packet.total_len()) - hl,
        })
    }

    /// The bytes [`Repr::emit`] writes: the header, options included.
    pub const fn buffer_len(&self) -> usize {
        MIN_HEADER_LEN + self.options.len()
    }

    /// Header and payload: the total length field.
    pub const fn total_len(&self) -> usize {
        self.buffer_len() + self.payload_len
    }

    /// Writes the header into `packet` (version 4, IHL from the options,
    /// every field, the options, and the header checksum computed over the
    /// result, RFC 791 §3.1). The payload is not touched.
    ///
    /// Panics if the buffer is shorter than [`Repr::buffer_len`] or the
    /// invariants above do not hold.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        let hl = self.buffer_len();
        let header = &mut packet.buffer.as_mut()[..hl];
        // The fixed part through a view of exactly its length: one bounds
        // check for the header, none per field (this runs per fragment).
        let (fixed, options) = header.split_at_mut(MIN_HEADER_LEN);
        options.copy_from_slice(self.options);
        let mut p = Packet::new_unchecked(fixed);
        p.set_header_len(hl);
        p.set_tos(self.tos);
        // At most u16::MAX: the invariant.
        p.set_total_len(self.total_len() as u16);
        p.set_ident(self.ident);
        p.set_flags_offset(self.flags_offset);
        p.set_ttl(self.ttl);
        p.set_protocol(self.protocol);
        p.set_checksum(0);
        p.set_src(self.src);
        p.set_dst(self.dst);
        let c = checksum::checksum(header);
        packet.set_checksum(c);
    }
}

/// Whether an IPv4 address may be the source of a packet we answer with an
/// ICMP error (RFC 1812 §4.3.2.7, §5.3.7): not unspecified, loopback,
/// multicast, limited broadcast or class E.
pub fn is_unicast_source(a: [u8; 4]) -> bool {
    !(a[0] == 0 || a[0] == 127 || a[0] >= 224)
}

/// Whether an IPv4 destination is a group address (multicast or limited
/// broadcast): no ICMP error is sent about such packets (RFC 1812 §4.3.2.7).
pub fn is_group_dest(a: [u8; 4]) -> bool {
    (224..240).contains(&a[0]) || a == [255, 255, 255, 255]
}

#[cfg(test)]
mod tests {
    use super::*;

    // 192.0.2.1 -> 192.0.2.2, TCP, DF, ident 0x1234, 24-byte header with
    // options NOP NOP NOP EOL, 4 bytes of payload.
    static PACKET: [u8; 28] = [
        0x46, 0x00, 0x00, 0x1c, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00, 192, 0, 2, 1, 192,
        0, 2, 2, 0x01, 0x01, 0x01, 0x00, 0xde, 0xad, 0xbe, 0xef,
    ];

    fn packet() -> [u8; 28] {
        let mut p = PACKET;
        let c = checksum::checksum(&p[..24]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p
    }

    #[test]
    fn deconstruct() {
        let b = packet();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.total_len(), 28);
        assert_eq!(p.ident(), 0x1234);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), protocol::TCP);
        assert_eq!(p.src(), [192, 0, 2, 1]);
        assert_eq!(p.dst(), [192, 0, 2, 2]);
        assert_eq!(p.options(), &[1, 1, 1, 0]);
        assert_eq!(p.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        assert!(p.verify_checksum());
        let e = etherparse::Ipv4HeaderSlice::from_slice(&b).unwrap();
        assert_eq!(e.header_checksum(), p.checksum());
        assert_eq!(e.to_header().calc_header_checksum(), p.checksum());
    }

    #[test]
    fn construct() {
        let mut b = [0u8; 28];
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_header_len(24);
        p.set_total_len(28);
        p.set_ident(0x1234);
        p.set_flags_offset(FLAG_DF);
        p.set_ttl(64);
        p.set_protocol(protocol::TCP);
        p.set_src([192, 0, 2, 1]);
        p.set_dst([192, 0, 2, 2]);
        b[20..24].copy_from_slice(&[1, 1, 1, 0]);
        b[24..].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        Packet::new_unchecked(&mut b[..]).fill_checksum();
        assert_eq!(b, packet());
    }

    #[test]
    fn repr_deconstruct() {
        let b = packet();
        let r = Repr::parse(&Packet::new_checked(&b[..]).unwrap()).unwrap();
        assert_eq!(
            r,
            Repr {
                tos: 0,
                ident: 0x1234,
                flags_offset: FLAG_DF,
                ttl: 64,
                protocol: protocol::TCP,
                src: [192, 0, 2, 1],
                dst: [192, 0, 2, 2],
                options: &[1, 1, 1, 0],
                payload_len: 4,
            }
        );
        assert_eq!(r.buffer_len(), 24);
        assert_eq!(r.total_len(), 28);
        // The checksum is the caller's to verify: a bad one still parses.
        let mut bad = b;
        bad[10] ^= 1;
        assert_eq!(Repr::parse(&Packet::new_checked(&bad[..]).unwrap()), Ok(r));
    }

    #[test]
    fn repr_construct() {
        let b = packet();
        let r = Repr::parse(&Packet::new_checked(&b[..]).unwrap()).unwrap();
        // Emitted over junk: every header byte is written, the payload not.
        let mut out = [0xa5u8; 28];
        r.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out[..24], b[..24]);
        assert_eq!(out[24..], [0xa5; 4]);
        // etherparse agrees on every field and on the checksum.
        let e = etherparse::Ipv4HeaderSlice::from_slice(&out).unwrap();
        assert_eq!(e.to_header().calc_header_checksum(), e.header_checksum());
        assert_eq!(e.total_len(), 28);
        assert_eq!(e.identification(), 0x1234);
        assert!(e.dont_fragment());
        assert_eq!(e.options(), &[1, 1, 1, 0]);
        // No options: IHL 5.
        let r = Repr {
            options: &[],
            tos: 0xc0,
            payload_len: 8,
            ..r
        };
        let mut out = [0xffu8; 20];
        r.emit(&mut Packet::new_unchecked(&mut out[..]));
        let e = etherparse::Ipv4HeaderSlice::from_slice(&out).unwrap();
        assert_eq!((e.ihl(), e.total_len(), out[1]), (5, 28, 0xc0));
        assert_eq!(e.to_header().calc_header_checksum(), e.header_checksum());
    }

    #[test]
    fn update_total_len_keeps_checksum_valid() {
        let mut b = packet();
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.update_total_len(24);
        assert!(p.verify_checksum());
    }

    #[test]
    fn bad_headers() {
        let mut b = packet();
        b[0] = 0x44;
        assert_eq!(
            Packet::new_checked(&b[..]).err(),
            Some(WireError::BadHeaderLen)
        );
        b[0] = 0x56;
        assert_eq!(
            Packet::new_checked(&b[..]).err(),
            Some(WireError::BadVersion)
        );
        let mut b = packet();
        b[3] = 20; // shorter than the header
        assert_eq!(
            Packet::new_checked(&b[..]).err(),
            Some(WireError::BadTotalLen)
        );
        b[3] = 29; // longer than the buffer
        assert_eq!(
            Packet::new_checked(&b[..]).err(),
            Some(WireError::Truncated)
        );
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
        // Trailing padding is fine.
        let mut padded = b.to_vec();
        padded.extend_from_slice(&[0; 18]);
        let p = Packet::new_checked(&padded[..]).unwrap();
        assert_eq!(p.payload().len(), 4);
    }

    #[test]
    fn address_classes() {
        assert!(is_unicast_source([192, 0, 2, 1]));
        assert!(!is_unicast_source([0, 0, 0, 0]));
        assert!(!is_unicast_source([127, 0, 0, 1]));
        assert!(!is_unicast_source([224, 0, 0, 1]));
        assert!(!is_unicast_source([255, 255, 255, 255]));
        assert!(is_group_dest([239, 1, 2, 3]));
        assert!(is_group_dest([255, 255, 255, 255]));
        assert!(!is_group_dest([198, 51, 100, 1]));
    }
}
