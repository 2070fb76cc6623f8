//! One criterion benchmark per pipeline operation (issue 2's list), each run
//! through `process_frame` exactly as the AF_XDP worker calls it. The peer
//! measured in the same run is etherparse's `SlicedPacket::from_ethernet` on
//! the same frame: parsing alone with a general-purpose library, so the
//! ratios say what our whole decision costs against "just reading it".
//!
//! Run: `cargo bench -p mtugate-datapath --bench pipeline`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use etherparse::{PacketBuilder, TcpOptionElement};
use mtugate_datapath::pipeline::{self, Config, ExtraFrames, PortId, Settings, State, Verdict};
use std::hint::black_box;

const FRAME: usize = 2048;

/// A fixed pool of preallocated frames; `commit` just advances.
struct Pool {
    bufs: Vec<Vec<u8>>,
    next: usize,
}

impl ExtraFrames for Pool {
    fn available(&self) -> usize {
        self.bufs.len() - self.next
    }
    fn next_buf(&mut self) -> Option<&mut [u8]> {
        self.bufs.get_mut(self.next).map(|b| &mut b[..])
    }
    fn commit(&mut self, _len: usize) {
        self.next += 1;
    }
}

fn frame(mut v: Vec<u8>) -> Vec<u8> {
    v.resize(FRAME, 0);
    v
}

fn ack64() -> (Vec<u8>, usize) {
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
        .tcp(40000, 443, 1, 64240)
        .ack(1)
        .write(&mut v, &[0; 10])
        .unwrap();
    let n = v.len();
    assert_eq!(n, 64);
    (frame(v), n)
}

fn syn(mss: u16) -> (Vec<u8>, usize) {
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
        .tcp(40000, 443, 1, 64240)
        .syn()
        .options(&[
            TcpOptionElement::MaximumSegmentSize(mss),
            TcpOptionElement::SelectiveAcknowledgementPermitted,
            TcpOptionElement::Timestamp(1, 0),
            TcpOptionElement::Noop,
            TcpOptionElement::WindowScale(7),
        ])
        .unwrap()
        .write(&mut v, &[])
        .unwrap();
    let n = v.len();
    (frame(v), n)
}

fn udp4_1500(df: bool) -> (Vec<u8>, usize) {
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
        .udp(5000, 5001)
        .write(&mut v, &[0x5a; 1472])
        .unwrap();
    if !df {
        v[20] &= !0x40;
        let h = etherparse::Ipv4Header::from_slice(&v[14..]).unwrap().0;
        let c = h.calc_header_checksum();
        v[24..26].copy_from_slice(&c.to_be_bytes());
    }
    let n = v.len();
    (frame(v), n)
}

fn udp6_1500() -> (Vec<u8>, usize) {
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv6(
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            64,
        )
        .udp(5000, 5001)
        .write(&mut v, &[0x5a; 1452])
        .unwrap();
    let n = v.len();
    (frame(v), n)
}

/// A benchmark case: name, (frame buffer, frame length), expected verdict.
type Case = (&'static str, (Vec<u8>, usize), fn(&Verdict) -> bool);

fn bench(c: &mut Criterion) {
    let mut s = Settings {
        port_mtu: vec![1500, 1400],
        ..Default::default()
    };
    // Benchmarks measure the work, not the limiter refusing it.
    s.syn_limit.global = None;
    s.syn_limit.per_source = None;
    s.icmp.limit = None;
    let cfg = Config::new(s).unwrap();
    let mut st = State::new(&cfg, 0, 7);

    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(1));

    let cases: [Case; 6] = [
        ("pass_through_ack64", ack64(), |v| {
            matches!(v, Verdict::Forward { .. })
        }),
        ("syn_clamp", syn(1460), |v| {
            matches!(v, Verdict::Forward { .. })
        }),
        ("syn_below_clamp_noop", syn(1200), |v| {
            matches!(v, Verdict::Forward { .. })
        }),
        ("fragment_1500_at_1400", udp4_1500(false), |v| {
            matches!(v, Verdict::Fragments { extra: 1, .. })
        }),
        ("frag_needed_v4", udp4_1500(true), |v| {
            matches!(v, Verdict::Reply { .. })
        }),
        ("packet_too_big_v6", udp6_1500(), |v| {
            matches!(v, Verdict::Reply { .. })
        }),
    ];
    for (name, (orig, len), check) in cases {
        // Sanity: the case does what its name says, and clamping is real.
        let mut probe = orig.clone();
        let mut pool = Pool {
            bufs: vec![vec![0; FRAME]; 4],
            next: 0,
        };
        let v =
            pipeline::process_frame(&mut probe, len, PortId::new(0), 1, &cfg, &mut st, &mut pool);
        assert!(check(&v), "{name}: {v:?}");
        if name == "syn_clamp" {
            assert_eq!(&probe[14 + 20 + 22..14 + 20 + 24], &1360u16.to_be_bytes());
        }
        // Each timed call gets a fresh copy of the frame (operations edit in
        // place), made untimed in batches of 64 frames: the size of an RX
        // batch, small enough (128 KiB) to stay in cache as a real batch
        // just written by the kernel or the NIC would.
        let mut now = 1u64;
        let mut pool = Pool {
            bufs: vec![vec![0; FRAME]; 2],
            next: 0,
        };
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || orig.clone(),
                |buf| {
                    now += 1;
                    pool.next = 0;
                    black_box(pipeline::process_frame(
                        black_box(&mut buf[..]),
                        len,
                        PortId::new(0),
                        now,
                        &cfg,
                        &mut st,
                        &mut pool,
                    ))
                },
                BatchSize::NumIterations(64),
            )
        });
        g.bench_function(format!("{name}/peer_etherparse_parse"), |b| {
            b.iter(|| {
                black_box(etherparse::SlicedPacket::from_ethernet(black_box(&orig[..len])).is_ok())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
