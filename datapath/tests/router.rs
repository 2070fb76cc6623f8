//! Router mode (`mtugate_datapath::router`): frames built and judged by
//! etherparse (an independent implementation), fed through
//! `process_routed` / `time_exceeded` with the kernel's decision given as
//! a `Route`. VECTORS R1–R5 and I1/I3 in router form.

mod common;
use common::{Frames, FRAME};
use etherparse::{
    Icmpv4Type, Icmpv6Type, IpHeaders, NetSlice, PacketBuilder, PacketBuilderStep, SlicedPacket,
    TcpOptionElement, TransportSlice,
};
use mtugate_datapath::pipeline::{Clamp, Config, DropReason, PortId, Settings, State, Verdict};
use mtugate_datapath::router::{self, Route};

const HOST: [u8; 6] = [2, 0, 0, 0, 0, 1]; // the client
const IN: [u8; 6] = [2, 0, 0, 0, 0, 0xfe]; // the router's ingress port
const OUT: [u8; 6] = [2, 0, 0, 0, 1, 0xfe]; // the router's egress port
const NEXT: [u8; 6] = [2, 0, 0, 0, 1, 1]; // the next hop
const SRC4: [u8; 4] = [198, 51, 100, 1];
const DST4: [u8; 4] = [203, 0, 113, 1];
const ROUTER4: [u8; 4] = [198, 51, 100, 254];
const SRC6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0xa, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const DST6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0xb, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const ROUTER6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0xa, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfe];

fn config(v4: Clamp, v6: Clamp) -> Config {
    let mut s = Settings {
        port_mtu: vec![1500; 3],
        ..Settings::default()
    };
    s.mss.on_ingress = vec![true; 3];
    s.mss.ipv4 = v4;
    s.mss.ipv6 = v6;
    s.syn_limit.global = None;
    s.syn_limit.per_source = None;
    Config::router(s).unwrap()
}

fn route(mtu: u16, reverse_mtu: Option<u16>) -> Route {
    Route {
        egress: PortId::new(1),
        next_hop: NEXT,
        src_mac: OUT,
        mtu,
        reverse_mtu,
        advmss: None,
        icmp_v4: Some(ROUTER4),
        icmp_v6: Some(ROUTER6),
    }
}

/// Runs one frame; the verdict, the frame after it, the extra frames.
fn run(cfg: &Config, st: &mut State, input: &[u8], r: &Route) -> (Verdict, Vec<u8>, Vec<Vec<u8>>) {
    let mut buf = input.to_vec();
    buf.resize(FRAME, 0);
    let mut extra = Frames::new(16);
    let v = router::process_routed(
        &mut buf,
        input.len(),
        PortId::new(0),
        r,
        0,
        cfg,
        st,
        &mut extra,
    );
    let len = match v {
        Verdict::Forward { len, .. } | Verdict::Reply { len } => len,
        Verdict::Fragments { first_len, .. } => first_len,
        Verdict::Drop(_) => 0,
    };
    buf.truncate(len);
    (v, buf, extra.out)
}

/// A SYN carrying MSS `mss`, on top of the IP header(s) of `ip`.
fn syn_on(ip: PacketBuilderStep<IpHeaders>, mss: u16) -> Vec<u8> {
    let mut v = Vec::new();
    ip.tcp(40000, 443, 1, 64240)
        .syn()
        .options(&[TcpOptionElement::MaximumSegmentSize(mss)])
        .unwrap()
        .write(&mut v, &[])
        .unwrap();
    v
}

fn syn_v4(mss: u16, ttl: u8) -> Vec<u8> {
    syn_on(
        PacketBuilder::ethernet2(HOST, IN).ipv4(SRC4, DST4, ttl),
        mss,
    )
}

fn syn_v6(mss: u16) -> Vec<u8> {
    syn_on(PacketBuilder::ethernet2(HOST, IN).ipv6(SRC6, DST6, 64), mss)
}

fn udp_v4(len: usize, ttl: u8, df: bool) -> Vec<u8> {
    let mut v = Vec::new();
    let mut ip =
        etherparse::Ipv4Header::new(0, ttl, etherparse::IpNumber::UDP, SRC4, DST4).unwrap();
    ip.dont_fragment = df;
    PacketBuilder::ethernet2(HOST, IN)
        .ip(IpHeaders::Ipv4(ip, Default::default()))
        .udp(5000, 5001)
        .write(&mut v, &vec![0x5a; len])
        .unwrap();
    v
}

fn udp_v6(len: usize, hops: u8) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(HOST, IN)
        .ipv6(SRC6, DST6, hops)
        .udp(5000, 5001)
        .write(&mut v, &vec![0x5a; len])
        .unwrap();
    v
}

/// The MSS etherparse reads, and whether the TCP checksum verifies.
fn mss_of(frame: &[u8]) -> (u16, bool) {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(TransportSlice::Tcp(t)) = &p.transport else {
        panic!("no TCP")
    };
    let mss = t
        .options_iterator()
        .find_map(|o| match o {
            Ok(TcpOptionElement::MaximumSegmentSize(m)) => Some(m),
            _ => None,
        })
        .unwrap();
    let ok = match &p.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header();
            t.calc_checksum_ipv4(h.source(), h.destination()).unwrap() == t.checksum()
        }
        Some(NetSlice::Ipv6(ip)) => {
            let h = ip.header();
            t.calc_checksum_ipv6(h.source(), h.destination()).unwrap() == t.checksum()
        }
        _ => false,
    };
    (mss, ok)
}

/// The IPv4 header as etherparse sees it: TTL, checksum verifies.
fn ttl_of(frame: &[u8]) -> (u8, bool) {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not IPv4")
    };
    let h = ip.header().to_header();
    (
        h.time_to_live,
        h.calc_header_checksum() == h.header_checksum,
    )
}

#[test]
fn forwards_to_the_next_hop_one_hop_less() {
    let cfg = config(Clamp::Auto, Clamp::Auto);
    let mut st = State::new(&cfg, 0, 1);
    let input = udp_v4(100, 64, true);
    let (v, out, _) = run(&cfg, &mut st, &input, &route(1400, Some(1500)));
    assert_eq!(
        v,
        Verdict::Forward {
            len: input.len(),
            egress: PortId::new(1)
        }
    );
    assert_eq!((&out[..6], &out[6..12]), (&NEXT[..], &OUT[..]));
    // VECTORS R3: decremented, and the incremental update equals a full
    // recompute (etherparse's).
    assert_eq!(ttl_of(&out), (63, true));
    assert_eq!(out[14 + 20..], input[14 + 20..]);
    let input = udp_v6(100, 2);
    let (_, out, _) = run(&cfg, &mut st, &input, &route(1400, None));
    assert_eq!(out[14 + 7], 1);
    assert_eq!(st.counters[0].forwarded, 2);
    assert!(st.counters[0].balanced());
}

#[test]
fn clamps_to_the_smaller_route_mtu_both_ways() {
    // VECTORS R5: min(MTU toward B, MTU back toward A) - 40 (IPv6 - 60).
    let cfg = config(Clamp::Auto, Clamp::Auto);
    let mut st = State::new(&cfg, 0, 1);
    for (mtu, rev, want) in [
        (1400, Some(1500), 1360),
        (1500, Some(1400), 1360),
        (1500, None, 1460),
        (1500, Some(1500), 1460),
    ] {
        let (_, out, _) = run(&cfg, &mut st, &syn_v4(1460, 64), &route(mtu, rev));
        assert_eq!(mss_of(&out), (want, true), "{mtu} {rev:?}");
        assert_eq!(ttl_of(&out), (63, true));
    }
    let (_, out, _) = run(&cfg, &mut st, &syn_v6(1440), &route(1400, Some(1500)));
    assert_eq!(mss_of(&out), (1340, true));
    // A route's advmss caps the auto clamp when it is lower (and only then).
    for (advmss, want) in [(1200, 1200), (1400, 1360)] {
        let r = Route {
            advmss: Some(advmss),
            ..route(1400, None)
        };
        let (_, out, _) = run(&cfg, &mut st, &syn_v4(1460, 64), &r);
        assert_eq!(mss_of(&out), (want, true), "advmss {advmss}");
    }
    // Never raised (VECTORS M6); a fixed value holds whatever the route.
    let (_, out, _) = run(&cfg, &mut st, &syn_v4(1200, 64), &route(1400, None));
    assert_eq!(mss_of(&out).0, 1200);
    let fixed = config(Clamp::Fixed(1300), Clamp::Off);
    let mut st = State::new(&fixed, 0, 1);
    let (_, out, _) = run(&fixed, &mut st, &syn_v4(1460, 64), &route(1500, None));
    assert_eq!(mss_of(&out), (1300, true));
    let r = Route {
        advmss: Some(1200),
        ..route(1500, None)
    };
    let (_, out, _) = run(&fixed, &mut st, &syn_v4(1460, 64), &r);
    assert_eq!(
        mss_of(&out),
        (1300, true),
        "a fixed clamp is not lowered by advmss"
    );
    let (_, out, _) = run(&fixed, &mut st, &syn_v6(1440), &route(1400, None));
    assert_eq!(mss_of(&out), (1440, true));
}

#[test]
fn too_big_with_df_gets_frag_needed_from_the_router() {
    let cfg = config(Clamp::Auto, Clamp::Auto);
    let mut st = State::new(&cfg, 0, 1);
    let input = udp_v4(1472, 64, true);
    let (v, out, _) = run(&cfg, &mut st, &input, &route(1400, Some(1500)));
    assert!(matches!(v, Verdict::Reply { .. }), "{v:?}");
    // Back to the sender: the input's addresses swapped.
    assert_eq!((&out[..6], &out[6..12]), (&HOST[..], &IN[..]));
    let p = SlicedPacket::from_ethernet(&out).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!()
    };
    assert_eq!(ip.header().source(), ROUTER4);
    assert_eq!(ip.header().destination(), SRC4);
    let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
        panic!()
    };
    assert!(matches!(
        icmp.icmp_type(),
        Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1400 }
        )
    ));
    // The quote is the packet as received: TTL not decremented.
    assert_eq!(icmp.payload()[8], 64);
    // IPv6: Packet Too Big from the router's address.
    let (v, out, _) = run(&cfg, &mut st, &udp_v6(1452, 64), &route(1400, None));
    assert!(matches!(v, Verdict::Reply { .. }));
    let p = SlicedPacket::from_ethernet(&out).unwrap();
    let Some(NetSlice::Ipv6(ip)) = &p.net else {
        panic!()
    };
    assert_eq!(ip.header().source(), ROUTER6);
    let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else {
        panic!()
    };
    assert_eq!(icmp.icmp_type(), Icmpv6Type::PacketTooBig { mtu: 1400 });
    assert_eq!(st.counters[0].drops[DropReason::TooBig as usize], 2);
}

#[test]
fn too_big_without_df_is_fragmented_toward_the_next_hop() {
    let cfg = config(Clamp::Auto, Clamp::Auto);
    let mut st = State::new(&cfg, 0, 1);
    let input = udp_v4(1472, 64, false);
    let (v, first, rest) = run(&cfg, &mut st, &input, &route(1400, None));
    assert!(matches!(v, Verdict::Fragments { extra: 1, .. }), "{v:?}");
    for f in std::iter::once(&first).chain(&rest) {
        assert_eq!((&f[..6], &f[6..12]), (&NEXT[..], &OUT[..]));
        assert_eq!(ttl_of(f), (63, true));
        assert!(f.len() - 14 <= 1400);
    }
}

#[test]
fn ttl_expiring_gets_time_exceeded_from_the_router() {
    // VECTORS R1: TTL 1 (and 0) is not forwarded: ICMP 11/0 from the
    // router, quoting the header and as much as fits in 576 bytes.
    let cfg = config(Clamp::Auto, Clamp::Auto);
    let mut st = State::new(&cfg, 0, 1);
    for ttl in [1, 0] {
        let input = udp_v4(1000, ttl, true);
        let (v, out, _) = run(&cfg, &mut st, &input, &route(1500, None));
        assert!(matches!(v, Verdict::Reply { .. }), "{v:?}");
        let p = SlicedPacket::from_ethernet(&out).unwrap();
        let Some(NetSlice::Ipv4(ip)) = &p.net else {
            panic!()
        };
        assert_eq!(ip.header().source(), ROUTER4);
        assert_eq!(ip.header().destination(), SRC4);
        assert_eq!(usize::from(ip.header().total_len()), 576);
        let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
            panic!()
        };
        assert_eq!(
            icmp.icmp_type(),
            Icmpv4Type::TimeExceeded(etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit)
        );
        assert_eq!(icmp.payload(), &input[14..14 + 576 - 28]);
    }
    // VECTORS R2: IPv6 hop limit 1, ICMPv6 3/0, at most 1280 bytes.
    let input = udp_v6(1400, 1);
    let (v, out, _) = run(&cfg, &mut st, &input, &route(1500, None));
    assert!(matches!(v, Verdict::Reply { .. }));
    let p = SlicedPacket::from_ethernet(&out).unwrap();
    let Some(NetSlice::Ipv6(ip)) = &p.net else {
        panic!()
    };
    assert_eq!(ip.header().source(), ROUTER6);
    assert_eq!(out.len() - 14, 1280);
    let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else {
        panic!()
    };
    assert_eq!(
        icmp.icmp_type(),
        Icmpv6Type::TimeExceeded(etherparse::icmpv6::TimeExceededCode::HopLimitExceeded)
    );
    let c = &st.counters[0];
    assert_eq!(c.time_exceeded_sent, [2, 1]);
    assert_eq!(c.drops[DropReason::TtlExpired as usize], 3);
    assert!(c.balanced());
}

#[test]
fn no_time_exceeded_about_a_later_fragment() {
    // VECTORS R4 (the rules of I4).
    let cfg = config(Clamp::Auto, Clamp::Auto);
    let mut st = State::new(&cfg, 0, 1);
    let mut later = udp_v4(100, 1, false);
    later[14 + 6..14 + 8].copy_from_slice(&100u16.to_be_bytes()); // offset 800
    let mut ip = etherparse::Ipv4HeaderSlice::from_slice(&later[14..])
        .unwrap()
        .to_header();
    ip.header_checksum = ip.calc_header_checksum();
    later[14..34].copy_from_slice(&ip.to_bytes());
    let v = router::time_exceeded(
        &mut later.clone(),
        later.len(),
        PortId::new(0),
        Some(ROUTER4),
        None,
        0,
        &cfg,
        &mut st,
    );
    assert_eq!(v, Verdict::Drop(DropReason::TtlExpired));
    assert_eq!(st.counters[0].icmp_suppressed, 1);
    assert_eq!(st.counters[0].time_exceeded_sent, [0, 0]);
}

#[test]
fn a_frame_without_a_route_is_dropped_and_counted() {
    let cfg = config(Clamp::Auto, Clamp::Auto);
    let mut st = State::new(&cfg, 0, 1);
    assert_eq!(
        router::drop_unrouted(60, PortId::new(0), &mut st),
        Verdict::Drop(DropReason::NoRoute)
    );
    let arp = [0u8; 60];
    let (v, _, _) = run(&cfg, &mut st, &arp, &route(1500, None));
    assert_eq!(v, Verdict::Drop(DropReason::NoRoute));
    assert_eq!(st.counters[0].drops[DropReason::NoRoute as usize], 2);
    assert!(st.counters[0].balanced());
}

/// An IPv6 SYN behind a Hop-by-Hop and a Destination Options header (both
/// PadN), as a host may send it.
fn syn_v6_ext(mss: u16) -> Vec<u8> {
    use etherparse::{IpNumber, Ipv6Extensions, Ipv6Header, Ipv6RawExtHeader};
    // PadN of 4 bytes: the 8-byte header's 6 option bytes minus its own 2.
    let padn = [1u8, 4, 0, 0, 0, 0];
    let ext = Ipv6Extensions {
        hop_by_hop_options: Some(Ipv6RawExtHeader::new_raw(IpNumber::TCP, &padn).unwrap()),
        destination_options: Some(Ipv6RawExtHeader::new_raw(IpNumber::TCP, &padn).unwrap()),
        ..Default::default()
    };
    let ip = Ipv6Header {
        hop_limit: 64,
        source: SRC6,
        destination: DST6,
        ..Default::default()
    };
    syn_on(
        PacketBuilder::ethernet2(HOST, IN).ip(IpHeaders::Ipv6(ip, ext)),
        mss,
    )
}

#[test]
fn clamps_an_ipv6_syn_behind_extension_headers() {
    // The XDP stage steers such a SYN here (anything else with extension
    // headers stays the kernel's): clamped like any other, one hop less,
    // the extension headers kept.
    let cfg = config(Clamp::Auto, Clamp::Auto);
    let mut st = State::new(&cfg, 0, 1);
    let input = syn_v6_ext(1440);
    let (v, out, _) = run(&cfg, &mut st, &input, &route(1400, Some(1500)));
    assert!(matches!(v, Verdict::Forward { .. }), "{v:?}");
    assert_eq!(mss_of(&out), (1340, true));
    let p = SlicedPacket::from_ethernet(&out).unwrap();
    let Some(NetSlice::Ipv6(ip)) = &p.net else {
        panic!("not IPv6")
    };
    assert_eq!(ip.header().hop_limit(), 63);
    assert_eq!(
        ip.extensions().first_header(),
        Some(etherparse::IpNumber::IPV6_HEADER_HOP_BY_HOP)
    );
    assert_eq!(out.len(), input.len());
}
