//! The Internet checksum (RFC 1071): full computation and incremental update
//! (RFC 1624).
//!
//! Sums are accumulated in a `u64` and folded to 16 bits at the end. A ones'
//! complement sum does not care in which order or with which word width it is
//! accumulated as long as carries are added back in (RFC 1071 §2 (B), (C)), so
//! we add big-endian 32-bit words into 64 bits and fold once.

/// Adds `data` to a running ones' complement sum (not yet folded).
///
/// `data` is read as big-endian 16-bit words; an odd trailing byte is padded
/// with zero (RFC 1071 §4.1). Chain calls only at even offsets: the caller must
/// not split a buffer at an odd position.
#[inline]
pub fn sum(mut acc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        acc += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    }
    let rest = chunks.remainder();
    let mut i = 0;
    while i + 1 < rest.len() {
        acc += u64::from(u16::from_be_bytes([rest[i], rest[i + 1]]));
        i += 2;
    }
    if i < rest.len() {
        acc += u64::from(rest[i]) << 8;
    }
    acc
}

/// Folds a running sum to 16 bits with end-around carry.
#[inline]
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The checksum field value for `data`: the complement of its folded sum.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(0, data))
}

/// Folds and complements a running sum: the value to store in a checksum field.
#[inline]
pub fn finish(acc: u64) -> u16 {
    !fold(acc)
}

/// The pseudo-header sum for TCP/UDP/ICMPv6 over IPv4 (RFC 793 §3.1).
#[inline]
pub fn pseudo_v4(src: &[u8; 4], dst: &[u8; 4], proto: u8, len: u16) -> u64 {
    let acc = sum(0, src);
    let acc = sum(acc, dst);
    acc + u64::from(proto) + u64::from(len)
}

/// The pseudo-header sum for upper layers over IPv6 (RFC 8200 §8.1).
#[inline]
pub fn pseudo_v6(src: &[u8; 16], dst: &[u8; 16], next_header: u8, len: u32) -> u64 {
    let acc = sum(0, src);
    let acc = sum(acc, dst);
    acc + u64::from(len >> 16) + u64::from(len & 0xffff) + u64::from(next_header)
}

/// Incrementally updates checksum field `check` after a 16-bit word of the
/// covered data changed from `old` to `new` (RFC 1624 eqn. 3:
/// `HC' = ~(~HC + ~m + m')`).
///
/// Unlike eqn. 2 this never produces `0x0000` from a non-zero sum, and it keeps
/// an already wrong checksum exactly as wrong, so we never launder corruption.
#[inline]
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    let acc = u64::from(!check) + u64::from(!old) + u64::from(new);
    !fold(acc)
}

/// Incremental update for a 16-bit value that sits at an **odd** byte offset of
/// the checksummed data.
///
/// Such a value straddles two checksum words: its first byte is the low byte of
/// one word and its second byte the high byte of the next. Its contribution to
/// the ones' complement sum is therefore the byte-swapped value, so the update
/// is [`update16`] on swapped values. (Linux's TCPMSS target assumes 16-bit
/// alignment and gets this case wrong.)
#[inline]
pub fn update16_odd(check: u16, old: u16, new: u16) -> u16 {
    update16(check, old.swap_bytes(), new.swap_bytes())
}

/// Incremental update for a 16-bit value at byte offset `offset` of the
/// checksummed data, whichever its alignment.
#[inline]
pub fn update16_at(check: u16, offset: usize, old: u16, new: u16) -> u16 {
    if offset % 2 == 0 {
        update16(check, old, new)
    } else {
        update16_odd(check, old, new)
    }
}

/// Adds `delta` (a ones' complement sum of words that were added to the
/// covered data) to checksum field `check`.
#[inline]
pub fn add_to(check: u16, delta: u64) -> u16 {
    !fold(u64::from(!check) + delta)
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 1071 §3 worked example: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
    #[test]
    fn rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(0, &data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(fold(sum(0, &[0x12, 0x34, 0x56])), 0x1234 + 0x5600);
        assert_eq!(fold(sum(0, &[0xab])), 0xab00);
    }

    // A known-good IPv4 header (from Wikipedia's IPv4 checksum example).
    #[test]
    fn ipv4_header_example() {
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
        h[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(checksum(&h), 0);
    }

    fn naive(data: &[u8]) -> u16 {
        let mut s: u32 = 0;
        for c in data.chunks(2) {
            let w = if c.len() == 2 {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from(c[0]) << 8
            };
            s += u32::from(w);
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    proptest::proptest! {
        #[test]
        fn wide_sum_matches_naive(data in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            proptest::prop_assert_eq!(checksum(&data), naive(&data));
        }

        #[test]
        fn incremental_matches_full(
            mut data in proptest::collection::vec(proptest::num::u8::ANY, 4..200),
            pos in 0usize..1000,
            new in proptest::num::u16::ANY,
        ) {
            let pos = pos % (data.len() - 1);
            let before = checksum(&data);
            let old = u16::from_be_bytes([data[pos], data[pos + 1]]);
            data[pos..pos + 2].copy_from_slice(&new.to_be_bytes());
            let after = checksum(&data);
            let inc = update16_at(before, pos, old, new);
            // Ones' complement has two zeros; a full recompute yields 0xffff
            // only for all-zero data, incremental may yield either form.
            proptest::prop_assert!(inc == after || (fold(u64::from(inc)) == 0xffff && after == 0) || (inc == 0 && after == 0xffff),
                "pos {} inc {:04x} full {:04x}", pos, inc, after);
        }
    }
}
