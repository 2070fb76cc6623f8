//! `mtugate-perf`: benchmark a NIC queue with AF_XDP, and measure what
//! mtugate costs against the Linux kernel.
//!
//! Modes:
//!
//! - `gen`: AF_XDP transmitter of stamped packets (profiles in [`pkt`]),
//!   bounded by `--count` and/or `--duration`, paced or flat out.
//! - `txonly`, `rxdrop`, `l2fwd`: the classic NIC-queue benchmarks (as
//!   xdpsock runs them), per-interval and total packets per second, the
//!   kernel's AF_XDP statistics, zero-copy or copy mode.
//! - `latency`: stamped probes at a fixed rate out of one interface,
//!   received on the far side of a device under test, one-way latency into
//!   an HDR histogram (`.hgrm` and SVG plot).
//! - `compare`: the lab run behind `BENCHMARKS.md`: mtugate, the kernel as a
//!   router and as a bridge (iptables TCPMSS), and a raw AF_XDP forwarder,
//!   in two CPU placements, on the same traffic in the same run.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use mtugate_xsk::stop_flag_on_signals;

use mtugate_perf::{
    compare, latency, livegen, pkt,
    xio::{self, AddrOpts, FwdOpts, RunOpts, XskOpts},
};

#[derive(Parser, Debug)]
#[command(
    name = "mtugate-perf",
    version,
    about = "AF_XDP traffic generator, NIC-queue benchmarks, latency prober, and the kernel comparison of mtugate"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(clap::Args, Debug)]
struct GenArgs {
    #[command(flatten)]
    xsk: XskOpts,
    #[command(flatten)]
    run: RunOpts,
    #[command(flatten)]
    addr: AddrOpts,
    /// Traffic: `NAME[@PPS]`, comma-separated. Profiles with a rate are
    /// paced on their own; the others share --rate (or go flat out).
    /// `--profile list` prints the names.
    #[arg(long, short = 'p', default_value = "udp64")]
    profile: String,
    /// Frame size in bytes for a single-size UDP/TCP profile.
    #[arg(long)]
    size: Option<usize>,
    /// Packets per second for the profiles without a rate (default: flat
    /// out).
    #[arg(long, short = 'r')]
    rate: Option<f64>,
}

#[derive(clap::Args, Debug)]
struct RxArgs {
    #[command(flatten)]
    xsk: XskOpts,
    #[command(flatten)]
    run: RunOpts,
}

#[derive(clap::Args, Debug)]
struct FwdArgs {
    #[command(flatten)]
    xsk: XskOpts,
    #[command(flatten)]
    run: RunOpts,
    /// Forward between --iface and this interface (untouched frames, both
    /// directions). Without it: one port, MAC addresses swapped, sent back.
    #[arg(long)]
    peer: Option<String>,
    /// sched_yield after an empty poll (when a NAPI thread shares the CPU).
    #[arg(long = "yield")]
    yield_when_idle: bool,
    /// poll(2) the sockets (timeout 0) on every turn; with --busy-poll the
    /// interface's receive NAPI then runs inside that call.
    #[arg(long)]
    poll: bool,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Transmit stamped packets of one or more profiles.
    Gen(GenArgs),
    /// Transmit 64-byte UDP flat out (xdpsock -t): `gen -p udp64`.
    Txonly(GenArgs),
    /// Receive and drop (xdpsock -r), reading the stamps.
    Rxdrop(RxArgs),
    /// Forward received frames back out (xdpsock -l), or between two ports.
    L2fwd(FwdArgs),
    /// One-way latency of stamped probes through a device under test.
    Latency(latency::LatencyArgs),
    /// Transmit one frame flat out as raw XDP frames (BPF_PROG_TEST_RUN
    /// live frames): the peer of a veth receives no socket buffers.
    Livegen(livegen::LivegenArgs),
    /// The lab comparison: mtugate vs kernel router vs kernel bridge vs raw
    /// AF_XDP, two CPU placements, Markdown + JSON + SVG.
    Compare(compare::CompareArgs),
    /// Write the man pages and shell completions into DIR (packaging).
    #[command(hide = true)]
    Generate {
        /// The output directory (man/ and completions/ go under it).
        dir: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.mode) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mtugate-perf: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(mode: Mode) -> Result<()> {
    match mode {
        Mode::Gen(a) => gen("gen", a),
        Mode::Txonly(mut a) => {
            a.profile = "udp64".into();
            gen("txonly", a)
        }
        Mode::Rxdrop(a) => {
            a.run.check()?;
            let stop = stop_flag_on_signals()?;
            let mut qp = a.xsk.open(None, true)?;
            xio::log_setup("rxdrop", &qp);
            let s = xio::rxdrop(&mut qp, &a.run, stop)?;
            s.emit(a.run.json.as_deref())
        }
        Mode::L2fwd(a) => {
            a.run.check()?;
            let stop = stop_flag_on_signals()?;
            let mut qp = a.xsk.open(a.peer.as_deref(), true)?;
            xio::log_setup("l2fwd", &qp);
            let o = FwdOpts {
                two_ports: a.peer.is_some(),
                yield_when_idle: a.yield_when_idle,
                poll_every_turn: a.poll,
            };
            let s = xio::l2fwd(&mut qp, o, &a.run, stop)?;
            s.emit(a.run.json.as_deref())
        }
        Mode::Latency(a) => latency::run(a),
        Mode::Livegen(a) => livegen::run(a, stop_flag_on_signals()?).map(|_| ()),
        Mode::Compare(a) => compare::run(a),
        Mode::Generate { dir } => generate(&dir),
    }
}

/// Man pages (one per mode) and bash/zsh/fish completions, from the clap
/// definition itself (clap_mangen, clap_complete), for the Debian package.
fn generate(dir: &std::path::Path) -> Result<()> {
    use clap::CommandFactory;
    let (man, completions) = (dir.join("man"), dir.join("completions"));
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    clap_mangen::generate_to(Cli::command(), &man)?;
    let mut cmd = Cli::command();
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        let f = clap_complete::generate_to(shell, &mut cmd, "mtugate-perf", &completions)?;
        println!("{}", f.display());
    }
    Ok(())
}

fn gen(tool: &'static str, a: GenArgs) -> Result<()> {
    if a.profile == "list" {
        for (n, what) in pkt::PROFILES {
            println!("{n:14} {what}");
        }
        return Ok(());
    }
    a.run.check()?;
    let ep = a.addr.endpoints(&a.xsk.iface)?;
    let mut mix = xio::parse_mix(&a.profile, a.size, &ep, a.xsk.batch as usize, a.addr.seed)?;
    let stop = stop_flag_on_signals()?;
    let mut qp = a.xsk.open(None, false)?;
    xio::log_setup(tool, &qp);
    let s = xio::transmit(tool, &mut qp, &mut mix, a.rate, &a.run, stop)?;
    s.emit(a.run.json.as_deref())
}
