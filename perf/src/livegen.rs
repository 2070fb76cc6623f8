//! `livegen`: the lab's XDP-fed generator. One frame, built like `gen`'s,
//! handed to `BPF_PROG_TEST_RUN` in live-frames mode
//! (`BPF_F_TEST_XDP_LIVE_FRAMES`, Linux 5.18+) with a program
//! (`deploy/perf/xdp_livegen.c`) that redirects it out of an interface.
//! The kernel runs the program on page-pool copies of the frame in batches
//! and transmits them with the driver's `ndo_xdp_xmit`: on a veth the peer
//! receives `xdp_frame`s with no socket buffer behind them, as a NIC's
//! receive ring delivers raw buffers. The AF_XDP `gen` cannot do that:
//! every frame it sends on a veth is a socket buffer, which an XDP program
//! on the peer must first copy into an XDP buffer.
//!
//! Flat out, or paced by the program (`--rate`): the kernel's loop runs
//! flat out, and the program sends a frame only when its slot is due and
//! drops the others before they leave (XDP_DROP recycles the page on this
//! CPU). Flat out, the peer's ring refuses what the device under test
//! cannot take; the sending veth drops those (`tx_queue_0_xdp_xmit_errors`
//! in its `ethtool -S`). [`send`] with stamps is also `latency`'s prober
//! (`latency --livegen-obj`).

use std::{
    os::fd::AsFd,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use libbpf_rs::{MapCore, MapFlags, ObjectBuilder};
use serde::Serialize;

use crate::{
    pkt::{self, Endpoints},
    xio::AddrOpts,
};

/// Bytes of the frame the program writes back into every page
/// (`HEAD` in xdp_livegen.c).
const HEAD: usize = 64;

/// Offsets in `struct livegen_cfg` (xdp_livegen.c).
const CFG_IFINDEX: usize = 0;
const CFG_STAMP_OFF: usize = 4;
const CFG_GAP_NS: usize = 8;
const CFG_TAI_OFFSET: usize = 16;
const CFG_HEAD: usize = 24;

/// Frames per round of the kernel's loop unless told otherwise: the
/// kernel's own default.
pub const DEFAULT_BATCH: u32 = 64;

/// Repetitions asked of the kernel per call: more than any run sends
/// (about 90 s at 12 Mpps); the timer's signal ends the call.
const REPEAT: u32 = 1 << 30;

/// Arguments of `livegen`.
#[derive(clap::Args, Debug)]
pub struct LivegenArgs {
    /// The interface the frames leave by (in this network namespace).
    #[arg(long, short = 'i')]
    pub iface: String,
    /// The compiled `xdp_livegen.c`.
    #[arg(long)]
    pub obj: PathBuf,
    /// Addresses of the frame.
    #[command(flatten)]
    pub addr: AddrOpts,
    /// Profile (one frame size: udp64, udp64-v6, udp1500, ...).
    #[arg(long, short = 'p', default_value = "udp64")]
    pub profile: String,
    /// Frames per second (default: flat out). The program sends a frame
    /// when its slot is due and drops the others before they leave.
    #[arg(long, short = 'r')]
    pub rate: Option<f64>,
    /// Seconds of traffic.
    #[arg(long, short = 'd')]
    pub duration: f64,
    /// Frames per round of the kernel's loop (1..=256; 64 is the
    /// kernel's default), which is also the size of the run's page pool.
    #[arg(long, default_value_t = DEFAULT_BATCH, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub batch: u32,
    /// Write the summary as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// One live-frames run.
#[derive(Debug, Clone)]
pub struct Live<'a> {
    /// The compiled `xdp_livegen.c`.
    pub obj: &'a Path,
    /// The interface the frames leave by.
    pub iface: &'a str,
    /// The frame (at least 64 bytes).
    pub frame: &'a [u8],
    /// Frames per second; `None`: flat out.
    pub rate: Option<f64>,
    /// Stamp every frame (sequence number, transmit time): IPv4 UDP only.
    pub stamp: bool,
    /// Frames per round of the kernel's loop.
    pub batch: u32,
    /// Seconds.
    pub duration: f64,
}

/// What [`send`] did.
#[derive(Debug, Clone, Copy)]
pub struct LiveRun {
    /// Frames redirected.
    pub sent: u64,
    /// Frames the pacing dropped.
    pub held: u64,
    /// Seconds the run took.
    pub seconds: f64,
    /// `BPF_PROG_TEST_RUN` calls.
    pub calls: u32,
}

/// What a `livegen` run did.
#[derive(Debug, Serialize)]
pub struct LivegenSummary {
    /// Always "livegen".
    pub mode: &'static str,
    /// The interface.
    pub iface: String,
    /// Frame length in bytes.
    pub frame_len: usize,
    /// Seconds the run took.
    pub seconds: f64,
    /// `BPF_PROG_TEST_RUN` calls (1 unless another signal cut one short).
    pub calls: u32,
    /// Frames the program redirected (handed to the driver; the ones the
    /// peer's ring had no room for are dropped there).
    pub tx_completed: u64,
    /// Frames the pacing dropped in the program (`--rate`).
    pub held: u64,
    /// `tx_completed` per second.
    pub tx_pps: f64,
}

/// The one frame of `profile` (a single size), stamped with sequence 0.
pub fn frame(profile: &str, ep: &Endpoints, seed: u64) -> Result<Vec<u8>> {
    let p = pkt::Profile::parse(profile, None).map_err(anyhow::Error::msg)?;
    if p.sizes.len() != 1 {
        bail!("livegen sends one frame: profile {profile} has several sizes");
    }
    let mut b = pkt::Builder::new(&p, ep, seed).map_err(anyhow::Error::msg)?;
    let mut f = vec![0u8; b.next_len()];
    let len = b.fill(&mut f, 0, 0);
    f.truncate(len);
    Ok(f)
}

/// Runs `livegen`.
pub fn run(a: LivegenArgs, stop: &AtomicBool) -> Result<LivegenSummary> {
    let ep = a.addr.endpoints(&a.iface)?;
    let f = frame(&a.profile, &ep, a.addr.seed)?;
    let r = send(
        &Live {
            obj: &a.obj,
            iface: &a.iface,
            frame: &f,
            rate: a.rate,
            stamp: false,
            batch: a.batch,
            duration: a.duration,
        },
        stop,
    )?;
    let s = LivegenSummary {
        mode: "livegen",
        iface: a.iface,
        frame_len: f.len(),
        seconds: r.seconds,
        calls: r.calls,
        tx_completed: r.sent,
        held: r.held,
        tx_pps: r.sent as f64 / r.seconds,
    };
    eprintln!(
        "livegen: {}: {} frames of {} bytes in {:.2} s ({:.0} pps, {} held back, {} call(s))",
        s.iface, s.tx_completed, s.frame_len, s.seconds, s.tx_pps, s.held, s.calls
    );
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(&s)? + "\n")
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(s)
}

/// Where the stamp of an IPv4 UDP frame starts, after clearing its UDP
/// checksum (the program changes the stamp of every frame).
fn stamp_at(frame: &mut [u8]) -> Result<usize> {
    let v4_udp = frame.len() > 34 && frame[12..14] == [0x08, 0x00] && frame[23] == 17;
    if !v4_udp {
        bail!("livegen stamps IPv4 UDP frames only");
    }
    let at = pkt::stamp_offset(frame)
        .filter(|&at| at + pkt::STAMP_LEN <= HEAD && frame.get(at..at + 4) == Some(&pkt::MAGIC[..]))
        .with_context(|| format!("livegen: no stamp within the first {HEAD} bytes of the frame"))?;
    // The UDP checksum: the last 2 bytes of the 8-byte header before it.
    frame[at - 2..at].fill(0);
    Ok(at)
}

/// CLOCK_TAI - CLOCK_REALTIME in nanoseconds (0 unless something set the
/// kernel's TAI offset), for the program's stamps.
fn tai_offset_ns() -> Result<i64> {
    use nix::time::{clock_gettime, ClockId};
    let ns = |c| -> Result<i128> {
        let t = clock_gettime(c)?;
        Ok(i128::from(t.tv_sec()) * 1_000_000_000 + i128::from(t.tv_nsec()))
    };
    let a = ns(ClockId::CLOCK_REALTIME)?;
    let tai = ns(ClockId::CLOCK_TAI)?;
    let b = ns(ClockId::CLOCK_REALTIME)?;
    // The midpoint of the two REALTIME reads; whole seconds in practice.
    Ok(i64::try_from(tai - (a + b) / 2)?)
}

/// Sends `l.frame` out of `l.iface` for `l.duration` seconds (or until
/// `stop`).
pub fn send(l: &Live<'_>, stop: &AtomicBool) -> Result<LiveRun> {
    if !l.duration.is_finite() || l.duration <= 0.0 || l.duration > 3600.0 {
        bail!("--duration {}: 0 < seconds <= 3600", l.duration);
    }
    if l.frame.len() < HEAD {
        bail!("frame of {} bytes, livegen needs {HEAD}", l.frame.len());
    }
    let gap_ns = match l.rate {
        None => 0u64,
        Some(r) if r.is_finite() && (1.0..=1e9).contains(&r) => (1e9 / r).round() as u64,
        Some(r) => bail!("--rate {r}: 1 to 1e9 frames per second"),
    };
    let mut head = l.frame[..HEAD].to_vec();
    let (stamp_off, tai) = if l.stamp {
        (stamp_at(&mut head)? as u32, tai_offset_ns()?)
    } else {
        (0, 0)
    };
    let ifindex =
        nix::net::if_::if_nametoindex(l.iface).with_context(|| format!("interface {}", l.iface))?;

    let mut open = ObjectBuilder::default()
        .open_file(l.obj)
        .with_context(|| format!("opening {}", l.obj.display()))?;
    let mut map = open
        .maps_mut()
        .find(|m| m.name().to_string_lossy().ends_with(".rodata"))
        .context("no .rodata in the livegen object")?;
    let rodata = map
        .initial_value_mut()
        .context("no initial value of .rodata")?;
    if rodata.len() < CFG_HEAD + HEAD {
        bail!(
            "livegen object: .rodata of {} bytes, expected {}",
            rodata.len(),
            CFG_HEAD + HEAD
        );
    }
    rodata[CFG_IFINDEX..CFG_IFINDEX + 4].copy_from_slice(&ifindex.to_ne_bytes());
    rodata[CFG_STAMP_OFF..CFG_STAMP_OFF + 4].copy_from_slice(&stamp_off.to_ne_bytes());
    rodata[CFG_GAP_NS..CFG_GAP_NS + 8].copy_from_slice(&gap_ns.to_ne_bytes());
    rodata[CFG_TAI_OFFSET..CFG_TAI_OFFSET + 8].copy_from_slice(&tai.to_ne_bytes());
    rodata[CFG_HEAD..CFG_HEAD + HEAD].copy_from_slice(&head);
    let obj = open.load().context("loading the livegen program")?;
    let prog = obj
        .progs()
        .find(|p| p.name() == "xdp_livegen")
        .context("no program xdp_livegen in the object")?;

    // Every BPF_PROG_TEST_RUN call of an XDP program installs it in the
    // kernel's XDP dispatcher and removes it again, each time waiting for
    // an RCU grace period (milliseconds), during which the device under
    // test would idle. So one call for the whole run, ended by a SIGALRM
    // from a timer thread (the kernel's loop stops on a pending signal);
    // the program itself counts the frames.
    let alarm = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGALRM, Arc::clone(&alarm))
        .context("SIGALRM handler")?;
    let done = Arc::new(AtomicBool::new(false));
    let me = nix::sys::pthread::pthread_self();
    let timer = {
        let (done, secs) = (Arc::clone(&done), l.duration);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs_f64(secs));
            // Again until the caller is out of the kernel: a signal that
            // lands between two calls is seen by the loop below instead.
            while !done.load(Ordering::Relaxed) {
                let _ = nix::sys::pthread::pthread_kill(me, nix::sys::signal::Signal::SIGALRM);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let t0 = Instant::now();
    let mut calls = 0u32;
    let result = loop {
        if alarm.load(Ordering::Relaxed) || stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        // A bound on top of the timer, should its signal never land.
        if calls >= 1000 || t0.elapsed().as_secs_f64() > l.duration + 10.0 {
            break Err(anyhow::anyhow!(
                "livegen did not stop after {:.1} s",
                l.duration
            ));
        }
        calls += 1;
        match mtugate_xsk::xdp_test_run_live(prog.as_fd(), l.frame, REPEAT, l.batch) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                break Err(anyhow::Error::new(e)
                    .context("BPF_PROG_TEST_RUN with live frames (Linux 5.18+)"))
            }
        }
    };
    let seconds = t0.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let _ = timer.join();
    result?;
    // struct livegen_state: frames at 0, held at 8.
    let bss = obj
        .maps()
        .find(|m| m.name().to_string_lossy().ends_with(".bss"))
        .context("no .bss in the livegen object")?
        .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
        .context("reading the frame count")?
        .context("empty .bss")?;
    let word = |at: usize| -> Result<u64> {
        Ok(u64::from_ne_bytes(
            bss.get(at..at + 8).context("short .bss")?.try_into()?,
        ))
    };
    Ok(LiveRun {
        sent: word(0)?,
        held: word(8)?,
        seconds,
        calls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep() -> Endpoints {
        Endpoints {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src4: "198.51.100.1".parse().unwrap(),
            dst4: "203.0.113.1".parse().unwrap(),
            src6: "2001:db8:a::1".parse().unwrap(),
            dst6: "2001:db8:b::1".parse().unwrap(),
            sport: 9,
            dport: 7777,
            flood_bits: 8,
        }
    }

    #[test]
    fn the_stamp_of_an_ipv4_probe_is_found_and_its_checksum_cleared() {
        let mut f = frame("udp64", &ep(), 1).unwrap();
        assert_eq!(f.len(), 64);
        let at = stamp_at(&mut f).unwrap();
        assert_eq!(at, 42);
        // The oracle: etherparse sees UDP with checksum 0 (none, in IPv4)
        // and the stamp at the start of its payload.
        let p = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
        let Some(etherparse::TransportSlice::Udp(u)) = p.transport else {
            panic!("not UDP")
        };
        assert_eq!(u.checksum(), 0);
        assert_eq!(u.destination_port(), 7777);
        assert_eq!(&u.payload()[..4], &pkt::MAGIC);
        assert_eq!(pkt::stamp_of(u.payload()), Some((0, 0)));
    }

    #[test]
    fn only_ipv4_udp_frames_are_stamped() {
        let mut v6 = frame("udp64-v6", &ep(), 1).unwrap();
        assert!(stamp_at(&mut v6).is_err());
        let mut tcp = frame("tcp1500", &ep(), 1).unwrap();
        assert!(stamp_at(&mut tcp).is_err());
        assert!(frame("imix", &ep(), 1).is_err());
    }
}
