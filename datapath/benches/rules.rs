//! The cost of rules per SYN: a SYN clamped through `process_frame` with
//! no rules (today's path), and with rules holding 10 and 10 000 prefixes
//! (IPv4 /24s of IPsec tunnels spread over 4 rules; the SYN's destination
//! is in the last rule's, so every rule is looked at), and the rule lookup
//! alone. The peer measured in the same run is the no-rules SYN.
//!
//! Run: `cargo bench -p mtugate-datapath --bench rules`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use etherparse::{PacketBuilder, TcpOptionElement};
use mtugate_datapath::pipeline::{self, Clamp, Config, ExtraFrames, PortId, Settings, State};
use mtugate_datapath::rules::{Addrs, Prefix, RuleSettings};
use std::hint::black_box;

const FRAME: usize = 2048;

struct NoFrames;

impl ExtraFrames for NoFrames {
    fn available(&self) -> usize {
        0
    }
    fn next_buf(&mut self) -> Option<&mut [u8]> {
        None
    }
    fn commit(&mut self, _len: usize) {}
}

/// A SYN to `dst`, MSS 1460 with the usual Linux options.
fn syn(dst: [u8; 4]) -> (Vec<u8>, usize) {
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([192, 0, 2, 1], dst, 64)
        .tcp(40000, 443, 1, 64240)
        .syn()
        .options(&[
            TcpOptionElement::MaximumSegmentSize(1460),
            TcpOptionElement::SelectiveAcknowledgementPermitted,
            TcpOptionElement::Timestamp(1, 0),
            TcpOptionElement::Noop,
            TcpOptionElement::WindowScale(7),
        ])
        .unwrap()
        .write(&mut v, &[])
        .unwrap();
    let n = v.len();
    v.resize(FRAME, 0);
    (v, n)
}

/// `n` distinct /24s (a deterministic scramble of 10.0.0.0/8 and beyond)
/// over 4 rules; returns the settings and an address in the last rule.
fn with_prefixes(n: usize) -> (Settings, [u8; 4]) {
    let mut s = Settings {
        port_mtu: vec![1500, 1400],
        ..Default::default()
    };
    s.syn_limit.global = None;
    s.syn_limit.per_source = None;
    s.mss.ipv4 = Clamp::Off;
    let mut rules: Vec<RuleSettings> = (0..4)
        .map(|i| {
            let mut r = RuleSettings::new(&format!("tunnel-{i}"));
            r.from = Some(PortId::new(0));
            r.mss.ipv4 = Clamp::Fixed(1300 + i as u16);
            r
        })
        .collect();
    let mut last = [0; 4];
    for k in 0..n {
        let x = (k as u32).wrapping_mul(2_654_435_761) >> 8; // 24 bits, distinct
        let a = (0x0a00_0000u32 | x) & 0xffff_ff00;
        rules[k * 4 / n].dst.push(Prefix::V4 {
            addr: a.to_be_bytes(),
            len: 24,
        });
        last = (a | 7).to_be_bytes();
    }
    s.rules = rules;
    (s, last)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("rules");
    g.throughput(Throughput::Elements(1));

    let mut base = Settings {
        port_mtu: vec![1500, 1400],
        ..Default::default()
    };
    base.syn_limit.global = None;
    base.syn_limit.per_source = None;
    let mut cases = vec![("syn_clamp_no_rules".to_string(), base, [10, 8, 1, 1])];
    for n in [10, 10_000] {
        let (s, dst) = with_prefixes(n);
        cases.push((format!("syn_clamp_{n}_prefixes"), s, dst));
    }
    for (name, s, dst) in cases {
        let cfg = Config::new(s).unwrap();
        let mut st = State::new(&cfg, 0, 7);
        let (orig, len) = syn(dst);
        // Sanity: the SYN is clamped by the last rule (or by [mss]).
        let mut probe = orig.clone();
        pipeline::process_frame(
            &mut probe,
            len,
            PortId::new(0),
            1,
            &cfg,
            &mut st,
            &mut NoFrames,
        );
        let want: u16 = if cfg.rules().is_empty() { 1360 } else { 1303 };
        assert_eq!(
            &probe[14 + 20 + 22..14 + 20 + 24],
            &want.to_be_bytes(),
            "{name}"
        );
        let mut now = 1u64;
        g.bench_function(&name, |b| {
            b.iter_batched_ref(
                || orig.clone(),
                |buf| {
                    now += 1;
                    black_box(pipeline::process_frame(
                        black_box(&mut buf[..]),
                        len,
                        PortId::new(0),
                        now,
                        &cfg,
                        &mut st,
                        &mut NoFrames,
                    ))
                },
                BatchSize::NumIterations(64),
            )
        });
        if !cfg.rules().is_empty() {
            let a = Addrs::V4 {
                src: [192, 0, 2, 1],
                dst,
            };
            let rules = cfg.rules();
            g.bench_function(format!("{name}/lookup_only"), |b| {
                b.iter(|| black_box(rules.first(black_box(&a), PortId::new(0), None)))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
