//! Typed, zero-copy views of the headers mtugate reads and writes.
//!
//! Each view wraps a buffer (`T: AsRef<[u8]>`, and `AsMut<[u8]>` for
//! setters), after smoltcp's `wire` module: `new_unchecked` wraps without
//! looking, `check_len` validates lengths and the fields that other offsets
//! depend on, and `new_checked` does both. **Contract: once `check_len` has
//! succeeded on a buffer, no accessor of that view panics**, whatever the
//! bytes are. Forwarding edits bytes in place through these views; nothing
//! here allocates.

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
}
