//! UDP datagrams (RFC 768).

use super::WireError;

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

/// A typed view of a UDP datagram.
///
/// After [`Datagram::check_len`] succeeds no accessor panics.
#[derive(Debug, Clone, Copy)]
pub struct Datagram<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Datagram<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Datagram { buffer }
    }

    /// Wraps a buffer and checks it with [`Datagram::check_len`].
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let d = Self::new_unchecked(buffer);
        d.check_len()?;
        Ok(d)
    }

    /// Checks that the buffer holds the header.
    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[2], b[3]])
    }

    /// Length field (header and data).
    pub fn len(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[4], b[5]])
    }

    /// Whether the length field says the datagram is empty (never valid:
    /// the header alone is 8 bytes).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[6], b[7]])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deconstruct_and_truncate() {
        let b = [0x30, 0x39, 0x00, 0x35, 0x00, 0x0c, 0xab, 0xcd, 1, 2, 3, 4];
        let d = Datagram::new_checked(&b[..]).unwrap();
        assert_eq!(d.src_port(), 12345);
        assert_eq!(d.dst_port(), 53);
        assert_eq!(d.len(), 12);
        assert!(!d.is_empty());
        assert_eq!(d.checksum(), 0xabcd);
        let e = etherparse::UdpHeaderSlice::from_slice(&b).unwrap();
        assert_eq!(e.length(), d.len());
        for n in 0..HEADER_LEN {
            assert_eq!(
                Datagram::new_checked(&b[..n]).err(),
                Some(WireError::Truncated),
                "len {n}"
            );
        }
    }
}
