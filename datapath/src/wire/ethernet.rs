//! Ethernet II frames with up to two VLAN tags (IEEE 802.1Q `0x8100` and
//! 802.1ad `0x88a8`, QinQ).

use super::WireError;

/// EtherType values mtugate looks at.
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
    /// IEEE 802.1Q customer VLAN tag.
    pub const VLAN: u16 = 0x8100;
    /// IEEE 802.1ad service VLAN tag (QinQ outer tag).
    pub const QINQ: u16 = 0x88a8;
}

/// Length of an untagged Ethernet II header.
pub const HEADER_LEN: usize = 14;
/// Length of one VLAN tag.
pub const VLAN_TAG_LEN: usize = 4;
/// The most VLAN tags we walk through (802.1ad outer + 802.1Q inner).
pub const MAX_VLAN_TAGS: usize = 2;

mod field {
    use core::ops::Range;
    pub(super) const DST: Range<usize> = 0..6;
    pub(super) const SRC: Range<usize> = 6..12;
    pub(super) const ETHERTYPE: Range<usize> = 12..14;
}

/// A typed view of an Ethernet II frame.
///
/// After [`Frame::new_checked`] succeeds, no accessor panics.
#[derive(Debug, Clone, Copy)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

/// What lies under the link layer, found by [`Frame::l2_info`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L2Info {
    /// Bytes of Ethernet header including VLAN tags: where L3 starts.
    pub header_len: usize,
    /// The EtherType after the VLAN tags.
    pub ethertype: u16,
    /// How many VLAN tags were walked (0..=2).
    pub vlan_tags: u8,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps a buffer without checking its length.
    pub const fn new_unchecked(buffer: T) -> Self {
        Frame { buffer }
    }

    /// Wraps a buffer that holds at least an untagged Ethernet header.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let f = Self::new_unchecked(buffer);
        f.check_len()?;
        Ok(f)
    }

    /// Checks that the buffer holds an untagged Ethernet header.
    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }

    /// Consumes the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination MAC address.
    pub fn dst(&self) -> [u8; 6] {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        a
    }

    /// Source MAC address.
    pub fn src(&self) -> [u8; 6] {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        a
    }

    /// The outer EtherType (a VLAN TPID when the frame is tagged).
    pub fn ethertype(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::ETHERTYPE];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Whether the destination is a group (multicast or broadcast) address.
    pub fn dst_is_group(&self) -> bool {
        self.buffer.as_ref()[0] & 1 != 0
    }

    /// Walks up to [`MAX_VLAN_TAGS`] VLAN tags and returns where L3 starts.
    ///
    /// A frame with more tags than that, or truncated inside its tags, is
    /// reported as `Err`; the caller decides whether to pass or drop it.
    pub fn l2_info(&self) -> Result<L2Info, WireError> {
        let b = self.buffer.as_ref();
        let mut off = HEADER_LEN;
        let mut et = self.ethertype();
        let mut tags = 0u8;
        while et == ethertype::VLAN || et == ethertype::QINQ {
            if usize::from(tags) == MAX_VLAN_TAGS {
                return Err(WireError::TooManyVlanTags);
            }
            if b.len() < off + VLAN_TAG_LEN {
                return Err(WireError::Truncated);
            }
            // The tag is TCI (2 bytes) then the next EtherType (2 bytes).
            et = u16::from_be_bytes([b[off + 2], b[off + 3]]);
            off += VLAN_TAG_LEN;
            tags += 1;
        }
        Ok(L2Info {
            header_len: off,
            ethertype: et,
            vlan_tags: tags,
        })
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the destination MAC address.
    pub fn set_dst(&mut self, a: [u8; 6]) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a);
    }

    /// Sets the source MAC address.
    pub fn set_src(&mut self, a: [u8; 6]) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a);
    }

    /// Swaps source and destination MAC addresses, so that a reply built in
    /// this frame goes back where the frame came from.
    pub fn swap_addrs(&mut self) {
        let (d, s) = (self.dst(), self.src());
        self.set_dst(s);
        self.set_src(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static UNTAGGED: [u8; 16] = [
        0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45, 0x00,
    ];
    static QINQ: [u8; 24] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 1, 0x88, 0xa8, 0x00, 0x64, 0x81,
        0x00, 0x00, 0x0a, 0x86, 0xdd, 0x60, 0x00,
    ];

    #[test]
    fn deconstruct_untagged() {
        let f = Frame::new_checked(&UNTAGGED[..]).unwrap();
        assert_eq!(f.dst(), [2, 0, 0, 0, 0, 2]);
        assert_eq!(f.src(), [2, 0, 0, 0, 0, 1]);
        assert!(!f.dst_is_group());
        let i = f.l2_info().unwrap();
        assert_eq!(i.header_len, 14);
        assert_eq!(i.ethertype, ethertype::IPV4);
        assert_eq!(i.vlan_tags, 0);
    }

    #[test]
    fn deconstruct_qinq() {
        let f = Frame::new_checked(&QINQ[..]).unwrap();
        assert!(f.dst_is_group());
        let i = f.l2_info().unwrap();
        assert_eq!(i.header_len, 22);
        assert_eq!(i.ethertype, ethertype::IPV6);
        assert_eq!(i.vlan_tags, 2);
    }

    #[test]
    fn three_tags_refused() {
        let mut b = QINQ.to_vec();
        // Make the inner EtherType another VLAN TPID and add a tag.
        b[20..22].copy_from_slice(&[0x81, 0x00]);
        b.splice(22..22, [0, 1, 0x08, 0x00]);
        let f = Frame::new_checked(&b[..]).unwrap();
        assert_eq!(f.l2_info(), Err(WireError::TooManyVlanTags));
    }

    #[test]
    fn truncation_never_panics() {
        for n in 0..QINQ.len() {
            match Frame::new_checked(&QINQ[..n]) {
                Err(e) => assert!(n < HEADER_LEN, "{e:?} at {n}"),
                Ok(f) => {
                    let r = f.l2_info();
                    if n < 22 {
                        assert_eq!(r, Err(WireError::Truncated), "len {n}");
                    } else {
                        let r = r.map(|i| (i.header_len, i.ethertype, i.vlan_tags));
                        assert_eq!(r, Ok((22, ethertype::IPV6, 2)), "len {n}");
                    }
                }
            }
        }
    }

    #[test]
    fn construct_swap() {
        let mut b = UNTAGGED;
        let mut f = Frame::new_checked(&mut b[..]).unwrap();
        f.swap_addrs();
        assert_eq!(f.dst(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(f.src(), [2, 0, 0, 0, 0, 2]);
        assert_eq!(f.ethertype(), ethertype::IPV4);
    }
}
