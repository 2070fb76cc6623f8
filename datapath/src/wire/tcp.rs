//! TCP segments (RFC 9293), with options.

use super::WireError;

/// Length of a TCP header without options.
pub const MIN_HEADER_LEN: usize = 20;
/// Length of the longest TCP header (data offset 15).
pub const MAX_HEADER_LEN: usize = 60;

/// TCP flag bits in the low byte of the flags word.
pub mod flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// TCP option kinds.
pub mod option {
    /// End of Option List.
    pub const EOL: u8 = 0;
    /// No-Operation.
    pub const NOP: u8 = 1;
    /// Maximum Segment Size (RFC 9293 §3.2).
    pub const MSS: u8 = 2;
    /// Length of the MSS option.
    pub const MSS_LEN: u8 = 4;
}

mod field {
    use core::ops::Range;
    pub(super) const SRC_PORT: Range<usize> = 0..2;
    pub(super) const DST_PORT: Range<usize> = 2..4;
    pub(super) const SEQ: Range<usize> = 4..8;
    pub(super) const ACK: Range<usize> = 8..12;
    pub(super) const DATA_OFF: usize = 12;
    pub(super) const FLAGS: usize = 13;
    pub(super) const WINDOW: Range<usize> = 14..16;
    pub(super) const CHECKSUM: Range<usize> = 16..18;
}

/// The offset of the checksum field inside a TCP header.
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM.start;

/// A typed view of a TCP segment (header and payload).
///
/// After [`Segment::check_len`] succeeds no accessor panics.
#[derive(Debug, Clone, Copy)]
pub struct Segment<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Segment<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Segment { buffer }
    }

    /// Wraps a buffer and checks it with [`Segment::check_len`].
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let s = Self::new_unchecked(buffer);
        s.check_len()?;
        Ok(s)
    }

    /// Checks that the buffer holds the base header, that the data offset is
    /// at least 5, and that the whole header (options included) is present.
    pub fn check_len(&self) -> Result<(), WireError> {
        let b = self.buffer.as_ref();
        if b.len() < MIN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let hl = self.header_len();
        if hl < MIN_HEADER_LEN {
            return Err(WireError::BadDataOffset);
        }
        if b.len() < hl {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Consumes the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::SRC_PORT];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::DST_PORT];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Sequence number.
    pub fn seq(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::SEQ];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Acknowledgment number.
    pub fn ack_number(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::ACK];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Header length in bytes (data offset × 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// The flag byte (CWR ECE URG ACK PSH RST SYN FIN).
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// SYN set and RST clear: a SYN or SYN-ACK whose MSS matters.
    pub fn is_syn(&self) -> bool {
        self.flags() & (flags::SYN | flags::RST) == flags::SYN
    }

    /// Window.
    pub fn window(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::WINDOW];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::CHECKSUM];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// The options: bytes 20 up to the data offset.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[MIN_HEADER_LEN..self.header_len()]
    }

    /// The payload after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Segment<T> {
    /// Sets the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the header length in bytes (a multiple of 4, 20..=60), keeping
    /// the reserved bits.
    pub fn set_header_len(&mut self, len: usize) {
        debug_assert!(len % 4 == 0 && (MIN_HEADER_LEN..=MAX_HEADER_LEN).contains(&len));
        let b = self.buffer.as_mut();
        b[field::DATA_OFF] = ((len / 4) as u8) << 4 | (b[field::DATA_OFF] & 0x0f);
    }

    /// The whole buffer, mutable (for in-place option edits).
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A SYN 40000 -> 443 with options MSS 1460, NOP, NOP, SACK-permitted.
    static SYN: [u8; 28] = [
        0x9c, 0x40, 0x01, 0xbb, 0, 0, 0x10, 0, 0, 0, 0, 0, 0x70, 0x02, 0xfa, 0xf0, 0x12, 0x34, 0,
        0, 0x02, 0x04, 0x05, 0xb4, 0x01, 0x01, 0x04, 0x02,
    ];

    #[test]
    fn deconstruct() {
        let s = Segment::new_checked(&SYN[..]).unwrap();
        assert_eq!(s.src_port(), 40000);
        assert_eq!(s.dst_port(), 443);
        assert_eq!(s.seq(), 0x1000);
        assert_eq!(s.ack_number(), 0);
        assert_eq!(s.header_len(), 28);
        assert!(s.is_syn());
        assert_eq!(s.window(), 64240);
        assert_eq!(s.checksum(), 0x1234);
        assert_eq!(s.options(), &SYN[20..]);
        assert!(s.payload().is_empty());
        let e = etherparse::TcpHeaderSlice::from_slice(&SYN).unwrap();
        assert_eq!(e.destination_port(), 443);
        assert_eq!(usize::from(e.data_offset()) * 4, s.header_len());
        assert!(e.syn() && !e.ack());
    }

    #[test]
    fn construct() {
        let mut b = SYN;
        let mut s = Segment::new_checked(&mut b[..]).unwrap();
        s.set_header_len(32);
        s.set_checksum(0xbeef);
        assert_eq!(b[12], 0x80);
        assert_eq!(&b[16..18], &[0xbe, 0xef]);
    }

    #[test]
    fn rst_syn_is_not_a_syn() {
        let mut b = SYN;
        b[13] = flags::SYN | flags::RST;
        assert!(!Segment::new_checked(&b[..]).unwrap().is_syn());
    }

    #[test]
    fn truncation_and_bad_offsets() {
        for n in 0..SYN.len() {
            assert_eq!(
                Segment::new_checked(&SYN[..n]).err(),
                Some(WireError::Truncated),
                "len {n}"
            );
        }
        for off in 0..5u8 {
            let mut b = SYN;
            b[12] = off << 4;
            assert_eq!(
                Segment::new_checked(&b[..]).err(),
                Some(WireError::BadDataOffset)
            );
        }
    }
}
