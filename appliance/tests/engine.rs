//! The worker loop on the in-memory rings: the same `Worker`, `Poller` and
//! `Queue` code as on AF_XDP sockets, with a stand-in kernel, so frame
//! conservation, full rings, an empty stash, the reload boundary and the
//! published counters are checked without root. Every frame that comes
//! out is parsed by etherparse (an independent implementation).

use etherparse::{
    Icmpv4Type, NetSlice, PacketBuilder, SlicedPacket, TcpOptionElement, TransportSlice,
};
use mtugate::engine::Worker;
use mtugate_datapath::pipeline::{Clamp, Config, DfPolicy, DropReason, Settings};
use mtugate_mgmt::link::{loopback, Loopback};
use mtugate_mgmt::WorkerLink;
use mtugate_xsk::{Idle, MemBackend, MemConfig, Queue};
use std::sync::Arc;

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];
const SRC4: [u8; 4] = [192, 0, 2, 1];
const DST4: [u8; 4] = [192, 0, 2, 2];

fn udp(df: bool, payload: usize, id: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(SRC4, DST4, 64)
        .udp(5000, 5001)
        .write(&mut v, &vec![0x5a; payload])
        .unwrap();
    v[18..20].copy_from_slice(&id.to_be_bytes());
    if !df {
        v[20] &= !0x40;
    }
    // Header checksum over the edited header (etherparse recomputes it).
    let mut h = etherparse::Ipv4Header::from_slice(&v[14..]).unwrap().0;
    h.header_checksum = h.calc_header_checksum();
    v[14..34].copy_from_slice(&h.to_bytes());
    v
}

fn syn(mss: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(SRC4, DST4, 64)
        .tcp(40000, 443, 7, 64240)
        .syn()
        .options(&[TcpOptionElement::MaximumSegmentSize(mss)])
        .unwrap()
        .write(&mut v, &[])
        .unwrap();
    v
}

/// The MSS of a SYN, after checking both checksums with etherparse.
fn mss_of(frame: &[u8]) -> u16 {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(NetSlice::Ipv4(ip)) = p.net else {
        panic!("not IPv4")
    };
    let h = ip.header().to_header();
    assert_eq!(h.calc_header_checksum(), h.header_checksum);
    let Some(TransportSlice::Tcp(t)) = p.transport else {
        panic!("not TCP")
    };
    let sum = t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap();
    assert_eq!(sum, t.checksum(), "TCP checksum");
    t.options_iterator()
        .find_map(|o| match o {
            Ok(TcpOptionElement::MaximumSegmentSize(m)) => Some(m),
            _ => None,
        })
        .expect("an MSS option")
}

fn settings(clamp: u16) -> Arc<Config> {
    let mut s = Settings {
        port_mtu: vec![1500, 1400],
        ..Settings::default()
    };
    s.mss.ipv4 = Clamp::Fixed(clamp);
    s.df = DfPolicy::Respect;
    Arc::new(Config::new(s).unwrap())
}

fn worker(
    mem: MemConfig,
    reserve: usize,
    cfg: Arc<Config>,
    link: WorkerLink,
) -> Worker<MemBackend> {
    let q = Queue::new(MemBackend::new(&["inside", "tunnel"], mem), 0, 16, reserve);
    Worker::new(q, cfg, 1, link, Idle::Spin)
}

fn rounds(w: &mut Worker<MemBackend>, n: usize) {
    for _ in 0..n {
        w.round();
    }
}

#[test]
fn every_frame_goes_where_its_verdict_says_and_frames_are_conserved() {
    let mut w = worker(
        MemConfig::default(),
        32,
        settings(1360),
        WorkerLink::detached(),
    );
    rounds(&mut w, 1); // the first refill
    let mut small = Vec::new();
    for i in 0..40u16 {
        let f = udp(true, 100, i);
        w.queue_mut().backend_mut().inject(0, &f).unwrap();
        small.push(f);
        if i % 8 == 7 {
            rounds(&mut w, 1);
        }
    }
    for _ in 0..5 {
        w.queue_mut().backend_mut().inject(0, &syn(1460)).unwrap();
    }
    rounds(&mut w, 1);
    for i in 0..5u16 {
        // 1500-byte datagrams into a 1400 tunnel: DF clear is fragmented,
        // DF set is answered with Fragmentation Needed out of the inside.
        w.queue_mut()
            .backend_mut()
            .inject(0, &udp(false, 1472, 100 + i))
            .unwrap();
        w.queue_mut()
            .backend_mut()
            .inject(0, &udp(true, 1472, 200 + i))
            .unwrap();
        rounds(&mut w, 1);
    }
    rounds(&mut w, 3);

    let out = std::mem::take(w.queue_mut().backend_mut().sent(1));
    let back = std::mem::take(w.queue_mut().backend_mut().sent(0));
    // Small datagrams: byte for byte, in order.
    assert_eq!(&out[..40], &small[..]);
    // SYNs: clamped, checksums right.
    for f in &out[40..45] {
        assert_eq!(mss_of(f), 1360);
    }
    // Fragments: two per datagram, each within the tunnel MTU, valid
    // headers, payloads that add up.
    let frags = &out[45..];
    assert_eq!(frags.len(), 10);
    for pair in frags.chunks(2) {
        let mut total = 0;
        for f in pair {
            let (h, _) = etherparse::Ipv4Header::from_slice(&f[14..]).unwrap();
            assert_eq!(h.calc_header_checksum(), h.header_checksum);
            assert!(usize::from(h.total_len) <= 1400);
            assert!((100..105).contains(&h.identification));
            total += usize::from(h.total_len) - h.header_len();
        }
        assert_eq!(total, 8 + 1472);
    }
    // ICMP errors went back out of the inside port.
    assert_eq!(back.len(), 5);
    for f in &back {
        let p = SlicedPacket::from_ethernet(f).unwrap();
        let Some(TransportSlice::Icmpv4(icmp)) = p.transport else {
            panic!("not ICMP")
        };
        match icmp.icmp_type() {
            Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu },
            ) => assert_eq!(next_hop_mtu, 1400),
            t => panic!("{t:?}"),
        }
    }
    let c = &w.state().counters[0];
    assert_eq!(
        (c.rx_packets, c.forwarded, c.fragmented, c.icmp_sent[0]),
        (55, 45, 5, 5)
    );
    let r = w.finish();
    assert_eq!(r.conservation_error, None);
    assert_eq!(r.counters.tx_packets, vec![5, 55]);
    // Every frame is either free or given to the kernel for receiving.
    let f = &r.frames;
    assert_eq!(f.free + f.fill_or_rx.iter().sum::<usize>(), f.total);
    assert_eq!(f.held, 0);
}

#[test]
fn a_full_tx_ring_frees_and_counts_what_it_refuses() {
    let mem = MemConfig {
        tx_ring: 16,
        transmit_on_kick: false,
        ..MemConfig::default()
    };
    let mut w = worker(mem, 32, settings(1360), WorkerLink::detached());
    rounds(&mut w, 1);
    for i in 0..64u16 {
        w.queue_mut()
            .backend_mut()
            .inject(0, &udp(true, 64, i))
            .unwrap();
        if i % 16 == 15 {
            rounds(&mut w, 1);
        }
    }
    // 16 in the ring, 16 staged: the rest was refused and freed.
    let r = {
        for _ in 0..4 {
            w.queue_mut().backend_mut().transmit(1, usize::MAX);
            rounds(&mut w, 1);
        }
        w.finish()
    };
    assert_eq!(r.conservation_error, None);
    assert_eq!(r.counters.tx_ring_full_drops, vec![0, 32]);
    assert_eq!(r.counters.io[1].tx_completed, 32);
    assert_eq!(r.counters.pipeline[0].forwarded, 64);
}

#[test]
fn a_fragment_without_a_free_frame_is_dropped_and_counted() {
    // 32 frames and a 32-entry fill ring, nothing held back: the kernel
    // holds every frame, so the worker has none for a second fragment.
    let mem = MemConfig {
        frame_count: 32,
        rx_ring: 32,
        ..MemConfig::default()
    };
    let mut w = worker(mem, 0, settings(1360), WorkerLink::detached());
    rounds(&mut w, 1);
    w.queue_mut()
        .backend_mut()
        .inject(0, &udp(false, 1472, 1))
        .unwrap();
    rounds(&mut w, 1);
    let c = &w.state().counters[0];
    assert_eq!(c.drops[DropReason::NoFrame as usize], 1);
    assert_eq!(c.fragmented, 0);
    assert!(w.queue_mut().backend_mut().sent(1).is_empty());
    let r = w.finish();
    assert_eq!(r.conservation_error, None);
}

#[test]
fn a_reload_takes_effect_exactly_at_a_round_boundary() {
    let (link, m): (WorkerLink, Loopback) = loopback();
    let mut w = worker(MemConfig::default(), 32, settings(1360), link);
    rounds(&mut w, 1);
    w.queue_mut().backend_mut().inject(0, &syn(1460)).unwrap();
    rounds(&mut w, 1);
    // The reload arrives while a SYN waits in the RX ring: that round still
    // runs under the old configuration; the next one under the new.
    w.queue_mut().backend_mut().inject(0, &syn(1460)).unwrap();
    m.reload(2, settings(1300));
    assert_eq!(
        m.applied(),
        1,
        "generation 1 is the configuration it started with"
    );
    rounds(&mut w, 1);
    assert_eq!(m.applied(), 2);
    assert_eq!(
        w.config()
            .clamp_for(0, mtugate_datapath::pipeline::PortId::new(0)),
        Some(1300)
    );
    w.queue_mut().backend_mut().inject(0, &syn(1460)).unwrap();
    rounds(&mut w, 1);
    let out = std::mem::take(w.queue_mut().backend_mut().sent(1));
    let mss: Vec<u16> = out.iter().map(|f| mss_of(f)).collect();
    assert_eq!(mss, [1360, 1360, 1300]);
    assert_eq!(w.finish().conservation_error, None);
}

#[test]
fn published_counters_match_what_the_worker_did() {
    let (link, m) = loopback();
    let mut w = worker(MemConfig::default(), 32, settings(1360), link);
    rounds(&mut w, 1);
    for i in 0..10u16 {
        w.queue_mut()
            .backend_mut()
            .inject(0, &udp(true, 64, i))
            .unwrap();
    }
    w.queue_mut().backend_mut().inject(1, &syn(1460)).unwrap();
    rounds(&mut w, 1);
    m.signal();
    rounds(&mut w, 1);
    let mut seen = Vec::new();
    m.recycle(|s| seen.push(s.counters.clone()));
    assert_eq!(seen.len(), 1, "one publication per signal");
    let c = &seen[0];
    assert_eq!(c.pipeline[0].rx_packets, 10);
    assert_eq!(c.pipeline[1].rx_packets, 1);
    assert_eq!(c.pipeline[1].mss_clamped[0], 1);
    assert_eq!(c.io[0].rx_frames, 10);
    assert_eq!(c.io[1].tx_frames, 10);
    assert_eq!(c.tx_packets, vec![1, 10]);
    assert_eq!(c.kernel.len(), 2);
    assert!(c.kernel.iter().all(Option::is_some));
    assert_eq!(c.polls, 3);
    assert_eq!(c.busy_polls, 1);
    assert_eq!(w.finish().conservation_error, None);
}

#[test]
fn rule_counters_are_published_by_name_and_follow_a_reload() {
    use mtugate_datapath::rules::{Prefix, RuleSettings};
    let with_rules = |names: &[&str]| {
        let mut s = Settings {
            port_mtu: vec![1500, 1400],
            ..Settings::default()
        };
        s.mss.ipv4 = Clamp::Off;
        s.rules = names
            .iter()
            .map(|n| {
                let mut r = RuleSettings::new(n);
                r.dst = vec![Prefix::parse("192.0.2.2/32").unwrap()];
                r.mss.ipv4 = Clamp::Fixed(1300);
                r
            })
            .collect();
        Arc::new(Config::new(s).unwrap())
    };
    let (link, m) = loopback();
    let mut w = worker(MemConfig::default(), 32, with_rules(&["a"]), link);
    rounds(&mut w, 1);
    w.queue_mut().backend_mut().inject(0, &syn(1460)).unwrap();
    rounds(&mut w, 1);
    let out = std::mem::take(w.queue_mut().backend_mut().sent(1));
    assert_eq!(mss_of(&out[0]), 1300);
    // A rule is put in front of "a": "a" keeps its count under its name.
    m.reload(2, with_rules(&["new", "a"]));
    rounds(&mut w, 1);
    m.recycle(|_| {}); // the reload's publication: hand the spare back
    w.queue_mut().backend_mut().inject(0, &syn(1460)).unwrap();
    rounds(&mut w, 1);
    m.signal();
    rounds(&mut w, 1);
    let mut seen = Vec::new();
    m.recycle(|s| seen.push(s.counters.clone()));
    let c = seen.last().expect("a publication");
    assert_eq!(c.rule_names[..], ["new".to_string(), "a".to_string()]);
    assert_eq!(
        c.rules[0].matched, 1,
        "the new first rule took the second SYN"
    );
    assert_eq!(c.rules[1].matched, 1);
    assert_eq!(c.rules[1].clamped, 1);
    assert_eq!(w.finish().conservation_error, None);
}

/// The ICMP error budget is the appliance's: 1, 2 and 4 workers, each on
/// its own queue and thread, offered 400 frames that each deserve an error,
/// send the same number in all (the burst, plus what the rate earns while
/// they run), not one budget per worker. Errors are counted as the frames
/// that came out, parsed by etherparse.
#[test]
fn one_two_and_four_workers_share_one_icmp_budget() {
    use mtugate::engine::Shared;
    const OFFERED: u16 = 400;
    const BURST: u64 = 40;
    let cfg = {
        let mut s = Settings {
            port_mtu: vec![1500, 1400],
            ..Settings::default()
        };
        s.icmp.limit = Some(mtugate_datapath::pipeline::Rate {
            per_sec: 10,
            burst: BURST,
        });
        Arc::new(Config::new(s).unwrap())
    };
    let sent_by = |workers: u16| -> u64 {
        let shared = Shared::new(&cfg);
        let per = OFFERED / workers;
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let (cfg, shared) = (cfg.clone(), shared.clone());
                std::thread::spawn(move || {
                    let q = Queue::new(
                        MemBackend::new(&["inside", "tunnel"], MemConfig::default()),
                        u32::from(w),
                        16,
                        32,
                    );
                    let mut wk =
                        Worker::sharing(q, cfg, 1, WorkerLink::detached(), Idle::Spin, &shared);
                    wk.round();
                    let mut errors = 0u64;
                    for i in 0..per {
                        wk.queue_mut()
                            .backend_mut()
                            .inject(0, &udp(true, 1472, i))
                            .unwrap();
                        wk.round();
                        for f in std::mem::take(wk.queue_mut().backend_mut().sent(0)) {
                            let p = SlicedPacket::from_ethernet(&f).unwrap();
                            assert!(matches!(p.transport, Some(TransportSlice::Icmpv4(_))));
                            errors += 1;
                        }
                    }
                    let r = wk.finish();
                    assert_eq!(r.conservation_error, None);
                    errors
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    };
    let one = sent_by(1);
    // The runs take milliseconds: at 10/s the rate adds at most a few.
    assert!((BURST..=BURST + 5).contains(&one), "1 worker: {one}");
    for workers in [2, 4] {
        let n = sent_by(workers);
        let ratio = n as f64 / one as f64;
        assert!(
            (0.9..=1.1).contains(&ratio),
            "{workers} workers sent {n} errors, 1 worker {one}: the budget multiplied"
        );
    }
}
