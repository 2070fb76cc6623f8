//! `latency`: stamped UDP probes at a fixed rate out of one interface
//! (AF_XDP), through a device under test, received on the far side by a
//! UDP socket with kernel receive timestamps (`SO_TIMESTAMPNS`).
//!
//! One-way latency = kernel receive time - transmit stamp, both
//! `CLOCK_REALTIME` of the same machine (the far side may be another
//! network namespace: `--rx-netns`). It covers the transmit path, the
//! device under test and the far side's driver up to the moment the kernel
//! takes the frame in (`netif_rx`), not the receiving application's
//! scheduling. Values go into an HDR histogram (3 significant digits), are
//! printed as p50/p90/p99/p99.9/max with the loss, and written as an
//! `.hgrm` percentile distribution and an SVG plot.

use std::{
    io::IoSliceMut,
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use mtugate_xsk::stop_flag_on_signals;
use nix::sys::socket::{self, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage};
use serde::Serialize;

use crate::{
    livegen,
    pkt::{self, Kind},
    plot,
    xio::{self, AddrOpts, RunOpts, SeqTrack, XskOpts},
};

/// Arguments of `latency`.
#[derive(clap::Args, Debug)]
pub struct LatencyArgs {
    #[command(flatten)]
    xsk: XskOpts,
    #[command(flatten)]
    run: RunOpts,
    #[command(flatten)]
    addr: AddrOpts,
    /// Probes per second.
    #[arg(long, short = 'r')]
    rate: f64,
    /// Probe profile (a UDP one: udp64, udp64-v6, udp1500, imix...).
    #[arg(long, short = 'p', default_value = "udp64")]
    profile: String,
    /// Frame size of the probes.
    #[arg(long)]
    size: Option<usize>,
    /// UDP port the probes go to and the receiver listens on.
    #[arg(long, default_value_t = 7777)]
    rx_port: u16,
    /// Network namespace of the receiver (a name under /run/netns);
    /// default: this one.
    #[arg(long)]
    rx_netns: Option<String>,
    /// Write the percentile distribution (.hgrm, microseconds) here.
    #[arg(long)]
    hgrm: Option<String>,
    /// Write a latency-by-percentile plot (SVG) here.
    #[arg(long)]
    svg: Option<String>,
    /// Name of this system in the outputs.
    #[arg(long, default_value = "device under test")]
    label: String,
    /// Other traffic sent along with the probes, `NAME[@PPS]`
    /// comma-separated (as `gen --profile`; without a rate: flat out), to
    /// the ordinary destination port (--dport), e.g. `syn-flood`.
    #[arg(long)]
    extra: Option<String>,
    /// Send the probes with `livegen` (raw XDP frames, paced and stamped
    /// by this compiled `xdp_livegen.c`) instead of AF_XDP: the device
    /// under test then receives them as from a NIC's ring. IPv4 UDP
    /// probes, no --extra; needs --duration.
    #[arg(long)]
    livegen_obj: Option<std::path::PathBuf>,
}

/// What a latency run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LatencySummary {
    /// System name.
    pub label: String,
    /// Probes per second asked for.
    pub rate: f64,
    /// Probes transmitted (completed by the kernel).
    pub sent: u64,
    /// Probes received.
    pub received: u64,
    /// 1 - received / sent.
    pub loss: f64,
    /// Probes received out of order.
    pub reordered: u64,
    /// Median, µs.
    pub p50_us: f64,
    /// 90th percentile, µs.
    pub p90_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// 99.9th percentile, µs.
    pub p999_us: f64,
    /// Largest, µs.
    pub max_us: f64,
    /// Mean, µs.
    pub mean_us: f64,
    /// (percentile, µs) points of the distribution, for plots.
    pub percentiles: Vec<(f64, f64)>,
    /// Packets of the other traffic (`--extra`) sent along.
    pub extra_sent: u64,
}

/// Summary numbers of a histogram of nanoseconds.
pub fn summarize(label: &str, rate: f64, sent: u64, h: &Histogram<u64>) -> LatencySummary {
    let us = |v: u64| v as f64 / 1000.0;
    let received = h.len();
    LatencySummary {
        label: label.into(),
        rate,
        sent,
        received,
        loss: if sent == 0 {
            0.0
        } else {
            (1.0 - received as f64 / sent as f64).max(0.0)
        },
        reordered: 0,
        p50_us: us(h.value_at_quantile(0.5)),
        p90_us: us(h.value_at_quantile(0.9)),
        p99_us: us(h.value_at_quantile(0.99)),
        p999_us: us(h.value_at_quantile(0.999)),
        max_us: us(h.max()),
        mean_us: h.mean() / 1000.0,
        percentiles: points(h),
        extra_sent: 0,
    }
}

/// (percentile, µs) points: 5 per halving of the distance to 100 %.
pub fn points(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    h.iter_quantiles(5)
        .map(|v| {
            (
                v.quantile_iterated_to() * 100.0,
                v.value_iterated_to() as f64 / 1000.0,
            )
        })
        .collect()
}

/// The HdrHistogram percentile distribution text (the `.hgrm` format that
/// HdrHistogram's plotters read), values in microseconds.
pub fn hgrm(h: &Histogram<u64>) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            let q = v.quantile_iterated_to();
            let inv = if q < 1.0 {
                format!("{:14.2}", 1.0 / (1.0 - q))
            } else {
                format!("{:>14}", "inf")
            };
            let _ = writeln!(
                o,
                "{:12.3} {:2.12} {:10} {inv}",
                v.value_iterated_to() as f64 / 1000.0,
                q,
                v.count_since_last_iteration()
            );
        }
    }
    let _ = writeln!(
        o,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        h.mean() / 1000.0,
        h.stdev() / 1000.0
    );
    let _ = writeln!(
        o,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        h.max() as f64 / 1000.0,
        h.len()
    );
    let _ = writeln!(
        o,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        // 3 significant digits: 2 * 10^3 rounded up to a power of two.
        2048
    );
    o
}

/// A histogram for nanosecond latencies up to 60 s.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}

/// Moves the calling thread into network namespace `name`.
pub fn enter_netns(name: &str) -> Result<()> {
    let path = format!("/run/netns/{name}");
    let f = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("entering network namespace {name}"))
}

struct RxResult {
    hist: Histogram<u64>,
    track: SeqTrack,
}

/// The receiver: binds, reports readiness, records until `done` and no
/// probe for 300 ms.
fn receive(
    netns: Option<String>,
    port: u16,
    v6: bool,
    done: Arc<AtomicBool>,
    ready: mpsc::Sender<Result<()>>,
) -> Result<RxResult> {
    let setup = || -> Result<UdpSocket> {
        if let Some(ns) = &netns {
            enter_netns(ns)?;
        }
        let addr: SocketAddr = if v6 {
            format!("[::]:{port}").parse()?
        } else {
            format!("0.0.0.0:{port}").parse()?
        };
        let s = UdpSocket::bind(addr).with_context(|| format!("binding the receiver to {addr}"))?;
        socket::setsockopt(&s, sockopt::ReceiveTimestampns, &true).context("SO_TIMESTAMPNS")?;
        // Room for bursts; RcvBufForce needs CAP_NET_ADMIN, else best effort.
        if socket::setsockopt(&s, sockopt::RcvBufForce, &(32 << 20)).is_err() {
            let _ = socket::setsockopt(&s, sockopt::RcvBuf, &(32 << 20));
        }
        s.set_read_timeout(Some(Duration::from_millis(50)))?;
        Ok(s)
    };
    let sock = match setup() {
        Ok(s) => {
            let _ = ready.send(Ok(()));
            s
        }
        Err(e) => {
            let msg = format!("{e:#}");
            let _ = ready.send(Err(e));
            bail!("receiver: {msg}");
        }
    };
    let mut hist = new_histogram();
    let mut track = SeqTrack::default();
    let mut buf = vec![0u8; 9216];
    let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
    let mut last = Instant::now();
    loop {
        let r = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            socket::recvmsg::<SockaddrStorage>(
                sock.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::empty(),
            )
            .map(|msg| {
                let mut kts = None;
                if let Ok(cm) = msg.cmsgs() {
                    for c in cm {
                        if let ControlMessageOwned::ScmTimestampns(t) = c {
                            kts = Some(t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64);
                        }
                    }
                }
                (msg.bytes, kts)
            })
        };
        match r {
            Ok((n, kts)) => {
                let Some((seq, tx)) = pkt::stamp_of(&buf[..n]) else {
                    continue;
                };
                let rx = kts.unwrap_or_else(xio::realtime_ns);
                track.see(seq);
                hist.saturating_record(rx.saturating_sub(tx).max(1));
                last = Instant::now();
            }
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
            Err(e) => bail!("receiver: recvmsg: {e}"),
        }
        if done.load(Ordering::Relaxed) && last.elapsed() > Duration::from_millis(300) {
            break;
        }
    }
    Ok(RxResult { hist, track })
}

/// Runs `latency`.
pub fn run(a: LatencyArgs) -> Result<()> {
    a.run.check()?;
    if !a.rate.is_finite() || a.rate <= 0.0 {
        bail!("--rate must be > 0");
    }
    let mut addr = a.addr.clone();
    addr.dport = a.rx_port;
    let ep = addr.endpoints(&a.xsk.iface)?;
    if let Some(obj) = &a.livegen_obj {
        if a.extra.is_some() {
            bail!("--livegen-obj sends probes only: no --extra");
        }
        let Some(secs) = a.run.duration else {
            bail!("--livegen-obj needs --duration");
        };
        let frame = livegen::frame(&a.profile, &ep, addr.seed)?;
        let live = livegen::Live {
            obj,
            iface: &a.xsk.iface,
            frame: &frame,
            rate: Some(a.rate),
            stamp: true,
            batch: livegen::DEFAULT_BATCH,
            duration: secs,
        };
        let probe = |stop: &AtomicBool| -> Result<(u64, u64)> {
            let r = livegen::send(&live, stop)?;
            eprintln!(
                "latency: livegen sent {} probes in {:.2} s ({} held back by the pacing)",
                r.sent, r.seconds, r.held
            );
            Ok((r.sent, 0))
        };
        return measure(&a, false, probe);
    }
    let spec = format!("{}@{}", a.profile, a.rate);
    let mut mix = xio::parse_mix(&spec, a.size, &ep, a.xsk.batch as usize, addr.seed)?;
    if mix[0].profile.kind != Kind::Udp {
        bail!("latency probes are UDP: {} is not", a.profile);
    }
    if let Some(extra) = &a.extra {
        let ep_extra = a.addr.endpoints(&a.xsk.iface)?;
        mix.extend(xio::parse_mix(
            extra,
            None,
            &ep_extra,
            a.xsk.batch as usize,
            addr.seed.wrapping_add(100),
        )?);
    }
    let v6 = mix[0].profile.family == pkt::Family::V6;
    let probe = |stop: &AtomicBool| -> Result<(u64, u64)> {
        let mut qp = a.xsk.open(None, false)?;
        xio::log_setup("latency", &qp);
        let tx = xio::transmit("latency", &mut qp, &mut mix, None, &a.run, stop)?;
        tx.emit(None)?;
        // Loss counts probes only: what the first component sent.
        Ok((mix[0].sent, mix[1..].iter().map(|c| c.sent).sum()))
    };
    measure(&a, v6, probe)
}

/// The receiver in its namespace, `probe` sending (returns the probes and
/// the other frames it sent), then the summary and its outputs.
fn measure(
    a: &LatencyArgs,
    v6: bool,
    probe: impl FnOnce(&AtomicBool) -> Result<(u64, u64)>,
) -> Result<()> {
    let stop = stop_flag_on_signals()?;
    let done = Arc::new(AtomicBool::new(false));
    let (tx_ready, rx_ready) = mpsc::channel();
    let rx_thread = {
        let done = done.clone();
        let ns = a.rx_netns.clone();
        let port = a.rx_port;
        std::thread::Builder::new()
            .name("latency-rx".into())
            .spawn(move || receive(ns, port, v6, done, tx_ready))?
    };
    match rx_ready.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let _ = rx_thread.join();
            return Err(e);
        }
        Err(_) => bail!("receiver thread died"),
    }
    let sent = probe(stop);
    done.store(true, Ordering::Relaxed);
    let rx = rx_thread
        .join()
        .map_err(|_| anyhow::anyhow!("receiver thread panicked"))??;
    let (sent, extra_sent) = sent?;
    let mut s = summarize(&a.label, a.rate, sent, &rx.hist);
    s.reordered = rx.track.reordered;
    s.extra_sent = extra_sent;
    eprintln!(
        "latency {}: {} probes at {:.0}/s, {} received (loss {:.3} %, {} reordered); \
         µs p50 {:.1} p90 {:.1} p99 {:.1} p99.9 {:.1} max {:.1}",
        s.label,
        s.sent,
        s.rate,
        s.received,
        s.loss * 100.0,
        s.reordered,
        s.p50_us,
        s.p90_us,
        s.p99_us,
        s.p999_us,
        s.max_us
    );
    if let Some(p) = &a.hgrm {
        std::fs::write(p, hgrm(&rx.hist)).with_context(|| format!("writing {p}"))?;
    }
    if let Some(p) = &a.svg {
        let series = [plot::Series {
            label: s.label.clone(),
            points: s.percentiles.clone(),
        }];
        let title = format!("One-way latency at {:.0} probes/s", a.rate);
        std::fs::write(p, plot::svg(&title, &series, false))
            .with_context(|| format!("writing {p}"))?;
    }
    if let Some(path) = &a.run.json {
        let text = serde_json::to_string_pretty(&s)?;
        if path == "-" {
            println!("{text}");
        } else {
            std::fs::write(path, text + "\n").with_context(|| format!("writing {path}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_and_hgrm_of_a_known_distribution() {
        let mut h = new_histogram();
        for i in 1..=1000u64 {
            h.record(i * 1000).unwrap(); // 1..1000 µs
        }
        let s = summarize("x", 100.0, 1010, &h);
        assert_eq!(s.received, 1000);
        assert!((s.loss - 10.0 / 1010.0).abs() < 1e-9);
        assert!((s.p50_us - 500.0).abs() <= 1.0, "{}", s.p50_us);
        assert!((s.p99_us - 990.0).abs() <= 1.0, "{}", s.p99_us);
        assert!((s.max_us - 1000.0).abs() <= 1.0);
        let text = hgrm(&h);
        let mut lines = text.lines();
        assert!(lines.next().unwrap().contains("1/(1-Percentile)"));
        let rows: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && l.split_whitespace().count() == 4)
            .skip(1)
            .collect();
        assert!(rows.len() > 20);
        // Percentiles rise, counts add up to the total.
        let total: u64 = rows
            .iter()
            .map(|r| r.split_whitespace().nth(2).unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(total, 1000);
        assert!(text.contains("Total count    =         1000"));
        assert!(!s.percentiles.is_empty());
        assert!(s.percentiles.windows(2).all(|w| w[0].0 <= w[1].0));
    }
}
