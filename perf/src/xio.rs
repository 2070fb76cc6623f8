//! The AF_XDP loops: transmit (`gen`, `txonly`), receive and drop
//! (`rxdrop`), forward (`l2fwd`), all on mtugate's one poll loop
//! ([`mtugate_xsk::Poller`]), each with its own handler. `l2fwd` is that
//! loop with the no-op [`Forward`] handler: the same loop the appliance's
//! workers turn, minus the pipeline.
//!
//! A queue binds one interface (traffic generation, rxdrop) or two
//! (l2fwd) on one UMEM.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use mtugate_xsk::{
    open_queue, ring::Backend, AttachMode, AttachOptions, BindMode, BusyPoll, FastPath, Forward,
    Frame, Handler, Idle, Poller, PortProgram, PortSpec, Queue, XdpQueue, XskConfig, XskMode,
    XskStats,
};
use serde::Serialize;

use crate::pkt::{self, Builder, Endpoints, Profile};

/// AF_XDP socket options shared by every mode.
#[derive(clap::Args, Debug, Clone)]
pub struct XskOpts {
    /// Interface to send on or receive from (port 0).
    #[arg(long, short = 'i')]
    pub iface: String,
    /// Queue id.
    #[arg(long, short = 'q', default_value_t = 0)]
    pub queue: u32,
    /// auto (zero-copy, else copy), copy, or zc (zero-copy or fail).
    #[arg(long, default_value = "auto")]
    pub bind: String,
    /// XDP attach mode: auto (native, else generic), native, generic.
    #[arg(long, default_value = "auto")]
    pub attach: String,
    /// Descriptors per batch.
    #[arg(long, default_value_t = 64)]
    pub batch: u32,
    /// Size of every ring (RX, TX, fill, completion).
    #[arg(long, default_value_t = 2048)]
    pub ring: u32,
    /// UMEM frames.
    #[arg(long, default_value_t = 8192)]
    pub frames: u32,
    /// UMEM frame size (2048 or 4096).
    #[arg(long, default_value_t = 4096)]
    pub frame_size: u32,
    /// Busy polling (SO_BUSY_POLL 20 us, budget 64, SO_PREFER_BUSY_POLL).
    #[arg(long)]
    pub busy_poll: bool,
    /// XDP_MAX_TX_SKB_BUDGET: descriptors one copy-mode sendto transmits.
    #[arg(long, default_value_t = 256)]
    pub tx_budget: u32,
    /// Pin the thread to this CPU.
    #[arg(long)]
    pub core: Option<usize>,
}

impl XskOpts {
    /// The datapath's configuration for these options.
    pub fn config(&self) -> Result<XskConfig> {
        let bind_mode = match self.bind.as_str() {
            "auto" => BindMode::Auto,
            "copy" => BindMode::ForceCopy,
            "zc" | "zerocopy" => BindMode::ForceZeroCopy,
            b => bail!("--bind {b}: auto|copy|zc"),
        };
        let attach_mode = match self.attach.as_str() {
            "auto" => AttachMode::Auto,
            "native" => AttachMode::Native,
            "generic" => AttachMode::Generic,
            a => bail!("--attach {a}: auto|native|generic"),
        };
        Ok(XskConfig {
            frame_size: self.frame_size,
            frame_count: self.frames,
            rx_ring_size: self.ring,
            tx_ring_size: self.ring,
            fill_ring_size: self.ring,
            comp_ring_size: self.ring,
            batch: self.batch,
            bind_mode,
            attach_mode,
            busy_poll: self.busy_poll.then(BusyPoll::default),
            tx_skb_budget: Some(self.tx_budget),
            ..XskConfig::default()
        })
    }

    /// Opens queue `--queue` of `iface`, and of `peer` as port 1 if given
    /// (l2fwd). `receive`: attach an XDP program that steers every frame of
    /// the queue to the sockets (detached again when the tool exits); a
    /// transmit-only tool passes `false`, attaches nothing, and the host's
    /// stack keeps receiving on the interface (ARP, TCP) while it transmits.
    pub fn open(&self, peer: Option<&str>, receive: bool) -> Result<PerfQueue> {
        if let Some(c) = self.core {
            pin(c)?;
        }
        let cfg = self.config()?;
        let mut specs = vec![PortSpec {
            iface: self.iface.clone(),
            receive,
        }];
        if let Some(p) = peer {
            specs.push(PortSpec {
                iface: p.to_owned(),
                receive,
            });
        }
        let names: Vec<&str> = specs.iter().map(|s| s.iface.as_str()).collect();
        let mut progs = Vec::new();
        if receive {
            let o = AttachOptions {
                mode: cfg.attach_mode,
                persist: false,
                owner: "mtugate-perf".into(),
                ..AttachOptions::default()
            };
            for s in &specs {
                progs.push(
                    PortProgram::attach(&s.iface, &FastPath::SOCKET_ONLY, &o)
                        .with_context(|| format!("XDP program on {}", s.iface))?,
                );
            }
        }
        let refs: Vec<&PortProgram> = progs.iter().collect();
        let q = open_queue(&specs, self.queue, &cfg, &refs)
            .with_context(|| format!("AF_XDP on {} queue {}", names.join(" + "), self.queue))?;
        Ok(PerfQueue { q, _progs: progs })
    }
}

/// A tool's queue and the XDP programs that feed it (dropped after the
/// sockets: the programs are detached when the tool exits).
#[derive(Debug)]
pub struct PerfQueue {
    q: XdpQueue,
    _progs: Vec<PortProgram>,
}

impl std::ops::Deref for PerfQueue {
    type Target = XdpQueue;
    fn deref(&self) -> &XdpQueue {
        &self.q
    }
}

impl std::ops::DerefMut for PerfQueue {
    fn deref_mut(&mut self) -> &mut XdpQueue {
        &mut self.q
    }
}

/// Addresses of generated packets.
#[derive(clap::Args, Debug, Clone)]
pub struct AddrOpts {
    /// Ethernet destination: the far host (wire, bridge) or the router's
    /// port.
    #[arg(long)]
    pub dst_mac: String,
    /// Ethernet source (default: the interface's address).
    #[arg(long)]
    pub src_mac: Option<String>,
    /// IPv4 source.
    #[arg(long, default_value = "192.0.2.1")]
    pub src: Ipv4Addr,
    /// IPv4 destination.
    #[arg(long, default_value = "192.0.2.2")]
    pub dst: Ipv4Addr,
    /// IPv6 source.
    #[arg(long, default_value = "2001:db8:1::1")]
    pub src6: Ipv6Addr,
    /// IPv6 destination.
    #[arg(long, default_value = "2001:db8:1::2")]
    pub dst6: Ipv6Addr,
    /// UDP/TCP source port (SYN profiles pick their own).
    #[arg(long, default_value_t = 9)]
    pub sport: u16,
    /// UDP/TCP destination port.
    #[arg(long, default_value_t = 9)]
    pub dport: u16,
    /// Low bits of the IPv4 source a SYN flood randomises.
    #[arg(long, default_value_t = 8)]
    pub flood_bits: u8,
    /// Seed of the flood's random sources.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl AddrOpts {
    /// The endpoints of the packets sent out of `iface`.
    pub fn endpoints(&self, iface: &str) -> Result<Endpoints> {
        let src_mac = match &self.src_mac {
            Some(m) => parse_mac(m)?,
            None => iface_mac(iface)?,
        };
        Ok(Endpoints {
            src_mac,
            dst_mac: parse_mac(&self.dst_mac)?,
            src4: self.src,
            dst4: self.dst,
            src6: self.src6,
            dst6: self.dst6,
            sport: self.sport,
            dport: self.dport,
            flood_bits: self.flood_bits,
        })
    }
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let v: Vec<u8> = s
        .trim()
        .split(':')
        .map(|x| u8::from_str_radix(x, 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("MAC address {s:?}"))?;
    v.try_into()
        .map_err(|_| anyhow::anyhow!("MAC address {s:?}: six bytes"))
}

/// The MAC address of `iface` (sysfs of the current network namespace).
pub fn iface_mac(iface: &str) -> Result<[u8; 6]> {
    let path = format!("/sys/class/net/{iface}/address");
    let s = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_mac(&s)
}

/// Pins the calling thread to `cpu`.
pub fn pin(cpu: usize) -> Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).with_context(|| format!("CPU {cpu}"))?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .with_context(|| format!("pinning to CPU {cpu}"))
}

/// `CLOCK_REALTIME` in nanoseconds: the clock of the probe stamps, shared
/// by every process and network namespace of the machine and the one the
/// kernel's receive timestamps (`SO_TIMESTAMPNS`) use.
#[inline]
pub fn realtime_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME)
        .expect("CLOCK_REALTIME is always readable");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// Bounds of a run.
#[derive(clap::Args, Debug, Clone)]
pub struct RunOpts {
    /// Stop after this many seconds.
    #[arg(long, short = 'd')]
    pub duration: Option<f64>,
    /// Stop after this many packets (sent by gen/txonly, received by rxdrop).
    #[arg(long, short = 'n')]
    pub count: Option<u64>,
    /// Seconds between progress lines (0: none).
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// Write the summary as JSON to this file ("-": stdout).
    #[arg(long)]
    pub json: Option<String>,
}

impl RunOpts {
    /// Refuses an unbounded run.
    pub fn check(&self) -> Result<()> {
        if self.duration.is_none() && self.count.is_none() {
            bail!("give --duration SECONDS and/or --count PACKETS: every run is bounded");
        }
        if let Some(d) = self.duration {
            if !d.is_finite() || d <= 0.0 || d > 86_400.0 {
                bail!("--duration {d}: 0 < seconds <= 86400");
            }
        }
        Ok(())
    }
}

/// Rate control: how many packets are due at a given time for a target
/// rate, with a burst of at most one batch after a stall (no catching up
/// on lost time).
#[derive(Debug, Clone)]
pub struct Pacer {
    rate: f64,
    origin: Instant,
    credited: f64,
    burst: f64,
}

impl Pacer {
    /// Paces `rate` packets per second from now, bursts up to `burst`.
    pub fn new(rate: f64, burst: usize) -> Pacer {
        Pacer {
            rate,
            origin: Instant::now(),
            credited: 0.0,
            burst: burst.max(1) as f64,
        }
    }

    /// Packets that may be sent now; [`spend`](Self::spend) what is sent.
    #[inline]
    pub fn due(&mut self, now: Instant) -> usize {
        let allowed = now.duration_since(self.origin).as_secs_f64() * self.rate;
        if allowed - self.credited > self.burst {
            // Stalled: forget the backlog beyond one burst.
            self.credited = allowed - self.burst;
        }
        (allowed - self.credited + 1e-6).max(0.0) as usize
    }

    /// Records `n` packets sent.
    #[inline]
    pub fn spend(&mut self, n: usize) {
        self.credited += n as f64;
    }
}

/// One component of a traffic mix: a profile, paced on its own or sharing
/// what is left.
pub struct Component {
    /// The profile.
    pub profile: Profile,
    builder: Builder,
    pacer: Option<Pacer>,
    /// Packets of this component put into the TX ring.
    pub sent: u64,
}

/// Parses `NAME[@PPS]` items separated by commas: each profile with a rate
/// is paced on its own; the others share the rest (round robin), at
/// `--rate` or flat out.
pub fn parse_mix(
    spec: &str,
    size: Option<usize>,
    ep: &Endpoints,
    batch: usize,
    seed: u64,
) -> Result<Vec<Component>> {
    let mut out = Vec::new();
    for (i, item) in spec.split(',').enumerate() {
        let (name, rate) = match item.split_once('@') {
            Some((n, r)) => {
                let r: f64 = r
                    .parse()
                    .with_context(|| format!("rate of {n}: {r:?} is not a number"))?;
                if !r.is_finite() || r <= 0.0 {
                    bail!("rate of {n} must be > 0");
                }
                (n, Some(r))
            }
            None => (item, None),
        };
        let profile = Profile::parse(name.trim(), size).map_err(anyhow::Error::msg)?;
        let builder =
            Builder::new(&profile, ep, seed.wrapping_add(i as u64)).map_err(anyhow::Error::msg)?;
        out.push(Component {
            profile,
            builder,
            pacer: rate.map(|r| Pacer::new(r, batch)),
            sent: 0,
        });
    }
    if out.is_empty() {
        bail!("empty profile list");
    }
    Ok(out)
}

/// Counters of one second (or interval) of a run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// Seconds since the start, at the end of the interval.
    pub t: f64,
    /// Packets per second transmitted (completed) in the interval.
    pub tx_pps: f64,
    /// Packets per second received in the interval.
    pub rx_pps: f64,
}

/// What a run did, printed at the end and written as JSON.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// gen, txonly, rxdrop or l2fwd.
    pub mode: String,
    /// Interfaces (port 0, then the peer).
    pub ifaces: Vec<String>,
    /// Queue id.
    pub queue: u32,
    /// "zero-copy" or "copy".
    pub xsk_mode: String,
    /// Why zero-copy was not obtained, if it was tried.
    pub zero_copy_error: Option<String>,
    /// Seconds the loop ran.
    pub seconds: f64,
    /// Frames put into TX rings.
    pub tx_packets: u64,
    /// Frames the kernel completed (transmitted).
    pub tx_completed: u64,
    /// Frames received.
    pub rx_packets: u64,
    /// Completed TX frames per second over the whole run.
    pub tx_pps: f64,
    /// Received frames per second over the whole run.
    pub rx_pps: f64,
    /// Median of the per-interval TX rates.
    pub tx_pps_median: f64,
    /// Median of the per-interval RX rates.
    pub rx_pps_median: f64,
    /// Per-interval rates.
    pub samples: Vec<Sample>,
    /// Per profile: (name, packets sent).
    pub profiles: Vec<(String, u64)>,
    /// Stamped frames received out of order (sequence lower than one seen).
    pub reordered: u64,
    /// Highest sequence number received + 1 - stamped frames received
    /// (frames missing in the received sequence), if stamps were seen.
    pub seq_gaps: Option<u64>,
    /// `sendto` kicks issued.
    pub tx_kicks: u64,
    /// Kernel AF_XDP statistics of port 0.
    pub kernel: XskStats,
    /// Kernel AF_XDP statistics of port 1 (l2fwd).
    pub kernel_b: Option<XskStats>,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

impl Summary {
    fn start(mode: &str, q: &XdpQueue) -> Summary {
        let r = q.backend().report();
        Summary {
            mode: mode.into(),
            ifaces: (0..q.port_count()).map(|p| q.name(p).into()).collect(),
            queue: q.queue_id(),
            xsk_mode: mode_name(r.mode).into(),
            zero_copy_error: r.zero_copy_error.clone(),
            ..Summary::default()
        }
    }

    fn finish(&mut self, seconds: f64) {
        self.seconds = seconds;
        let s = seconds.max(1e-9);
        self.tx_pps = self.tx_completed as f64 / s;
        self.rx_pps = self.rx_packets as f64 / s;
        // The last interval may be partial: leave it out of the medians
        // unless it is the only one.
        let full: Vec<Sample> = if self.samples.len() > 1 {
            self.samples[..self.samples.len() - 1].to_vec()
        } else {
            self.samples.clone()
        };
        self.tx_pps_median = median(full.iter().map(|x| x.tx_pps).collect());
        self.rx_pps_median = median(full.iter().map(|x| x.rx_pps).collect());
    }

    /// Prints the human summary and writes the JSON if asked.
    pub fn emit(&self, json: Option<&str>) -> Result<()> {
        eprintln!(
            "{}: {} queue {} ({} mode): {:.2} s, tx {} ({:.0} pps, median {:.0}), rx {} ({:.0} pps, median {:.0})",
            self.mode,
            self.ifaces.join("+"),
            self.queue,
            self.xsk_mode,
            self.seconds,
            self.tx_completed,
            self.tx_pps,
            self.tx_pps_median,
            self.rx_packets,
            self.rx_pps,
            self.rx_pps_median
        );
        for (name, n) in &self.profiles {
            eprintln!("  {name}: {n} sent");
        }
        if let Some(g) = self.seq_gaps {
            eprintln!("  stamps: {g} missing, {} reordered", self.reordered);
        }
        eprintln!("  kernel AF_XDP stats: {:?}", self.kernel);
        if let Some(k) = &self.kernel_b {
            eprintln!("  kernel AF_XDP stats (port 1): {k:?}");
        }
        if let Some(path) = json {
            let text = serde_json::to_string_pretty(self)?;
            if path == "-" {
                println!("{text}");
            } else {
                std::fs::write(path, text + "\n").with_context(|| format!("writing {path}"))?;
            }
        }
        Ok(())
    }
}

/// "zero-copy" or "copy".
pub fn mode_name(m: XskMode) -> &'static str {
    match m {
        XskMode::ZeroCopy => "zero-copy",
        XskMode::Copy => "copy",
    }
}

/// Logs what the queue obtained.
pub fn log_setup(tool: &str, q: &XdpQueue) {
    let r = q.backend().report();
    let names: Vec<&str> = (0..q.port_count()).map(|p| q.name(p)).collect();
    eprintln!(
        "{tool}: {} queue {}: {} mode, sndbuf {:?}, tx budget {:?}",
        names.join("+"),
        q.queue_id(),
        mode_name(r.mode),
        r.sndbuf,
        r.tx_skb_budget
    );
    if let Some(e) = &r.zero_copy_error {
        eprintln!("{tool}: zero-copy unavailable, copy mode ({e})");
    }
}

/// Progress reporting every `interval` seconds.
struct Ticker {
    interval: f64,
    start: Instant,
    next: f64,
    last_t: f64,
    last_tx: u64,
    last_rx: u64,
    label: &'static str,
}

impl Ticker {
    fn new(interval: f64, start: Instant, label: &'static str) -> Ticker {
        let interval = if interval > 0.0 { interval } else { 1.0 };
        Ticker {
            interval,
            start,
            next: interval,
            last_t: 0.0,
            last_tx: 0,
            last_rx: 0,
            label,
        }
    }

    /// Closes an interval if one has passed (or `force`), recording it.
    fn tick(
        &mut self,
        now: Instant,
        tx: u64,
        rx: u64,
        force: bool,
        out: &mut Summary,
        print: bool,
    ) {
        let t = now.duration_since(self.start).as_secs_f64();
        if t < self.next && !force {
            return;
        }
        let dt = (t - self.last_t).max(1e-9);
        let s = Sample {
            t,
            tx_pps: (tx - self.last_tx) as f64 / dt,
            rx_pps: (rx - self.last_rx) as f64 / dt,
        };
        if print && dt > 1e-3 {
            eprintln!(
                "{} [{t:7.2} s] tx {:>10.0} pps   rx {:>10.0} pps",
                self.label, s.tx_pps, s.rx_pps
            );
        }
        if dt > 1e-3 {
            out.samples.push(s);
        }
        self.last_t = t;
        self.last_tx = tx;
        self.last_rx = rx;
        while self.next <= t {
            self.next += self.interval;
        }
    }
}

/// How long a run waits at its end for outstanding TX completions.
const DRAIN_WAIT: Duration = Duration::from_millis(200);

fn deadline(run: &RunOpts, start: Instant) -> Option<Instant> {
    run.duration.map(|d| start + Duration::from_secs_f64(d))
}

/// The generator as a poll-loop handler: at the start of every round it
/// fills and queues as many frames as the pacers allow (at most a batch).
struct Gen<'a> {
    mix: &'a mut [Component],
    global: Option<Pacer>,
    paced: Vec<usize>,
    shared: Vec<usize>,
    rr: usize,
    seq: u64,
    limit: u64,
    plan: Vec<usize>,
    batch: usize,
    now: Instant,
    /// Nothing was due this round: the caller gives the CPU away.
    idle: bool,
    err: Option<anyhow::Error>,
}

impl<B: Backend> Handler<B> for Gen<'_> {
    fn begin_round(&mut self, q: &mut Queue<B>) {
        // Which components get the next packets.
        self.plan.clear();
        let room = (self.batch as u64).min(self.limit.saturating_sub(self.seq)) as usize;
        for &i in &self.paced {
            let p = self.mix[i].pacer.as_mut().expect("paced");
            let n = p.due(self.now).min(room - self.plan.len());
            self.plan.extend(std::iter::repeat_n(i, n));
        }
        if !self.shared.is_empty() {
            let left = room - self.plan.len();
            let n = match &mut self.global {
                Some(g) => g.due(self.now).min(left),
                None => left,
            };
            for _ in 0..n {
                self.plan.push(self.shared[self.rr]);
                self.rr = (self.rr + 1) % self.shared.len();
            }
        }
        // Paced and nothing due: give the CPU to whatever else must run on
        // it (ksoftirqd, the receiver thread) rather than spin.
        self.idle = self.plan.is_empty();
        let ts = realtime_ns();
        let mut pushed = 0;
        for &i in &self.plan {
            let Some(mut f) = q.alloc() else { break };
            let c = &mut self.mix[i];
            let buf = q.buf_mut(&mut f);
            if buf.len() < c.builder.next_len() {
                q.free(f);
                self.err = Some(anyhow::anyhow!(
                    "{}: a {}-byte frame does not fit a UMEM frame (use --frame-size 4096)",
                    c.profile.name,
                    c.builder.next_len()
                ));
                return;
            }
            let n = c.builder.fill(buf, self.seq, ts);
            q.set_len(&mut f, n);
            match q.tx_push(0, f) {
                Ok(()) => {
                    self.seq += 1;
                    c.sent += 1;
                    pushed += 1;
                    if let Some(p) = &mut c.pacer {
                        p.spend(1);
                    } else if let Some(g) = &mut self.global {
                        g.spend(1);
                    }
                }
                Err(f) => {
                    q.free(f);
                    break;
                }
            }
        }
        if pushed < self.plan.len() && !self.shared.is_empty() {
            // Rewind the round robin over what was not sent.
            let unsent = self.plan[pushed..]
                .iter()
                .filter(|i| self.shared.contains(i))
                .count();
            let n = self.shared.len();
            self.rr = (self.rr + n - unsent % n) % n;
        }
    }

    fn on_batch(&mut self, q: &mut Queue<B>, _port: usize, frames: &mut Vec<Frame>) {
        // A transmit-only queue receives nothing; drop whatever comes.
        for f in frames.drain(..) {
            q.free(f);
        }
    }
}

/// `gen` and `txonly`: transmit the mix on port 0 until a bound is reached.
/// `rate`: overall rate of the components without their own rate (None:
/// flat out).
pub fn transmit(
    tool: &'static str,
    q: &mut XdpQueue,
    mix: &mut [Component],
    rate: Option<f64>,
    run: &RunOpts,
    stop: &AtomicBool,
) -> Result<Summary> {
    let batch = q.batch();
    let mut out = Summary::start(tool, q);
    let start = Instant::now();
    for c in mix.iter_mut() {
        if let Some(p) = &mut c.pacer {
            *p = Pacer::new(p.rate, batch);
        }
    }
    let end = deadline(run, start);
    let mut ticker = Ticker::new(run.interval, start, tool);
    let mut gen = Gen {
        global: rate.map(|r| Pacer::new(r, batch)),
        paced: (0..mix.len()).filter(|&i| mix[i].pacer.is_some()).collect(),
        shared: (0..mix.len()).filter(|&i| mix[i].pacer.is_none()).collect(),
        mix,
        rr: 0,
        seq: 0,
        limit: run.count.unwrap_or(u64::MAX),
        plan: Vec::with_capacity(batch),
        batch,
        now: start,
        idle: false,
        err: None,
    };
    let mut poller = Poller::new(q, Idle::Spin);
    let mut turn = 0u64;
    loop {
        turn += 1;
        gen.now = Instant::now();
        if turn % 64 == 0 {
            if stop.load(Ordering::Relaxed) || end.is_some_and(|e| gen.now >= e) {
                break;
            }
            let done = q.counters(0).tx_completed;
            ticker.tick(gen.now, done, 0, false, &mut out, run.interval > 0.0);
        }
        if gen.seq >= gen.limit {
            break;
        }
        poller.round(q, &mut gen);
        if let Some(e) = gen.err.take() {
            return Err(e);
        }
        if gen.idle {
            std::thread::yield_now();
        }
    }
    poller.drain(q, DRAIN_WAIT);
    let elapsed = start.elapsed();
    let c = q.counters(0);
    out.tx_packets = c.tx_frames;
    out.tx_completed = c.tx_completed;
    out.tx_kicks = c.tx_kicks;
    ticker.tick(start + elapsed, c.tx_completed, 0, true, &mut out, false);
    out.profiles = gen
        .mix
        .iter()
        .map(|c| (c.profile.name.clone(), c.sent))
        .collect();
    out.kernel = q.stats(0).unwrap_or_default();
    out.finish(elapsed.as_secs_f64());
    q.check_conservation(0)?;
    Ok(out)
}

/// Tracks the stamps of received frames: missing and reordered ones.
#[derive(Debug, Default, Clone)]
pub struct SeqTrack {
    /// Stamped frames seen.
    pub seen: u64,
    /// Highest sequence number + 1.
    pub next: u64,
    /// Frames with a sequence number below the highest seen.
    pub reordered: u64,
}

impl SeqTrack {
    /// Records sequence number `seq`.
    #[inline]
    pub fn see(&mut self, seq: u64) {
        self.seen += 1;
        if seq < self.next {
            self.reordered += 1;
        } else {
            self.next = seq + 1;
        }
    }

    /// Frames missing below the highest sequence number seen.
    pub fn missing(&self) -> u64 {
        self.next.saturating_sub(self.seen)
    }
}

/// `rxdrop` as a handler: read the stamps of what port 0 receives, drop.
struct Sink {
    track: SeqTrack,
    rx: u64,
}

impl<B: Backend> Handler<B> for Sink {
    fn on_batch(&mut self, q: &mut Queue<B>, _port: usize, frames: &mut Vec<Frame>) {
        self.rx += frames.len() as u64;
        for f in frames.drain(..) {
            if let Some((seq, _)) = pkt::read_stamp(q.data(&f)) {
                self.track.see(seq);
            }
            q.free(f);
        }
    }
}

/// `rxdrop`: receive on port 0, read the stamps, drop.
pub fn rxdrop(q: &mut XdpQueue, run: &RunOpts, stop: &AtomicBool) -> Result<Summary> {
    let mut out = Summary::start("rxdrop", q);
    let start = Instant::now();
    let end = deadline(run, start);
    let limit = run.count.unwrap_or(u64::MAX);
    let mut ticker = Ticker::new(run.interval, start, "rxdrop");
    let mut sink = Sink {
        track: SeqTrack::default(),
        rx: 0,
    };
    let mut poller = Poller::new(
        q,
        Idle::SpinThenWait {
            polls: 4096,
            wait_ms: 10,
        },
    );
    let mut turn = 0u64;
    loop {
        turn += 1;
        if turn % 64 == 0 {
            let now = Instant::now();
            if stop.load(Ordering::Relaxed) || end.is_some_and(|e| now >= e) {
                break;
            }
            ticker.tick(now, 0, sink.rx, false, &mut out, run.interval > 0.0);
        }
        if sink.rx >= limit {
            break;
        }
        let n = poller.round(q, &mut sink);
        poller.idle_wait(q, n);
    }
    let elapsed = start.elapsed();
    ticker.tick(start + elapsed, 0, sink.rx, true, &mut out, false);
    out.rx_packets = sink.rx;
    if sink.track.seen > 0 {
        out.seq_gaps = Some(sink.track.missing());
        out.reordered = sink.track.reordered;
    }
    out.kernel = q.stats(0).unwrap_or_default();
    out.finish(elapsed.as_secs_f64());
    q.check_conservation(0)?;
    Ok(out)
}

/// How `l2fwd` forwards.
#[derive(Debug, Clone, Copy)]
pub struct FwdOpts {
    /// Two ports: 0 to 1 and 1 to 0, frames untouched. Otherwise one port:
    /// swap the MAC addresses and send back out of port 0 (as xdpsock does).
    pub two_ports: bool,
    /// `sched_yield` after an empty poll: lets a NAPI thread pinned to the
    /// same CPU run.
    pub yield_when_idle: bool,
    /// `poll` the sockets (timeout 0) on every turn: with busy polling
    /// (`--busy-poll`) the kernel runs the receive NAPI of the interface
    /// inside that call, on the forwarder's CPU.
    pub poll_every_turn: bool,
}

/// The raw forwarder, optionally driving the NAPI by `poll` every round.
struct Fwd {
    inner: Forward,
    poll: bool,
}

impl<B: Backend> Handler<B> for Fwd {
    #[inline]
    fn begin_round(&mut self, q: &mut Queue<B>) {
        if self.poll {
            // Counted and logged like any idle wait would be: a failure
            // here only means this round did not drive the NAPI.
            if let Err(e) = q.wait_rx(0) {
                eprintln!("l2fwd: poll: {e}");
                self.poll = false;
            }
        }
    }

    #[inline]
    fn on_batch(&mut self, q: &mut Queue<B>, port: usize, frames: &mut Vec<Frame>) {
        self.inner.on_batch(q, port, frames);
    }
}

/// `l2fwd`: forward every received frame, no processing: mtugate's poll
/// loop with the no-op [`Forward`] handler.
pub fn l2fwd(q: &mut XdpQueue, o: FwdOpts, run: &RunOpts, stop: &AtomicBool) -> Result<Summary> {
    let mut out = Summary::start("l2fwd", q);
    let start = Instant::now();
    let end = deadline(run, start);
    let mut ticker = Ticker::new(run.interval, start, "l2fwd");
    let mut fwd = Fwd {
        inner: Forward {
            pair: if o.two_ports {
                vec![Some(1), Some(0)]
            } else {
                vec![Some(0)]
            },
            swap_macs: !o.two_ports,
            refused: 0,
        },
        poll: o.poll_every_turn,
    };
    let idle = if o.yield_when_idle {
        Idle::Yield
    } else {
        Idle::Spin
    };
    let mut poller = Poller::new(q, idle);
    let ports = q.port_count();
    let sum = |q: &XdpQueue, f: fn(mtugate_xsk::PortCounters) -> u64| -> u64 {
        (0..ports).map(|p| f(q.counters(p))).sum()
    };
    loop {
        if poller.rounds % 1024 == 0 {
            let now = Instant::now();
            if stop.load(Ordering::Relaxed) || end.is_some_and(|e| now >= e) {
                break;
            }
            let rx = sum(q, |c| c.rx_frames);
            let tx = sum(q, |c| c.tx_completed);
            ticker.tick(now, tx, rx, false, &mut out, run.interval > 0.0);
        }
        let n = poller.round(q, &mut fwd);
        poller.idle_wait(q, n);
    }
    poller.drain(q, DRAIN_WAIT);
    let elapsed = start.elapsed();
    out.rx_packets = sum(q, |c| c.rx_frames);
    out.tx_packets = sum(q, |c| c.tx_frames);
    out.tx_completed = sum(q, |c| c.tx_completed);
    out.tx_kicks = sum(q, |c| c.tx_kicks);
    ticker.tick(
        start + elapsed,
        out.tx_completed,
        out.rx_packets,
        true,
        &mut out,
        false,
    );
    out.kernel = q.stats(0).unwrap_or_default();
    out.kernel_b = (ports > 1).then(|| q.stats(1).ok()).flatten();
    if fwd.inner.refused > 0 {
        eprintln!(
            "l2fwd: {} frames dropped on a full TX ring",
            fwd.inner.refused
        );
    }
    out.finish(elapsed.as_secs_f64());
    q.check_conservation(0)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacer_gives_the_rate_and_caps_bursts() {
        let mut p = Pacer::new(1000.0, 64);
        let t0 = p.origin;
        assert_eq!(p.due(t0), 0);
        let t = t0 + Duration::from_millis(10);
        assert_eq!(p.due(t), 10);
        p.spend(10);
        assert_eq!(p.due(t), 0);
        // A 1 s stall: one burst, not 1000 packets.
        let t = t0 + Duration::from_millis(1010);
        assert_eq!(p.due(t), 64);
        p.spend(64);
        assert_eq!(p.due(t + Duration::from_millis(5)), 5);
    }

    #[test]
    fn seq_track_counts_missing_and_reordered() {
        let mut s = SeqTrack::default();
        for q in [0, 1, 2, 5, 4, 6] {
            s.see(q);
        }
        assert_eq!(s.seen, 6);
        assert_eq!(s.missing(), 1); // 3
        assert_eq!(s.reordered, 1); // 4
    }

    #[test]
    fn mix_parses_rates() {
        let ep = Endpoints::default();
        let m = parse_mix("syn-flood,udp64@1000,syn-legit@500", None, &ep, 64, 1).unwrap();
        assert_eq!(m.len(), 3);
        assert!(m[0].pacer.is_none() && m[1].pacer.is_some());
        assert!(parse_mix("udp64@x", None, &ep, 64, 1).is_err());
        assert!(parse_mix("udp64@-1", None, &ep, 64, 1).is_err());
        assert!(parse_mix("bogus", None, &ep, 64, 1).is_err());
    }

    #[test]
    fn median_of_samples() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(vec![]), 0.0);
    }
}
