//! End-to-end tests of the sans-IO pipeline: frames built and checked by
//! etherparse (an independent implementation), fed through `process_frame`.
//!
//! Every frame any test runs goes through [`judge`]: each frame the pipeline
//! transmits is compared with the input through etherparse, and only the
//! differences the behaviour allows are accepted (an MSS lowered to the
//! clamp, an MSS option inserted, fragments that reassemble to the input,
//! an ICMP error quoting it). The counters are compared with the frames
//! actually seen, not with each other.

mod common;
use common::{Frames, FRAME};
use etherparse::defrag::IpDefragPool;
use etherparse::icmpv4::DestUnreachableHeader;
use etherparse::{
    Icmpv4Type, Icmpv6Type, IpNumber, Ipv4Header, Ipv4HeaderSlice, LaxNetSlice, LaxSlicedPacket,
    NetSlice, PacketBuilder, SlicedPacket, TcpOptionElement, TcpSlice, TransportSlice,
};
use mtugate_datapath::pipeline::{
    self, Clamp, Config, Counters, DfPolicy, DropReason, OverLimit, PortId, Rate, Settings,
    SettingsError, State, Verdict,
};
use proptest::prelude::*;

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];
const SRC4: [u8; 4] = [192, 0, 2, 1];
const DST4: [u8; 4] = [192, 0, 2, 2];
const SRC6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const DST6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

/// The appliance of the lab: port 0 inside at 1500, port 1 the tunnel at 1400.
fn settings() -> Settings {
    Settings {
        port_mtu: vec![1500, 1400],
        ..Default::default()
    }
}

struct Dut {
    cfg: Config,
    st: State,
    frames: Frames,
    /// Frames fed in, by ingress port.
    fed: [u64; 2],
    /// Frames seen leaving (forwards, fragments, replies), by ingress port.
    sent: [u64; 2],
}

impl Dut {
    fn new(s: Settings) -> Dut {
        let cfg = Config::new(s).unwrap();
        let st = State::new(&cfg, 0, 42);
        Dut {
            cfg,
            st,
            frames: Frames::new(64),
            fed: [0; 2],
            sent: [0; 2],
        }
    }

    /// Runs one frame in from `port` at time `now`; returns the verdict and
    /// the frame's buffer (with its new length applied where it has one).
    /// Judges the outcome against the input and checks the counters against
    /// the frames seen.
    fn run_at(&mut self, frame: &[u8], port: usize, now: u64) -> (Verdict, Vec<u8>) {
        let mut buf = vec![0u8; FRAME.max(frame.len())];
        buf[..frame.len()].copy_from_slice(frame);
        let committed = self.frames.out.len();
        let v = pipeline::process_frame(
            &mut buf,
            frame.len(),
            PortId::new(port),
            now,
            &self.cfg,
            &mut self.st,
            &mut self.frames,
        );
        let len = match v {
            Verdict::Forward { len, .. } | Verdict::Reply { len } => len,
            Verdict::Fragments { first_len, .. } => first_len,
            Verdict::Drop(_) => frame.len(),
        };
        buf.truncate(len);
        let extra = &self.frames.out[committed..];
        judge(&self.cfg, port, frame, v, &buf, extra);
        self.fed[port] += 1;
        self.sent[port] += match v {
            Verdict::Drop(_) => 0,
            _ => 1 + extra.len() as u64,
        };
        let c = &self.st.counters[port];
        assert_eq!(c.rx_packets, self.fed[port], "rx_packets");
        assert_eq!(
            c.transmitted(),
            self.sent[port],
            "transmitted vs frames seen"
        );
        (v, buf)
    }

    fn run(&mut self, frame: &[u8], port: usize) -> (Verdict, Vec<u8>) {
        self.run_at(frame, port, 1_000_000_000)
    }

    fn c(&self, port: usize) -> &Counters {
        &self.st.counters[port]
    }
}

// ---- the judge: outputs against inputs, through etherparse ---------------

/// Where the IP header of `frame` starts, found by etherparse (lax, so that
/// a packet whose transport header etherparse rejects still has one).
fn l3_of(frame: &[u8]) -> Option<usize> {
    let p = LaxSlicedPacket::from_ethernet(frame).ok()?;
    let start = match p.net? {
        LaxNetSlice::Ipv4(ip) => ip.header().slice().as_ptr(),
        LaxNetSlice::Ipv6(ip) => ip.header().slice().as_ptr(),
        LaxNetSlice::Arp(_) => return None,
    };
    Some(start as usize - frame.as_ptr() as usize)
}

/// Checks one outcome of the pipeline with etherparse: `out` is what the
/// frame's buffer holds afterwards (cut to the verdict's length), `extra`
/// the frames committed for it.
fn judge(cfg: &Config, port: usize, input: &[u8], v: Verdict, out: &[u8], extra: &[Vec<u8>]) {
    let s = cfg.settings();
    let egress_mtu = s.port_mtu[port ^ 1];
    // Wire mode: whatever is forwarded leaves by the other port.
    if let Verdict::Forward { egress, .. } | Verdict::Fragments { egress, .. } = v {
        assert_eq!(egress, PortId::new(port ^ 1), "egress port");
    }
    match v {
        Verdict::Forward { .. } => {
            assert!(extra.is_empty(), "extra frames for a forward");
            if out != input {
                judge_rewrite(cfg, port, input, out);
            }
        }
        Verdict::Fragments { .. } => {
            let mut all = vec![out];
            all.extend(extra.iter().map(Vec::as_slice));
            judge_fragments(input, &all, egress_mtu);
        }
        Verdict::Reply { .. } => {
            assert!(extra.is_empty(), "extra frames for a reply");
            judge_reply(input, out, egress_mtu, s.port_mtu[port]);
        }
        Verdict::Drop(_) => assert!(extra.is_empty(), "extra frames for a drop"),
    }
}

/// A forwarded frame that differs from its input: it must be a SYN whose
/// MSS was lowered to the clamp or that got an MSS option inserted, with
/// every other field as it was and both checksums right.
fn judge_rewrite(cfg: &Config, port: usize, input: &[u8], out: &[u8]) {
    let pi = SlicedPacket::from_ethernet(input).expect("a rewritten frame's input parses");
    let po = SlicedPacket::from_ethernet(out).expect("a rewritten frame parses");
    let l3 = l3_of(input).unwrap();
    assert_eq!(l3_of(out), Some(l3));
    assert_eq!(out[..l3], input[..l3], "link-layer header");
    let (Some(ti), Some(to)) = (tcp_of(&pi), tcp_of(&po)) else {
        panic!("rewrite of a non-TCP packet")
    };
    assert!(
        ti.syn() && !ti.rst(),
        "rewrite of a segment that is not a SYN"
    );
    // Both checksums (IPv4 header, TCP) verify, unless the input's did not:
    // incremental updates keep an error as it was (never launder one).
    assert_eq!(
        sums_ok(&po, &to),
        sums_ok(&pi, &ti),
        "checksums (IPv4 header, TCP)"
    );
    let (fam, default) = match pi.net {
        Some(NetSlice::Ipv4(_)) => (0, 536),
        _ => (1, 1220),
    };
    let clamp = cfg
        .clamp_for(fam, PortId::new(port))
        .expect("rewritten without a clamp");
    let (hi, ho) = (ti.to_header(), to.to_header());
    let strip = |mut h: etherparse::TcpHeader| {
        h.checksum = 0;
        h.options = Default::default();
        h
    };
    assert_eq!(
        strip(hi.clone()),
        strip(ho.clone()),
        "TCP fields besides options"
    );
    assert_eq!(ti.payload(), to.payload());
    let oi: Vec<_> = ti.options_iterator().collect();
    let oo: Vec<_> = to.options_iterator().collect();
    let inserted = ho.data_offset() != hi.data_offset();
    match (&pi.net, &po.net) {
        (Some(NetSlice::Ipv4(a)), Some(NetSlice::Ipv4(b))) if !inserted => {
            assert_eq!(a.header().slice(), b.header().slice(), "IPv4 header");
        }
        (Some(NetSlice::Ipv6(a)), Some(NetSlice::Ipv6(b))) if !inserted => {
            assert_eq!(a.header().slice(), b.header().slice(), "IPv6 header");
        }
        (Some(NetSlice::Ipv4(a)), Some(NetSlice::Ipv4(b))) => {
            let mut h = a.header().to_header();
            h.total_len += 4;
            h.header_checksum = b.header().header_checksum();
            assert_eq!(h, b.header().to_header(), "IPv4 header after insertion");
        }
        (Some(NetSlice::Ipv6(a)), Some(NetSlice::Ipv6(b))) => {
            let mut h = a.header().to_header();
            h.payload_length += 4;
            assert_eq!(h, b.header().to_header(), "IPv6 header after insertion");
        }
        other => panic!("family changed: {other:?}"),
    }
    if !inserted {
        // Clamped: only MSS values changed, each to the clamp and down.
        assert_eq!(oi.len(), oo.len());
        let mut lowered = 0;
        for (a, b) in oi.iter().zip(&oo) {
            match (a, b) {
                (
                    Ok(TcpOptionElement::MaximumSegmentSize(x)),
                    Ok(TcpOptionElement::MaximumSegmentSize(y)),
                ) if x != y => {
                    assert!(*y == clamp && clamp < *x, "MSS {x} -> {y}, clamp {clamp}");
                    lowered += 1;
                }
                (a, b) => assert_eq!(a, b),
            }
        }
        assert!(lowered > 0, "changed bytes, but no MSS lowered");
    } else {
        // Inserted (VECTORS M7): first, min(clamp, default); one word more.
        assert_eq!(ho.data_offset(), hi.data_offset() + 1);
        assert!(ti.payload().is_empty(), "insertion into a SYN with data");
        assert_eq!(
            oo.first(),
            Some(&Ok(TcpOptionElement::MaximumSegmentSize(
                clamp.min(default)
            )))
        );
        assert_eq!(oo[1..], oi[..]);
        assert_eq!(out.len(), l3 + pi_ip_len(&pi) + 4, "padding dropped");
    }
}

/// The TCP header of `p`: the one etherparse parsed, or in a first fragment
/// (which etherparse leaves unparsed; the pipeline clamps a SYN there) the
/// one at the start of its payload.
fn tcp_of<'a>(p: &SlicedPacket<'a>) -> Option<TcpSlice<'a>> {
    match (&p.transport, &p.net) {
        (Some(TransportSlice::Tcp(t)), _) => Some(t.clone()),
        (None, Some(NetSlice::Ipv4(ip)))
            if ip.header().fragments_offset().value() == 0
                && ip.payload().ip_number == IpNumber::TCP =>
        {
            TcpSlice::from_slice(ip.payload().payload).ok()
        }
        (None, Some(NetSlice::Ipv6(ip))) if ip.payload().ip_number == IpNumber::TCP => {
            TcpSlice::from_slice(ip.payload().payload).ok()
        }
        _ => None,
    }
}

/// Whether etherparse finds the IPv4 header checksum (`true` for IPv6) and
/// the checksum of `t`, the TCP segment of `p`, right (over the bytes the
/// packet holds: in a fragment that is not the whole segment, and the sum
/// is wrong in the input and the output alike).
fn sums_ok(p: &SlicedPacket<'_>, t: &TcpSlice<'_>) -> (bool, bool) {
    match &p.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header().to_header();
            let c = t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap();
            (
                h.calc_header_checksum() == h.header_checksum,
                c == t.checksum(),
            )
        }
        Some(NetSlice::Ipv6(ip)) => {
            let h = ip.header().to_header();
            let c = t.to_header().calc_checksum_ipv6(&h, t.payload()).unwrap();
            (true, c == t.checksum())
        }
        other => panic!("not IP: {other:?}"),
    }
}

/// The IP packet length etherparse sees in `p`.
fn pi_ip_len(p: &SlicedPacket<'_>) -> usize {
    match &p.net {
        Some(NetSlice::Ipv4(ip)) => usize::from(ip.header().total_len()),
        Some(NetSlice::Ipv6(ip)) => 40 + usize::from(ip.header().payload_length()),
        other => panic!("not IP: {other:?}"),
    }
}

/// The fragments of `input` (the first is the input's own buffer): each a
/// valid IPv4 packet by etherparse with the input's link-layer header and
/// fields, at most `mtu` long; together exactly the input's payload, checked
/// by our reading of the offsets and by etherparse's reassembler.
fn judge_fragments(input: &[u8], frags: &[&[u8]], mtu: u16) {
    let l3 = l3_of(input).expect("fragmented input is IP");
    let orig = Ipv4HeaderSlice::from_slice(&input[l3..]).expect("fragmented input is IPv4");
    let (hl, tl) = (orig.slice().len(), usize::from(orig.total_len()));
    let payload = &input[l3 + hl..l3 + tl];
    let mut next = usize::from(orig.fragments_offset().value()) * 8;
    let mut whole = Vec::new();
    assert!(frags.len() >= 2, "one fragment");
    for (i, f) in frags.iter().enumerate() {
        let last = i + 1 == frags.len();
        assert_eq!(f[..l3], input[..l3], "fragment {i}: link-layer header");
        let h = Ipv4HeaderSlice::from_slice(&f[l3..]).expect("fragment parses");
        let e = h.to_header();
        assert_eq!(
            e.calc_header_checksum(),
            e.header_checksum,
            "fragment {i}: checksum"
        );
        assert_eq!(
            usize::from(h.total_len()),
            f.len() - l3,
            "fragment {i}: length"
        );
        assert!(
            f.len() - l3 <= usize::from(mtu),
            "fragment {i} over the MTU"
        );
        assert_eq!(
            (
                h.identification(),
                h.source(),
                h.destination(),
                h.protocol(),
                h.ttl()
            ),
            (
                orig.identification(),
                orig.source(),
                orig.destination(),
                orig.protocol(),
                orig.ttl()
            ),
            "fragment {i}: fields"
        );
        assert!(!h.dont_fragment(), "fragment {i}: DF");
        let mf = if last { orig.more_fragments() } else { true };
        assert_eq!(h.more_fragments(), mf, "fragment {i}: MF");
        assert_eq!(
            usize::from(h.fragments_offset().value()) * 8,
            next,
            "fragment {i}: offset"
        );
        let piece = &f[l3 + h.slice().len()..];
        next += piece.len();
        whole.extend_from_slice(piece);
    }
    assert_eq!(whole, payload, "fragments do not add up to the payload");
    if !orig.is_fragmenting_payload() {
        let mut pool = IpDefragPool::<(), ()>::new();
        let mut done = None;
        for f in frags {
            let p = SlicedPacket::from_ethernet(f).expect("fragment parses");
            if let Some(r) = pool.process_sliced_packet(&p, (), ()).expect("defrag") {
                done = Some(r.payload);
            }
        }
        assert_eq!(done.as_deref(), Some(payload), "etherparse reassembly");
    }
}

/// An ICMP error about `input`: back to its sender (MACs swapped, VLAN tags
/// kept), checksums right by etherparse, the next-hop MTU `mtu`, quoting the
/// start of the input's IP packet, within the family's ceiling and `back_mtu`.
fn judge_reply(input: &[u8], out: &[u8], mtu: u16, back_mtu: u16) {
    let l3 = l3_of(input).expect("answered input is IP");
    assert_eq!(out[..6], input[6..12], "destination MAC");
    assert_eq!(out[6..12], input[..6], "source MAC");
    assert_eq!(out[12..l3], input[12..l3], "VLAN tags and EtherType");
    let p = SlicedPacket::from_ethernet(out).expect("the error parses");
    let ip_len = out.len() - l3;
    // The input's IP length, by etherparse, and the error's ceiling (RFC
    // 1812 §4.3.2.3: 576; RFC 4443 §2.4 (c): 1280) with its own headers.
    let lax = LaxSlicedPacket::from_ethernet(input).unwrap();
    let (orig_len, ceiling, headers) = match lax.net {
        Some(LaxNetSlice::Ipv4(ip)) => (usize::from(ip.header().total_len()), 576, 28),
        Some(LaxNetSlice::Ipv6(ip)) => (40 + usize::from(ip.header().payload_length()), 1280, 48),
        _ => unreachable!(),
    };
    let ceiling = ceiling.min(usize::from(back_mtu));
    let quote = match (&p.net, &p.transport) {
        (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Icmpv4(icmp))) => {
            let h = ip.header().to_header();
            assert_eq!(h.calc_header_checksum(), h.header_checksum);
            assert_eq!(h.destination, input[l3 + 12..l3 + 16]);
            assert_eq!(h.time_to_live, 255);
            assert_eq!(
                icmp.icmp_type(),
                Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
                    next_hop_mtu: mtu
                })
            );
            assert_eq!(
                icmp.checksum(),
                icmp.icmp_type().calc_checksum(icmp.payload())
            );
            icmp.payload()
        }
        (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Icmpv6(icmp))) => {
            let h = ip.header();
            assert_eq!(h.destination(), input[l3 + 8..l3 + 24]);
            assert_eq!(h.hop_limit(), 255);
            assert_eq!(
                icmp.icmp_type(),
                Icmpv6Type::PacketTooBig {
                    mtu: u32::from(mtu)
                }
            );
            assert!(icmp.is_checksum_valid(h.source(), h.destination()));
            icmp.payload()
        }
        other => panic!("not an ICMP error: {other:?}"),
    };
    assert!(ip_len <= ceiling, "error of {ip_len} bytes over {ceiling}");
    // As much of the input's IP packet as fits, never its padding.
    assert_eq!(quote.len(), orig_len.min(ceiling - headers), "quote length");
    assert_eq!(quote, &input[l3..l3 + quote.len()], "quote");
}

fn tcp_v4(syn: bool, ack: bool, df: bool, options: &[TcpOptionElement], payload: &[u8]) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(SRC4, DST4, 64)
        .tcp(40000, 443, 0x1000, 64240);
    if syn {
        b = b.syn();
    }
    if ack {
        b = b.ack(1);
    }
    let b = b.options(options).unwrap();
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    if !df {
        v[20] &= !0x40;
        fix_ipv4_checksum(&mut v, 14);
    }
    v
}

fn tcp_v6(syn: bool, options: &[TcpOptionElement], payload: &[u8]) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv6(SRC6, DST6, 64)
        .tcp(40000, 443, 0x1000, 64240);
    if syn {
        b = b.syn();
    }
    let b = b.options(options).unwrap();
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

fn udp_v4(df: bool, len: usize) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(SRC4, DST4, 64)
        .udp(5000, 5001)
        .write(&mut v, &vec![0x5a; len])
        .unwrap();
    if !df {
        v[20] &= !0x40;
        fix_ipv4_checksum(&mut v, 14);
    }
    v
}

fn udp_v6(len: usize) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv6(SRC6, DST6, 64)
        .udp(5000, 5001)
        .write(&mut v, &vec![0x5a; len])
        .unwrap();
    v
}

fn fix_ipv4_checksum(v: &mut [u8], l2: usize) {
    let h = Ipv4Header::from_slice(&v[l2..]).unwrap().0;
    let c = h.calc_header_checksum();
    v[l2 + 10..l2 + 12].copy_from_slice(&c.to_be_bytes());
}

/// Parses a frame with etherparse and returns the MSS, checking that the
/// TCP (and IPv4 header) checksums are right.
fn checked_mss(frame: &[u8]) -> Option<u16> {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(TransportSlice::Tcp(t)) = p.transport else {
        panic!("no TCP")
    };
    let (sum_ok, mss) = match p.net.unwrap() {
        NetSlice::Ipv4(ip) => {
            let h = ip.header().to_header();
            assert_eq!(
                h.calc_header_checksum(),
                h.header_checksum,
                "IPv4 header checksum"
            );
            let c = t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap();
            (c == t.checksum(), mss_opt(&t))
        }
        NetSlice::Ipv6(ip) => {
            let h = ip.header().to_header();
            let c = t.to_header().calc_checksum_ipv6(&h, t.payload()).unwrap();
            (c == t.checksum(), mss_opt(&t))
        }
        _ => panic!("not IP"),
    };
    assert!(sum_ok, "TCP checksum");
    mss
}

fn mss_opt(t: &TcpSlice<'_>) -> Option<u16> {
    t.options_iterator().find_map(|o| match o {
        Ok(TcpOptionElement::MaximumSegmentSize(v)) => Some(v),
        _ => None,
    })
}

const MSS1460: [TcpOptionElement; 1] = [TcpOptionElement::MaximumSegmentSize(1460)];

#[test]
fn arp_passes_untouched() {
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&MAC_A);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&[0; 32]);
    let mut d = Dut::new(settings());
    let (v, out) = d.run(&arp, 0);
    assert_eq!(
        v,
        Verdict::Forward {
            len: arp.len(),
            egress: PortId::new(1)
        }
    );
    assert_eq!(out, arp);
    assert_eq!(d.c(0).non_ip_passed, 1);
    assert_eq!(d.c(0).forwarded, 1);
}

#[test]
fn plain_ack_passes_untouched() {
    let f = tcp_v4(false, true, true, &[], &[1; 10]);
    let mut d = Dut::new(settings());
    let (v, out) = d.run(&f, 0);
    assert_eq!(
        v,
        Verdict::Forward {
            len: f.len(),
            egress: PortId::new(1)
        }
    );
    assert_eq!(out, f);
}

// The lab case: auto clamp = min(1500, 1400) − 40 = 1360 (IPv4), − 60 = 1340
// (IPv6), in both directions (SYN and SYN-ACK).
#[test]
fn auto_clamp_both_directions() {
    let mut d = Dut::new(settings());
    let (v, out) = d.run(&tcp_v4(true, false, true, &MSS1460, &[]), 0);
    assert!(matches!(v, Verdict::Forward { .. }));
    assert_eq!(checked_mss(&out), Some(1360));
    let (_, out) = d.run(&tcp_v4(true, true, true, &MSS1460, &[]), 1);
    assert_eq!(checked_mss(&out), Some(1360));
    let (_, out) = d.run(&tcp_v6(true, &MSS1460, &[]), 0);
    assert_eq!(checked_mss(&out), Some(1340));
    assert_eq!(d.c(0).mss_clamped, [1, 1]);
    assert_eq!(d.c(1).mss_clamped, [1, 0]);
}

// M9: clamp to path MTU 1500: IPv4 1460, IPv6 1440.
#[test]
fn m9_pmtu_1500() {
    let mut s = settings();
    s.port_mtu = vec![1500, 1500];
    let mut d = Dut::new(s);
    let (_, out) = d.run(&tcp_v4(true, false, true, &MSS1460, &[]), 0);
    assert_eq!(checked_mss(&out), Some(1460));
    let (_, out) = d.run(&tcp_v6(true, &MSS1460, &[]), 0);
    assert_eq!(checked_mss(&out), Some(1440));
}

// M4: clamp in one direction only.
#[test]
fn m4_one_direction() {
    let mut s = settings();
    s.mss.ipv4 = Clamp::Fixed(1300);
    s.mss.on_ingress = vec![true, false];
    let mut d = Dut::new(s);
    let (_, out) = d.run(&tcp_v4(true, false, true, &MSS1460, &[]), 0);
    assert_eq!(checked_mss(&out), Some(1300));
    let (_, out) = d.run(&tcp_v4(true, false, true, &MSS1460, &[]), 1);
    assert_eq!(checked_mss(&out), Some(1460));
}

// M7 through the pipeline: insertion grows the IP packet by 4 bytes and
// keeps both checksums right.
#[test]
fn m7_insert_through_pipeline() {
    let mut s = settings();
    s.mss.insert = true;
    let mut d = Dut::new(s);
    let f = tcp_v4(true, false, true, &[], &[]);
    let (v, out) = d.run(&f, 0);
    assert_eq!(
        v,
        Verdict::Forward {
            len: f.len() + 4,
            egress: PortId::new(1)
        }
    );
    assert_eq!(checked_mss(&out), Some(536));
    let f6 = tcp_v6(true, &[], &[]);
    let (_, out) = d.run(&f6, 0);
    assert_eq!(checked_mss(&out), Some(1220));
    assert_eq!(d.c(0).mss_inserted, [1, 1]);
    // M8: not with payload.
    let f = tcp_v4(true, false, true, &[], &[1, 2, 3]);
    let (_, out) = d.run(&f, 0);
    assert_eq!(out, f);
}

// SYNs behind two VLAN tags and behind IPv6 extension headers are clamped.
#[test]
fn clamp_behind_vlan_and_extension_headers() {
    let mut f = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .double_vlan(
            etherparse::VlanId::try_new(100).unwrap(),
            etherparse::VlanId::try_new(10).unwrap(),
        )
        .ipv4(SRC4, DST4, 64)
        .tcp(1, 2, 3, 4)
        .syn()
        .options(&MSS1460)
        .unwrap()
        .write(&mut f, &[])
        .unwrap();
    let mut d = Dut::new(settings());
    let (_, out) = d.run(&f, 0);
    assert_eq!(checked_mss(&out), Some(1360));

    // IPv6 with hop-by-hop and destination options before TCP.
    let tcp = tcp_v6(true, &MSS1460, &[]);
    let mut f = tcp[..14].to_vec();
    let mut ip = tcp[14..54].to_vec();
    ip[6] = 0; // next header: hop-by-hop
    let ext = [60u8, 0, 1, 4, 0, 0, 0, 0, 6, 0, 1, 4, 0, 0, 0, 0];
    let pl = (tcp.len() - 54 + ext.len()) as u16;
    ip[4..6].copy_from_slice(&pl.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&ext);
    f.extend_from_slice(&tcp[54..]);
    let (_, out) = d.run(&f, 0);
    assert_eq!(checked_mss(&out), Some(1340));
    assert_eq!(d.c(0).mss_clamped, [1, 1]);
}

#[test]
fn fits_is_forwarded_too_big_df_gets_frag_needed() {
    let mut d = Dut::new(settings());
    // 1400 bytes of IP fits the 1400 tunnel.
    let (v, _) = d.run(&udp_v4(true, 1400 - 28), 0);
    assert!(matches!(v, Verdict::Forward { .. }));
    // 1401 does not: ICMP 3/4 with MTU 1400 back out of port 0.
    let f = udp_v4(true, 1401 - 28);
    let (v, out) = d.run(&f, 0);
    assert!(matches!(v, Verdict::Reply { .. }), "{v:?}");
    let p = SlicedPacket::from_ethernet(&out).unwrap();
    assert_eq!(
        p.link
            .unwrap()
            .to_header()
            .unwrap()
            .ethernet2()
            .unwrap()
            .destination,
        MAC_A
    );
    let Some(NetSlice::Ipv4(ip)) = p.net else {
        panic!()
    };
    assert_eq!(ip.header().destination(), SRC4);
    assert_eq!(ip.header().ttl(), 255);
    let h = ip.header().to_header();
    assert_eq!(h.calc_header_checksum(), h.header_checksum);
    let Some(TransportSlice::Icmpv4(icmp)) = p.transport else {
        panic!()
    };
    assert_eq!(icmp.type_u8(), 3);
    assert_eq!(icmp.code_u8(), 4);
    assert_eq!(
        u16::from_be_bytes([icmp.bytes5to8()[2], icmp.bytes5to8()[3]]),
        1400
    );
    assert_eq!(
        etherparse::Icmpv4Header::from_slice(icmp.slice())
            .unwrap()
            .0
            .icmp_type
            .calc_checksum(icmp.payload()),
        icmp.checksum()
    );
    assert_eq!(d.c(0).icmp_sent, [1, 0]);
    assert_eq!(d.c(0).drops[DropReason::TooBig as usize], 1);
    assert_eq!(d.c(0).forwarded, 1);
}

// F8 through the pipeline and the DF policies.
#[test]
fn df_clear_is_fragmented_and_policies() {
    let mut s = settings();
    s.port_mtu = vec![1500, 620];
    s.mss.ipv4 = Clamp::Off;
    s.mss.ipv6 = Clamp::Off;
    let mut d = Dut::new(s.clone());
    let (v, first) = d.run(&udp_v4(false, 1500 - 28), 0);
    assert_eq!(
        v,
        Verdict::Fragments {
            first_len: 14 + 620,
            extra: 2,
            egress: PortId::new(1)
        }
    );
    let lens: Vec<usize> = std::iter::once(&first)
        .chain(d.frames.out.iter())
        .map(|f| f.len() - 14)
        .collect();
    assert_eq!(lens, [620, 620, 300]);
    for f in std::iter::once(&first).chain(d.frames.out.iter()) {
        let h = Ipv4Header::from_slice(&f[14..]).unwrap().0;
        assert_eq!(h.calc_header_checksum(), h.header_checksum);
    }
    assert_eq!(d.c(0).fragments_created, 3);
    // DF set and policy respect: ICMP.
    assert!(matches!(
        d.run(&udp_v4(true, 1000), 0).0,
        Verdict::Reply { .. }
    ));
    // clear-udp: UDP with DF is fragmented, TCP with DF is not.
    s.df = DfPolicy::ClearUdp;
    let mut d = Dut::new(s.clone());
    assert!(matches!(
        d.run(&udp_v4(true, 1000), 0).0,
        Verdict::Fragments { .. }
    ));
    assert!(matches!(
        d.run(&tcp_v4(false, true, true, &[], &[0; 1000]), 0).0,
        Verdict::Reply { .. }
    ));
    assert_eq!(d.c(0).df_overridden, 1);
    // clear-all: both.
    s.df = DfPolicy::ClearAll;
    let mut d = Dut::new(s);
    assert!(matches!(
        d.run(&tcp_v4(false, true, true, &[], &[0; 1000]), 0).0,
        Verdict::Fragments { .. }
    ));
}

#[test]
fn no_free_frame_is_counted() {
    let mut s = settings();
    s.port_mtu = vec![1500, 620];
    let mut d = Dut::new(s);
    d.frames = Frames::new(1);
    let (v, _) = d.run(&udp_v4(false, 1472), 0);
    assert_eq!(v, Verdict::Drop(DropReason::NoFrame));
    assert!(d.frames.out.is_empty());
    assert_eq!(d.c(0).drops[DropReason::NoFrame as usize], 1);
    assert_eq!((d.c(0).fragmented, d.c(0).fragments_created), (0, 0));
}

#[test]
fn bad_checksum_is_not_laundered_by_fragmenting() {
    let mut d = Dut::new(settings());
    let mut f = udp_v4(false, 1472);
    f[24] ^= 0xff;
    assert_eq!(d.run(&f, 0).0, Verdict::Drop(DropReason::BadIpv4Checksum));
}

// Parse once: the ICMP builder trusts the pipeline's checksum check, so a
// corrupt DF packet must be dropped before it gets an answer.
#[test]
fn bad_checksum_gets_no_icmp_error() {
    let mut d = Dut::new(settings());
    let mut f = udp_v4(true, 1472);
    f[24] ^= 0xff;
    assert_eq!(d.run(&f, 0).0, Verdict::Drop(DropReason::BadIpv4Checksum));
    assert_eq!(d.c(0).icmp_sent, [0, 0]);
}

// Behind two VLAN tags the fragments keep the tags and the errors go back
// with them; `judge` checks every frame against its input.
#[test]
fn vlan_fragments_and_errors() {
    let mut s = settings();
    s.port_mtu = vec![1500, 620];
    let mut d = Dut::new(s);
    let qinq = |ip: etherparse::PacketBuilderStep<etherparse::IpHeaders>, df: bool| {
        let mut v = Vec::new();
        ip.udp(5000, 5001).write(&mut v, &[0x5a; 1472]).unwrap();
        if !df {
            v[22 + 6] &= !0x40;
            fix_ipv4_checksum(&mut v, 22);
        }
        v
    };
    let vlan = || {
        PacketBuilder::ethernet2(MAC_A, MAC_B).double_vlan(
            etherparse::VlanId::try_new(100).unwrap(),
            etherparse::VlanId::try_new(10).unwrap(),
        )
    };
    let (v, _) = d.run(&qinq(vlan().ipv4(SRC4, DST4, 64), false), 0);
    assert_eq!(
        v,
        Verdict::Fragments {
            first_len: 22 + 620,
            extra: 2,
            egress: PortId::new(1)
        }
    );
    let (v, _) = d.run(&qinq(vlan().ipv4(SRC4, DST4, 64), true), 0);
    assert_eq!(v, Verdict::Reply { len: 22 + 576 });
    let (v, _) = d.run(&qinq(vlan().ipv6(SRC6, DST6, 64), true), 0);
    assert_eq!(v, Verdict::Reply { len: 22 + 1280 });
    assert_eq!(d.c(0).icmp_sent, [1, 1]);
}

// I3 through the pipeline: IPv6 too big → Packet Too Big, 1280 bytes.
#[test]
fn ipv6_too_big_gets_packet_too_big() {
    let mut d = Dut::new(settings());
    let (v, out) = d.run(&udp_v6(1500 - 48), 0);
    assert_eq!(v, Verdict::Reply { len: 14 + 1280 });
    let p = SlicedPacket::from_ethernet(&out).unwrap();
    let Some(NetSlice::Ipv6(ip)) = p.net else {
        panic!()
    };
    assert_eq!(ip.header().hop_limit(), 255);
    assert_eq!(ip.header().destination(), SRC6);
    let Some(TransportSlice::Icmpv6(icmp)) = p.transport else {
        panic!()
    };
    assert_eq!(icmp.type_u8(), 2);
    assert_eq!(u32::from_be_bytes(icmp.bytes5to8()), 1400);
    let h = ip.header().to_header();
    let t = etherparse::Icmpv6Header::from_slice(icmp.slice())
        .unwrap()
        .0;
    assert_eq!(
        t.icmp_type
            .calc_checksum(h.source, h.destination, icmp.payload())
            .unwrap(),
        icmp.checksum()
    );
    assert_eq!(d.c(0).icmp_sent, [0, 1]);
}

#[test]
fn icmp_errors_are_rate_limited() {
    let mut s = settings();
    s.icmp.limit = Some(Rate {
        per_sec: 10,
        burst: 5,
    });
    let mut d = Dut::new(s);
    let f = udp_v4(true, 1472);
    let mut replies = 0;
    // 100 packets over one second: at most 5 + 10 errors.
    for i in 0..100u64 {
        if let (Verdict::Reply { .. }, _) = d.run_at(&f, 0, i * 10_000_000) {
            replies += 1;
        }
    }
    assert_eq!(replies, 5 + 9, "5 burst + one per 100 ms over 990 ms");
    assert_eq!(d.c(0).icmp_rate_limited, 100 - replies);
    assert_eq!(d.c(0).drops[DropReason::TooBig as usize], 100);
}

#[test]
fn icmp_disabled_sends_nothing() {
    let mut s = settings();
    s.icmp.enabled = false;
    let mut d = Dut::new(s);
    for _ in 0..3 {
        assert_eq!(
            d.run(&udp_v4(true, 1472), 0).0,
            Verdict::Drop(DropReason::TooBig)
        );
        assert_eq!(d.run(&udp_v6(1452), 0).0, Verdict::Drop(DropReason::TooBig));
    }
    assert_eq!(d.c(0).icmp_sent, [0, 0]);
    assert_eq!(d.c(0).icmp_suppressed, 6);
}

#[test]
fn syn_limit_pass_and_drop() {
    for over in [OverLimit::Pass, OverLimit::Drop] {
        let mut s = settings();
        s.syn_limit.global = Some(Rate {
            per_sec: 1,
            burst: 3,
        });
        s.syn_limit.per_source = None;
        s.syn_limit.over_limit = over;
        let mut d = Dut::new(s);
        let f = tcp_v4(true, false, true, &MSS1460, &[]);
        let mut clamped = 0;
        for _ in 0..10 {
            match d.run(&f, 0) {
                (Verdict::Forward { .. }, out) if checked_mss(&out) == Some(1360) => clamped += 1,
                (Verdict::Forward { .. }, out) => {
                    assert_eq!(over, OverLimit::Pass);
                    assert_eq!(out, f);
                }
                (Verdict::Drop(DropReason::SynLimit), _) => assert_eq!(over, OverLimit::Drop),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(clamped, 3);
        assert_eq!(d.c(0).syn_limited, 7);
        // A SYN already below the clamp costs no token and is never limited.
        let low = tcp_v4(
            true,
            false,
            true,
            &[TcpOptionElement::MaximumSegmentSize(1200)],
            &[],
        );
        assert!(matches!(d.run(&low, 0).0, Verdict::Forward { .. }));
        assert_eq!(d.c(0).syn_limited, 7);
    }
}

#[test]
fn malformed_tcp_is_passed_and_counted() {
    let mut d = Dut::new(settings());
    let mut f = tcp_v4(true, false, true, &MSS1460, &[]);
    f[14 + 20 + 12] = 0x00; // data offset 0 (VECTORS M3)
    let (v, out) = d.run(&f, 0);
    assert_eq!(
        v,
        Verdict::Forward {
            len: f.len(),
            egress: PortId::new(1)
        }
    );
    assert_eq!(out, f);
    assert_eq!(d.c(0).malformed_passed, 1);
}

#[test]
fn config_is_validated() {
    let mut s = settings();
    s.mss.ipv4 = Clamp::Fixed(1361);
    assert_eq!(
        Config::new(s.clone()).err(),
        Some(SettingsError::ClampTooLarge {
            family: "ipv4",
            mss: 1361,
            max: 1360,
            overhead: 40
        }),
        "clamp above min MTU − 40"
    );
    s.mss.ipv4 = Clamp::Fixed(1360);
    assert_eq!(
        Config::new(s.clone()).map(|c| c.clamp_for(0, PortId::new(0))),
        Ok(Some(1360))
    );
    s.port_mtu[1] = 67;
    assert_eq!(
        Config::new(s).err(),
        Some(SettingsError::MtuTooSmall {
            port: PortId::new(1),
            mtu: 67
        })
    );
    let mut s = settings();
    s.mss.range = Some((1536, 1361));
    assert_eq!(
        Config::new(s).err(),
        Some(SettingsError::EmptyRange(1536, 1361))
    );
    let mut s = settings();
    s.icmp.limit = Some(Rate {
        per_sec: 1,
        burst: 0,
    });
    assert_eq!(Config::new(s).err(), Some(SettingsError::ZeroBurst("icmp")));
}

fn sample_frames() -> Vec<Vec<u8>> {
    let mut v = vec![
        tcp_v4(true, false, true, &MSS1460, &[]),
        tcp_v4(
            true,
            true,
            false,
            &[
                TcpOptionElement::Noop,
                TcpOptionElement::MaximumSegmentSize(9000),
            ],
            &[1; 7],
        ),
        tcp_v6(true, &MSS1460, &[]),
        udp_v4(true, 1472),
        udp_v4(false, 1472),
        udp_v6(1452),
    ];
    let mut ins = tcp_v4(true, false, true, &[], &[]);
    ins.extend_from_slice(&[0; 6]); // Ethernet padding
    v.push(ins);
    v
}

// Every prefix of every test frame goes through without panic, judged
// against its input; a prefix of an IP packet is never forwarded as one.
#[test]
fn truncation_at_every_length() {
    let mut s = settings();
    s.mss.insert = true;
    s.icmp.limit = None;
    let mut d = Dut::new(s);
    for f in sample_frames() {
        let whole = l3_of(&f).unwrap() + pi_ip_len(&SlicedPacket::from_ethernet(&f).unwrap());
        for len in 0..=f.len() {
            let (v, _) = d.run(&f[..len], len & 1);
            match v {
                Verdict::Drop(DropReason::Truncated) => assert!(len < 14, "len {len}"),
                Verdict::Drop(DropReason::BadIpv4 | DropReason::BadIpv6) => {
                    assert!(len < whole, "len {len}")
                }
                _ => assert!(len >= whole, "len {len}: {v:?}"),
            }
        }
    }
}

proptest! {
    // Random garbage after a real header prefix: never a panic, and every
    // outcome judged against its input by etherparse (see `judge`).
    #[test]
    fn random_frames_are_judged(
        base in 0usize..7,
        cut in 0usize..1600,
        flips in prop::collection::vec((0usize..1600, any::<u8>()), 0..8),
        mtu in 68u16..1600,
        df in prop_oneof![Just(DfPolicy::Respect), Just(DfPolicy::ClearUdp), Just(DfPolicy::ClearAll)],
    ) {
        let mut f = sample_frames()[base].clone();
        // Keep the Ethernet header so that frame lengths minus 14 are L3
        // lengths; everything after it is fair game.
        for (i, b) in flips {
            let i = 14 + i % (f.len() - 14);
            f[i] = b;
        }
        f.truncate(cut.max(1));
        let mut s = settings();
        s.port_mtu = vec![1500, mtu];
        s.mss.ipv4 = Clamp::Auto;
        s.mss.insert = true;
        s.df = df;
        let Ok(cfg) = Config::new(s) else { return Ok(()); };
        let mut d = Dut {
            st: State::new(&cfg, 0, 1),
            cfg,
            frames: Frames::new(300),
            fed: [0; 2],
            sent: [0; 2],
        };
        match d.run_at(&f, 0, 5).0 {
            Verdict::Forward { len, .. } | Verdict::Reply { len } => prop_assert!(len <= FRAME),
            Verdict::Fragments { first_len, extra, .. } => {
                prop_assert_eq!(extra, d.frames.out.len());
                prop_assert!(first_len - 14 <= usize::from(mtu));
            }
            Verdict::Drop(_) => {}
        }
    }
}
