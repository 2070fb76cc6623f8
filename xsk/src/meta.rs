//! Router mode: the kernel's forwarding decision that the XDP stage puts in
//! front of each frame it steers to a worker (`struct mtg_meta` in
//! `bpf/mtugate.h`, written with `bpf_xdp_adjust_meta`; AF_XDP copies it
//! into the UMEM chunk just before the packet, in copy mode as in
//! zero-copy).
//!
//! Why metadata and not a netlink mirror of routes and neighbours: the
//! lookup that decides is the kernel's own (`bpf_fib_lookup`, with policy
//! rules, multipath and neighbour state), made for this very frame, so the
//! worker can never act on a stale copy, and nothing has to be kept current.
//! The one gap: `bpf_fib_lookup` reports a route's `mtu` only when it is
//! locked (`ip route ... mtu lock 1400`) or, for IPv4, with
//! `net.ipv4.ip_forward_use_pmtu = 1` (the kernel's
//! `ip_mtu_from_fib_result`); an unlocked route MTU reads as the device's,
//! and the `advmss` metric is not reported at all. Those two come from a
//! small netlink mirror of the routes that carry them
//! ([`RouteMtuTable`](crate::prog::RouteMtuTable)), which the XDP stage
//! consults after its FIB lookup and applies only when the FIB chose the
//! same egress: the metadata below already holds the result.

/// `MTG_META_LEN`: bytes of metadata in front of a steered frame.
pub const META_LEN: usize = 32;
/// `MTG_META_MAGIC`.
const MAGIC: u16 = 0x6d74;

// mtg_meta.why
const WHY_FORWARD: u8 = 1;
const WHY_SYN: u8 = 2;
const WHY_TOO_BIG: u8 = 3;
const WHY_TTL: u8 = 4;
const WHY_NO_NEIGH: u8 = 5;

/// Why the XDP stage steered a frame to the worker (`MTG_WHY_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// `steer = "all"`: only to be forwarded.
    Forward,
    /// A SYN or SYN-ACK to clamp (policed already).
    Syn,
    /// Larger than the route MTU toward its destination.
    TooBig,
    /// Its TTL or hop limit would expire here: Time Exceeded.
    TtlExpired,
    /// A SYN to clamp toward a next hop the kernel has not resolved yet
    /// (no `dst_mac`): once clamped it goes to the kernel's own output,
    /// which resolves the neighbour.
    NoNeighbour,
}

/// `struct mtg_meta`, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMeta {
    /// Why it was steered.
    pub why: Why,
    /// The next hop's MAC address (`None` for an IPv6 error, whose bytes
    /// hold `src6`).
    pub dst_mac: [u8; 6],
    /// The egress port's MAC address.
    pub src_mac: [u8; 6],
    /// The egress interface (0 when not looked up).
    pub egress_ifindex: u32,
    /// The IPv6 source of an ICMPv6 error about this frame (only for
    /// [`Why::TtlExpired`] and [`Why::TooBig`] on IPv6).
    pub src6: Option<[u8; 16]>,
    /// The IPv4 source of an ICMP error about this frame, if the kernel
    /// had one.
    pub src4: Option<[u8; 4]>,
    /// The route MTU toward the destination.
    pub mtu: u16,
    /// The route MTU toward the source, if a route back was found.
    pub reverse_mtu: Option<u16>,
    /// SYNs: the smaller `advmss` of the routes toward the destination and
    /// back toward the source, if either has one.
    pub advmss: Option<u16>,
}

impl RouteMeta {
    /// Decodes the [`META_LEN`] bytes in front of a packet; `None` when
    /// they do not hold our metadata (no magic, or an unknown reason).
    /// `ipv6`: the frame is IPv6 (decides what the union holds).
    pub fn parse(b: &[u8], ipv6: bool) -> Option<RouteMeta> {
        let b: &[u8; META_LEN] = b.get(..META_LEN)?.try_into().ok()?;
        let u16_at = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        if u16_at(30) != MAGIC {
            return None;
        }
        let why = match b[28] {
            WHY_FORWARD => Why::Forward,
            WHY_SYN => Why::Syn,
            WHY_TOO_BIG => Why::TooBig,
            WHY_TTL => Why::TtlExpired,
            WHY_NO_NEIGH => Why::NoNeighbour,
            _ => return None,
        };
        let error_only = ipv6 && matches!(why, Why::TtlExpired | Why::TooBig);
        let mut dst_mac = [0; 6];
        let mut src_mac = [0; 6];
        let mut src6 = None;
        let mut egress_ifindex = 0;
        if error_only {
            let mut a = [0; 16];
            a.copy_from_slice(&b[..16]);
            src6 = Some(a).filter(|a| *a != [0; 16]);
        } else {
            dst_mac.copy_from_slice(&b[..6]);
            src_mac.copy_from_slice(&b[6..12]);
            egress_ifindex = u32::from_ne_bytes([b[12], b[13], b[14], b[15]]);
        }
        let src4 = [b[16], b[17], b[18], b[19]];
        let rev = u16_at(22);
        let advmss = u16_at(24);
        Some(RouteMeta {
            why,
            dst_mac,
            src_mac,
            egress_ifindex,
            src6,
            src4: (src4 != [0; 4]).then_some(src4),
            mtu: u16_at(20),
            reverse_mtu: (rev != 0).then_some(rev),
            advmss: (advmss != 0).then_some(advmss),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> String {
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/bpf/mtugate.h")).unwrap()
    }

    fn def(h: &str, name: &str) -> u64 {
        let line = h
            .lines()
            .find(|l| l.starts_with(&format!("#define {name} ")))
            .unwrap_or_else(|| panic!("{name} not in mtugate.h"));
        let v = line.split_whitespace().nth(2).unwrap();
        match v.strip_prefix("0x") {
            Some(x) => u64::from_str_radix(x, 16).unwrap(),
            None => v.parse().unwrap(),
        }
    }

    /// The decoder agrees with `struct mtg_meta` and its constants.
    #[test]
    fn header_and_mirror_agree() {
        let h = header();
        assert_eq!(def(&h, "MTG_META_LEN"), META_LEN as u64);
        assert_eq!(def(&h, "MTG_META_MAGIC"), u64::from(MAGIC));
        assert_eq!(def(&h, "MTG_WHY_FORWARD"), u64::from(WHY_FORWARD));
        assert_eq!(def(&h, "MTG_WHY_SYN"), u64::from(WHY_SYN));
        assert_eq!(def(&h, "MTG_WHY_TOO_BIG"), u64::from(WHY_TOO_BIG));
        assert_eq!(def(&h, "MTG_WHY_TTL"), u64::from(WHY_TTL));
        assert_eq!(def(&h, "MTG_WHY_NO_NEIGH"), u64::from(WHY_NO_NEIGH));
        // Field order and sizes, from the header's text: the offsets the
        // decoder reads follow from them.
        let body = |name: &str| -> Vec<String> {
            let s = &h[h.find(&format!("struct {name} {{")).unwrap()..];
            // The struct ends at a `};` in column 0 (a union's is indented).
            s[..s.find("\n};").unwrap()]
                .lines()
                .skip(1)
                .map(str::trim)
                .filter(|l| l.ends_with(';'))
                .map(|l| l.trim_end_matches(';').to_string())
                .collect()
        };
        assert_eq!(
            body("mtg_fwd"),
            [
                "unsigned char dst_mac[6]",
                "unsigned char src_mac[6]",
                "unsigned int ifindex"
            ]
        );
        assert_eq!(
            body("mtg_meta"),
            [
                "struct mtg_fwd fwd",
                "unsigned char src6[16]",
                "}",
                "unsigned int src4",
                "unsigned short mtu",
                "unsigned short rev_mtu",
                "unsigned short advmss",
                "unsigned short pad2",
                "unsigned char why",
                "unsigned char pad",
                "unsigned short magic"
            ]
        );
    }

    fn raw(why: u8) -> [u8; META_LEN] {
        let mut b = [0u8; META_LEN];
        b[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        b[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        b[12..16].copy_from_slice(&7u32.to_ne_bytes());
        b[16..20].copy_from_slice(&[198, 51, 100, 254]);
        b[20..22].copy_from_slice(&1400u16.to_ne_bytes());
        b[22..24].copy_from_slice(&1500u16.to_ne_bytes());
        b[24..26].copy_from_slice(&1300u16.to_ne_bytes());
        b[28] = why;
        b[30..32].copy_from_slice(&MAGIC.to_ne_bytes());
        b
    }

    #[test]
    fn decodes_a_forwarding_decision() {
        let m = RouteMeta::parse(&raw(WHY_SYN), false).unwrap();
        assert_eq!(m.why, Why::Syn);
        assert_eq!(m.dst_mac, [2, 0, 0, 0, 0, 1]);
        assert_eq!(m.src_mac, [2, 0, 0, 0, 0, 2]);
        assert_eq!(m.egress_ifindex, 7);
        assert_eq!(m.src4, Some([198, 51, 100, 254]));
        assert_eq!((m.mtu, m.reverse_mtu), (1400, Some(1500)));
        assert_eq!(m.advmss, Some(1300));
        assert_eq!(m.src6, None);
    }

    #[test]
    fn ipv6_errors_carry_their_source_instead() {
        let m = RouteMeta::parse(&raw(WHY_TTL), true).unwrap();
        assert_eq!(m.why, Why::TtlExpired);
        assert_eq!(&m.src6.unwrap()[..6], &[2, 0, 0, 0, 0, 1]);
        assert_eq!(m.egress_ifindex, 0);
    }

    #[test]
    fn refuses_what_is_not_ours() {
        let mut b = raw(WHY_SYN);
        b[31] ^= 1;
        assert_eq!(RouteMeta::parse(&b, false), None);
        assert_eq!(RouteMeta::parse(&raw(9), false), None);
        assert_eq!(RouteMeta::parse(&raw(WHY_SYN)[..31], false), None);
        let mut b = raw(WHY_SYN);
        b[22..24].copy_from_slice(&[0, 0]);
        assert_eq!(RouteMeta::parse(&b, false).unwrap().reverse_mtu, None);
    }
}
