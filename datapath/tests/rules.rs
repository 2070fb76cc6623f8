//! Rules, learned path MTUs and random-id through the pipeline: frames
//! built and read back by etherparse (an independent implementation),
//! expected values from the operator's point of view, and a property test
//! of the compiled rule lookup against a plain linear scan.

mod common;
use common::{Frames, FRAME};
use etherparse::icmpv4::DestUnreachableHeader;
use etherparse::{
    Icmpv4Type, Icmpv6Type, NetSlice, PacketBuilder, SlicedPacket, TcpOptionElement,
    TransportSlice, VlanId,
};
use mtugate_datapath::pipeline::{self, Clamp, Config, DfPolicy, PortId, Settings, State, Verdict};
use mtugate_datapath::pmtu::Reject;
use mtugate_datapath::rules::{Addrs, Prefix, RuleCounters, RuleSettings, Rules};
use proptest::prelude::*;

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];
const CLIENT: [u8; 4] = [192, 0, 2, 1];
const SEC: u64 = 1_000_000_000;
const INSIDE: usize = 0;
const OUTSIDE: usize = 1;

struct Dut {
    cfg: Config,
    st: State,
    now: u64,
}

impl Dut {
    fn new(s: Settings) -> Dut {
        let cfg = Config::new(s).unwrap();
        let st = State::new(&cfg, 0, 42);
        Dut { cfg, st, now: SEC }
    }

    /// One frame in on `port`: the verdict, and the frames that leave
    /// (the frame itself first, then any extra fragments).
    fn run(&mut self, frame: &[u8], port: usize) -> (Verdict, Vec<Vec<u8>>) {
        let mut buf = vec![0u8; FRAME];
        buf[..frame.len()].copy_from_slice(frame);
        let mut extra = Frames::new(64);
        let v = pipeline::process_frame(
            &mut buf,
            frame.len(),
            PortId::new(port),
            self.now,
            &self.cfg,
            &mut self.st,
            &mut extra,
        );
        let len = match v {
            Verdict::Forward { len, .. } | Verdict::Reply { len } => len,
            Verdict::Fragments { first_len, .. } => first_len,
            Verdict::Drop(_) => 0,
        };
        buf.truncate(len);
        let mut out = vec![buf];
        out.extend(extra.out);
        assert!(self.st.counters.iter().all(|c| c.balanced()));
        (v, out)
    }

    /// The MSS of the SYN `frame` after crossing in from `port` (checked
    /// with etherparse, both checksums right).
    fn mss(&mut self, frame: &[u8], port: usize) -> Option<u16> {
        let (v, out) = self.run(frame, port);
        assert!(matches!(v, Verdict::Forward { .. }), "{v:?}");
        checked_mss(&out[0])
    }

    fn rule(&self, i: usize) -> RuleCounters {
        self.st.rule_counters().1[i]
    }

    fn pmtu(&mut self) -> mtugate_datapath::pmtu::PmtuCounters {
        self.st.pmtu_counters(&self.cfg, self.now)
    }
}

fn checked_mss(frame: &[u8]) -> Option<u16> {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(TransportSlice::Tcp(t)) = p.transport else {
        panic!("no TCP")
    };
    let ok = match p.net.unwrap() {
        NetSlice::Ipv4(ip) => {
            let h = ip.header().to_header();
            assert_eq!(h.calc_header_checksum(), h.header_checksum);
            t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap() == t.checksum()
        }
        NetSlice::Ipv6(ip) => {
            let h = ip.header().to_header();
            t.to_header().calc_checksum_ipv6(&h, t.payload()).unwrap() == t.checksum()
        }
        _ => panic!("not IP"),
    };
    assert!(ok, "TCP checksum");
    t.options_iterator().find_map(|o| match o {
        Ok(TcpOptionElement::MaximumSegmentSize(v)) => Some(v),
        _ => None,
    })
}

/// A SYN (or SYN-ACK) with MSS 1460, optionally in a VLAN.
fn syn4(src: [u8; 4], dst: [u8; 4], ports: (u16, u16), ack: bool, vlan: Option<u16>) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B);
    let b = match vlan {
        Some(v) => b
            .single_vlan(VlanId::try_new(v).unwrap())
            .ipv4(src, dst, 64),
        None => b.ipv4(src, dst, 64),
    };
    let mut b = b.tcp(ports.0, ports.1, 7, 64240).syn();
    if ack {
        b = b.ack(8);
    }
    let b = b
        .options(&[TcpOptionElement::MaximumSegmentSize(1460)])
        .unwrap();
    let mut v = Vec::new();
    b.write(&mut v, &[]).unwrap();
    v
}

fn syn6(src: [u8; 16], dst: [u8; 16], ports: (u16, u16), ack: bool) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv6(src, dst, 64)
        .tcp(ports.0, ports.1, 7, 64240)
        .syn();
    if ack {
        b = b.ack(8);
    }
    let b = b
        .options(&[TcpOptionElement::MaximumSegmentSize(1460)])
        .unwrap();
    let mut v = Vec::new();
    b.write(&mut v, &[]).unwrap();
    v
}

fn udp4(src: [u8; 4], dst: [u8; 4], len: usize, id: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(src, dst, 64)
        .udp(5000, 5001)
        .write(&mut v, &vec![0x5a; len])
        .unwrap();
    // DF set (etherparse's default), this ID.
    v[18..20].copy_from_slice(&id.to_be_bytes());
    let h = etherparse::Ipv4Header::from_slice(&v[14..]).unwrap().0;
    v[24..26].copy_from_slice(&h.calc_header_checksum().to_be_bytes());
    v
}

fn p(s: &str) -> Prefix {
    Prefix::parse(s).unwrap()
}

fn v6(last: u8, net: [u8; 4]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&net);
    a[15] = last;
    a
}

/// The lab: inside 1500, outside (the tunnel) 1400; `[mss]` off, so that
/// only what a rule (or a learned MTU) says is clamped.
fn base() -> Settings {
    let mut s = Settings {
        port_mtu: vec![1500, 1400],
        ..Default::default()
    };
    s.mss.ipv4 = Clamp::Off;
    s.mss.ipv6 = Clamp::Off;
    s
}

fn tunnel_rule() -> RuleSettings {
    let mut r = RuleSettings::new("into-tunnel");
    r.from = Some(PortId::new(INSIDE));
    r.dst = vec![p("10.8.0.0/16"), p("fd08::/32")];
    r.mss.ipv4 = Clamp::Fixed(1360);
    r.mss.ipv6 = Clamp::Fixed(1340);
    r
}

const TUN4: [u8; 4] = [10, 8, 1, 1];
const OTHER4: [u8; 4] = [198, 51, 100, 7];

#[test]
fn prefix_v4_clamps_only_what_enters_the_tunnel() {
    let mut s = base();
    s.rules = vec![tunnel_rule()];
    let mut d = Dut::new(s);
    assert_eq!(
        d.mss(&syn4(CLIENT, TUN4, (40000, 443), false, None), INSIDE),
        Some(1360)
    );
    assert_eq!(
        d.mss(&syn4(CLIENT, OTHER4, (40001, 443), false, None), INSIDE),
        Some(1460)
    );
    assert_eq!(
        d.rule(0),
        RuleCounters {
            matched: 1,
            clamped: 1,
            fragmented: 0
        }
    );
}

#[test]
fn prefix_v6() {
    let mut s = base();
    s.rules = vec![tunnel_rule()];
    let mut d = Dut::new(s);
    let c6 = v6(1, [0x20, 1, 0xd, 0xb8]);
    let tun6 = v6(9, [0xfd, 8, 0, 0]);
    let out6 = v6(9, [0xfd, 9, 0, 0]);
    assert_eq!(d.mss(&syn6(c6, tun6, (1, 2), false), INSIDE), Some(1340));
    assert_eq!(d.mss(&syn6(c6, out6, (1, 2), false), INSIDE), Some(1460));
    // Its SYN-ACK, back from the tunnel side.
    assert_eq!(d.mss(&syn6(tun6, c6, (2, 1), true), OUTSIDE), Some(1340));
    assert_eq!(d.rule(0).clamped, 2);
}

#[test]
fn src_prefix() {
    let mut s = base();
    let mut r = RuleSettings::new("from-branch");
    r.src = vec![p("192.0.2.0/25")];
    r.mss.ipv4 = Clamp::Fixed(1300);
    s.rules = vec![r];
    let mut d = Dut::new(s);
    assert_eq!(
        d.mss(&syn4(CLIENT, OTHER4, (1, 2), false, None), INSIDE),
        Some(1300)
    );
    let far = [192, 0, 2, 200];
    assert_eq!(
        d.mss(&syn4(far, OTHER4, (1, 2), false, None), INSIDE),
        Some(1460)
    );
}

#[test]
fn vlan_per_customer() {
    let mut s = base();
    let mut a = RuleSettings::new("customer-a");
    a.vlan = vec![100, 200];
    a.mss.ipv4 = Clamp::Fixed(1350);
    let mut b = RuleSettings::new("customer-b");
    b.vlan = vec![300];
    b.mss.ipv4 = Clamp::Fixed(1300);
    s.rules = vec![a, b];
    let mut d = Dut::new(s);
    let f = |v| syn4(CLIENT, OTHER4, (1, 2), false, v);
    assert_eq!(d.mss(&f(Some(100)), INSIDE), Some(1350));
    assert_eq!(d.mss(&f(Some(200)), INSIDE), Some(1350));
    assert_eq!(d.mss(&f(Some(300)), INSIDE), Some(1300));
    assert_eq!(
        d.mss(&f(Some(400)), INSIDE),
        Some(1460),
        "no rule: [mss] off"
    );
    assert_eq!(d.mss(&f(None), INSIDE), Some(1460), "untagged");
}

#[test]
fn direction_and_both_ways_via_the_syn_ack() {
    let mut s = base();
    s.rules = vec![tunnel_rule()];
    let mut d = Dut::new(s);
    // The SYN from inside matches; its SYN-ACK, from the tunnel side with
    // the addresses swapped, matches the same rule.
    assert_eq!(
        d.mss(&syn4(CLIENT, TUN4, (40000, 443), false, None), INSIDE),
        Some(1360)
    );
    assert_eq!(
        d.mss(&syn4(TUN4, CLIENT, (443, 40000), true, None), OUTSIDE),
        Some(1360)
    );
    // A SYN from the tunnel side is not "from inside"; nor is the SYN-ACK
    // of a connection opened from inside toward elsewhere.
    assert_eq!(
        d.mss(&syn4(TUN4, CLIENT, (5, 6), false, None), OUTSIDE),
        Some(1460)
    );
    assert_eq!(
        d.mss(&syn4(CLIENT, TUN4, (6, 5), true, None), INSIDE),
        Some(1460)
    );
    assert_eq!(
        d.rule(0),
        RuleCounters {
            matched: 2,
            clamped: 2,
            fragmented: 0
        }
    );
}

#[test]
fn first_match_wins_and_no_match_gets_the_default() {
    let mut s = base();
    s.mss.ipv4 = Clamp::Auto; // the default: 1400 - 40
    let mut exempt = RuleSettings::new("exempt-host");
    exempt.dst = vec![p("10.8.1.1/32")];
    exempt.mss.ipv4 = Clamp::Off;
    let mut narrow = tunnel_rule();
    narrow.mss.ipv4 = Clamp::Fixed(1200);
    let mut wide = RuleSettings::new("wide");
    wide.dst = vec![p("10.0.0.0/8")];
    wide.mss.ipv4 = Clamp::Fixed(1100);
    s.rules = vec![exempt, narrow, wide];
    let mut d = Dut::new(s);
    let f = |dst| syn4(CLIENT, dst, (1, 2), false, None);
    assert_eq!(d.mss(&f(TUN4), INSIDE), Some(1460), "first rule: off");
    assert_eq!(d.mss(&f([10, 8, 1, 2]), INSIDE), Some(1200));
    assert_eq!(d.mss(&f([10, 9, 1, 2]), INSIDE), Some(1100));
    assert_eq!(d.mss(&f(OTHER4), INSIDE), Some(1360), "no rule: [mss] auto");
    let matched: Vec<u64> = (0..3).map(|i| d.rule(i).matched).collect();
    assert_eq!(matched, [1, 1, 1]);
    assert_eq!(d.rule(0).clamped, 0);
}

#[test]
fn without_rules_nothing_changes() {
    let mut d = Dut::new(Settings {
        port_mtu: vec![1500, 1400],
        ..Default::default()
    });
    assert!(d.cfg.rules().is_empty());
    assert_eq!(
        d.mss(&syn4(CLIENT, TUN4, (1, 2), false, None), INSIDE),
        Some(1360)
    );
    assert_eq!(
        d.mss(&syn4(TUN4, CLIENT, (2, 1), true, None), OUTSIDE),
        Some(1360)
    );
    assert!(d.st.rule_counters().1.is_empty());
}

#[test]
fn per_rule_df_policy_and_fragmented_counter() {
    let mut s = base();
    let mut r = tunnel_rule();
    r.df = Some(DfPolicy::ClearUdp);
    s.rules = vec![r];
    let mut d = Dut::new(s);
    // 1500 bytes of DF UDP into the 1400 tunnel: toward the rule's prefix
    // fragmented despite DF, elsewhere ICMP Fragmentation Needed.
    let (v, out) = d.run(&udp4(CLIENT, TUN4, 1472, 0), INSIDE);
    assert!(matches!(v, Verdict::Fragments { extra: 1, .. }), "{v:?}");
    assert!(out.iter().all(|f| f.len() - 14 <= 1400));
    let (v, _) = d.run(&udp4(CLIENT, OTHER4, 1472, 0), INSIDE);
    assert!(matches!(v, Verdict::Reply { .. }), "{v:?}");
    // Not a handshake: a packet of the other direction (from the tunnel,
    // too big for the 1500 inside) matches the rule too.
    let (v, _) = d.run(&udp4(TUN4, CLIENT, 1572, 0), OUTSIDE);
    assert!(matches!(v, Verdict::Fragments { .. }), "{v:?}");
    assert_eq!(
        d.rule(0),
        RuleCounters {
            matched: 2,
            clamped: 0,
            fragmented: 2
        }
    );
    assert_eq!(d.st.counters[INSIDE].df_overridden, 1);
}

/// The IPv4 IDs of the fragments a DF packet with ID `id` is cut into.
fn fragment_ids(d: &mut Dut, id: u16) -> Vec<u16> {
    let (v, out) = d.run(&udp4(CLIENT, TUN4, 2000, id), INSIDE);
    assert!(matches!(v, Verdict::Fragments { .. }), "{v:?}");
    out.iter()
        .map(|f| {
            let h = etherparse::Ipv4HeaderSlice::from_slice(&f[14..]).unwrap();
            assert_eq!(h.to_header().calc_header_checksum(), h.header_checksum());
            h.identification()
        })
        .collect()
}

#[test]
fn random_id_gives_cleared_df_packets_fresh_ids() {
    let mut s = base();
    s.df = DfPolicy::ClearAll;
    let mut d = Dut::new(s.clone());
    // Without random-id the sender's ID 0 is kept: two packets collide.
    assert_eq!(fragment_ids(&mut d, 0), [0, 0]);
    assert_eq!(d.st.counters[INSIDE].df_random_id, 0);
    s.df_random_id = true;
    let mut d = Dut::new(s);
    let a = fragment_ids(&mut d, 0);
    let b = fragment_ids(&mut d, 0);
    assert_eq!(a[0], a[1], "one ID for all fragments of a packet");
    assert_ne!(a[0], b[0], "a fresh ID per packet");
    assert_eq!(d.st.counters[INSIDE].df_random_id, 2);
    // A packet without DF keeps its own ID (its sender chose it for this).
    let mut f = udp4(CLIENT, TUN4, 2000, 777);
    f[20] &= !0x40;
    let h = etherparse::Ipv4Header::from_slice(&f[14..]).unwrap().0;
    f[24..26].copy_from_slice(&h.calc_header_checksum().to_be_bytes());
    let (_, out) = d.run(&f, INSIDE);
    let id = etherparse::Ipv4HeaderSlice::from_slice(&out[0][14..])
        .unwrap()
        .identification();
    assert_eq!(id, 777);
}

#[test]
fn reload_keeps_rule_counters_by_name() {
    let mut s = base();
    s.rules = vec![tunnel_rule()];
    let mut d = Dut::new(s.clone());
    d.mss(&syn4(CLIENT, TUN4, (1, 2), false, None), INSIDE);
    let mut other = RuleSettings::new("new-one");
    other.dst = vec![p("203.0.113.0/24")];
    s.rules.insert(0, other);
    d.cfg = Config::new(s).unwrap();
    d.st.reconfigure(&d.cfg, d.now);
    let (names, c) = d.st.rule_counters();
    assert_eq!(
        names[..],
        ["new-one".to_string(), "into-tunnel".to_string()]
    );
    assert_eq!(c[0].matched, 0);
    assert_eq!(c[1].matched, 1);
}

// ---- learned path MTUs -----------------------------------------------------

const FAR: [u8; 4] = [198, 51, 100, 2];
const ROUTER: [u8; 4] = [192, 0, 2, 2];

fn learning() -> Settings {
    let mut s = base();
    s.port_mtu = vec![1500, 1500];
    s.pmtu.learn = true;
    s
}

/// An ICMP Fragmentation Needed from `from` to `to` with `mtu`, quoting
/// the first 28 bytes of a `len`-byte TCP packet `qsrc:qsp -> qdst:qdp`.
fn frag_needed(
    from: [u8; 4],
    to: [u8; 4],
    mtu: u16,
    quote: ([u8; 4], [u8; 4], u16, u16),
    len: usize,
) -> Vec<u8> {
    let mut q = Vec::new();
    PacketBuilder::ipv4(quote.0, quote.1, 64)
        .tcp(quote.2, quote.3, 1000, 502)
        .ack(1)
        .write(&mut q, &vec![0; len - 40])
        .unwrap();
    q.truncate(28);
    let mut v = Vec::new();
    PacketBuilder::ethernet2(MAC_B, MAC_A)
        .ipv4(from, to, 64)
        .icmpv4(Icmpv4Type::DestinationUnreachable(
            DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: mtu },
        ))
        .write(&mut v, &q)
        .unwrap();
    v
}

/// Opens the lab connection client:40000 -> far:443 (its SYN from inside)
/// and lets the router behind the server side answer a 1500-byte segment
/// of it with Fragmentation Needed, MTU 1300: the ICMP must cross untouched.
fn learn_1300(d: &mut Dut) {
    d.mss(&syn4(CLIENT, FAR, (40000, 443), false, None), INSIDE);
    let icmp = frag_needed(ROUTER, CLIENT, 1300, (CLIENT, FAR, 40000, 443), 1500);
    let (v, out) = d.run(&icmp, OUTSIDE);
    assert!(matches!(v, Verdict::Forward { .. }));
    assert_eq!(out[0], icmp, "forwarded untouched");
}

#[test]
fn a_real_frag_needed_is_learned_and_clamps_later_syns_both_ways() {
    let mut d = Dut::new(learning());
    learn_1300(&mut d);
    assert_eq!(d.pmtu().learned, 1);
    assert_eq!(d.pmtu().entries, 1);
    // The next connection toward far, and its SYN-ACK: 1300 - 40.
    assert_eq!(
        d.mss(&syn4(CLIENT, FAR, (40001, 443), false, None), INSIDE),
        Some(1260)
    );
    assert_eq!(
        d.mss(&syn4(FAR, CLIENT, (443, 40001), true, None), OUTSIDE),
        Some(1260)
    );
    // Elsewhere: untouched ([mss] off).
    assert_eq!(
        d.mss(&syn4(CLIENT, OTHER4, (40002, 443), false, None), INSIDE),
        Some(1460)
    );
    assert_eq!(d.pmtu().clamped, 2);
    // A rule's lower clamp wins over the learned one.
    let mut s = learning();
    let mut r = RuleSettings::new("low");
    r.mss.ipv4 = Clamp::Fixed(1200);
    s.rules = vec![r];
    let mut d = Dut::new(s);
    learn_1300(&mut d);
    assert_eq!(
        d.mss(&syn4(CLIENT, FAR, (40001, 443), false, None), INSIDE),
        Some(1200)
    );
    assert_eq!(d.pmtu().clamped, 0);
}

#[test]
fn forged_icmp_changes_nothing_and_is_counted() {
    let mut d = Dut::new(learning());
    d.mss(&syn4(CLIENT, FAR, (40000, 443), false, None), INSIDE);
    let flow = (CLIENT, FAR, 40000, 443);
    let cases: [(Vec<u8>, usize, Reject); 5] = [
        // A wrong quote: ports of no connection that crossed.
        (
            frag_needed(ROUTER, CLIENT, 1300, (CLIENT, FAR, 40000, 444), 1500),
            OUTSIDE,
            Reject::NoFlow,
        ),
        // Below the floor (552).
        (
            frag_needed(ROUTER, CLIENT, 300, flow, 1500),
            OUTSIDE,
            Reject::BelowFloor,
        ),
        (
            frag_needed(ROUTER, CLIENT, 0, flow, 1500),
            OUTSIDE,
            Reject::BelowFloor,
        ),
        // From the wrong side: the flow came in from inside, so must its ICMP go back there.
        (
            frag_needed(ROUTER, CLIENT, 1300, flow, 1500),
            INSIDE,
            Reject::WrongSide,
        ),
        // The quoted packet would have fit the MTU it reports.
        (
            frag_needed(ROUTER, CLIENT, 1300, flow, 1200),
            OUTSIDE,
            Reject::BadQuote,
        ),
    ];
    for (i, (icmp, port, why)) in cases.iter().enumerate() {
        let (v, out) = d.run(icmp, *port);
        assert!(matches!(v, Verdict::Forward { .. }), "case {i}");
        assert_eq!(&out[0], icmp, "case {i}: forwarded untouched");
        assert_eq!(
            d.pmtu().rejected[*why as usize],
            1 + u64::from(i == 2),
            "case {i}"
        );
    }
    // A quote of UDP: no connection of ours (only TCP is recorded).
    let mut udp = frag_needed(ROUTER, CLIENT, 1300, flow, 1500);
    udp[14 + 20 + 8 + 9] = 17;
    let h = etherparse::Ipv4Header::from_slice(&udp[14 + 28..])
        .unwrap()
        .0;
    udp[14 + 28 + 10..14 + 28 + 12].copy_from_slice(&h.calc_header_checksum().to_be_bytes());
    let sum = etherparse::checksum::Sum16BitWords::new()
        .add_slice(&udp[14 + 20..14 + 22])
        .add_slice(&udp[14 + 24..])
        .ones_complement()
        .to_be();
    udp[14 + 22..14 + 24].copy_from_slice(&sum.to_be_bytes());
    d.run(&udp, OUTSIDE);
    assert_eq!(d.pmtu().rejected[Reject::NoFlow as usize], 2);
    // Quoted source is not the ICMP's destination.
    let mut q = frag_needed(ROUTER, [192, 0, 2, 9], 1300, flow, 1500);
    d.run(&q, OUTSIDE);
    assert_eq!(d.pmtu().rejected[Reject::BadQuote as usize], 2);
    // A corrupted checksum.
    let n = q.len();
    q[n - 1] ^= 0xff;
    d.run(&q, OUTSIDE);
    assert_eq!(d.pmtu().rejected[Reject::Malformed as usize], 1);
    assert_eq!(d.pmtu().learned, 0);
    assert_eq!(
        d.mss(&syn4(CLIENT, FAR, (40001, 443), false, None), INSIDE),
        Some(1460)
    );
}

#[test]
fn learned_mtus_expire_are_not_raised_and_can_be_lowered() {
    let mut s = learning();
    s.pmtu.expires_secs = 600;
    let mut d = Dut::new(s);
    learn_1300(&mut d);
    // P5: a larger MTU for the same destination does not raise it.
    let icmp = frag_needed(ROUTER, CLIENT, 1400, (CLIENT, FAR, 40000, 443), 1500);
    d.run(&icmp, OUTSIDE);
    assert_eq!(
        d.mss(&syn4(CLIENT, FAR, (2, 443), false, None), INSIDE),
        Some(1260)
    );
    // A smaller one lowers it.
    let icmp = frag_needed(ROUTER, CLIENT, 1000, (CLIENT, FAR, 40000, 443), 1500);
    d.run(&icmp, OUTSIDE);
    assert_eq!(
        d.mss(&syn4(CLIENT, FAR, (3, 443), false, None), INSIDE),
        Some(960)
    );
    // P2: gone after 600 s.
    d.now += 601 * SEC;
    assert_eq!(
        d.mss(&syn4(CLIENT, FAR, (4, 443), false, None), INSIDE),
        Some(1460)
    );
    assert_eq!(d.pmtu().entries, 0);
}

#[test]
fn learning_off_ignores_icmp() {
    let mut s = learning();
    s.pmtu.learn = false;
    let mut d = Dut::new(s);
    learn_1300(&mut d);
    assert_eq!(d.pmtu(), Default::default());
    assert_eq!(
        d.mss(&syn4(CLIENT, FAR, (40001, 443), false, None), INSIDE),
        Some(1460)
    );
}

#[test]
fn packet_too_big_v6() {
    let mut d = Dut::new(learning());
    let c6 = v6(1, [0x20, 1, 0xd, 0xb8]);
    let far6 = v6(2, [0x20, 1, 0xd, 0xb9]);
    let router6 = v6(3, [0x20, 1, 0xd, 0xb8]);
    d.mss(&syn6(c6, far6, (40000, 443), false), INSIDE);
    let ptb = |mtu: u32| {
        let mut q = Vec::new();
        PacketBuilder::ipv6(c6, far6, 64)
            .tcp(40000, 443, 1, 2)
            .write(&mut q, &vec![0; 1440])
            .unwrap();
        q.truncate(1000);
        let mut v = Vec::new();
        PacketBuilder::ethernet2(MAC_B, MAC_A)
            .ipv6(router6, c6, 64)
            .icmpv6(Icmpv6Type::PacketTooBig { mtu })
            .write(&mut v, &q)
            .unwrap();
        v
    };
    d.run(&ptb(1000), OUTSIDE);
    assert_eq!(
        d.pmtu().rejected[Reject::BelowFloor as usize],
        1,
        "IPv6 never below 1280"
    );
    d.run(&ptb(1280), OUTSIDE);
    assert_eq!(d.pmtu().learned, 1);
    assert_eq!(
        d.mss(&syn6(c6, far6, (40001, 443), false), INSIDE),
        Some(1220)
    );
}

// ---- the compiled lookup against a linear scan ------------------------------

/// The first rule that matches, by reading each rule's conditions in turn.
fn naive(rules: &[RuleSettings], a: &Addrs, from: PortId, vlan: Option<u16>) -> Option<usize> {
    let (src, dst): (&[u8], &[u8]) = match a {
        Addrs::V4 { src, dst } => (src, dst),
        Addrs::V6 { src, dst } => (src, dst),
    };
    rules.iter().position(|r| {
        r.from.is_none_or(|p| p == from)
            && (r.vlan.is_empty() || vlan.is_some_and(|v| r.vlan.contains(&v)))
            && (r.src.is_empty() || r.src.iter().any(|p| p.contains(src)))
            && (r.dst.is_empty() || r.dst.iter().any(|p| p.contains(dst)))
    })
}

/// Prefixes drawn near a few bases, so that they nest and overlap.
fn prefix() -> impl Strategy<Value = Prefix> {
    prop_oneof![
        (0u8..4, any::<u32>(), 0u8..=32).prop_map(|(b, x, len)| {
            let a = (u32::from(b) << 30 | 0x0a08_0000) ^ (x & 0x0000_ffff);
            Prefix::V4 {
                addr: a.to_be_bytes(),
                len,
            }
            .canonical()
        }),
        (any::<u16>(), 0u8..=128).prop_map(|(x, len)| {
            let mut a = [0xfd, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            a[2..4].copy_from_slice(&(x & 0x0f0f).to_be_bytes());
            a[15] = x as u8;
            Prefix::V6 { addr: a, len }.canonical()
        }),
    ]
}

fn rule() -> impl Strategy<Value = RuleSettings> {
    (
        proptest::option::of(0usize..2),
        proptest::collection::vec(prefix(), 0..4),
        proptest::collection::vec(prefix(), 0..6),
        proptest::collection::vec(0u16..4, 0..2),
    )
        .prop_map(|(from, src, dst, vlan)| RuleSettings {
            from: from.map(PortId::new),
            src,
            dst,
            vlan,
            ..RuleSettings::new("r")
        })
}

fn addrs() -> impl Strategy<Value = Addrs> {
    prop_oneof![
        (0u8..4, any::<u32>(), 0u8..4, any::<u32>()).prop_map(|(a, x, b, y)| Addrs::V4 {
            src: ((u32::from(a) << 30 | 0x0a08_0000) ^ (x & 0xffff)).to_be_bytes(),
            dst: ((u32::from(b) << 30 | 0x0a08_0000) ^ (y & 0xffff)).to_be_bytes(),
        }),
        (any::<u16>(), any::<u16>()).prop_map(|(x, y)| {
            let mk = |x: u16| {
                let mut a = [0xfd, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
                a[2..4].copy_from_slice(&(x & 0x0f0f).to_be_bytes());
                a[15] = x as u8;
                a
            };
            Addrs::V6 {
                src: mk(x),
                dst: mk(y),
            }
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn lookup_agrees_with_a_linear_scan(
        mut rules in proptest::collection::vec(rule(), 0..12),
        packets in proptest::collection::vec((addrs(), 0usize..2, proptest::option::of(0u16..4)), 1..32),
    ) {
        for (i, r) in rules.iter_mut().enumerate() {
            r.name = format!("r{i}");
        }
        let compiled = Rules::compile(&rules, &[1500, 1500]).unwrap();
        for (a, port, vlan) in packets {
            let from = PortId::new(port);
            prop_assert_eq!(compiled.first(&a, from, vlan), naive(&rules, &a, from, vlan));
            let other = PortId::new(1 - port);
            prop_assert_eq!(
                compiled.first_reply(&a, other, vlan),
                naive(&rules, &a.swapped(), other, vlan)
            );
        }
    }
}

#[test]
fn workers_sharing_tables_learn_across_queues() {
    use mtugate_datapath::pmtu::LearnTables;
    use std::sync::Arc;
    let tables = Arc::new(LearnTables::new(99));
    let (mut a, mut b) = (Dut::new(learning()), Dut::new(learning()));
    a.st.share_learning(Arc::clone(&tables));
    b.st.share_learning(Arc::clone(&tables));
    // Queue A sees the connection's SYN, queue B the ICMP error about it.
    a.mss(&syn4(CLIENT, FAR, (40000, 443), false, None), INSIDE);
    let icmp = frag_needed(ROUTER, CLIENT, 1300, (CLIENT, FAR, 40000, 443), 1500);
    b.run(&icmp, OUTSIDE);
    assert_eq!(b.pmtu().learned, 1);
    assert_eq!(a.pmtu().learned, 0, "counters stay per worker");
    // Either clamps the next connection.
    assert_eq!(
        a.mss(&syn4(CLIENT, FAR, (40001, 443), false, None), INSIDE),
        Some(1260)
    );
    assert_eq!(
        b.mss(&syn4(FAR, CLIENT, (443, 40002), true, None), OUTSIDE),
        Some(1260)
    );
    assert_eq!(
        (a.pmtu().entries, b.pmtu().entries),
        (1, 1),
        "one shared table"
    );
    // A worker with tables of its own never saw the SYN: no_flow.
    let mut c = Dut::new(learning());
    c.run(&icmp, OUTSIDE);
    assert_eq!(c.pmtu().rejected[Reject::NoFlow as usize], 1);
}
