//! Typed, zero-copy views of the headers mtugate reads and writes.
//!
//! Each view wraps a buffer (`T: AsRef<[u8]>`, and `AsMut<[u8]>` for
//! setters), after smoltcp's `wire` module: `new_unchecked` wraps without
//! looking, `check_len` validates lengths and the fields that other offsets
//! depend on, and `new_checked` does both. **Contract: once `check_len` has
//! succeeded on a buffer, no accessor of that view panics**, whatever the
//! bytes are. Forwarding edits bytes in place through these views; nothing
//! here allocates.
//!
//! The headers mtugate originates (the IPv4 header of fragments and of ICMP
//! errors, the IPv6 header of ICMPv6 errors, the ICMP error headers) also
//! have a `Repr`: a parsed, valid-by-construction form with `parse`,
//! `buffer_len` and `emit`, after smoltcp's.

pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;

/// Why a header could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer ends before the header (or the length it announces) does.
    #[error("truncated")]
    Truncated,
    /// The IP version field does not match the EtherType.
    #[error("bad IP version")]
    BadVersion,
    /// The IPv4 IHL is below 5.
    #[error("bad IPv4 header length")]
    BadHeaderLen,
    /// The IPv4 total length is smaller than the header.
    #[error("bad IPv4 total length")]
    BadTotalLen,
    /// The TCP data offset is below 5.
    #[error("bad TCP data offset")]
    BadDataOffset,
    /// More VLAN tags than we walk.
    #[error("more than two VLAN tags")]
    TooManyVlanTags,
    /// A valid construct we do not handle (IPv6 jumbogram, too many
    /// extension headers).
    #[error("unsupported")]
    Unsupported,
    /// A checksum we verify (a [`Repr`](icmp::v4::Repr) parse) is wrong.
    #[error("bad checksum")]
    BadChecksum,
}

/// Where the upper-layer header of an IP packet starts: for IPv4 right
/// after the header, for IPv6 found by walking its extension headers
/// ([`ipv6::Packet::upper_layer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpperLayer {
    /// The upper-layer protocol (IPv4 protocol, or the last IPv6 Next Header
    /// value seen).
    pub protocol: u8,
    /// Offset of the upper-layer header from the start of the IP header.
    pub offset: usize,
    /// Set when the packet is a fragment: (offset in 8-byte units, MF / M
    /// flag), from the IPv4 header or the IPv6 Fragment header.
    pub fragment: Option<(u16, bool)>,
}

impl UpperLayer {
    /// Whether the upper-layer header is present in this packet: not a
    /// non-first fragment, and not "no next header".
    pub fn has_header(&self) -> bool {
        self.protocol != ipv6::next_header::NONE && !matches!(self.fragment, Some((o, _)) if o != 0)
    }
}
