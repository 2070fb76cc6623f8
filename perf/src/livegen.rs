//! `livegen`: the lab's XDP-fed generator. One frame, built like `gen`'s,
//! handed to `BPF_PROG_TEST_RUN` in live-frames mode
//! (`BPF_F_TEST_XDP_LIVE_FRAMES`, Linux 5.18+) with a program
//! (`deploy/perf/xdp_livegen.c`) that redirects it out of an interface.
//! The kernel runs the program on page-pool copies of the frame in batches
//! of 64 and transmits them with the driver's `ndo_xdp_xmit`: on a veth the
//! peer receives `xdp_frame`s with no socket buffer behind them, as a
//! NIC's receive ring delivers raw buffers. The AF_XDP `gen` cannot do
//! that: every frame it sends on a veth is a socket buffer, which an XDP
//! program on the peer must first copy into an XDP buffer.
//!
//! Flat out, or paced by the program (`--rate`): the kernel's loop runs
//! flat out, and the program sends a frame only when its slot is due and
//! drops the others before they leave (XDP_DROP recycles the page on this
//! CPU). Flat out, the peer's ring refuses what the device under test
//! cannot take; the sending veth drops those (`tx_queue_0_xdp_xmit_errors`
//! in its `ethtool -S`).

use std::{
    os::fd::AsFd,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use libbpf_rs::{MapCore, MapFlags, ObjectBuilder};
use serde::Serialize;

use crate::{pkt, xio::AddrOpts};

/// Bytes of the frame the program writes back into every page
/// (`HEAD` in xdp_livegen.c).
const HEAD: usize = 64;

/// Repetitions asked of the kernel per call: more than any run sends
/// (about 90 s at 12 Mpps); the timer's signal ends the call.
const REPEAT: u32 = 1 << 30;

/// Arguments of `livegen`.
#[derive(clap::Args, Debug)]
pub struct LivegenArgs {
    /// The interface the frames leave by (in this network namespace).
    #[arg(long, short = 'i')]
    pub iface: String,
    /// The compiled `xdp_livegen.c` (its OUT_IFINDEX must be --iface's).
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
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub batch: u32,
    /// Write the summary as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
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

/// Runs the generator until `--duration` or `stop`.
pub fn run(a: LivegenArgs, stop: &AtomicBool) -> Result<LivegenSummary> {
    if !a.duration.is_finite() || a.duration <= 0.0 || a.duration > 3600.0 {
        bail!("--duration {}: 0 < seconds <= 3600", a.duration);
    }
    let profile = pkt::Profile::parse(&a.profile, None).map_err(anyhow::Error::msg)?;
    if profile.sizes.len() != 1 {
        bail!(
            "livegen sends one frame: profile {} has several sizes",
            a.profile
        );
    }
    let ep = a.addr.endpoints(&a.iface)?;
    let mut b = pkt::Builder::new(&profile, &ep, a.addr.seed).map_err(anyhow::Error::msg)?;
    let mut frame = vec![0u8; b.next_len()];
    let len = b.fill(&mut frame, 0, 0);
    frame.truncate(len);

    if len < HEAD {
        bail!("{}: frame of {len} bytes, livegen needs {HEAD}", a.profile);
    }
    let ifindex = nix::net::if_::if_nametoindex(a.iface.as_str())
        .with_context(|| format!("interface {}", a.iface))?;

    let mut open = ObjectBuilder::default()
        .open_file(&a.obj)
        .with_context(|| format!("opening {}", a.obj.display()))?;
    // struct livegen_cfg in xdp_livegen.c: out_ifindex at 0, gap_ns at 8,
    // head at 16.
    let mut map = open
        .maps_mut()
        .find(|m| m.name().to_string_lossy().ends_with(".rodata"))
        .context("no .rodata in the livegen object")?;
    let rodata = map
        .initial_value_mut()
        .context("no initial value of .rodata")?;
    if rodata.len() < 16 + HEAD {
        bail!(
            "livegen object: .rodata of {} bytes, expected {}",
            rodata.len(),
            16 + HEAD
        );
    }
    let gap_ns = match a.rate {
        None => 0u64,
        Some(r) if r.is_finite() && (1.0..=1e9).contains(&r) => (1e9 / r).round() as u64,
        Some(r) => bail!("--rate {r}: 1 to 1e9 frames per second"),
    };
    rodata[..4].copy_from_slice(&ifindex.to_ne_bytes());
    rodata[8..16].copy_from_slice(&gap_ns.to_ne_bytes());
    rodata[16..16 + HEAD].copy_from_slice(&frame[..HEAD]);
    let obj = open.load().context("loading the livegen program")?;
    let prog = obj
        .progs_mut()
        .find(|p| p.name() == "xdp_livegen")
        .context("no program xdp_livegen in the object")?;

    // Every BPF_PROG_TEST_RUN call of an XDP program installs it in the
    // kernel's XDP dispatcher and removes it again, each time waiting for
    // an RCU grace period (milliseconds, much longer when the sink's
    // real-time NAPI thread shares this CPU), during which the device
    // under test would idle. So one call for the whole run, ended by a
    // SIGALRM from a timer thread (the kernel's loop stops on a pending
    // signal); the program itself counts the frames.
    let alarm = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGALRM, Arc::clone(&alarm))
        .context("SIGALRM handler")?;
    let done = Arc::new(AtomicBool::new(false));
    let main = nix::sys::pthread::pthread_self();
    let timer = {
        let (done, secs) = (Arc::clone(&done), a.duration);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs_f64(secs));
            // Again until the caller is out of the kernel: a signal that
            // lands between two calls is seen by the loop below instead.
            while !done.load(Ordering::Relaxed) {
                let _ = nix::sys::pthread::pthread_kill(main, nix::sys::signal::Signal::SIGALRM);
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
        // A safety bound on top of the timer: a runaway call would still
        // end within about a minute at the rates met here.
        if calls >= 1000 || t0.elapsed().as_secs_f64() > a.duration + 10.0 {
            break Err(anyhow::anyhow!(
                "livegen did not stop after {:.1} s",
                a.duration
            ));
        }
        calls += 1;
        match mtugate_xsk::xdp_test_run_live(prog.as_fd(), &frame, REPEAT, a.batch) {
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
    let (sent, held) = (word(0)?, word(8)?);
    let s = LivegenSummary {
        mode: "livegen",
        iface: a.iface,
        frame_len: len,
        seconds,
        calls,
        tx_completed: sent,
        held,
        tx_pps: sent as f64 / seconds,
    };
    eprintln!(
        "livegen: {}: {} frames of {} bytes in {:.2} s ({:.0} pps, {} call(s))",
        s.iface, s.tx_completed, s.frame_len, s.seconds, s.tx_pps, s.calls
    );
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(&s)? + "\n")
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(s)
}
