//! ICMPv4 (RFC 792) and ICMPv6 (RFC 4443) headers: the parts mtugate reads
//! (is this an error message?) and writes (Fragmentation Needed, Packet Too
//! Big).

use super::{checksum, WireError};

/// Length of the ICMP/ICMPv6 header (type, code, checksum, 4 bytes of rest).
pub const HEADER_LEN: usize = 8;

/// ICMPv4 types and codes.
pub mod v4 {
    use super::{checksum, Message, WireError, HEADER_LEN};

    /// Echo Reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination Unreachable.
    pub const DEST_UNREACHABLE: u8 = 3;
    /// Code of Destination Unreachable: fragmentation needed and DF set.
    pub const CODE_FRAG_NEEDED: u8 = 4;
    /// Source Quench (deprecated, still an error).
    pub const SOURCE_QUENCH: u8 = 4;
    /// Redirect.
    pub const REDIRECT: u8 = 5;
    /// Echo Request.
    pub const ECHO_REQUEST: u8 = 8;
    /// Time Exceeded.
    pub const TIME_EXCEEDED: u8 = 11;
    /// Parameter Problem.
    pub const PARAMETER_PROBLEM: u8 = 12;

    /// Whether an ICMPv4 type is an error message (RFC 1122 §3.2.2: no ICMP
    /// error is sent about one).
    pub fn is_error(t: u8) -> bool {
        matches!(
            t,
            DEST_UNREACHABLE | SOURCE_QUENCH | REDIRECT | TIME_EXCEEDED | PARAMETER_PROBLEM
        )
    }

    /// An ICMPv4 error header we originate, in parsed, valid-by-construction
    /// form (after smoltcp's `Icmpv4Repr`). The quote behind it is not part
    /// of it: errors are built in place around the offending packet.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Repr {
        /// Destination Unreachable, fragmentation needed and DF set (type 3
        /// code 4, RFC 792), the next-hop MTU in the low 16 bits of the
        /// second word (RFC 1191 §4).
        FragNeeded {
            /// The MTU of the next-hop network.
            next_hop_mtu: u16,
        },
        /// Time Exceeded, TTL exceeded in transit (type 11 code 0, RFC 792;
        /// RFC 1812 §5.3.1): the second word unused (zero).
        TimeExceeded,
    }

    impl Repr {
        /// Parses the header of `msg`, whose buffer is the whole message,
        /// and verifies its checksum (RFC 792: over the message from the type
        /// on). Types and codes we do not originate are `Unsupported`.
        pub fn parse<T: AsRef<[u8]>>(msg: &Message<T>) -> Result<Repr, WireError> {
            msg.check_len()?;
            if checksum::checksum(msg.buffer.as_ref()) != 0 {
                return Err(WireError::BadChecksum);
            }
            match (msg.msg_type(), msg.code()) {
                (DEST_UNREACHABLE, CODE_FRAG_NEEDED) => Ok(Repr::FragNeeded {
                    next_hop_mtu: msg.next_hop_mtu(),
                }),
                (TIME_EXCEEDED, 0) => Ok(Repr::TimeExceeded),
                _ => Err(WireError::Unsupported),
            }
        }

        /// The bytes [`Repr::emit`] writes: the 8-byte header.
        pub const fn buffer_len(&self) -> usize {
            HEADER_LEN
        }

        /// Writes the header into `msg`, whose buffer is the whole message
        /// (the quote already in place behind the header), then the checksum
        /// over all of it (RFC 792).
        ///
        /// Panics if the buffer is shorter than [`HEADER_LEN`].
        pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, msg: &mut Message<T>) {
            match *self {
                Repr::FragNeeded { next_hop_mtu } => {
                    msg.set_header(DEST_UNREACHABLE, CODE_FRAG_NEEDED, u32::from(next_hop_mtu))
                }
                Repr::TimeExceeded => msg.set_header(TIME_EXCEEDED, 0, 0),
            }
            let c = checksum::checksum(msg.buffer.as_ref());
            msg.set_checksum(c);
        }
    }
}

/// ICMPv6 types.
pub mod v6 {
    use super::{checksum, Message, WireError, HEADER_LEN};

    /// Packet Too Big.
    pub const PACKET_TOO_BIG: u8 = 2;
    /// Time Exceeded.
    pub const TIME_EXCEEDED: u8 = 3;

    /// Whether an ICMPv6 type is an error message (RFC 4443 §2.1: types
    /// 0..=127).
    pub fn is_error(t: u8) -> bool {
        t < 128
    }

    /// The RFC 8200 §8.1 pseudo-header sum plus the message, folded and
    /// complemented: the checksum field's value when it holds zero, zero
    /// when the message's checksum is right (RFC 4443 §2.3).
    fn sum_with_pseudo(msg: &[u8], src: &[u8; 16], dst: &[u8; 16]) -> u16 {
        // A message buffer longer than u32::MAX cannot exist here: an IPv6
        // payload length is 16 bits (no jumbograms).
        let acc = checksum::pseudo_v6(src, dst, ICMPV6, msg.len() as u32);
        checksum::finish(checksum::sum(acc, msg))
    }

    /// The ICMPv6 Next Header value (RFC 4443 §1).
    const ICMPV6: u8 = 58;

    /// An ICMPv6 error header we originate, in parsed, valid-by-construction
    /// form (after smoltcp's `Icmpv6Repr`). The quote behind it is not part
    /// of it: errors are built in place around the offending packet.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Repr {
        /// Packet Too Big (type 2 code 0, RFC 4443 §3.2): the MTU as 32 bits.
        PacketTooBig {
            /// The MTU of the next-hop link.
            mtu: u32,
        },
        /// Time Exceeded, hop limit exceeded in transit (type 3 code 0, RFC
        /// 4443 §3.3): the second word unused (zero).
        TimeExceeded,
    }

    impl Repr {
        /// Parses the header of `msg`, whose buffer is the whole message
        /// carried from `src` to `dst`, and verifies its checksum (RFC 4443
        /// §2.3, over the pseudo-header too). Types we do not originate are
        /// `Unsupported`.
        pub fn parse<T: AsRef<[u8]>>(
            msg: &Message<T>,
            src: &[u8; 16],
            dst: &[u8; 16],
        ) -> Result<Repr, WireError> {
            msg.check_len()?;
            if sum_with_pseudo(msg.buffer.as_ref(), src, dst) != 0 {
                return Err(WireError::BadChecksum);
            }
            match (msg.msg_type(), msg.code()) {
                (PACKET_TOO_BIG, 0) => Ok(Repr::PacketTooBig { mtu: msg.mtu32() }),
                (TIME_EXCEEDED, 0) => Ok(Repr::TimeExceeded),
                _ => Err(WireError::Unsupported),
            }
        }

        /// The bytes [`Repr::emit`] writes: the 8-byte header.
        pub const fn buffer_len(&self) -> usize {
            HEADER_LEN
        }

        /// Writes the header into `msg`, whose buffer is the whole message
        /// (the quote already in place behind the header) to be sent from
        /// `src` to `dst`, then the checksum over the pseudo-header and all
        /// of the message (RFC 4443 §2.3, RFC 8200 §8.1).
        ///
        /// Panics if the buffer is shorter than [`HEADER_LEN`].
        pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
            &self,
            msg: &mut Message<T>,
            src: &[u8; 16],
            dst: &[u8; 16],
        ) {
            match *self {
                Repr::PacketTooBig { mtu } => msg.set_header(PACKET_TOO_BIG, 0, mtu),
                Repr::TimeExceeded => msg.set_header(TIME_EXCEEDED, 0, 0),
            }
            let c = sum_with_pseudo(msg.buffer.as_ref(), src, dst);
            msg.set_checksum(c);
        }
    }
}

/// A typed view of an ICMP or ICMPv6 message.
///
/// After [`Message::check_len`] succeeds no accessor panics.
#[derive(Debug, Clone, Copy)]
pub struct Message<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Message<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Message { buffer }
    }

    /// Wraps a buffer and checks it with [`Message::check_len`].
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let m = Self::new_unchecked(buffer);
        m.check_len()?;
        Ok(m)
    }

    /// Checks that the buffer holds the 8-byte header.
    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }

    /// Type.
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[0]
    }

    /// Code.
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[1]
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[2], b[3]])
    }

    /// Next-hop MTU of an ICMPv4 Fragmentation Needed (RFC 1191 §4): the low
    /// 16 bits of the rest-of-header word.
    pub fn next_hop_mtu(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[6], b[7]])
    }

    /// MTU of an ICMPv6 Packet Too Big (RFC 4443 §3.2): the whole
    /// rest-of-header word.
    pub fn mtu32(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([b[4], b[5], b[6], b[7]])
    }

    /// What follows the header (for errors: the quoted packet).
    pub fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Message<T> {
    /// Writes type, code, a zero checksum and the rest-of-header word.
    pub fn set_header(&mut self, msg_type: u8, code: u8, rest: u32) {
        let b = self.buffer.as_mut();
        b[0] = msg_type;
        b[1] = code;
        b[2] = 0;
        b[3] = 0;
        b[4..8].copy_from_slice(&rest.to_be_bytes());
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        self.buffer.as_mut()[2..4].copy_from_slice(&v.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_recognised() {
        for t in [3, 4, 5, 11, 12] {
            assert!(v4::is_error(t), "{t}");
        }
        for t in [0, 8, 13, 14] {
            assert!(!v4::is_error(t), "{t}");
        }
        assert!(v6::is_error(1) && v6::is_error(2) && v6::is_error(4));
        assert!(!v6::is_error(128) && !v6::is_error(135));
    }

    /// A Fragmentation Needed about a stand-in quote, checked by etherparse.
    #[test]
    fn v4_repr_construct_and_deconstruct() {
        let r = v4::Repr::FragNeeded { next_hop_mtu: 1400 };
        assert_eq!(r.buffer_len(), HEADER_LEN);
        let mut b = [0xffu8; 36];
        for (i, x) in b[8..].iter_mut().enumerate() {
            *x = i as u8;
        }
        r.emit(&mut Message::new_unchecked(&mut b[..]));
        assert_eq!(b[..8], [3, 4, b[2], b[3], 0, 0, 0x05, 0x78]);
        let (e, quote) = etherparse::Icmpv4Header::from_slice(&b).unwrap();
        assert_eq!(
            e.icmp_type,
            etherparse::Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
                    next_hop_mtu: 1400
                }
            )
        );
        assert_eq!(e.checksum, e.icmp_type.calc_checksum(quote));
        assert_eq!(
            v4::Repr::parse(&Message::new_checked(&b[..]).unwrap()),
            Ok(r)
        );
        // A wrong checksum, another type, a short buffer.
        let mut bad = b;
        bad[20] ^= 1;
        let m = Message::new_checked(&bad[..]).unwrap();
        assert_eq!(v4::Repr::parse(&m), Err(WireError::BadChecksum));
        let mut echo = [8u8, 0, 0, 0, 0, 1, 0, 1];
        let c = checksum::checksum(&echo);
        echo[2..4].copy_from_slice(&c.to_be_bytes());
        let m = Message::new_checked(&echo[..]).unwrap();
        assert_eq!(v4::Repr::parse(&m), Err(WireError::Unsupported));
        for n in 0..HEADER_LEN {
            let m = Message::new_unchecked(&b[..n]);
            assert_eq!(v4::Repr::parse(&m), Err(WireError::Truncated));
        }
    }

    /// A Packet Too Big, its checksum over the pseudo-header checked by
    /// etherparse.
    #[test]
    fn v6_repr_construct_and_deconstruct() {
        let src = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
        let dst = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let r = v6::Repr::PacketTooBig { mtu: 0x0001_0500 };
        assert_eq!(r.buffer_len(), HEADER_LEN);
        let mut b = [0xffu8; 57];
        for (i, x) in b[8..].iter_mut().enumerate() {
            *x = (i * 3) as u8;
        }
        r.emit(&mut Message::new_unchecked(&mut b[..]), &src, &dst);
        assert_eq!(b[..2], [2, 0]);
        assert_eq!(b[4..8], [0, 1, 5, 0]);
        let (e, body) = etherparse::Icmpv6Header::from_slice(&b).unwrap();
        assert_eq!(
            e.icmp_type,
            etherparse::Icmpv6Type::PacketTooBig { mtu: 0x0001_0500 }
        );
        assert_eq!(
            e.checksum,
            e.icmp_type.calc_checksum(src, dst, body).unwrap()
        );
        let m = Message::new_checked(&b[..]).unwrap();
        assert_eq!(v6::Repr::parse(&m, &src, &dst), Ok(r));
        // The pseudo-header counts: another address fails the checksum (a
        // ones' complement sum cannot see src and dst swapped, RFC 1071).
        assert_eq!(v6::Repr::parse(&m, &dst, &src), Ok(r));
        let mut other = dst;
        other[15] = 2;
        assert_eq!(
            v6::Repr::parse(&m, &src, &other),
            Err(WireError::BadChecksum)
        );
        for n in 0..HEADER_LEN {
            let m = Message::new_unchecked(&b[..n]);
            assert_eq!(v6::Repr::parse(&m, &src, &dst), Err(WireError::Truncated));
        }
    }

    #[test]
    fn construct_and_deconstruct() {
        let mut b = [0xffu8; 12];
        let mut m = Message::new_checked(&mut b[..]).unwrap();
        m.set_header(v4::DEST_UNREACHABLE, v4::CODE_FRAG_NEEDED, 1400);
        m.set_checksum(0x1234);
        let m = Message::new_checked(&b[..]).unwrap();
        assert_eq!(m.msg_type(), 3);
        assert_eq!(m.code(), 4);
        assert_eq!(m.next_hop_mtu(), 1400);
        assert_eq!(m.mtu32(), 1400);
        assert_eq!(m.checksum(), 0x1234);
        assert_eq!(m.body().len(), 4);
        for n in 0..HEADER_LEN {
            assert_eq!(
                Message::new_checked(&b[..n]).err(),
                Some(WireError::Truncated)
            );
        }
    }
}
