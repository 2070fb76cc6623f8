//! The one poll loop: every AF_XDP user in mtugate (the appliance's
//! workers, `mtugate-perf`'s modes, the example forwarder) turns the same
//! round, and differs only in its [`Handler`]. So the "raw AF_XDP ceiling"
//! a benchmark reports is this loop with a handler that does nothing but
//! forward.
//!
//! A round, in this order:
//!
//! 1. [`Handler::begin_round`] (a generator queues its frames here);
//! 2. for each receiving port: take a batch off its RX ring and hand it to
//!    [`Handler::on_batch`], which must transmit or free every frame;
//! 3. flush every port's TX staging into its ring, kicking the kernel where
//!    the ring asks for it;
//! 4. [`Handler::end_round`] (latency: the frames of the round are on
//!    their TX rings now);
//! 5. take completed TX frames back; give free frames to the fill rings.
//!
//! RX before TX keeps a frame's dwell to one round; reaping and refilling
//! last gives the frames freed by this round back to the kernel at once.
//! I/O errors are counted by the [`Queue`] and logged here at most once a
//! second per port and operation, with the count since the last line: an
//! interface that disappears (`ENXIO`) is seen without a log flood.

use std::time::{Duration, Instant};

use crate::queue::{Frame, Queue};
use crate::ring::Backend;

/// What a poll loop does with frames.
pub trait Handler<B: Backend> {
    /// Called first in every round, before anything is received.
    #[inline]
    fn begin_round(&mut self, _q: &mut Queue<B>) {}

    /// The frames of one RX batch from `port`. Every frame must leave
    /// `frames` through [`Queue::tx_push`] or [`Queue::free`] (drain it).
    fn on_batch(&mut self, q: &mut Queue<B>, port: usize, frames: &mut Vec<Frame>);

    /// Called after TX was flushed, with the number of frames the round
    /// received.
    #[inline]
    fn end_round(&mut self, _q: &mut Queue<B>, _received: usize) {}
}

/// What an idle loop does between empty rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idle {
    /// Poll again at once (busy polling owns the core).
    Spin,
    /// `sched_yield` after every empty round: a NAPI thread or softirq
    /// sharing the core runs at once.
    Yield,
    /// Spin for `polls` empty rounds, then sleep in `poll(2)` until a frame
    /// arrives or `wait_ms` passes.
    SpinThenWait {
        /// Empty rounds before sleeping.
        polls: u32,
        /// Longest sleep, so a stop flag is seen promptly.
        wait_ms: i32,
    },
    /// `sched_yield` after every empty round, and after `polls` of them
    /// sleep in `poll(2)` as above: a worker that shares its core with the
    /// NAPI thread doing the fast path's work leaves it at once.
    YieldThenWait {
        /// Empty rounds before sleeping.
        polls: u32,
        /// Longest sleep, so a stop flag is seen promptly.
        wait_ms: i32,
    },
}

/// Rate limit of the error log: one line per port and operation per
/// interval.
const LOG_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, Default)]
struct LogSlot {
    last: Option<Instant>,
    suppressed: u64,
}

/// The loop's state: the RX batch vector (allocated once), the idle
/// policy, round counters and the rate-limited error log.
#[derive(Debug)]
pub struct Poller {
    rx: Vec<Frame>,
    idle: Idle,
    idle_rounds: u32,
    log: Vec<[LogSlot; 3]>,
    /// Rounds turned.
    pub rounds: u64,
    /// Rounds that received at least one frame.
    pub busy_rounds: u64,
}

const OP_TX: usize = 0;
const OP_FILL: usize = 1;
const OP_WAIT: usize = 2;
const OP_NAMES: [&str; 3] = [
    "TX kick (sendto)",
    "fill ring wakeup (poll)",
    "RX wait (poll)",
];

impl Poller {
    /// A poller for `q` with the given idle policy.
    pub fn new<B: Backend>(q: &Queue<B>, idle: Idle) -> Poller {
        Poller {
            rx: Vec::with_capacity(q.batch()),
            idle,
            idle_rounds: 0,
            log: vec![[LogSlot::default(); 3]; q.port_count()],
            rounds: 0,
            busy_rounds: 0,
        }
    }

    /// The idle policy.
    pub fn idle(&self) -> Idle {
        self.idle
    }

    #[cold]
    fn log_error<B: Backend>(&mut self, q: &Queue<B>, port: usize, op: usize, e: &std::io::Error) {
        let slot = &mut self.log[port][op];
        let now = Instant::now();
        if slot
            .last
            .is_some_and(|t| now.duration_since(t) < LOG_INTERVAL)
        {
            slot.suppressed += 1;
            return;
        }
        let more = std::mem::take(&mut slot.suppressed);
        slot.last = Some(now);
        tracing::warn!(
            port = q.name(port),
            queue = q.queue_id(),
            "{} failed: {e} ({more} more since the last report)",
            OP_NAMES[op]
        );
    }

    /// Flushes the TX staging of every port; errors are counted by the
    /// queue and logged here.
    pub fn flush<B: Backend>(&mut self, q: &mut Queue<B>) {
        for p in 0..q.port_count() {
            if let Err(e) = q.flush_tx(p) {
                self.log_error(q, p, OP_TX, &e);
            }
        }
    }

    /// Gives free frames to the fill rings; errors are counted by the
    /// queue and logged here.
    pub fn refill<B: Backend>(&mut self, q: &mut Queue<B>) {
        if let Err(e) = q.refill() {
            self.log_error(q, e.port, OP_FILL, &e.source);
        }
    }

    /// One round (see the module docs); returns the frames received. Does
    /// not idle: see [`idle_wait`](Self::idle_wait).
    #[inline]
    pub fn round<B: Backend, H: Handler<B>>(&mut self, q: &mut Queue<B>, h: &mut H) -> usize {
        h.begin_round(q);
        let mut received = 0;
        for port in 0..q.port_count() {
            if !q.receives(port) {
                continue;
            }
            let n = q.rx_batch(port, &mut self.rx);
            if n > 0 {
                received += n;
                h.on_batch(q, port, &mut self.rx);
                // A handler that kept frames in the vector would leak them
                // on the next batch: free what is left, loudly in debug.
                debug_assert!(self.rx.is_empty(), "handler left frames in its batch");
                for f in self.rx.drain(..) {
                    q.free(f);
                }
            }
        }
        self.flush(q);
        h.end_round(q, received);
        q.reap_completions();
        self.refill(q);
        self.rounds += 1;
        if received > 0 {
            self.busy_rounds += 1;
        }
        received
    }

    /// After a round that received `received` frames: idles as the policy
    /// says when it received nothing.
    #[inline]
    pub fn idle_wait<B: Backend>(&mut self, q: &mut Queue<B>, received: usize) {
        if received > 0 {
            self.idle_rounds = 0;
            return;
        }
        match self.idle {
            Idle::Spin => {}
            Idle::Yield => std::thread::yield_now(),
            Idle::SpinThenWait { polls, wait_ms } | Idle::YieldThenWait { polls, wait_ms } => {
                self.idle_rounds += 1;
                if self.idle_rounds >= polls {
                    if let Err(e) = q.wait_rx(wait_ms) {
                        self.log_error(q, 0, OP_WAIT, &e);
                    }
                } else if matches!(self.idle, Idle::YieldThenWait { .. }) {
                    std::thread::yield_now();
                }
            }
        }
    }

    /// Flushes what is staged and waits (bounded by `limit`) for the kernel
    /// to complete every outstanding transmission; `true` when nothing is
    /// left in flight on the TX side.
    pub fn drain<B: Backend>(&mut self, q: &mut Queue<B>, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            self.flush(q);
            q.reap_completions();
            let c = q.frame_counts();
            let pending: usize = c.tx_or_comp.iter().chain(&c.tx_staged).sum();
            if pending == 0 {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// A handler that forwards every frame untouched from port `i` to port
/// `pair[i]` (`l2fwd`), or drops it when the pair is `None`: the raw
/// ceiling the benchmarks compare the appliance with.
#[derive(Debug, Clone)]
pub struct Forward {
    /// Egress port per ingress port; `None` drops.
    pub pair: Vec<Option<usize>>,
    /// Swap the Ethernet source and destination addresses (a one-port
    /// reflector, as xdpsock's l2fwd does).
    pub swap_macs: bool,
    /// Frames refused by a full TX ring (freed).
    pub refused: u64,
}

impl Forward {
    /// Forwards port `i`'s frames to `pair[i]`, untouched.
    pub fn new(pair: Vec<Option<usize>>) -> Forward {
        Forward {
            pair,
            swap_macs: false,
            refused: 0,
        }
    }
}

impl<B: Backend> Handler<B> for Forward {
    #[inline]
    fn on_batch(&mut self, q: &mut Queue<B>, port: usize, frames: &mut Vec<Frame>) {
        let to = self.pair.get(port).copied().flatten();
        for mut f in frames.drain(..) {
            let Some(to) = to else {
                q.free(f);
                continue;
            };
            if self.swap_macs && f.len() >= 12 {
                let b = q.buf_mut(&mut f);
                for i in 0..6 {
                    b.swap(i, i + 6);
                }
            }
            if let Err(f) = q.tx_push(to, f) {
                self.refused += 1;
                q.free(f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::{MemBackend, MemConfig, MemDrop};

    fn queue(cfg: MemConfig) -> Queue<MemBackend> {
        Queue::new(MemBackend::new(&["a", "b"], cfg), 0, 16, 8)
    }

    fn frame(i: u32, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        v[..4].copy_from_slice(&i.to_be_bytes());
        v[6] = 0xaa;
        v
    }

    #[test]
    fn forwards_every_frame_in_order_and_conserves() {
        let mut q = queue(MemConfig::default());
        let mut p = Poller::new(&q, Idle::Spin);
        let mut h = Forward::new(vec![Some(1), Some(0)]);
        p.round(&mut q, &mut h); // first refill
        let mut expect = Vec::new();
        for i in 0..200u32 {
            let f = frame(i, 60 + i as usize);
            if q.backend_mut().inject(0, &f).is_ok() {
                expect.push(f);
            }
            if i % 10 == 9 {
                p.round(&mut q, &mut h);
            }
        }
        for _ in 0..4 {
            p.round(&mut q, &mut h);
        }
        let sent = std::mem::take(q.backend_mut().sent(1));
        assert_eq!(sent, expect);
        assert_eq!(
            expect.len(),
            200,
            "a 64-entry fill ring absorbs bursts of 10"
        );
        assert_eq!(q.counters(0).rx_frames, 200);
        assert_eq!(q.counters(1).tx_completed, 200);
        q.check_conservation(0).unwrap();
    }

    #[test]
    fn full_tx_ring_refuses_and_frees() {
        let cfg = MemConfig {
            tx_ring: 16,
            transmit_on_kick: false,
            ..MemConfig::default()
        };
        let mut q = queue(cfg);
        let mut p = Poller::new(&q, Idle::Spin);
        let mut h = Forward::new(vec![Some(1), None]);
        p.round(&mut q, &mut h);
        // 16 per round, nobody transmits: the TX ring (16) and the
        // staging area (16) fill up, the rest is refused.
        for round in 0..4 {
            for i in 0..16 {
                q.backend_mut()
                    .inject(0, &frame(round * 16 + i, 64))
                    .unwrap();
            }
            p.round(&mut q, &mut h);
        }
        assert_eq!(q.counters(1).tx_frames, 16);
        assert_eq!(h.refused, 64 - 32);
        assert_eq!(q.counters(1).tx_full, 64 - 32);
        q.check_conservation(0).unwrap();
        // The kernel catches up: everything staged goes out.
        for _ in 0..4 {
            q.backend_mut().transmit(1, usize::MAX);
            p.round(&mut q, &mut h);
        }
        q.backend_mut().transmit(1, usize::MAX);
        p.round(&mut q, &mut h);
        assert_eq!(q.backend_mut().sent(1).len(), 32);
        let c = q.check_conservation(0).unwrap();
        assert_eq!(c.tx_or_comp, vec![0, 0]);
    }

    #[test]
    fn empty_fill_ring_drops_in_the_kernel_and_recovers() {
        let cfg = MemConfig {
            frame_count: 64,
            rx_ring: 32,
            ..MemConfig::default()
        };
        let mut q = Queue::new(MemBackend::new(&["a", "b"], cfg), 0, 16, 8);
        let mut p = Poller::new(&q, Idle::Spin);
        let mut h = Forward::new(vec![Some(1), Some(0)]);
        p.round(&mut q, &mut h);
        let mut drops = 0;
        for i in 0..100 {
            match q.backend_mut().inject(0, &frame(i, 64)) {
                Ok(()) => {}
                Err(MemDrop::FillEmpty) => drops += 1,
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(drops, 100 - 32, "only the fill ring's 32 frames were there");
        assert_eq!(q.stats(0).unwrap().rx_fill_ring_empty_descs, drops);
        for _ in 0..4 {
            p.round(&mut q, &mut h);
        }
        assert_eq!(q.backend_mut().sent(1).len(), 32);
        q.backend_mut().inject(0, &frame(1000, 64)).unwrap();
        q.check_conservation(0).unwrap();
    }

    #[test]
    fn kick_errors_are_counted_and_frames_kept() {
        let mut q = queue(MemConfig::default());
        let mut p = Poller::new(&q, Idle::Spin);
        let mut h = Forward::new(vec![Some(1), Some(0)]);
        p.round(&mut q, &mut h);
        q.backend_mut().set_kick_error(1, Some(libc::ENXIO));
        for i in 0..5 {
            q.backend_mut().inject(0, &frame(i, 64)).unwrap();
            p.round(&mut q, &mut h);
        }
        let c = q.counters(1);
        assert_eq!(c.tx_kick_errors, 5);
        assert_eq!(c.last_errno, libc::ENXIO);
        assert_eq!(c.tx_kicks, 0);
        assert!(q.backend_mut().sent(1).is_empty());
        q.check_conservation(0).unwrap();
        // The interface is back: the frames kept in the ring go out.
        q.backend_mut().set_kick_error(1, None);
        p.round(&mut q, &mut h);
        assert_eq!(q.backend_mut().sent(1).len(), 5);
        assert!(p.drain(&mut q, Duration::from_millis(10)));
        q.check_conservation(0).unwrap();
    }

    #[test]
    fn transmit_only_port_gets_no_fill_frames() {
        let mut b = MemBackend::new(&["a", "b"], MemConfig::default());
        b.set_receives(1, false);
        let mut q = Queue::new(b, 0, 16, 8);
        let mut p = Poller::new(&q, Idle::Spin);
        let mut h = Forward {
            pair: vec![Some(1), Some(0)],
            swap_macs: true,
            refused: 0,
        };
        p.round(&mut q, &mut h);
        let c = q.check_conservation(0).unwrap();
        assert_eq!(c.fill_or_rx, vec![64, 0]);
        assert_eq!(
            q.backend_mut().inject(1, &frame(0, 64)),
            Err(MemDrop::NotReceiving)
        );
        let mut f = frame(7, 64);
        f[..12].copy_from_slice(&[1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2]);
        q.backend_mut().inject(0, &f).unwrap();
        p.round(&mut q, &mut h);
        let sent = std::mem::take(q.backend_mut().sent(1));
        assert_eq!(sent.len(), 1);
        assert_eq!(&sent[0][..12], &[2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1]);
        assert_eq!(&sent[0][12..], &f[12..]);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "expected Held")]
    fn double_free_is_caught_by_the_ownership_tracker() {
        let mut q = queue(MemConfig::default());
        let f = q.alloc().unwrap();
        let forged = q.frame(f.addr(), 0);
        q.free(f);
        q.free(forged);
    }
}
