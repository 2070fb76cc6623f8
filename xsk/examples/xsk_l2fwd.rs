//! Raw AF_XDP L2 forwarder: every frame received on port A leaves by port B
//! and back, untouched, by moving its descriptor within the shared UMEM.
//! It is mtugate's one poll loop ([`Poller`]) with the no-op [`Forward`]
//! handler: the same loop the appliance's workers turn.
//!
//! ```text
//! xsk_l2fwd [--a IFACE] [--b IFACE] [--queue N] [--seconds N]
//!           [--bind auto|copy|zc] [--attach auto|native|generic]
//!           [--batch N] [--frame-size 2048|4096] [--frames N] [--ring N]
//!           [--idle-poll-ms N] [--yield] [--busy-poll]
//! ```
//!
//! Defaults: `--a in0 --b out0 --queue 0 --seconds 10 --bind auto
//! --attach auto --idle-poll-ms 0` (0: spin, never sleep). `--yield` calls
//! `sched_yield` after every empty turn: needed when the forwarder shares its
//! CPU with the veth NAPI thread it depends on. Stops after the
//! given time or on SIGINT/SIGTERM, drains, checks that no UMEM frame was
//! lost, prints counters, and detaches the XDP programs.

use std::{
    process::ExitCode,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use mtugate_xsk::{
    open_queue, stop_flag_on_signals, AttachMode, AttachOptions, BindMode, BusyPoll, FastPath,
    Forward, Idle, Poller, PortProgram, PortSpec, XskConfig,
};

const USAGE: &str = "usage: xsk_l2fwd [--a IFACE] [--b IFACE] [--queue N] [--seconds N]
                 [--bind auto|copy|zc] [--attach auto|native|generic]
                 [--batch N] [--frame-size 2048|4096] [--frames N] [--ring N]
                 [--idle-poll-ms N] [--yield] [--busy-poll]";

struct Args {
    ifaces: [String; 2],
    queue: u32,
    seconds: f64,
    idle_poll_ms: i32,
    yield_when_idle: bool,
    config: XskConfig,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        ifaces: ["in0".into(), "out0".into()],
        queue: 0,
        seconds: 10.0,
        idle_poll_ms: 0,
        yield_when_idle: false,
        config: XskConfig::default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--busy-poll" {
            a.config.busy_poll = Some(BusyPoll::default());
            continue;
        }
        if flag == "--yield" {
            a.yield_when_idle = true;
            continue;
        }
        if flag == "-h" || flag == "--help" {
            return Err(String::new());
        }
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<u32>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--a" => a.ifaces[0] = v,
            "--b" => a.ifaces[1] = v,
            "--queue" => a.queue = num(&v)?,
            "--seconds" => a.seconds = v.parse().map_err(|e| format!("--seconds {v}: {e}"))?,
            "--idle-poll-ms" => a.idle_poll_ms = num(&v)? as i32,
            "--batch" => a.config.batch = num(&v)?,
            "--frame-size" => a.config.frame_size = num(&v)?,
            "--frames" => a.config.frame_count = num(&v)?,
            "--ring" => {
                let n = num(&v)?;
                a.config.rx_ring_size = n;
                a.config.tx_ring_size = n;
                a.config.fill_ring_size = n;
                a.config.comp_ring_size = n;
            }
            "--bind" => {
                a.config.bind_mode = match v.as_str() {
                    "auto" => BindMode::Auto,
                    "copy" => BindMode::ForceCopy,
                    "zc" => BindMode::ForceZeroCopy,
                    _ => return Err(format!("--bind {v}: auto|copy|zc")),
                }
            }
            "--attach" => {
                a.config.attach_mode = match v.as_str() {
                    "auto" => AttachMode::Auto,
                    "native" => AttachMode::Native,
                    "generic" => AttachMode::Generic,
                    _ => return Err(format!("--attach {v}: auto|native|generic")),
                }
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("xsk_l2fwd: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xsk_l2fwd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let stop = stop_flag_on_signals()?;
    let [a, b] = &args.ifaces;
    // Every frame to the sockets; the programs go with this process.
    let opts = AttachOptions {
        mode: args.config.attach_mode,
        persist: false,
        owner: "xsk_l2fwd".into(),
        ..AttachOptions::default()
    };
    let pa = PortProgram::attach(a, &FastPath::SOCKET_ONLY, &opts)?;
    let pb = PortProgram::attach(b, &FastPath::SOCKET_ONLY, &opts)?;
    let mut q = open_queue(
        &[PortSpec::new(a), PortSpec::new(b)],
        args.queue,
        &args.config,
        &[&pa, &pb],
    )?;
    let rep = q.backend().report().clone();
    println!(
        "xsk_l2fwd: {a} <-> {b} queue {}: {:?} mode, XDP {:?}/{:?} (prog ids {}/{}), sndbuf {:?}, tx budget {:?}",
        args.queue,
        rep.mode,
        pa.mode(),
        pb.mode(),
        pa.prog_id(),
        pb.prog_id(),
        rep.sndbuf,
        rep.tx_skb_budget
    );
    if let Some(e) = &rep.zero_copy_error {
        println!("xsk_l2fwd: zero-copy unavailable, using copy mode ({e})");
    }
    for p in [&pa, &pb] {
        println!("xsk_l2fwd: {}: {:?}", p.iface(), p.takeover());
    }

    let idle = if args.yield_when_idle {
        Idle::Yield
    } else if args.idle_poll_ms > 0 {
        Idle::SpinThenWait {
            polls: 4096,
            wait_ms: args.idle_poll_ms,
        }
    } else {
        Idle::Spin
    };
    let mut poller = Poller::new(&q, idle);
    let mut fwd = Forward::new(vec![Some(1), Some(0)]);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.seconds);
    while poller.rounds % 1024 != 0 || (Instant::now() < deadline && !stop.load(Ordering::Relaxed))
    {
        let n = poller.round(&mut q, &mut fwd);
        poller.idle_wait(&mut q, n);
    }
    let elapsed = start.elapsed().as_secs_f64();
    poller.drain(&mut q, Duration::from_millis(200));
    let counts = q.check_conservation(0)?;

    println!(
        "xsk_l2fwd: ran {elapsed:.2} s, {} rounds ({} busy), {} frames refused by a full TX ring",
        poller.rounds, poller.busy_rounds, fwd.refused
    );
    for port in 0..q.port_count() {
        let c = q.counters(port);
        let s = q.stats(port)?;
        println!(
            "  {}: rx {} in {} batches ({:.0} pps); tx {} completed {} kicks {}; \
             fill {} wakeups {}; errors: kick {} fill {}",
            q.name(port),
            c.rx_frames,
            c.rx_batches,
            c.rx_frames as f64 / elapsed,
            c.tx_frames,
            c.tx_completed,
            c.tx_kicks,
            c.fill_frames,
            c.fill_wakeups,
            c.tx_kick_errors,
            c.fill_wakeup_errors
        );
        println!("    kernel: {s:?}");
    }
    println!(
        "  frames: {} total, {} free, {} in flight (fill/rx {:?}), conservation ok",
        counts.total,
        counts.free,
        q.frames_in_flight(),
        counts.fill_or_rx
    );
    drop(q);
    drop((pa, pb));
    println!("xsk_l2fwd: sockets closed, XDP programs detached");
    Ok(())
}
