//! TCP MSS clamping for SYN and SYN-ACK segments.
//!
//! The rules, from RFC 9293 §3.1/§3.2 and the behaviour of the systems mtugate
//! replaces (Linux `xt_TCPMSS`, VPP `mss_clamp`; `shared/VECTORS.md` M1–M11):
//!
//! * Options are walked from byte 20 to the data offset. Kind 0 (EOL) ends
//!   the walk: what follows is padding (RFC 9293 §3.1). Kind 1 (NOP) is one
//!   byte. Any other option has a length byte; a length below 2 or one that
//!   runs past the header makes the list **malformed**: the segment is
//!   forwarded unchanged and counted. Linux instead treats a zero length as
//!   one byte and keeps walking; we do not, since a receiver that stops there
//!   would never see an MSS behind it anyway.
//! * Only kind 2 with length 4 is an MSS option. If a segment carries several
//!   (a receiver such as Linux takes the *last* one), every one is clamped.
//! * An MSS is only ever lowered, never raised.
//! * The checksum is updated incrementally (RFC 1624). The MSS value may sit
//!   at an odd offset in the segment, where it straddles two checksum words;
//!   [`checksum::update16_at`] handles that (Linux gets it wrong).
//! * Optionally, a SYN with no MSS option, no payload and room in its header
//!   gets one inserted, as `xt_TCPMSS` does: `min(clamp, 536)` for IPv4 and
//!   `min(clamp, 1220)` for IPv6, since a missing option means those defaults
//!   (RFC 9293 §3.7.1, RFC 8200 §8.3).
//!
//! Planning ([`plan`]) is separate from applying ([`apply_clamp`],
//! [`insert`]) so the pipeline can spend a SYN rate-limit token only on
//! segments that would really be rewritten.

use crate::wire::checksum;
use crate::wire::tcp::{self, option};

/// The most MSS options a 40-byte option area can hold.
const MAX_MSS_OPTIONS: usize = 10;

/// The default MSS a host assumes when a SYN carries no MSS option over IPv4
/// (RFC 9293 §3.7.1).
pub const DEFAULT_MSS_V4: u16 = 536;
/// The default MSS over IPv6: 1280 − 40 − 20 (RFC 8200 §8.3).
pub const DEFAULT_MSS_V6: u16 = 1220;

/// What the clamp would do with one SYN, decided without changing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Nothing to do: no MSS option (and no insertion), MSS already at or
    /// below the clamp, or outside the match range.
    Keep,
    /// Lower the MSS option(s) at these offsets (of the option value, from
    /// the start of the TCP header) to `to`. `from` is the largest value seen.
    Clamp {
        /// Offsets of each MSS value to lower (the first `count` are valid).
        offsets: [u8; MAX_MSS_OPTIONS],
        /// How many offsets are valid.
        count: u8,
        /// The largest MSS found.
        from: u16,
        /// The clamp value.
        to: u16,
    },
    /// Insert an MSS option with this value at byte 20.
    Insert(u16),
    /// The option list (or the header) is malformed: forward unchanged and
    /// count it.
    Malformed,
}

/// The parameters of a clamp, per address family and direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClampParams {
    /// The MSS to clamp to.
    pub clamp: u16,
    /// Only clamp an MSS within this inclusive range, like
    /// `-m tcpmss --mss 1361:1536` (VECTORS M10). `None` matches every value.
    pub range: Option<(u16, u16)>,
    /// Insert an MSS option into a SYN that has none, with this default MSS
    /// of the family (536 or 1220); `None` disables insertion.
    pub insert_default: Option<u16>,
}

/// Decides what to do with the TCP segment `seg` (its header and payload,
/// starting at the TCP header, ending where the IP packet ends). The caller
/// has already established that the segment is a SYN or SYN-ACK.
pub fn plan(seg: &[u8], p: &ClampParams) -> Plan {
    let Ok(s) = tcp::Segment::new_checked(seg) else {
        return Plan::Malformed;
    };
    let hl = s.header_len();
    let mut offsets = [0u8; MAX_MSS_OPTIONS];
    let mut count = 0usize;
    let mut largest = 0u16;
    let mut i = tcp::MIN_HEADER_LEN;
    while i < hl {
        let kind = seg[i];
        match kind {
            option::EOL => break,
            option::NOP => {
                i += 1;
                continue;
            }
            _ => {}
        }
        if i + 1 >= hl {
            return Plan::Malformed;
        }
        let len = usize::from(seg[i + 1]);
        if len < 2 || i + len > hl {
            return Plan::Malformed;
        }
        if kind == option::MSS && len == usize::from(option::MSS_LEN) {
            let v = u16::from_be_bytes([seg[i + 2], seg[i + 3]]);
            largest = largest.max(v);
            let in_range = p.range.is_none_or(|(lo, hi)| (lo..=hi).contains(&v));
            if v > p.clamp && in_range && count < MAX_MSS_OPTIONS {
                // i + 2 < 60, so it fits a u8.
                offsets[count] = (i + 2) as u8;
                count += 1;
            }
        }
        i += len;
    }
    if count > 0 {
        return Plan::Clamp {
            offsets,
            count: count as u8,
            from: largest,
            to: p.clamp,
        };
    }
    if largest == 0 && !saw_mss(seg, hl) {
        if let Some(default) = p.insert_default {
            // Like xt_TCPMSS: never move payload, never wrap the data offset,
            // and no insertion when a match range is set (no option, no match).
            if p.range.is_none() && seg.len() == hl && hl + 4 <= tcp::MAX_HEADER_LEN {
                return Plan::Insert(p.clamp.min(default));
            }
        }
    }
    Plan::Keep
}

/// Whether an MSS option (of any value, even 0) appears in the option walk.
fn saw_mss(seg: &[u8], hl: usize) -> bool {
    let mut i = tcp::MIN_HEADER_LEN;
    while i + 1 < hl {
        match seg[i] {
            option::EOL => return false,
            option::NOP => i += 1,
            k => {
                let len = usize::from(seg[i + 1]).max(2);
                if k == option::MSS && len == usize::from(option::MSS_LEN) {
                    return true;
                }
                i += len;
            }
        }
    }
    false
}

/// Applies a [`Plan::Clamp`] to `seg`, updating the TCP checksum
/// incrementally. Returns the number of options changed.
pub fn apply_clamp(seg: &mut [u8], plan: &Plan) -> usize {
    let Plan::Clamp {
        offsets, count, to, ..
    } = *plan
    else {
        return 0;
    };
    let mut check = u16::from_be_bytes([seg[16], seg[17]]);
    for &off in &offsets[..usize::from(count)] {
        let off = usize::from(off);
        let old = u16::from_be_bytes([seg[off], seg[off + 1]]);
        seg[off..off + 2].copy_from_slice(&to.to_be_bytes());
        check = checksum::update16_at(check, off, old, to);
    }
    seg[16..18].copy_from_slice(&check.to_be_bytes());
    usize::from(count)
}

/// Inserts an MSS option with value `mss` at byte 20 of the TCP header that
/// starts at `buf[0]` and is `hl` bytes long with no payload behind it.
/// `buf` must have room for `hl + 4` bytes. Updates the data offset and the
/// TCP checksum incrementally, including the pseudo-header's length, which
/// grows by 4 (RFC 1624 applied to every changed word; the shifted options
/// keep their 16-bit alignment, so their contribution is unchanged).
///
/// The caller grows the IP length fields by 4.
pub fn insert(buf: &mut [u8], hl: usize, mss: u16) {
    debug_assert!(hl + 4 <= tcp::MAX_HEADER_LEN && buf.len() >= hl + 4);
    buf.copy_within(tcp::MIN_HEADER_LEN..hl, tcp::MIN_HEADER_LEN + 4);
    let [hi, lo] = mss.to_be_bytes();
    buf[20..24].copy_from_slice(&[option::MSS, option::MSS_LEN, hi, lo]);
    let old_word = u16::from_be_bytes([buf[12], buf[13]]);
    buf[12] = (((hl + 4) / 4) as u8) << 4 | (buf[12] & 0x0f);
    let new_word = u16::from_be_bytes([buf[12], buf[13]]);
    let mut check = u16::from_be_bytes([buf[16], buf[17]]);
    check = checksum::update16(check, old_word, new_word);
    // Added words: the option (0x0204, mss) and the pseudo-header length +4.
    check = checksum::add_to(
        check,
        u64::from(u16::from_be_bytes([option::MSS, option::MSS_LEN])) + u64::from(mss) + 4,
    );
    buf[16..18].copy_from_slice(&check.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum::{finish, pseudo_v4, pseudo_v6, sum};
    use proptest::prelude::*;

    const SRC4: [u8; 4] = [192, 0, 2, 1];
    const DST4: [u8; 4] = [192, 0, 2, 2];

    /// A TCP segment with the given options (padded to 4 with EOL by the
    /// caller) and payload, with a correct IPv4 checksum, built by etherparse.
    fn syn_v4(options: &[u8], payload: &[u8], syn_ack: bool) -> Vec<u8> {
        let mut h = etherparse::TcpHeader::new(40000, 443, 0x1000, 64240);
        h.syn = true;
        h.ack = syn_ack;
        h.set_options_raw(options).unwrap();
        let ip = etherparse::Ipv4Header::new(
            (h.header_len() + payload.len()) as u16,
            64,
            etherparse::IpNumber::TCP,
            SRC4,
            DST4,
        )
        .unwrap();
        h.checksum = h.calc_checksum_ipv4(&ip, payload).unwrap();
        let mut v = h.to_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    }

    fn verify_v4(seg: &[u8]) -> bool {
        let acc = pseudo_v4(&SRC4, &DST4, 6, seg.len() as u16);
        // Verified independently with etherparse as well.
        let (h, payload) = etherparse::TcpHeader::from_slice(seg).unwrap();
        let ip = etherparse::Ipv4Header::new(
            seg.len() as u16,
            64,
            etherparse::IpNumber::TCP,
            SRC4,
            DST4,
        )
        .unwrap();
        let ours = finish(sum(acc, seg)) == 0;
        let theirs = h.calc_checksum_ipv4(&ip, payload).unwrap() == h.checksum;
        assert_eq!(ours, theirs);
        theirs
    }

    fn mss_of(seg: &[u8]) -> Option<u16> {
        let (h, _) = etherparse::TcpHeader::from_slice(seg).unwrap();
        h.options_iterator().find_map(|o| match o {
            Ok(etherparse::TcpOptionElement::MaximumSegmentSize(v)) => Some(v),
            _ => None,
        })
    }

    fn params(clamp: u16) -> ClampParams {
        ClampParams {
            clamp,
            range: None,
            insert_default: None,
        }
    }

    fn run(seg: &mut Vec<u8>, p: &ClampParams) -> Plan {
        let plan = plan(seg, p);
        match plan {
            Plan::Clamp { .. } => {
                apply_clamp(seg, &plan);
            }
            Plan::Insert(v) => {
                let hl = usize::from(seg[12] >> 4) * 4;
                seg.extend_from_slice(&[0; 4]);
                insert(seg, hl, v);
            }
            _ => {}
        }
        plan
    }

    // M1: MSS 1460 clamped to 1424 with 100 bytes of payload.
    #[test]
    fn m1_clamp() {
        let mut s = syn_v4(&[2, 4, 0x05, 0xb4, 0, 0, 0, 0], &[0xab; 100], false);
        let p = run(&mut s, &params(1424));
        assert!(matches!(
            p,
            Plan::Clamp {
                from: 1460,
                to: 1424,
                count: 1,
                ..
            }
        ));
        assert_eq!(mss_of(&s), Some(1424));
        assert!(verify_v4(&s));
    }

    // M2, M6: never raise; equal stays.
    #[test]
    fn m2_m6_never_raise() {
        for (mss, clamp) in [(1400, 1424), (1200, 1360), (1360, 1360)] {
            let mut s = syn_v4(&[2, 4, (mss >> 8) as u8, mss as u8], &[], false);
            let before = s.clone();
            assert_eq!(run(&mut s, &params(clamp)), Plan::Keep);
            assert_eq!(s, before);
        }
        let mut s = syn_v4(&[2, 4, 0x05, 0xb4], &[], false);
        run(&mut s, &params(1360));
        assert_eq!(mss_of(&s), Some(1360));
    }

    // M3: data offset 0 is malformed and left alone.
    #[test]
    fn m3_bad_data_offset() {
        let mut s = syn_v4(&[2, 4, 0x05, 0xb4], &[], false);
        s[12] &= 0x0f;
        let before = s.clone();
        assert_eq!(run(&mut s, &params(1424)), Plan::Malformed);
        assert_eq!(s, before);
    }

    // M7: insertion, IPv4 and IPv6 defaults.
    #[test]
    fn m7_insert() {
        let mut s = syn_v4(&[1, 1, 4, 2], &[], false);
        let p = ClampParams {
            insert_default: Some(DEFAULT_MSS_V4),
            ..params(1360)
        };
        assert_eq!(run(&mut s, &p), Plan::Insert(536));
        assert_eq!(s.len(), 28);
        assert_eq!(&s[20..24], &[2, 4, 0x02, 0x18]);
        assert_eq!(&s[24..28], &[1, 1, 4, 2]);
        assert_eq!(s[12] >> 4, 7);
        assert!(verify_v4(&s));
        let p6 = ClampParams {
            insert_default: Some(DEFAULT_MSS_V6),
            ..params(1360)
        };
        let s = syn_v4(&[], &[], false);
        assert_eq!(plan(&s, &p6), Plan::Insert(1220));
        let p6 = ClampParams {
            insert_default: Some(DEFAULT_MSS_V6),
            ..params(1000)
        };
        assert_eq!(plan(&s, &p6), Plan::Insert(1000));
    }

    // M8: no insertion into a SYN with data, nor with a match range, nor
    // when the header is full.
    #[test]
    fn m8_no_insert() {
        let p = ClampParams {
            insert_default: Some(DEFAULT_MSS_V4),
            ..params(1360)
        };
        assert_eq!(plan(&syn_v4(&[], &[1, 2, 3], false), &p), Plan::Keep);
        let ranged = ClampParams {
            range: Some((1361, 1536)),
            ..p
        };
        assert_eq!(plan(&syn_v4(&[], &[], false), &ranged), Plan::Keep);
        assert_eq!(plan(&syn_v4(&[1; 40], &[], false), &p), Plan::Keep);
        // An MSS option below the clamp is not an absent one.
        assert_eq!(plan(&syn_v4(&[2, 4, 0, 100], &[], false), &p), Plan::Keep);
    }

    // M10: inclusive range.
    #[test]
    fn m10_range() {
        let p = ClampParams {
            range: Some((1361, 1536)),
            ..params(1360)
        };
        for (mss, clamped) in [(1360, false), (1361, true), (1536, true), (1537, false)] {
            let mut s = syn_v4(&[2, 4, (mss >> 8) as u8, mss as u8], &[], false);
            run(&mut s, &p);
            assert_eq!(mss_of(&s), Some(if clamped { 1360 } else { mss }), "{mss}");
            assert!(verify_v4(&s));
        }
    }

    // M11: SYN-ACK like a SYN.
    #[test]
    fn m11_syn_ack() {
        let mut s = syn_v4(&[2, 4, 0x05, 0xb4], &[], true);
        run(&mut s, &params(1360));
        assert_eq!(mss_of(&s), Some(1360));
        assert!(verify_v4(&s));
    }

    // The walk rules: EOL ends it (an MSS behind it is padding); a zero or
    // overrunning length is malformed; kind 2 of another length is no MSS;
    // an MSS at an odd offset gets a correct checksum.
    #[test]
    fn walk_rules() {
        let s = syn_v4(&[0, 2, 4, 0x05, 0xb4, 0, 0, 0], &[], false);
        assert_eq!(plan(&s, &params(1360)), Plan::Keep);
        let s = syn_v4(&[8, 0, 2, 4, 0x05, 0xb4, 0, 0], &[], false);
        assert_eq!(plan(&s, &params(1360)), Plan::Malformed);
        let s = syn_v4(&[8, 9, 0, 0], &[], false);
        assert_eq!(plan(&s, &params(1360)), Plan::Malformed);
        let s = syn_v4(&[2, 6, 0x05, 0xb4, 0, 0, 0, 0], &[], false);
        assert_eq!(plan(&s, &params(1360)), Plan::Keep);
        let mut s = syn_v4(&[1, 2, 4, 0x05, 0xb4, 1, 1, 1], &[7; 33], false);
        assert!(matches!(run(&mut s, &params(1360)), Plan::Clamp { .. }));
        assert_eq!(mss_of(&s), Some(1360));
        assert!(verify_v4(&s));
        // Two MSS options: both lowered.
        let mut s = syn_v4(&[2, 4, 0x05, 0xb4, 2, 4, 0x23, 0x28], &[], false);
        assert!(matches!(
            run(&mut s, &params(1360)),
            Plan::Clamp {
                count: 2,
                from: 9000,
                ..
            }
        ));
        assert_eq!(&s[22..24], &1360u16.to_be_bytes());
        assert_eq!(&s[26..28], &1360u16.to_be_bytes());
        assert!(verify_v4(&s));
    }

    #[test]
    fn truncated_segments_are_malformed() {
        let s = syn_v4(&[2, 4, 0x05, 0xb4, 1, 1, 4, 2], &[], false);
        for n in 0..s.len() {
            assert_eq!(plan(&s[..n], &params(1360)), Plan::Malformed, "len {n}");
        }
    }

    // M5: IPv6, checked with etherparse's IPv6 checksum.
    #[test]
    fn m5_ipv6() {
        let src = [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let dst = [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let mut h = etherparse::TcpHeader::new(40000, 443, 1, 64800);
        h.syn = true;
        h.set_options_raw(&[1, 2, 4, 0x05, 0xa0, 1, 1, 1]).unwrap();
        h.checksum = h.calc_checksum_ipv6_raw(src, dst, &[]).unwrap();
        let mut s = h.to_bytes().to_vec();
        run(&mut s, &params(1340));
        let (h2, _) = etherparse::TcpHeader::from_slice(&s).unwrap();
        assert_eq!(mss_of(&s), Some(1340));
        assert_eq!(
            h2.calc_checksum_ipv6_raw(src, dst, &[]).unwrap(),
            h2.checksum
        );
        assert_eq!(finish(sum(pseudo_v6(&src, &dst, 6, s.len() as u32), &s)), 0);
    }

    fn option_strategy() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(vec![1u8]),
            any::<u16>().prop_map(|v| vec![2, 4, (v >> 8) as u8, v as u8]),
            Just(vec![4, 2]),
            Just(vec![3, 3, 7]),
            any::<[u8; 8]>().prop_map(|t| [&[8u8, 10][..], &t[..]].concat()),
            prop::collection::vec(any::<u8>(), 0..4).prop_map(|b| {
                let mut v = vec![30, (b.len() + 2) as u8];
                v.extend(b);
                v
            }),
        ]
    }

    proptest! {
        // Random option layouts: the checksum verifies with etherparse, the
        // MSS never rises, every byte but the MSS values and the checksum is
        // unchanged.
        #[test]
        fn clamp_properties(
            opts in prop::collection::vec(option_strategy(), 0..8),
            payload in prop::collection::vec(any::<u8>(), 0..64),
            clamp in 500u16..2000,
            syn_ack in any::<bool>(),
        ) {
            let mut o: Vec<u8> = opts.concat();
            o.truncate(40);
            while o.len() % 4 != 0 { o.push(0); }
            let before = syn_v4(&o, &payload, syn_ack);
            let mut s = before.clone();
            let plan = run(&mut s, &params(clamp));
            prop_assert!(verify_v4(&s));
            let old = mss_of(&before);
            let new = mss_of(&s);
            if let (Some(a), Some(b)) = (old, new) {
                prop_assert!(b <= a);
                prop_assert!(b == a || b == clamp);
            }
            let mut touched = vec![16usize, 17];
            if let Plan::Clamp { offsets, count, .. } = plan {
                for &off in &offsets[..usize::from(count)] {
                    touched.push(usize::from(off));
                    touched.push(usize::from(off) + 1);
                }
            }
            for i in 0..s.len() {
                if !touched.contains(&i) {
                    prop_assert_eq!(s[i], before[i], "byte {} changed", i);
                }
            }
        }

        // Insertion keeps the checksum valid for any option layout that
        // leaves room.
        #[test]
        fn insert_properties(opts in prop::collection::vec(Just(vec![1u8, 1, 4, 2]), 0..10)) {
            let o = opts.concat();
            let mut s = syn_v4(&o, &[], false);
            let p = ClampParams { insert_default: Some(DEFAULT_MSS_V4), ..params(1360) };
            let plan = run(&mut s, &p);
            if o.len() + 4 <= 40 {
                prop_assert_eq!(plan, Plan::Insert(536));
                prop_assert_eq!(mss_of(&s), Some(536));
            } else {
                prop_assert_eq!(plan, Plan::Keep);
            }
            prop_assert!(verify_v4(&s));
        }
    }
}
