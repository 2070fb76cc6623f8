//! The generator's packets: Ethernet + IPv4/IPv6 + UDP/TCP frames built
//! from a template, each stamped with a sequence number and a timestamp.
//!
//! # The probe stamp
//!
//! A UDP or TCP packet with data carries a 20-byte stamp at the start of
//! its L4 payload: the magic `MTGP`, the sequence number (u64, big endian)
//! and the transmit time (u64, nanoseconds of `CLOCK_REALTIME`, big
//! endian). The rest of the payload is a fixed byte pattern.
//!
//! A SYN carries no data: its TCP sequence number is the low 32 bits of the
//! sequence number and its TCP timestamp option's TSval the low 32 bits of
//! the transmit time in microseconds.
//!
//! # Checksums without summing every byte
//!
//! Every packet of a template differs only in a few fields (the stamp, the
//! IPv4 ID, the source address and port of a flood). The template keeps the
//! one's-complement sum of its L4 checksum with those fields zeroed; a
//! packet's checksum is that sum plus the sum of its variable fields, so a
//! 1514-byte packet costs a copy and ~30 bytes of summing. The IPv4 header
//! checksum is computed in full (20 bytes).

use std::net::{Ipv4Addr, Ipv6Addr};

/// Bytes of the probe stamp at the start of the L4 payload.
pub const STAMP_LEN: usize = 20;
/// First four bytes of a stamp.
pub const MAGIC: [u8; 4] = *b"MTGP";
/// MSS announced by the generator's SYNs.
pub const SYN_MSS: u16 = 1460;

const ETH: usize = 14;
const IP4: usize = 20;
const IP6: usize = 40;
const UDP: usize = 8;
const TCP: usize = 20;
/// SYN options as Linux sends them: MSS, SACK permitted, timestamps, NOP,
/// window scale.
const SYN_OPTS: usize = 20;

/// IP version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// What a profile sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// UDP datagrams carrying a stamp.
    Udp,
    /// TCP ACK+PSH segments carrying a stamp (not SYNs: never clamped).
    Tcp,
    /// SYNs (MSS 1460) from random source addresses and ports: a flood.
    SynFlood,
    /// SYNs (MSS 1460) from the configured source, one new source port per
    /// packet: a steady stream of connection attempts.
    SynLegit,
}

/// A named traffic profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// Name as given on the command line.
    pub name: String,
    /// UDP, TCP, or SYNs.
    pub kind: Kind,
    /// IPv4 or IPv6.
    pub family: Family,
    /// Frame sizes (bytes from the Ethernet header to the end, no FCS),
    /// sent in this order, round robin.
    pub sizes: Vec<usize>,
    /// IPv4 Don't Fragment bit.
    pub df: bool,
}

/// IMIX frame sizes, the classic 7:4:1 mix of 64, 576 and 1514 bytes,
/// interleaved.
const IMIX: [usize; 12] = [64, 576, 64, 64, 1514, 64, 576, 64, 64, 576, 64, 576];

/// Names accepted by [`Profile::parse`], with what they send.
pub const PROFILES: &[(&str, &str)] = &[
    ("udp64", "64-byte IPv4 UDP frames"),
    (
        "udp64-v6",
        "84-byte IPv6 UDP frames (the smallest that hold a stamp)",
    ),
    ("udp1500", "1514-byte IPv4 UDP frames, DF clear"),
    ("udp1500-df", "1514-byte IPv4 UDP frames, DF set"),
    ("udp1500-v6", "1514-byte IPv6 UDP frames"),
    (
        "imix",
        "IPv4 UDP, 64/576/1514 bytes in a 7:4:1 mix, DF clear",
    ),
    ("imix-v6", "IPv6 UDP, 84/576/1514 bytes in a 7:4:1 mix"),
    ("tcp1500", "1514-byte IPv4 TCP segments (ACK+PSH), DF clear"),
    (
        "tcp1500-df",
        "1514-byte IPv4 TCP segments (ACK+PSH), DF set",
    ),
    ("tcp1500-v6", "1514-byte IPv6 TCP segments (ACK+PSH)"),
    (
        "syn-flood",
        "IPv4 SYNs, MSS 1460, random source (host bits) and port",
    ),
    (
        "syn-flood-v6",
        "IPv6 SYNs, MSS 1460, random source (interface id) and port",
    ),
    (
        "syn-legit",
        "IPv4 SYNs, MSS 1460, from the source address, a new port each",
    ),
    (
        "syn-legit-v6",
        "IPv6 SYNs, MSS 1460, from the source address, a new port each",
    ),
];

impl Profile {
    /// Parses a profile name (see [`PROFILES`]); `size` replaces the frame
    /// size of a single-size UDP or TCP profile.
    pub fn parse(name: &str, size: Option<usize>) -> Result<Profile, String> {
        use Family::{V4, V6};
        use Kind::{SynFlood, SynLegit, Tcp, Udp};
        let (kind, family, sizes, df): (Kind, Family, Vec<usize>, bool) = match name {
            "udp64" => (Udp, V4, vec![64], false),
            "udp64-v6" => (Udp, V6, vec![84], false),
            "udp1500" => (Udp, V4, vec![1514], false),
            "udp1500-df" => (Udp, V4, vec![1514], true),
            "udp1500-v6" => (Udp, V6, vec![1514], false),
            "imix" => (Udp, V4, IMIX.to_vec(), false),
            "imix-v6" => (
                Udp,
                V6,
                IMIX.iter().map(|&s| if s == 64 { 84 } else { s }).collect(),
                false,
            ),
            "tcp1500" => (Tcp, V4, vec![1514], false),
            "tcp1500-df" => (Tcp, V4, vec![1514], true),
            "tcp1500-v6" => (Tcp, V6, vec![1514], false),
            "syn-flood" => (SynFlood, V4, vec![syn_len(V4)], true),
            "syn-flood-v6" => (SynFlood, V6, vec![syn_len(V6)], false),
            "syn-legit" => (SynLegit, V4, vec![syn_len(V4)], true),
            "syn-legit-v6" => (SynLegit, V6, vec![syn_len(V6)], false),
            _ => {
                let names: Vec<&str> = PROFILES.iter().map(|p| p.0).collect();
                return Err(format!(
                    "unknown profile {name:?}; one of {}",
                    names.join(", ")
                ));
            }
        };
        let mut p = Profile {
            name: name.to_owned(),
            kind,
            family,
            sizes,
            df,
        };
        if let Some(s) = size {
            if p.sizes.len() != 1 || matches!(kind, SynFlood | SynLegit) {
                return Err(format!("--size does not apply to profile {name}"));
            }
            let min = p.min_len();
            if !(min..=9000).contains(&s) {
                return Err(format!(
                    "--size {s}: profile {name} needs {min}..=9000 bytes"
                ));
            }
            p.sizes = vec![s];
        }
        Ok(p)
    }

    /// Smallest frame that holds the headers and the stamp.
    pub fn min_len(&self) -> usize {
        let l3 = match self.family {
            Family::V4 => IP4,
            Family::V6 => IP6,
        };
        match self.kind {
            Kind::Udp => ETH + l3 + UDP + STAMP_LEN,
            Kind::Tcp => ETH + l3 + TCP + STAMP_LEN,
            Kind::SynFlood | Kind::SynLegit => syn_len(self.family),
        }
    }

    /// Largest frame size of the profile.
    pub fn max_len(&self) -> usize {
        self.sizes.iter().copied().max().unwrap_or(0)
    }
}

fn syn_len(f: Family) -> usize {
    ETH + match f {
        Family::V4 => IP4,
        Family::V6 => IP6,
    } + TCP
        + SYN_OPTS
}

/// Addresses and ports of the generated packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoints {
    /// Ethernet source.
    pub src_mac: [u8; 6],
    /// Ethernet destination (the next hop: the far host on a wire or
    /// bridge, the router's port otherwise).
    pub dst_mac: [u8; 6],
    /// IPv4 source.
    pub src4: Ipv4Addr,
    /// IPv4 destination.
    pub dst4: Ipv4Addr,
    /// IPv6 source.
    pub src6: Ipv6Addr,
    /// IPv6 destination.
    pub dst6: Ipv6Addr,
    /// L4 source port (SYN profiles choose their own).
    pub sport: u16,
    /// L4 destination port.
    pub dport: u16,
    /// Host bits randomised in a flood's IPv4 source (the low bits; IPv6
    /// randomises the 64-bit interface id).
    pub flood_bits: u8,
}

impl Default for Endpoints {
    fn default() -> Self {
        Endpoints {
            src_mac: [0x02, 0, 0, 0, 0, 1],
            dst_mac: [0x02, 0, 0, 0, 0, 2],
            src4: Ipv4Addr::new(192, 0, 2, 1),
            dst4: Ipv4Addr::new(192, 0, 2, 2),
            src6: "2001:db8:1::1".parse().expect("literal"),
            dst6: "2001:db8:1::2".parse().expect("literal"),
            sport: 9,
            dport: 9,
            flood_bits: 8,
        }
    }
}

/// Small, fast, seedable pseudo-random numbers (xorshift64*), for flood
/// sources: not for anything that needs unpredictability.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced by a fixed constant).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Sum of big-endian 16-bit words (odd tail padded with zero), unfolded.
#[inline]
fn sum16(b: &[u8]) -> u32 {
    let mut s = 0u32;
    let mut it = b.chunks_exact(2);
    for w in &mut it {
        s += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = it.remainder() {
        s += u32::from(*last) << 8;
    }
    s
}

#[inline]
fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// One frame size of one profile: the bytes of a packet with every
/// variable field zeroed, and where those fields are.
#[derive(Debug, Clone)]
struct Template {
    bytes: Vec<u8>,
    family: Family,
    kind: Kind,
    l4: usize,
    l4_csum: usize,
    /// L4 checksum sum (pseudo-header included) with the variable fields
    /// zeroed.
    l4_base: u32,
    /// Frame ranges whose bytes enter the L4 checksum per packet.
    var: [(usize, usize); 3],
    nvar: usize,
}

/// Builds the packets of one [`Profile`].
#[derive(Debug, Clone)]
pub struct Builder {
    templates: Vec<Template>,
    pattern: usize,
    flood_bits: u8,
    next_port: u16,
    rng: Rng,
}

impl Builder {
    /// Templates for every frame size of `p`.
    pub fn new(p: &Profile, ep: &Endpoints, seed: u64) -> Result<Builder, String> {
        let mut templates = Vec::with_capacity(p.sizes.len());
        for &len in &p.sizes {
            if len < p.min_len() {
                return Err(format!(
                    "{}: frame of {len} bytes is below the {} the headers and stamp need",
                    p.name,
                    p.min_len()
                ));
            }
            templates.push(template(p, ep, len));
        }
        Ok(Builder {
            templates,
            pattern: 0,
            flood_bits: ep.flood_bits.min(32),
            next_port: 1024,
            rng: Rng::new(seed),
        })
    }

    /// Length of the next frame [`fill`](Self::fill) will build.
    #[inline]
    pub fn next_len(&self) -> usize {
        self.templates[self.pattern].bytes.len()
    }

    /// Writes the next packet, stamped with `seq` and `ts_ns`, at the start
    /// of `buf`; returns its length.
    ///
    /// # Panics
    /// If `buf` is shorter than [`next_len`](Self::next_len).
    #[inline]
    pub fn fill(&mut self, buf: &mut [u8], seq: u64, ts_ns: u64) -> usize {
        let t = &self.templates[self.pattern];
        self.pattern += 1;
        if self.pattern == self.templates.len() {
            self.pattern = 0;
        }
        let len = t.bytes.len();
        let out = &mut buf[..len];
        out.copy_from_slice(&t.bytes);
        let l4 = t.l4;
        match t.kind {
            Kind::Udp | Kind::Tcp => {
                let hdr = if t.kind == Kind::Udp { UDP } else { TCP };
                let s = l4 + hdr;
                out[s..s + 4].copy_from_slice(&MAGIC);
                out[s + 4..s + 12].copy_from_slice(&seq.to_be_bytes());
                out[s + 12..s + 20].copy_from_slice(&ts_ns.to_be_bytes());
            }
            Kind::SynFlood | Kind::SynLegit => {
                let port = if t.kind == Kind::SynFlood {
                    let r = self.rng.next_u64();
                    let src = ETH + if t.family == Family::V4 { 12 } else { 8 };
                    match t.family {
                        Family::V4 => {
                            let mask = if self.flood_bits == 0 {
                                0
                            } else {
                                u32::MAX >> (32 - u32::from(self.flood_bits))
                            };
                            let base = u32::from_be_bytes([
                                out[src],
                                out[src + 1],
                                out[src + 2],
                                out[src + 3],
                            ]);
                            // Host bits 0 and all-ones are avoided.
                            let mut host = (r >> 16) as u32 & mask;
                            if mask != 0 && (host == 0 || host == mask) {
                                host = 2.min(mask);
                            }
                            // Nor the legitimate client's own address: the
                            // flood shares its prefix, it does not spoof it
                            // (a source's budget is its own; a flood in its
                            // name would spend it, by design).
                            if mask >= 3 && host == base & mask {
                                host = if host == 2 { 3 } else { 2 };
                            }
                            let a = (base & !mask) | host;
                            out[src..src + 4].copy_from_slice(&a.to_be_bytes());
                        }
                        Family::V6 => {
                            let iid = (r >> 1) | 0x100; // never 0 or ::1
                            out[src + 8..src + 16].copy_from_slice(&iid.to_be_bytes());
                        }
                    }
                    1024 + (r as u16 % 64512)
                } else {
                    let p = self.next_port;
                    self.next_port = if p == u16::MAX { 1024 } else { p + 1 };
                    p
                };
                out[l4..l4 + 2].copy_from_slice(&port.to_be_bytes());
                out[l4 + 4..l4 + 8].copy_from_slice(&(seq as u32).to_be_bytes());
                // TSval: options start at l4 + 20: MSS(4) SACKOK(2) TS(10).
                let tsval = (ts_ns / 1000) as u32;
                out[l4 + 28..l4 + 32].copy_from_slice(&tsval.to_be_bytes());
            }
        }
        if t.family == Family::V4 {
            let id = seq as u16;
            out[ETH + 4..ETH + 6].copy_from_slice(&id.to_be_bytes());
            out[ETH + 10..ETH + 12].copy_from_slice(&[0, 0]);
            let c = !fold(sum16(&out[ETH..ETH + IP4]));
            out[ETH + 10..ETH + 12].copy_from_slice(&c.to_be_bytes());
        }
        let mut s = t.l4_base;
        for &(a, n) in &t.var[..t.nvar] {
            s += sum16(&out[a..a + n]);
        }
        let mut c = !fold(s);
        if c == 0 && t.kind == Kind::Udp {
            c = 0xffff; // RFC 768: 0 means "no checksum"
        }
        out[t.l4_csum..t.l4_csum + 2].copy_from_slice(&c.to_be_bytes());
        len
    }
}

fn template(p: &Profile, ep: &Endpoints, len: usize) -> Template {
    let mut b = vec![0u8; len];
    b[0..6].copy_from_slice(&ep.dst_mac);
    b[6..12].copy_from_slice(&ep.src_mac);
    let syn = matches!(p.kind, Kind::SynFlood | Kind::SynLegit);
    let proto: u8 = if p.kind == Kind::Udp { 17 } else { 6 };
    let (l4, src_range) = match p.family {
        Family::V4 => {
            b[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
            let ip = &mut b[ETH..ETH + IP4];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&((len - ETH) as u16).to_be_bytes());
            ip[6] = if p.df { 0x40 } else { 0 };
            ip[8] = 64;
            ip[9] = proto;
            ip[12..16].copy_from_slice(&ep.src4.octets());
            ip[16..20].copy_from_slice(&ep.dst4.octets());
            (ETH + IP4, (ETH + 12, 4))
        }
        Family::V6 => {
            b[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
            let ip = &mut b[ETH..ETH + IP6];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&((len - ETH - IP6) as u16).to_be_bytes());
            ip[6] = proto;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&ep.src6.octets());
            ip[24..40].copy_from_slice(&ep.dst6.octets());
            (ETH + IP6, (ETH + 8, 16))
        }
    };
    let l4_len = len - l4;
    let (l4_csum, data) = if p.kind == Kind::Udp {
        let u = &mut b[l4..l4 + UDP];
        u[0..2].copy_from_slice(&ep.sport.to_be_bytes());
        u[2..4].copy_from_slice(&ep.dport.to_be_bytes());
        u[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        (l4 + 6, l4 + UDP)
    } else {
        let hlen = if syn { TCP + SYN_OPTS } else { TCP };
        let t = &mut b[l4..l4 + hlen];
        t[0..2].copy_from_slice(&ep.sport.to_be_bytes());
        t[2..4].copy_from_slice(&ep.dport.to_be_bytes());
        t[4..8].copy_from_slice(&1u32.to_be_bytes());
        t[12] = ((hlen / 4) as u8) << 4;
        if syn {
            t[13] = 0x02; // SYN
            t[14..16].copy_from_slice(&64240u16.to_be_bytes());
            let o = &mut t[TCP..];
            o[0..4].copy_from_slice(&[2, 4, (SYN_MSS >> 8) as u8, SYN_MSS as u8]);
            o[4..6].copy_from_slice(&[4, 2]); // SACK permitted
            o[6..8].copy_from_slice(&[8, 10]); // timestamps: TSval, TSecr 0
            o[16] = 1; // NOP
            o[17..20].copy_from_slice(&[3, 3, 7]); // window scale 7
        } else {
            t[8..12].copy_from_slice(&1u32.to_be_bytes());
            t[13] = 0x18; // ACK + PSH
            t[14..16].copy_from_slice(&502u16.to_be_bytes());
        }
        (l4 + 16, l4 + hlen)
    };
    // Payload pattern after the stamp.
    if !syn {
        for (i, x) in b[data + STAMP_LEN..].iter_mut().enumerate() {
            *x = (i as u8) ^ 0x5a;
        }
    }
    let mut var = [(0usize, 0usize); 3];
    let nvar = match p.kind {
        Kind::Udp | Kind::Tcp => {
            var[0] = (data, STAMP_LEN);
            1
        }
        Kind::SynLegit => {
            var[0] = (l4, 8); // ports, sequence number
            var[1] = (l4 + 28, 4); // TSval
            2
        }
        Kind::SynFlood => {
            var[0] = (l4, 8);
            var[1] = (l4 + 28, 4);
            var[2] = src_range;
            3
        }
    };
    // Base sum: pseudo-header + L4 bytes with the variable fields zeroed.
    let mut z = b.clone();
    for &(a, n) in &var[..nvar] {
        z[a..a + n].fill(0);
    }
    let pseudo = match p.family {
        Family::V4 => sum16(&z[ETH + 12..ETH + 20]) + u32::from(proto) + l4_len as u32,
        Family::V6 => {
            // 32-bit upper-layer length: frames are far below 64 KiB.
            sum16(&z[ETH + 8..ETH + 40]) + l4_len as u32 + u32::from(proto)
        }
    };
    let l4_base = pseudo + sum16(&z[l4..]);
    Template {
        bytes: b,
        family: p.family,
        kind: p.kind,
        l4,
        l4_csum,
        l4_base,
        var,
        nvar,
    }
}

/// The stamp of a received UDP or TCP frame built by [`Builder`] (any
/// Ethernet + IPv4/IPv6 frame whose L4 payload starts with [`MAGIC`]), as
/// `(sequence number, transmit time in ns)`. A non-first IPv4 fragment has
/// no stamp.
pub fn read_stamp(frame: &[u8]) -> Option<(u64, u64)> {
    stamp_of(frame.get(stamp_offset(frame)?..)?)
}

/// Where the L4 payload of an Ethernet + IPv4/IPv6 UDP or TCP frame
/// starts: the place of a [`Builder`] frame's stamp (whether one is there
/// or not). `None` for other frames and non-first IPv4 fragments.
pub fn stamp_offset(frame: &[u8]) -> Option<usize> {
    let et = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let (proto, l4) = match et {
        0x0800 => {
            let ip = frame.get(ETH..ETH + IP4)?;
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let frag_off = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
            if frag_off != 0 {
                return None;
            }
            (ip[9], ETH + ihl)
        }
        0x86dd => (*frame.get(ETH + 6)?, ETH + IP6),
        _ => return None,
    };
    match proto {
        17 => Some(l4 + UDP),
        6 => Some(l4 + usize::from(*frame.get(l4 + 12)? >> 4) * 4),
        _ => None,
    }
}

/// The stamp at the start of an L4 payload, if it has one.
pub fn stamp_of(payload: &[u8]) -> Option<(u64, u64)> {
    let s = payload.get(..STAMP_LEN)?;
    if s[..4] != MAGIC {
        return None;
    }
    let seq = u64::from_be_bytes(s[4..12].try_into().ok()?);
    let ts = u64::from_be_bytes(s[12..20].try_into().ok()?);
    Some((seq, ts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    fn all() -> Vec<Profile> {
        PROFILES
            .iter()
            .map(|(n, _)| Profile::parse(n, None).unwrap())
            .collect()
    }

    /// Parses `f` with etherparse and checks every checksum, returning the
    /// transport payload and TCP MSS (if any).
    fn check(f: &[u8], p: &Profile, want_len: usize) -> (Vec<u8>, Option<u16>) {
        assert_eq!(f.len(), want_len, "{}", p.name);
        let s = SlicedPacket::from_ethernet(f).unwrap_or_else(|e| panic!("{}: {e:?}", p.name));
        let net = s.net.as_ref().expect("IP");
        let transport = s.transport.as_ref().expect("transport");
        match (net, transport) {
            (NetSlice::Ipv4(ip), t) => {
                let h = ip.header().to_header();
                assert_eq!(
                    h.header_checksum,
                    h.calc_header_checksum(),
                    "{} IPv4 header checksum",
                    p.name
                );
                assert_eq!(h.dont_fragment, p.df, "{}", p.name);
                assert_eq!(usize::from(h.total_len), f.len() - 14);
                let payload = ip.payload().payload;
                match t {
                    TransportSlice::Udp(u) => {
                        let uh = u.to_header();
                        let want = uh.calc_checksum_ipv4(&h, u.payload()).unwrap();
                        assert_eq!(uh.checksum, want, "{} UDP checksum", p.name);
                        assert_eq!(usize::from(uh.length), payload.len());
                        (u.payload().to_vec(), None)
                    }
                    TransportSlice::Tcp(t) => {
                        let th = t.to_header();
                        let want = th.calc_checksum_ipv4(&h, t.payload()).unwrap();
                        assert_eq!(th.checksum, want, "{} TCP checksum", p.name);
                        (t.payload().to_vec(), mss(&th))
                    }
                    other => panic!("{other:?}"),
                }
            }
            (NetSlice::Ipv6(ip), t) => {
                let h = ip.header().to_header();
                assert_eq!(usize::from(h.payload_length), f.len() - 54);
                match t {
                    TransportSlice::Udp(u) => {
                        let uh = u.to_header();
                        let want = uh.calc_checksum_ipv6(&h, u.payload()).unwrap();
                        assert_eq!(uh.checksum, want, "{} UDP checksum", p.name);
                        (u.payload().to_vec(), None)
                    }
                    TransportSlice::Tcp(t) => {
                        let th = t.to_header();
                        let want = th.calc_checksum_ipv6(&h, t.payload()).unwrap();
                        assert_eq!(th.checksum, want, "{} TCP checksum", p.name);
                        (t.payload().to_vec(), mss(&th))
                    }
                    other => panic!("{other:?}"),
                }
            }
            other => panic!("{other:?}"),
        }
    }

    fn mss(th: &etherparse::TcpHeader) -> Option<u16> {
        th.options_iterator().find_map(|o| match o {
            Ok(etherparse::TcpOptionElement::MaximumSegmentSize(m)) => Some(m),
            _ => None,
        })
    }

    #[test]
    fn every_profile_parses_with_valid_checksums_and_stamps() {
        let ep = Endpoints::default();
        let mut buf = vec![0u8; 4096];
        for p in all() {
            let mut b = Builder::new(&p, &ep, 7).unwrap();
            for seq in 0..40u64 {
                let want = b.next_len();
                let ts = 1_700_000_000_123_456_789 + seq * 1_000_003;
                let n = b.fill(&mut buf, seq, ts);
                let f = &buf[..n];
                let (payload, mss) = check(f, &p, want);
                match p.kind {
                    Kind::Udp | Kind::Tcp => {
                        assert_eq!(stamp_of(&payload), Some((seq, ts)), "{}", p.name);
                        assert_eq!(read_stamp(f), Some((seq, ts)), "{}", p.name);
                        assert_eq!(mss, None);
                    }
                    Kind::SynFlood | Kind::SynLegit => {
                        assert!(payload.is_empty());
                        assert_eq!(mss, Some(SYN_MSS), "{}", p.name);
                        let s = SlicedPacket::from_ethernet(f).unwrap();
                        let Some(TransportSlice::Tcp(t)) = s.transport else {
                            panic!()
                        };
                        assert!(t.syn() && !t.ack());
                        assert_eq!(t.sequence_number(), seq as u32);
                    }
                }
            }
        }
    }

    #[test]
    fn sizes_are_as_named() {
        let ep = Endpoints::default();
        let mut buf = vec![0u8; 4096];
        let mut sizes = |name: &str| {
            let p = Profile::parse(name, None).unwrap();
            let mut b = Builder::new(&p, &ep, 1).unwrap();
            (0..12).map(|i| b.fill(&mut buf, i, 0)).collect::<Vec<_>>()
        };
        assert!(sizes("udp64").iter().all(|&n| n == 64));
        assert!(sizes("tcp1500-df").iter().all(|&n| n == 1514));
        let imix = sizes("imix");
        assert_eq!(imix.iter().filter(|&&n| n == 64).count(), 7);
        assert_eq!(imix.iter().filter(|&&n| n == 576).count(), 4);
        assert_eq!(imix.iter().filter(|&&n| n == 1514).count(), 1);
        assert!(Profile::parse("udp64", Some(40)).is_err());
        assert_eq!(Profile::parse("udp64", Some(128)).unwrap().sizes, [128]);
        assert!(Profile::parse("syn-flood", Some(128)).is_err());
        assert!(Profile::parse("nope", None).is_err());
    }

    #[test]
    fn flood_sources_vary_within_the_prefix_and_legit_ports_advance() {
        let ep = Endpoints::default();
        let mut buf = vec![0u8; 256];
        let p = Profile::parse("syn-flood", None).unwrap();
        let mut b = Builder::new(&p, &ep, 3).unwrap();
        let mut srcs = std::collections::HashSet::new();
        for i in 0..5000 {
            b.fill(&mut buf, i, 0);
            let a = Ipv4Addr::new(buf[26], buf[27], buf[28], buf[29]);
            assert_eq!(a.octets()[..3], [192, 0, 2]);
            assert!(a.octets()[3] != 0 && a.octets()[3] != 255);
            // The client's own address (192.0.2.1) is never spoofed.
            assert_ne!(a.octets()[3], 1);
            srcs.insert(a);
        }
        assert!(srcs.len() > 200, "{}", srcs.len());
        let p = Profile::parse("syn-legit", None).unwrap();
        let mut b = Builder::new(&p, &ep, 3).unwrap();
        b.fill(&mut buf, 0, 0);
        let p0 = u16::from_be_bytes([buf[34], buf[35]]);
        b.fill(&mut buf, 1, 0);
        let p1 = u16::from_be_bytes([buf[34], buf[35]]);
        assert_eq!(p1, p0 + 1);
        assert_eq!(&buf[26..30], &[192, 0, 2, 1]);
    }

    #[test]
    fn fragments_have_no_stamp_and_junk_is_refused() {
        let ep = Endpoints::default();
        let p = Profile::parse("udp1500", None).unwrap();
        let mut b = Builder::new(&p, &ep, 1).unwrap();
        let mut buf = vec![0u8; 2048];
        let n = b.fill(&mut buf, 5, 6);
        assert_eq!(read_stamp(&buf[..n]), Some((5, 6)));
        buf[14 + 7] = 10; // fragment offset 80
        assert_eq!(read_stamp(&buf[..n]), None);
        assert_eq!(read_stamp(&[0u8; 10]), None);
        assert_eq!(read_stamp(&[0u8; 80]), None);
    }

    proptest::proptest! {
        #[test]
        fn udp_checksum_holds_for_any_size_stamp_and_port(
            size in 62usize..2000,
            seq: u64,
            ts: u64,
            sport: u16,
            v6: bool,
        ) {
            let ep = Endpoints { sport, ..Endpoints::default() };
            let name = if v6 { "udp64-v6" } else { "udp64" };
            let mut p = Profile::parse(name, None).unwrap();
            let size = size.max(p.min_len());
            p.sizes = vec![size];
            let mut b = Builder::new(&p, &ep, seq).unwrap();
            let mut buf = vec![0u8; 2048];
            let n = b.fill(&mut buf, seq, ts);
            let (payload, _) = check(&buf[..n], &p, size);
            proptest::prop_assert_eq!(stamp_of(&payload), Some((seq, ts)));
        }
    }
}
