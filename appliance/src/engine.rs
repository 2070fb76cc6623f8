//! The poll-mode engine: one run-to-completion worker per queue id, pinned
//! to its core, owning that queue's AF_XDP sockets (one per port) over one
//! shared UMEM.
//!
//! A worker turns mtugate's one poll loop ([`mtugate_xsk::Poller`]) with
//! the pipeline as its handler: read the clock once per round, take a batch
//! from each port's RX ring, run the pipeline over it, push forwards and
//! fragments to the egress port's TX ring and ICMP errors back to the
//! ingress port's, free drops, flush TX (kicking the kernel only when its
//! need-wakeup flag asks), reap completions, refill the fill rings. No
//! allocation, lock, syscall (beyond the wakeups the rings ask for) or log
//! line per packet; I/O errors are counted per port by the queue and logged
//! at a bounded rate by the poller.
//!
//! The worker is generic over the ring backend, so its loop is tested on
//! the in-memory rings ([`mtugate_xsk::MemBackend`]) exactly as it runs on
//! the kernel's.
//!
//! Management (the `mtugate-mgmt` crate) costs a round one atomic load and
//! compare ([`WorkerLink::signalled`]); only when the management thread
//! asks does the worker, between two rounds (a batch boundary), apply a new
//! configuration and publish its counters (plus the kernel's AF_XDP
//! statistics: one `getsockopt` per port per interval). With statistics on,
//! a round that found work also reads the clock once more, after flushing
//! TX: the round's time from taking its frames off RX to putting them on
//! TX is their dwell time, and divided by the frames, the cost per packet;
//! both go into HdrHistograms.

use mtugate_datapath::pipeline::DropReason;
use mtugate_datapath::pipeline::{
    process_frame, Budgets, Config, ExtraFrames, PortId, State, Verdict,
};
use mtugate_datapath::pmtu::LearnTables;
use mtugate_datapath::router::{self, Route};
use mtugate_mgmt::{WorkerCounters, WorkerLink};
use mtugate_xsk::meta::{RouteMeta, Why, META_LEN};
use mtugate_xsk::{ring::Backend, Frame, FrameCounts, Handler, Idle, Poller, Queue};
use nix::sys::socket::{
    sendto, socket, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn,
    SockaddrIn6,
};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Spare frames a worker keeps at hand for fragments: enough for a
/// 1500-byte packet at any MTU >= 68 several times over.
const STASH: usize = 64;
/// The worker's idle policy: give the core away (`sched_yield`) after every
/// empty round, and after 256 of them sleep in `poll(2)` until a frame
/// arrives, at most 10 ms (so the stop flag is seen promptly). With the XDP
/// fast path the worker sees only the exceptions and is idle most of the
/// time, while the NAPI thread that runs the fast path may share its core:
/// spinning there (4096 empty rounds, before) took that thread's CPU.
pub const IDLE: Idle = Idle::YieldThenWait {
    polls: 256,
    wait_ms: 10,
};
/// How long a stopping worker waits to hand its last snapshot over.
const FINAL_PUBLISH_WAIT: Duration = Duration::from_millis(200);
/// How long a stopping worker waits for the kernel to complete its
/// outstanding transmissions.
const DRAIN_WAIT: Duration = Duration::from_millis(200);

/// What a worker hands back when it stops.
#[derive(Debug, Clone)]
pub struct WorkerReport {
    /// Queue id.
    pub queue: u32,
    /// Everything it counted (the same record it publishes to the
    /// management thread).
    pub counters: WorkerCounters,
    /// Where the UMEM frames were at the end.
    pub frames: FrameCounts,
    /// Frame conservation check result at the end (`None` when it held).
    pub conservation_error: Option<String>,
}

/// Free frames lent to the pipeline for fragments.
struct Extra<'a, B: Backend> {
    q: &'a Queue<B>,
    stash: &'a mut Vec<Frame>,
    out: &'a mut Vec<Frame>,
}

impl<B: Backend> ExtraFrames for Extra<'_, B> {
    fn available(&self) -> usize {
        self.stash.len()
    }

    fn next_buf(&mut self) -> Option<&mut [u8]> {
        let f = self.stash.last_mut()?;
        Some(self.q.buf_mut(f))
    }

    fn commit(&mut self, len: usize) {
        if let Some(mut f) = self.stash.pop() {
            self.q.set_len(&mut f, len);
            self.out.push(f);
        }
    }
}

/// The worker's handler: the pipeline and what it counts.
struct Pipe {
    cfg: Arc<Config>,
    state: State,
    stash: Vec<Frame>,
    frags: Vec<Frame>,
    tx_ring_full_drops: Vec<u64>,
    tx_packets: Vec<u64>,
    tx_bytes: Vec<u64>,
    link: WorkerLink,
    start: Instant,
    now: u64,
    timing: bool,
    /// Router mode: the interface index of each port (by port index); the
    /// kernel's decision comes in front of each frame.
    router_ports: Option<Vec<u32>>,
    /// Router mode: the kernel's output, for SYNs toward a neighbour it has
    /// not resolved yet.
    kernel: Option<KernelOutput>,
}

/// Router mode: the kernel's own output path (raw IP sockets that send a
/// whole IP packet as it is, `IPPROTO_RAW`). A SYN toward a next hop the
/// kernel has not resolved yet arrives without the next hop's MAC address:
/// the worker clamps it (one hop less) and sends it this way, and the
/// kernel resolves the neighbour and transmits it, as it does for its own
/// packets. Without it the kernel would forward that SYN unclamped. One
/// syscall per such SYN: the first toward a new neighbour, rare.
#[derive(Debug)]
pub struct KernelOutput {
    v4: OwnedFd,
    v6: OwnedFd,
}

impl KernelOutput {
    /// Opens the two sockets (needs CAP_NET_RAW).
    pub fn open() -> nix::Result<KernelOutput> {
        let raw = |family| {
            socket(
                family,
                SockType::Raw,
                SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
                SockProtocol::Raw,
            )
        };
        Ok(KernelOutput {
            v4: raw(AddressFamily::Inet)?,
            v6: raw(AddressFamily::Inet6)?,
        })
    }

    /// Sends the IP packet `ip` (from its header on) through the kernel;
    /// whether the kernel took it.
    fn send(&self, ip: &[u8]) -> bool {
        let flags = MsgFlags::MSG_DONTWAIT;
        match ip.first().map(|b| b >> 4) {
            Some(4) if ip.len() >= 20 => {
                let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
                let to = SockaddrIn::from(SocketAddrV4::new(dst, 0));
                sendto(self.v4.as_raw_fd(), ip, &to, flags).is_ok()
            }
            Some(6) if ip.len() >= 40 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&ip[24..40]);
                let to = SockaddrIn6::from(SocketAddrV6::new(Ipv6Addr::from(a), 0, 0, 0));
                sendto(self.v6.as_raw_fd(), ip, &to, flags).is_ok()
            }
            _ => false,
        }
    }
}

/// Router mode: what the XDP stage's metadata says to do with a frame.
enum Decision {
    /// Run the pipeline with this route; `true`: hand what it forwards to
    /// the kernel's output (no neighbour yet).
    Route(Route, bool),
    Expired(Option<[u8; 4]>, Option<[u8; 16]>),
    Unrouted,
}

/// The Ethernet header of a router-mode frame (never VLAN-tagged: the XDP
/// stage gives those to the kernel).
const ETHERNET_LEN: usize = 14;

/// Reads the kernel's decision in front of `f` (router mode).
fn decide<B: Backend>(q: &Queue<B>, f: &Frame, ingress: PortId, ports: &[u32]) -> Decision {
    let ipv6 = q.data(f).get(12..14) == Some(&[0x86, 0xdd]);
    let Some(m) = q
        .in_front(f, META_LEN)
        .and_then(|b| RouteMeta::parse(b, ipv6))
    else {
        return Decision::Unrouted;
    };
    if m.why == Why::TtlExpired {
        return Decision::Expired(m.src4, m.src6);
    }
    let egress = match ports.iter().position(|&i| i == m.egress_ifindex) {
        Some(p) => PortId::new(p),
        // An IPv6 error carries its source where the next hop would be:
        // it goes back out of the ingress port.
        None if ipv6 && m.why == Why::TooBig => ingress,
        None => return Decision::Unrouted,
    };
    Decision::Route(
        Route {
            egress,
            next_hop: m.dst_mac,
            src_mac: m.src_mac,
            mtu: m.mtu,
            reverse_mtu: m.reverse_mtu,
            advmss: m.advmss,
            icmp_v4: m.src4,
            icmp_v6: m.src6,
        },
        m.why == Why::NoNeighbour,
    )
}

impl Pipe {
    fn top_up_stash<B: Backend>(&mut self, q: &mut Queue<B>) {
        while self.stash.len() < STASH {
            match q.alloc() {
                Some(f) => self.stash.push(f),
                None => break,
            }
        }
    }

    /// Router mode: sends the IP packet of `f` through the kernel's output
    /// (no neighbour yet); whether the kernel took it.
    #[cold]
    fn to_kernel<B: Backend>(&self, q: &Queue<B>, f: &Frame) -> bool {
        match (&self.kernel, q.data(f).get(ETHERNET_LEN..)) {
            (Some(k), Some(ip)) => k.send(ip),
            _ => false,
        }
    }

    #[inline]
    fn tx<B: Backend>(&mut self, q: &mut Queue<B>, port: usize, f: Frame) {
        let len = f.len() as u64;
        match q.tx_push(port, f) {
            Ok(()) => {
                self.tx_packets[port] += 1;
                self.tx_bytes[port] += len;
            }
            Err(f) => {
                self.tx_ring_full_drops[port] += 1;
                q.free(f);
            }
        }
    }
}

impl<B: Backend> Handler<B> for Pipe {
    #[inline]
    fn begin_round(&mut self, _q: &mut Queue<B>) {
        // One clock read per round of batches.
        self.now = self.start.elapsed().as_nanos() as u64;
    }

    #[inline]
    fn on_batch(&mut self, q: &mut Queue<B>, port: usize, frames: &mut Vec<Frame>) {
        if self.stash.len() < STASH / 2 {
            self.top_up_stash(q);
        }
        let ingress = PortId::new(port);
        for mut f in frames.drain(..) {
            let len = f.len();
            let decision = self
                .router_ports
                .as_deref()
                .map(|ports| decide(q, &f, ingress, ports));
            let via_kernel = matches!(decision, Some(Decision::Route(_, true)));
            let verdict = {
                let buf = q.buf_mut(&mut f);
                let mut extra = Extra {
                    q,
                    stash: &mut self.stash,
                    out: &mut self.frags,
                };
                let (now, cfg, state) = (self.now, &*self.cfg, &mut self.state);
                match decision {
                    None => process_frame(buf, len, ingress, now, cfg, state, &mut extra),
                    Some(Decision::Route(r, _)) => {
                        router::process_routed(buf, len, ingress, &r, now, cfg, state, &mut extra)
                    }
                    Some(Decision::Expired(v4, v6)) => {
                        router::time_exceeded(buf, len, ingress, v4, v6, now, cfg, state)
                    }
                    Some(Decision::Unrouted) => router::drop_unrouted(len, ingress, state),
                }
            };
            match verdict {
                Verdict::Forward { len, .. } if via_kernel => {
                    // Router mode, no neighbour yet: the kernel's output
                    // (untagged Ethernet: the XDP stage passes VLAN frames).
                    q.set_len(&mut f, len);
                    if !self.to_kernel(q, &f) {
                        // Counted as what it became: a drop, not a forward.
                        let c = &mut self.state.counters[port];
                        c.forwarded -= 1;
                        c.drops[DropReason::NoRoute as usize] += 1;
                    }
                    q.free(f);
                }
                Verdict::Forward { len, egress } => {
                    q.set_len(&mut f, len);
                    self.tx(q, egress.index(), f);
                }
                Verdict::Reply { len } => {
                    q.set_len(&mut f, len);
                    self.tx(q, port, f);
                }
                Verdict::Fragments { first_len, .. } if via_kernel => {
                    // A SYN that grew past the route MTU (an inserted MSS
                    // option, DF clear): every fragment the same way.
                    q.set_len(&mut f, first_len);
                    let mut all_sent = self.to_kernel(q, &f);
                    q.free(f);
                    let mut frags = std::mem::take(&mut self.frags);
                    for g in frags.drain(..) {
                        all_sent &= self.to_kernel(q, &g);
                        q.free(g);
                    }
                    self.frags = frags;
                    if !all_sent {
                        let c = &mut self.state.counters[port];
                        c.drops[DropReason::NoRoute as usize] += 1;
                        c.fragmented -= 1;
                    }
                    self.top_up_stash(q);
                }
                Verdict::Fragments {
                    first_len, egress, ..
                } => {
                    q.set_len(&mut f, first_len);
                    self.tx(q, egress.index(), f);
                    let mut frags = std::mem::take(&mut self.frags);
                    for g in frags.drain(..) {
                        self.tx(q, egress.index(), g);
                    }
                    self.frags = frags;
                    self.top_up_stash(q);
                }
                Verdict::Drop(_) => q.free(f),
            }
        }
    }

    #[inline]
    fn end_round(&mut self, _q: &mut Queue<B>, received: usize) {
        if self.timing && received > 0 {
            // Latency (statistics on, a round with work): one more clock
            // read, once the round's frames are on their TX rings. The round
            // took its frames off RX at `now`: each waited the whole round
            // (dwell), and the round cost this much per frame.
            let dwell = (self.start.elapsed().as_nanos() as u64).saturating_sub(self.now);
            let n = received as u64;
            self.link.record(n, dwell / n, dwell);
        }
    }
}

/// What the workers of one appliance share: the budgets of the whole
/// appliance, and the epoch of the time they give the pipeline (so that
/// one worker's `now` means the same instant as another's).
#[derive(Debug, Clone)]
pub struct Shared {
    budgets: Budgets,
    epoch: Instant,
}

impl Shared {
    /// Full budgets for `cfg`, from now.
    pub fn new(cfg: &Config) -> Shared {
        Shared {
            budgets: Budgets::new(cfg.settings(), 0),
            epoch: Instant::now(),
        }
    }
}

/// One worker: a queue, the poll loop's state, and the pipeline handler
/// with its scratch vectors (allocated once, at start).
pub struct Worker<B: Backend> {
    q: Queue<B>,
    poller: Poller,
    pipe: Pipe,
    /// The record published to the management thread, filled in place
    /// (its vectors keep their capacity: publishing allocates nothing).
    snap: WorkerCounters,
}

impl<B: Backend> Worker<B> {
    /// A lone worker for `q`, with pipeline state seeded by `seed`, linked
    /// to the management thread by `link` ([`WorkerLink::detached`] for
    /// none), with budgets of its own.
    pub fn new(q: Queue<B>, cfg: Arc<Config>, seed: u64, link: WorkerLink, idle: Idle) -> Self {
        let shared = Shared::new(&cfg);
        Self::sharing(q, cfg, seed, link, idle, &shared)
    }

    /// One of several workers: they draw on the same budgets (ICMP errors,
    /// SYN rewrites) and read time from the same epoch.
    pub fn sharing(
        q: Queue<B>,
        cfg: Arc<Config>,
        seed: u64,
        link: WorkerLink,
        idle: Idle,
        shared: &Shared,
    ) -> Self {
        let now = shared.epoch.elapsed().as_nanos() as u64;
        let state = State::with_budgets(&cfg, now, seed, shared.budgets.clone());
        let n = q.port_count();
        let poller = Poller::new(&q, idle);
        Worker {
            poller,
            snap: WorkerCounters::new(n),
            pipe: Pipe {
                cfg,
                state,
                stash: Vec::with_capacity(STASH),
                frags: Vec::with_capacity(STASH),
                tx_ring_full_drops: vec![0; n],
                tx_packets: vec![0; n],
                tx_bytes: vec![0; n],
                timing: link.stats_enabled(),
                link,
                start: shared.epoch,
                now,
                router_ports: None,
                kernel: None,
            },
            q,
        }
    }

    /// Learns path MTUs into `tables`, shared with the other workers
    /// ([`State::share_learning`]).
    pub fn share_learning(&mut self, tables: Arc<LearnTables>) {
        self.pipe.state.share_learning(tables);
    }

    /// Router mode: frames come with the kernel's forwarding decision in
    /// front of them; `ifindexes[i]` is the interface of port `i`; `kernel`
    /// takes the SYNs toward unresolved neighbours (without it they are
    /// dropped, counted as `no_route`).
    #[must_use]
    pub fn routing(mut self, ifindexes: Vec<u32>, kernel: Option<KernelOutput>) -> Self {
        self.pipe.router_ports = Some(ifindexes);
        self.pipe.kernel = kernel;
        self
    }

    /// Everything this worker counts, for the management thread.
    fn snapshot(&mut self) {
        let (s, q) = (&mut self.snap, &self.q);
        s.pipeline.clone_from(&self.pipe.state.counters);
        s.io.clear();
        s.io.extend((0..q.port_count()).map(|p| q.counters(p)));
        s.kernel.clear();
        s.kernel
            .extend((0..q.port_count()).map(|p| q.stats(p).ok()));
        s.tx_packets.clone_from(&self.pipe.tx_packets);
        s.tx_bytes.clone_from(&self.pipe.tx_bytes);
        s.tx_ring_full_drops
            .clone_from(&self.pipe.tx_ring_full_drops);
        s.polls = self.poller.rounds;
        s.busy_polls = self.poller.busy_rounds;
        s.frames_in_flight = q.frames_in_flight() as u64;
        s.frames_total = q.frame_count() as u64;
        let (names, rules) = self.pipe.state.rule_counters();
        if !Arc::ptr_eq(&s.rule_names, names) {
            s.rule_names = Arc::clone(names);
        }
        s.rules.clear();
        s.rules.extend_from_slice(rules);
        s.pmtu = self.pipe.state.pmtu_counters(&self.pipe.cfg, self.pipe.now);
    }

    /// What the management thread asked for: a new configuration (applied
    /// here, between two rounds) and a snapshot. Off the fast path.
    #[cold]
    #[inline(never)]
    fn service(&mut self) {
        if let Some(r) = self.pipe.link.take_reload() {
            self.pipe.cfg = r.config;
            self.pipe.state.reconfigure(&self.pipe.cfg, self.pipe.now);
            self.pipe.link.ack(r.generation);
        }
        if self.pipe.link.stats_enabled() {
            self.snapshot();
            self.pipe.link.publish(&self.snap);
        }
    }

    /// Turns one round of the poll loop and, if the management thread
    /// asked, services it after the round; returns the frames received.
    #[inline]
    pub fn round(&mut self) -> usize {
        let n = self.poller.round(&mut self.q, &mut self.pipe);
        if self.pipe.link.signalled() {
            self.service();
        }
        n
    }

    /// The queue (tests drive the in-memory kernel through it).
    pub fn queue_mut(&mut self) -> &mut Queue<B> {
        &mut self.q
    }

    /// The configuration in force.
    pub fn config(&self) -> &Arc<Config> {
        &self.pipe.cfg
    }

    /// The pipeline state (counters).
    pub fn state(&self) -> &State {
        &self.pipe.state
    }

    /// Polls until `stop` is set, then drains and reports.
    pub fn run(mut self, stop: &AtomicBool) -> WorkerReport {
        self.pipe.top_up_stash(&mut self.q);
        self.poller.refill(&mut self.q);
        while !stop.load(Ordering::Relaxed) {
            let n = self.round();
            self.poller.idle_wait(&mut self.q, n);
        }
        self.finish()
    }

    /// Flushes what is staged, waits (briefly, bounded) for the kernel to
    /// complete outstanding transmissions, returns the spare frames and
    /// checks that every frame is accounted for.
    pub fn finish(mut self) -> WorkerReport {
        self.poller.drain(&mut self.q, DRAIN_WAIT);
        for f in self.pipe.stash.drain(..) {
            self.q.free(f);
        }
        let conservation_error = self.q.check_conservation(0).err().map(|e| e.to_string());
        self.snapshot();
        let counters = self.snap.clone();
        if self.pipe.link.stats_enabled() {
            self.pipe.link.publish_final(&counters, FINAL_PUBLISH_WAIT);
        }
        WorkerReport {
            queue: self.q.queue_id(),
            counters,
            frames: self.q.frame_counts(),
            conservation_error,
        }
    }
}
