//! What management adds to a worker's round of batches, against the
//! pipeline work of that round measured in the same run (the peer): a
//! batch of 64 pass-through frames (64-byte TCP ACKs) through
//! `process_frame`, as the worker runs it.
//!
//! - `stats off`: the one atomic load and compare of the epoch
//!   (`WorkerLink::signalled`), all a round pays with `mgmt.interval_ms = 0`.
//! - `stats on`: that, plus the extra clock read and the two HdrHistogram
//!   records of a round with work.
//! - `publish`: a publication (copy of the counters and the snapshot swap),
//!   once per interval; not per round. (The worker also reads the kernel's
//!   AF_XDP statistics then, two `getsockopt`s, not measured here.)
//!
//! Run: `cargo bench -p mtugate-mgmt --bench link`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use mtugate_datapath::pipeline::{process_frame, Config, ExtraFrames, PortId, Settings, State};
use mtugate_mgmt::link::{LatencyHists, WorkerCounters, WorkerLink};
use std::hint::black_box;
use std::time::Instant;

const BATCH: usize = 64;

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

/// A 64-byte IPv4 TCP ACK (Ethernet II, no options), checksums irrelevant
/// on the pass-through path.
fn ack64() -> Vec<u8> {
    let mut f = vec![0u8; 2048];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip.copy_from_slice(&[
        0x45, 0, 0, 50, 0, 1, 0x40, 0, 64, 6, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2,
    ]);
    let tcp = &mut f[34..54];
    tcp.copy_from_slice(&[
        0x9c, 0x40, 0x01, 0xbb, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x10, 0xfa, 0xf0, 0, 0, 0, 0,
    ]);
    f
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("worker round");
    g.throughput(Throughput::Elements(BATCH as u64));

    let cfg = Config::new(Settings::default()).unwrap();
    let mut state = State::new(&cfg, 0, 1);
    let frames: Vec<Vec<u8>> = (0..BATCH).map(|_| ack64()).collect();
    g.bench_function("peer: pipeline, 64 pass-through frames", |b| {
        b.iter_batched_ref(
            || frames.clone(),
            |fs| {
                for f in fs.iter_mut() {
                    black_box(process_frame(
                        f,
                        64,
                        PortId::new(0),
                        1,
                        &cfg,
                        &mut state,
                        &mut NoFrames,
                    ));
                }
            },
            BatchSize::SmallInput,
        )
    });

    let mut link = WorkerLink::detached();
    g.bench_function("stats off: epoch check", |b| {
        b.iter(|| black_box(link.signalled()))
    });

    let mut hists = LatencyHists::new();
    let start = Instant::now();
    let now = start.elapsed().as_nanos() as u64;
    g.bench_function(
        "stats on: epoch check + 1 clock read + 2 histogram records",
        |b| {
            b.iter(|| {
                let dwell = ((start.elapsed().as_nanos() as u64) - now) % 100_000;
                hists.record(BATCH as u64, dwell / BATCH as u64, dwell);
                black_box(link.signalled())
            })
        },
    );
    g.finish();

    let mut g = c.benchmark_group("per interval");
    let counters = WorkerCounters::new(2);
    let (mut live, mgmt) = mtugate_mgmt::link::loopback();
    g.bench_function(
        "publish: copy counters, swap snapshot (+ hand it back)",
        |b| {
            b.iter(|| {
                black_box(live.publish(&counters));
                mgmt.recycle(|_| {});
            })
        },
    );
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
