//! Fuzzes the whole pipeline: any bytes, any ingress port, a spread of MTUs
//! and policies chosen by the first input bytes. The pipeline must never
//! panic, must account for every frame, and must never produce a frame or a
//! fragment larger than its buffer or the egress MTU.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mtugate_datapath::pipeline::{
    self, Clamp, Config, DfPolicy, PortId, ExtraFrames, OverLimit, Rate, Settings, State, Verdict,
};
use mtugate_datapath::rules::{Prefix, RuleSettings};

const FRAME: usize = 2048;

struct Pool {
    bufs: Vec<Vec<u8>>,
    lens: Vec<usize>,
    next: usize,
}

impl ExtraFrames for Pool {
    fn available(&self) -> usize {
        self.bufs.len() - self.next
    }
    fn next_buf(&mut self) -> Option<&mut [u8]> {
        self.bufs.get_mut(self.next).map(|b| &mut b[..])
    }
    fn commit(&mut self, len: usize) {
        self.lens.push(len);
        self.next += 1;
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let (ctl, frame) = data.split_at(4);
    let mut s = Settings::default();
    let mtu = 68 + u16::from_be_bytes([ctl[0], ctl[1]]) % 9000;
    s.port_mtu = vec![1500, mtu];
    s.df = match ctl[2] % 3 {
        0 => DfPolicy::Respect,
        1 => DfPolicy::ClearUdp,
        _ => DfPolicy::ClearAll,
    };
    s.mss.insert = ctl[2] & 4 != 0;
    s.mss.ipv6 = if ctl[2] & 8 != 0 { Clamp::Off } else { Clamp::Auto };
    s.mss.range = (ctl[2] & 16 != 0).then_some((500, 1460));
    s.syn_limit.over_limit = if ctl[2] & 32 != 0 { OverLimit::Drop } else { OverLimit::Pass };
    s.icmp.limit = Some(Rate { per_sec: 1000, burst: 2 });
    // Rules, learning and random-id (issue 12), each on for some inputs.
    s.pmtu.learn = ctl[3] & 2 != 0;
    s.df_random_id = ctl[3] & 4 != 0;
    if ctl[3] & 8 != 0 {
        let mut r = RuleSettings::new("fuzz");
        r.dst = vec![Prefix::parse("0.0.0.0/1").unwrap(), Prefix::parse("::/1").unwrap()];
        r.vlan = if ctl[3] & 16 != 0 { vec![1, 100] } else { Vec::new() };
        r.df = Some(DfPolicy::ClearAll);
        r.mss.insert = ctl[3] & 32 != 0;
        s.rules = vec![r];
    }
    let Ok(cfg) = Config::new(s) else { return };
    let mut st = State::new(&cfg, 0, 1);
    let port = PortId::new(usize::from(ctl[3] & 1));
    let mut buf = vec![0u8; FRAME.max(frame.len())];
    buf[..frame.len()].copy_from_slice(frame);
    let mut pool = Pool { bufs: vec![vec![0; FRAME]; 200], lens: Vec::new(), next: 0 };
    let v = pipeline::process_frame(&mut buf, frame.len(), port, 1, &cfg, &mut st, &mut pool);
    // Counters against what came out (not `balanced()`, which holds by
    // construction): one frame in, and as many out as the verdict says.
    let c = &st.counters[port.index()];
    assert_eq!(c.rx_packets, 1);
    let out = match v {
        Verdict::Forward { len, egress } => {
            assert!(len <= buf.len());
            assert_eq!(egress.index(), port.index() ^ 1);
            1
        }
        Verdict::Reply { len } => {
            assert!(len <= buf.len());
            1
        }
        Verdict::Fragments { first_len, extra, egress } => {
            assert_eq!(extra, pool.lens.len());
            assert!(first_len <= buf.len());
            assert!(pool.lens.iter().all(|&l| l <= FRAME));
            assert_eq!(egress.index(), port.index() ^ 1);
            1 + extra as u64
        }
        Verdict::Drop(r) => {
            assert_eq!(c.drops[r as usize], 1);
            0
        }
    };
    assert_eq!(c.transmitted(), out);
});
