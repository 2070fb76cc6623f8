//! A harness for counting instructions per frame under callgrind, which
//! the shared machine's load does not disturb: `process_frame` on one
//! frame N times. Cases: `ack` (a 64-byte ACK passing through), `syn` (a
//! SYN clamped by `[mss]`, no rules), `syn10` / `syn10k` (the SYN clamped
//! by the last of 4 rules holding 10 / 10 000 IPv4 /24s), `synlearn` (no
//! rules, learning on: the flow is recorded).
//!
//! ```sh
//! cargo build --release --example count_instructions -p mtugate-datapath
//! B=target/release/examples/count_instructions
//! ir() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 | awk '/Collected/ {print $4}'; }
//! echo $(( ($(ir $B syn 20001) - $(ir $B syn 1)) / 20000 ))   # instructions per frame
//! ```

use etherparse::{PacketBuilder, TcpOptionElement};
use mtugate_datapath::pipeline::{self, Clamp, Config, ExtraFrames, PortId, Settings, State};
use mtugate_datapath::rules::{Prefix, RuleSettings};
use std::hint::black_box;

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

fn frame(syn: bool, dst: [u8; 4]) -> (Vec<u8>, usize) {
    let mut v = Vec::new();
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([192, 0, 2, 1], dst, 64)
        .tcp(40000, 443, 1, 64240);
    if syn {
        b.syn()
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
    } else {
        b.ack(1).write(&mut v, &[0; 10]).unwrap();
    }
    let n = v.len();
    v.resize(2048, 0);
    (v, n)
}

fn settings(case: &str) -> (Settings, [u8; 4]) {
    let mut s = Settings {
        port_mtu: vec![1500, 1400],
        ..Default::default()
    };
    s.syn_limit.global = None;
    s.syn_limit.per_source = None;
    let n = match case {
        "syn10" => 10,
        "syn10k" => 10_000,
        "synlearn" => {
            s.pmtu.learn = true;
            0
        }
        _ => 0,
    };
    if n == 0 {
        return (s, [10, 8, 1, 1]);
    }
    s.mss.ipv4 = Clamp::Off;
    let mut rules: Vec<RuleSettings> = (0..4)
        .map(|i| {
            let mut r = RuleSettings::new(&format!("t{i}"));
            r.from = Some(PortId::new(0));
            r.mss.ipv4 = Clamp::Fixed(1300 + i as u16);
            r
        })
        .collect();
    let mut last = [0; 4];
    for k in 0..n {
        let x = (k as u32).wrapping_mul(2_654_435_761) >> 8;
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (case, n) = match args.as_slice() {
        [_, c, n] => (c.as_str(), n.parse::<u64>().expect("a count")),
        _ => panic!("usage: count_instructions ack|syn|syn10|syn10k|synlearn N"),
    };
    let (s, dst) = settings(case);
    let cfg = Config::new(s).unwrap();
    let mut st = State::new(&cfg, 0, 7);
    let (orig, len) = frame(case != "ack", dst);
    let mut buf = orig.clone();
    for i in 0..n {
        buf[..len].copy_from_slice(&orig[..len]);
        black_box(pipeline::process_frame(
            black_box(&mut buf[..]),
            len,
            PortId::new(0),
            i,
            &cfg,
            &mut st,
            &mut NoFrames,
        ));
    }
}
