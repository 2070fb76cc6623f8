//! Operations on packets.
//!
//! Parse once: the pipeline walks Ethernet, the VLAN tags and the IP header
//! (and the IPv6 extension headers) once per frame and hands what it found
//! down as an [`L3Ctx`]. The ops read fields at the offsets it gives and
//! never walk those headers again; they only check that the context fits the
//! buffer, so that a wrong context is an error, never a panic.
//!
//! The link-layer addresses of the frames an op sends are the caller's
//! decision ([`MacRewrite`]): in wire mode fragments keep the input's and
//! ICMP errors swap them; a router will write the next hop's.

pub mod bucket;
pub mod frag;
pub mod icmp;
pub mod mss;

use crate::wire::{ethernet, ipv4, ipv6, UpperLayer, WireError};

/// Where the IP packet of one frame is and what it carries, as the pipeline
/// parsed it.
///
/// Built by [`L3Ctx::ipv4`] / [`L3Ctx::ipv6`] from views the caller has
/// already checked, or by [`L3Ctx::parse`] from a bare frame. The pipeline
/// builds it only for packets too big to forward, after the SYN step (which
/// may have grown the packet), so forwarding pays nothing for it. The fields
/// are public so that a caller may describe a frame it edited; an op that is
/// handed a context that does not fit its buffer refuses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L3Ctx {
    /// Bytes of link-layer header (Ethernet with its VLAN tags): where the
    /// IP packet starts in the frame.
    pub l2_len: usize,
    /// Length of the IP header: IPv4 IHL × 4, IPv6 the fixed 40 bytes.
    pub header_len: usize,
    /// Length of the IP packet by its own header (IPv4 total length, IPv6
    /// 40 + payload length); bytes of the frame after it are link-layer
    /// padding.
    pub total_len: usize,
    /// The upper layer: IPv4 protocol and fragment fields, or the result of
    /// the IPv6 extension header walk; `None` when that walk failed.
    pub upper: Option<UpperLayer>,
}

impl L3Ctx {
    /// The context of the IPv4 packet `ip` at `l2_len` in its frame. `ip`
    /// must have passed [`ipv4::Packet::check_len`].
    #[inline]
    pub fn ipv4<T: AsRef<[u8]>>(l2_len: usize, ip: &ipv4::Packet<T>) -> L3Ctx {
        let header_len = ip.header_len();
        L3Ctx {
            l2_len,
            header_len,
            total_len: usize::from(ip.total_len()),
            upper: Some(UpperLayer {
                protocol: ip.protocol(),
                offset: header_len,
                fragment: ip
                    .is_fragment()
                    .then(|| (ip.frag_offset(), ip.more_frags())),
            }),
        }
    }

    /// The context of the IPv6 packet `ip` at `l2_len` in its frame, with
    /// the result of its extension header walk
    /// ([`ipv6::Packet::upper_layer`]). `ip` must have passed
    /// [`ipv6::Packet::check_len`].
    #[inline]
    pub fn ipv6<T: AsRef<[u8]>>(
        l2_len: usize,
        ip: &ipv6::Packet<T>,
        upper: Option<UpperLayer>,
    ) -> L3Ctx {
        L3Ctx {
            l2_len,
            header_len: ipv6::HEADER_LEN,
            total_len: ip.total_len(),
            upper,
        }
    }

    /// Walks a frame the way the pipeline does (Ethernet, up to two VLAN
    /// tags, the IPv4 or IPv6 header, IPv6 extension headers), for callers
    /// that have no context of their own. `Unsupported` for an EtherType
    /// that is neither IPv4 nor IPv6; an IPv6 extension header chain that
    /// cannot be walked gives `upper: None`, as in the pipeline.
    pub fn parse(frame: &[u8]) -> Result<L3Ctx, WireError> {
        let l2 = ethernet::Frame::new_checked(frame)?.l2_info()?;
        let l3 = &frame[l2.header_len..];
        match l2.ethertype {
            ethernet::ethertype::IPV4 => {
                Ok(L3Ctx::ipv4(l2.header_len, &ipv4::Packet::new_checked(l3)?))
            }
            ethernet::ethertype::IPV6 => {
                let ip = ipv6::Packet::new_checked(l3)?;
                Ok(L3Ctx::ipv6(l2.header_len, &ip, ip.upper_layer().ok()))
            }
            _ => Err(WireError::Unsupported),
        }
    }

    /// The IP packet in `frame`: `frame[l2_len..l2_len + total_len]`, if the
    /// context fits the frame and leaves room for an Ethernet header and the
    /// IP header. The ops' one check of a context.
    #[inline]
    fn ip<'f>(&self, frame: &'f [u8]) -> Option<&'f [u8]> {
        if self.l2_len < ethernet::HEADER_LEN || self.header_len > self.total_len {
            return None;
        }
        frame
            .get(self.l2_len..)?
            .get(..self.total_len)
            .filter(|ip| ip.len() >= self.header_len)
    }
}

/// The link-layer addresses an op writes into each frame it sends. The rest
/// of the link-layer header (VLAN tags, EtherType) is always the input's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacRewrite {
    /// The input's addresses: wire-mode fragments, which continue on the
    /// input's way.
    Keep,
    /// The input's addresses swapped: wire-mode ICMP errors, which go back
    /// to the host that sent the input.
    Swap,
    /// These addresses (router mode: the next hop's and the egress port's).
    Set {
        /// Destination MAC address.
        dst: [u8; 6],
        /// Source MAC address.
        src: [u8; 6],
    },
}

impl MacRewrite {
    /// Applies the rewrite to the link-layer header `l2` (at least the 12
    /// bytes of the two addresses; the ops check that first).
    #[inline]
    pub(crate) fn apply(self, l2: &mut [u8]) {
        let mut f = ethernet::Frame::new_unchecked(l2);
        match self {
            MacRewrite::Keep => {}
            MacRewrite::Swap => f.swap_addrs(),
            MacRewrite::Set { dst, src } => {
                f.set_dst(dst);
                f.set_src(src);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_rewrites() {
        let orig: Vec<u8> = (0..18).collect();
        let mut b = orig.clone();
        MacRewrite::Keep.apply(&mut b);
        assert_eq!(b, orig);
        MacRewrite::Swap.apply(&mut b);
        assert_eq!(b[..6], orig[6..12]);
        assert_eq!(b[6..12], orig[..6]);
        assert_eq!(b[12..], orig[12..]);
        let (dst, src) = ([0xaa; 6], [0xbb; 6]);
        MacRewrite::Set { dst, src }.apply(&mut b);
        assert_eq!(b[..6], dst);
        assert_eq!(b[6..12], src);
        assert_eq!(b[12..], orig[12..]);
    }

    #[test]
    fn ctx_must_fit_the_frame() {
        let frame = [0u8; 100];
        let ok = L3Ctx {
            l2_len: 14,
            header_len: 20,
            total_len: 86,
            upper: None,
        };
        assert_eq!(ok.ip(&frame).map(<[u8]>::len), Some(86));
        for bad in [
            L3Ctx { l2_len: 13, ..ok },
            L3Ctx {
                total_len: 87,
                ..ok
            },
            L3Ctx {
                header_len: 87,
                ..ok
            },
            L3Ctx {
                l2_len: usize::MAX,
                ..ok
            },
            L3Ctx {
                total_len: usize::MAX,
                ..ok
            },
        ] {
            assert_eq!(bad.ip(&frame), None, "{bad:?}");
        }
    }
}
