//! `compare`: the same traffic through each device under test, one after
//! another in the same run, in the veth lab of `deploy/lab.sh`, in two CPU
//! placements. Produces a Markdown table, a JSON file of every raw number,
//! the `.hgrm` distributions and a latency plot (SVG).
//!
//! Systems: mtugate (one worker), the kernel as a router with the classic
//! iptables TCPMSS rule and the outside link at MTU 1400, the kernel as a
//! bridge with br_netfilter and the same rule, and a raw AF_XDP forwarder
//! (`l2fwd`, no processing: the I/O ceiling of the lab).
//!
//! Placements (2 CPUs: the generator on `--gen-core`, the device under test
//! on `--dut-core`):
//! - *confined*: all of the device's work on its core: in0's NAPI made a
//!   kthread (threaded NAPI) pinned there, beside the worker for AF_XDP;
//!   for the kernel (`--kernel-confined napi`, the default) GRO on in0
//!   first, so that the veth has a NAPI instance. `--kernel-confined rps`
//!   moves the kernel's forwarding softirq there with RPS instead.
//! - *natural*: the kernel's defaults. veth has no interrupts: the receive
//!   work of a packet (kernel forwarding, or XDP and the copy into the
//!   UMEM) runs on the sender's CPU, i.e. the generator's.
//!
//! Measured: offered rate (the generator's completed frames), received
//! rate at the sink (the server's eth0 `rx_packets`, counted before the
//! tc or XDP drop program of `--sink`, `deploy/perf/sink_drop.c`), loss; latency percentiles of
//! probes at 50 % of the slowest system's 64-byte rate; under a SYN flood,
//! legitimate connections (completed, MSS seen by the server), the rate of
//! the other traffic, and the SYN rewrite rate.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use mtugate_datapath::pipeline::family;
use mtugate_mgmt::final_stats::FinalStats;
use mtugate_xsk::napi_threads;
use serde::Serialize;
use serde_json::Value;

use crate::{
    latency::LatencySummary,
    plot::{self, Series},
};

/// Arguments of `compare`.
#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// Directory for compare.md, compare.json, latency.svg, *.hgrm.
    #[arg(long, default_value = "bench-out")]
    out: PathBuf,
    /// CI mode: 1 s runs, one repetition, latency at a fixed rate (50 kpps
    /// unless --latency-rate) in the throughput setups, short flood runs
    /// without the bridge.
    #[arg(long)]
    short: bool,
    /// Seconds of traffic per throughput run.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Repetitions of every throughput run (medians are reported).
    #[arg(long, default_value_t = 3)]
    reps: u32,
    /// Scenarios: 64 (64-byte UDP, max rate), frag (1514-byte DF-clear UDP,
    /// fragmented at MTU 1400), latency, flood, ndr (the no-drop rate of
    /// 64-byte UDP: the highest offered rate lost at most
    /// --loss-tolerance, by binary search, RFC 2544 §26.1 style).
    #[arg(long, default_value = "64,frag,latency,flood,ndr")]
    scenarios: String,
    /// Loss tolerated by the no-drop rate search, as a fraction (0: none,
    /// RFC 2544's no-drop rate; 0.001: 0.1 %).
    #[arg(long, default_value_t = 0.0)]
    loss_tolerance: f64,
    /// Seconds of each trial of the no-drop rate search.
    #[arg(long, default_value_t = 3.0)]
    ndr_duration: f64,
    /// The search stops when the bracket [pass, fail] is narrower than
    /// this fraction of the failing rate, or after --ndr-trials trials.
    #[arg(long, default_value_t = 0.03)]
    ndr_precision: f64,
    /// Most trials of one no-drop rate search (the first runs flat out).
    #[arg(long, default_value_t = 10)]
    ndr_trials: u32,
    /// Placements: confined, natural.
    #[arg(long, default_value = "confined,natural")]
    placements: String,
    /// Systems: mtugate, mtugate-all, router, bridge, raw, and
    /// mtugate-router (router mode, in the kernel router's lab; not in the
    /// default list: `--systems mtugate-router,router,raw`).
    #[arg(long, default_value = "mtugate,mtugate-all,router,bridge,raw")]
    systems: String,
    /// Probe rate of the latency runs (default: 50 % of the slowest
    /// system's 64-byte rate in this run, any placement).
    #[arg(long)]
    latency_rate: Option<f64>,
    /// Seconds of each latency run.
    #[arg(long, default_value_t = 5.0)]
    latency_duration: f64,
    /// Latency runs per system and placement (systems interleaved); the
    /// run with the median p99 is reported and plotted.
    #[arg(long, default_value_t = 3)]
    latency_reps: u32,
    /// Seconds of each flood run.
    #[arg(long, default_value_t = 5.0)]
    flood_duration: f64,
    /// Rate of the other traffic (64-byte UDP probes) in the flood runs.
    #[arg(long, default_value_t = 50_000.0)]
    flood_probe_rate: f64,
    /// Legitimate TCP connections per second in the flood runs.
    #[arg(long, default_value_t = 50.0)]
    flood_conn_rate: f64,
    /// The mtugate binary (default: `mtugate` beside this one).
    #[arg(long)]
    mtugate: Option<PathBuf>,
    /// mtugate configuration the runs start from (its cores are replaced).
    #[arg(long, default_value = "deploy/configs/lab.toml")]
    mtugate_config: PathBuf,
    /// The lab script.
    #[arg(long, default_value = "deploy/lab.sh")]
    lab: PathBuf,
    /// Directory of the sink program and the TCP prober.
    #[arg(long, default_value = "deploy/perf")]
    assets: PathBuf,
    /// Namespace prefix of the lab (LAB_PREFIX).
    #[arg(long, default_value = "mtgp")]
    prefix: String,
    /// CPU of the generator.
    #[arg(long, default_value_t = 0)]
    gen_core: usize,
    /// CPU of the device under test.
    #[arg(long, default_value_t = 1)]
    dut_core: usize,
    /// Nice value of every process and kernel thread of the lab (tester,
    /// mtugate, l2fwd, the NAPI thread), against a co-tenant's load on a
    /// shared machine; the kernel's forwarding runs in softirq context,
    /// which no nice value affects. Default 0 (priorities left alone):
    /// with -10 the confined AF_XDP devices collapsed (the pinned NAPI
    /// thread starved the worker) although the natural ones improved.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    nice: i32,
    /// The sink on the server's eth0 (`deploy/perf/sink_drop.c`): `tc`
    /// (a tc ingress drop: every frame becomes an skb first) or `xdp` (a
    /// native XDP drop in the veth's NAPI poll: no skb, the nearer model
    /// of a NIC's transmit). The same sink serves every system of a run.
    #[arg(long, default_value = "tc", value_parser = ["tc", "xdp"])]
    sink: String,
    /// How the kernel router and bridge are confined to the device's core:
    /// `napi` (GRO on in0 gives the veth a NAPI instance, made a thread
    /// pinned there: the mechanism the AF_XDP systems get, and the
    /// kernel's faster one here) or `rps` (RPS on in0 moves the
    /// forwarding softirq there, at the cost of an IPI and a backlog
    /// queue per batch: about 0.75× of `napi` in the router lab).
    #[arg(long, default_value = "napi", value_parser = ["rps", "napi"])]
    kernel_confined: String,
    /// The generator of the throughput scenarios (64, frag, ndr): `xsk` (the
    /// AF_XDP `gen`, paced or flat out: on a veth every frame it sends is
    /// an skb, which an XDP program on in0 must first copy) or `live`
    /// (`livegen`: raw XDP frames redirected into the client's eth0, so
    /// in0 receives buffers with no skb, as from a NIC's ring; paced by
    /// its program in the no-drop rate search and the latency runs, whose
    /// probes it stamps; the flood runs keep the AF_XDP generator). The
    /// sink stays where the kernel runs it.
    #[arg(long, default_value = "xsk", value_parser = ["xsk", "live"])]
    generator: String,
    /// `[xsk] napi` of every mtugate run, in place of the configuration's
    /// (router.toml says `workers`). Matters in the natural placement
    /// only: the confined one pins in0's NAPI thread itself.
    #[arg(long, value_parser = ["kernel", "workers"])]
    mtugate_napi: Option<String>,
}

/// A device under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    /// mtugate, one worker, XDP fast path (`steer = "exceptions"`).
    Mtugate,
    /// mtugate, one worker, every frame through AF_XDP (`steer = "all"`).
    MtugateAll,
    /// Linux as a router + iptables TCPMSS, outside MTU 1400.
    Router,
    /// mtugate in router mode (the kernel's FIB in the XDP stage), one
    /// worker, in the kernel router's lab.
    MtugateRouter,
    /// Linux as a bridge + br_netfilter + iptables TCPMSS.
    Bridge,
    /// Raw AF_XDP forwarding, no processing.
    Raw,
    /// A bare XDP redirect in the router lab (MACs written, no lookup):
    /// the ceiling of any XDP fast path here (deploy/perf/xdp_redirect.c).
    XdpRedirect,
    /// A bare XDP forwarder that asks the kernel's FIB (bpf_fib_lookup,
    /// TTL, MACs, redirect; deploy/perf/xdp_fwd.c): the ceiling of a fast
    /// path built as router mode's is.
    XdpFwd,
}

impl System {
    fn parse(s: &str) -> Result<System> {
        Ok(match s {
            "mtugate" => System::Mtugate,
            "mtugate-all" => System::MtugateAll,
            "router" => System::Router,
            "mtugate-router" => System::MtugateRouter,
            "bridge" => System::Bridge,
            "raw" => System::Raw,
            "xdp-redirect" => System::XdpRedirect,
            "xdp-fwd" => System::XdpFwd,
            _ => bail!(
                "unknown system {s:?} (mtugate, mtugate-all, router, mtugate-router, bridge, raw, xdp-redirect, xdp-fwd)"
            ),
        })
    }

    /// The label of the system's rows.
    pub fn label(self) -> &'static str {
        match self {
            System::Mtugate => "mtugate, fast path (1 worker)",
            System::MtugateAll => "mtugate, all via AF_XDP (1 worker)",
            System::Router => "kernel router + TCPMSS",
            System::MtugateRouter => "mtugate router mode, fast path (1 worker)",
            System::Bridge => "kernel bridge + br_netfilter + TCPMSS",
            System::Raw => "raw AF_XDP l2fwd (ceiling)",
            System::XdpRedirect => "bare XDP redirect (fast-path ceiling)",
            System::XdpFwd => "bare XDP FIB forward (lookup ceiling)",
        }
    }

    fn lab_mode(self) -> &'static str {
        match self {
            System::Router | System::MtugateRouter | System::XdpRedirect | System::XdpFwd => {
                "router"
            }
            System::Bridge => "bridge",
            System::Mtugate | System::MtugateAll | System::Raw => "wire",
        }
    }

    fn af_xdp(self) -> bool {
        matches!(
            self,
            System::Mtugate
                | System::MtugateAll
                | System::MtugateRouter
                | System::Raw
                | System::XdpRedirect
                | System::XdpFwd
        )
    }

    /// mtugate, in either steering or mode.
    fn is_mtugate(self) -> bool {
        matches!(
            self,
            System::Mtugate | System::MtugateAll | System::MtugateRouter
        )
    }

    /// Routed: the lab's router addressing, frames sent to the DUT's MAC.
    fn routed(self) -> bool {
        matches!(
            self,
            System::Router | System::MtugateRouter | System::XdpRedirect | System::XdpFwd
        )
    }
}

/// Where the device's work runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// All of the device's work on its own core.
    Confined,
    /// The kernel's defaults.
    Natural,
}

impl Placement {
    fn parse(s: &str) -> Result<Placement> {
        Ok(match s {
            "confined" => Placement::Confined,
            "natural" => Placement::Natural,
            _ => bail!("unknown placement {s:?} (confined, natural)"),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Placement::Confined => "confined",
            Placement::Natural => "natural",
        }
    }
}

/// One throughput measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    /// 64 or frag.
    pub scenario: String,
    /// Placement.
    pub placement: Placement,
    /// System.
    pub system: System,
    /// Repetition.
    pub rep: u32,
    /// Seconds the generator ran.
    pub seconds: f64,
    /// Frames the generator transmitted per second (completed).
    pub offered_pps: f64,
    /// The client's eth0 tx_packets + tx_dropped per second.
    pub client_tx_pps: f64,
    /// Frames per second received by the device (in0 rx_packets).
    pub dut_rx_pps: f64,
    /// Frames per second received at the sink.
    pub sink_pps: f64,
    /// Datagrams per second at the sink (frames / fragments per datagram).
    pub sink_datagrams_pps: f64,
    /// 1 - datagrams received / datagrams offered.
    pub loss: f64,
    /// Load average (1 min) before the run.
    pub load1: f64,
}

/// The bracket of a no-drop rate search on the generator's rate: the
/// highest rate asked that passed, the lowest that failed, and the highest
/// rate actually offered by a passing trial (what is reported: a generator
/// can fall short of the rate asked, and a rate it did not offer was not
/// shown to pass).
#[derive(Debug, Clone, Copy)]
struct Bracket {
    /// Highest asked rate that passed (the search's lower bound).
    lo: f64,
    /// Lowest asked (or, flat out, offered) rate that failed.
    fail: Option<f64>,
    /// Highest offered rate of a passing trial.
    pass: f64,
    precision: f64,
}

impl Bracket {
    /// After the flat-out trial, which offered `offered` and passed or not.
    fn new(offered: f64, passed: bool, precision: f64) -> Bracket {
        if passed {
            Bracket {
                lo: offered,
                fail: None,
                pass: offered,
                precision,
            }
        } else {
            Bracket {
                lo: 0.0,
                fail: Some(offered),
                pass: 0.0,
                precision,
            }
        }
    }

    /// The rate of the next trial, or `None` when the search is done
    /// (flat out passed, or the bracket is within the precision).
    fn next(&self) -> Option<f64> {
        let f = self.fail?;
        ((f - self.lo) > self.precision * f).then(|| (self.lo + f) / 2.0)
    }

    /// A trial asked for `asked` and offered `offered`.
    fn record(&mut self, asked: f64, offered: f64, passed: bool) {
        if passed {
            self.lo = self.lo.max(asked);
            self.pass = self.pass.max(offered.min(asked));
        } else if let Some(f) = &mut self.fail {
            *f = f.min(asked);
        }
    }
}

/// One trial of a no-drop rate search.
#[derive(Debug, Clone, Serialize)]
pub struct NdrTrial {
    /// Rate asked of the generator (`None`: flat out).
    pub asked_pps: Option<f64>,
    /// What it offered (completed frames per second).
    pub offered_pps: f64,
    /// Datagrams lost, as a fraction.
    pub loss: f64,
    /// Whether the loss was within the tolerance.
    pub pass: bool,
}

/// The no-drop rate of one system in one placement (64-byte UDP).
#[derive(Debug, Clone, Serialize)]
pub struct Ndr {
    /// Placement.
    pub placement: Placement,
    /// System.
    pub system: System,
    /// Loss tolerated, as a fraction.
    pub tolerance: f64,
    /// The highest offered rate that passed (0 if none did).
    pub ndr_pps: f64,
    /// The lowest offered rate that failed (`None`: flat out passed).
    pub fail_pps: Option<f64>,
    /// Every trial, in order.
    pub trials: Vec<NdrTrial>,
}

/// One flood measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Flood {
    /// Placement.
    pub placement: Placement,
    /// System label (mtugate with the SYN limit on or off, or a kernel).
    pub system: String,
    /// Whether the flood ran (false: the baseline).
    pub flood: bool,
    /// Flood SYNs sent per second.
    pub flood_pps: f64,
    /// Other traffic (probes) received per second.
    pub probe_rx_pps: f64,
    /// Probe latency.
    pub probes: LatencySummary,
    /// Legitimate connections attempted.
    pub conns_attempted: u64,
    /// Legitimate connections completed.
    pub conns_completed: u64,
    /// MSS values the server saw in the SYNs of accepted connections.
    pub conn_mss: BTreeMap<String, u64>,
    /// SYNs rewritten per second by the device.
    pub rewrites_pps: f64,
    /// SYNs passed or dropped over the limit per second (mtugate).
    pub syn_limited_pps: f64,
}

/// Everything a compare run produced.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Machine and run facts.
    pub meta: BTreeMap<String, String>,
    /// Throughput runs.
    pub throughput: Vec<Throughput>,
    /// Latency runs.
    pub latency: Vec<(Placement, System, LatencySummary)>,
    /// Flood runs.
    pub flood: Vec<Flood>,
    /// No-drop rates.
    #[serde(default)]
    pub ndr: Vec<Ndr>,
}

/// The lab: namespaces and commands in them.
struct Lab {
    script: PathBuf,
    prefix: String,
    nice: i32,
}

impl Lab {
    fn ns(&self, which: &str) -> String {
        format!("{}-{which}", self.prefix)
    }

    fn up(&self, mode: &str, out_mtu: u32) -> Result<()> {
        let out = Command::new("bash")
            .arg(&self.script)
            .args(["up", mode])
            .env("LAB_PREFIX", &self.prefix)
            .env("OUT_MTU", out_mtu.to_string())
            .output()
            .context("running the lab script")?;
        if !out.status.success() {
            bail!(
                "lab up {mode} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    fn down(&self) {
        let _ = Command::new("bash")
            .arg(&self.script)
            .arg("down")
            .env("LAB_PREFIX", &self.prefix)
            .output();
    }

    fn cmd(&self, which: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(which)]);
        if self.nice != 0 {
            c.args(["nice", "-n", &self.nice.to_string()]);
        }
        c
    }

    /// Runs a shell command in a namespace; its stdout.
    fn sh(&self, which: &str, script: &str) -> Result<String> {
        let out = self
            .cmd(which)
            .args(["sh", "-c", script])
            .output()
            .with_context(|| format!("{which}: {script}"))?;
        if !out.status.success() {
            bail!(
                "{which}: `{script}` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn counters(&self, which: &str, iface: &str, names: &[&str]) -> Result<Vec<u64>> {
        let paths: Vec<String> = names
            .iter()
            .map(|n| format!("/sys/class/net/{iface}/statistics/{n}"))
            .collect();
        let out = self.sh(which, &format!("cat {}", paths.join(" ")))?;
        out.split_whitespace()
            .map(|x| x.parse::<u64>().context("counter"))
            .collect()
    }

    fn mac(&self, which: &str, iface: &str) -> Result<String> {
        Ok(self
            .sh(which, &format!("cat /sys/class/net/{iface}/address"))?
            .trim()
            .to_owned())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.down();
    }
}

/// Addresses of a lab mode: (src4, dst4, src6, dst6).
fn addrs(system: System) -> (&'static str, &'static str, &'static str, &'static str) {
    if system.routed() {
        (
            "198.51.100.1",
            "203.0.113.1",
            "2001:db8:a::1",
            "2001:db8:b::1",
        )
    } else {
        ("192.0.2.1", "192.0.2.2", "2001:db8:1::1", "2001:db8:1::2")
    }
}

/// A device under test that runs as a process (mtugate, l2fwd).
struct Dut {
    child: Child,
    stderr: PathBuf,
    final_stats: Option<PathBuf>,
}

impl Dut {
    fn stop(mut self) -> Result<Option<FinalStats>> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            if self.child.try_wait()?.is_some() {
                break;
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("device under test did not stop within 5 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        match &self.final_stats {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading {}", p.display()))?;
                let doc = serde_json::from_str(&text)
                    .with_context(|| format!("reading {}", p.display()))?;
                Ok(Some(doc))
            }
            None => Ok(None),
        }
    }
}

impl Drop for Dut {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

struct Ctx {
    a: CompareArgs,
    lab: Lab,
    me: PathBuf,
    mtugate: PathBuf,
    sink_obj: PathBuf,
    /// The compiled xdp_livegen.c (`--generator live`).
    livegen_obj: Option<PathBuf>,
    base_config: String,
    /// Router mode's configuration (`router.toml` beside `base_config`).
    router_config: String,
    stop: &'static std::sync::atomic::AtomicBool,
}

fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

impl Ctx {
    fn check_stop(&self) -> Result<()> {
        if self.stop.load(std::sync::atomic::Ordering::Relaxed) {
            bail!("interrupted");
        }
        Ok(())
    }

    /// Brings the lab up for `system` and prepares sink and rules.
    fn prepare(&self, system: System, out_mtu: u32) -> Result<()> {
        self.check_stop()?;
        let lab = &self.lab;
        lab.up(system.lab_mode(), out_mtu)?;
        let sink = if self.a.sink == "xdp" {
            format!(
                "ip link set dev eth0 xdpdrv obj {} sec xdp",
                self.sink_obj.display()
            )
        } else {
            format!(
                "tc qdisc add dev eth0 clsact && tc filter add dev eth0 ingress bpf direct-action obj {} sec tc",
                self.sink_obj.display()
            )
        };
        lab.sh("server", &sink)?;
        if self.livegen_obj.is_some() {
            // Frames redirected by XDP reach a veth only if it has NAPI,
            // which XDP or GRO gives it: in0 for the kernel's systems (the
            // others attach XDP there; the lab turns GRO on for the
            // server's eth0).
            lab.sh("dut", "ethtool -K in0 gro on >/dev/null")?;
        }
        // Carrier changes reach the bridge (and operstate) through linkwatch,
        // up to a second later: a bridge port stays "disabled" until then.
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            let up = lab.sh(
                "dut",
                "cat /sys/class/net/in0/operstate /sys/class/net/out0/operstate",
            )?;
            let fwd = system != System::Bridge
                || lab
                    .sh("dut", "bridge link show")?
                    .matches("state forwarding")
                    .count()
                    >= 2;
            if fwd && up.split_whitespace().all(|s| s == "up") {
                break;
            }
            if Instant::now() > end {
                bail!("lab links not up/forwarding after 5 s: {up}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let smac = lab.mac("server", "eth0")?;
        let rule = "iptables -t mangle -A FORWARD -p tcp --tcp-flags SYN,RST SYN \
                    -m tcpmss --mss 1361:1536 -j TCPMSS --set-mss 1360";
        match system {
            System::Router => {
                lab.sh("dut", rule)?;
                lab.sh(
                    "dut",
                    &format!("ip neigh replace 203.0.113.1 lladdr {smac} dev out0 nud permanent"),
                )?;
            }
            // The same lab and neighbour, no netfilter: the route MTU is
            // out0's (the lab's OUT_MTU), which bpf_fib_lookup reports.
            System::MtugateRouter | System::XdpFwd => {
                lab.sh(
                    "dut",
                    &format!("ip neigh replace 203.0.113.1 lladdr {smac} dev out0 nud permanent"),
                )?;
            }
            System::Bridge => {
                lab.sh(
                    "dut",
                    &format!(
                        "sysctl -qw net.bridge.bridge-nf-call-iptables=1 && {rule} && \
                         bridge fdb replace {smac} dev out0 master static"
                    ),
                )?;
            }
            System::Mtugate | System::MtugateAll | System::Raw | System::XdpRedirect => {}
        }
        Ok(())
    }

    /// Starts the device under test (mtugate, l2fwd) and applies the
    /// placement.
    fn start(
        &self,
        system: System,
        placement: Placement,
        tag: &str,
        syn_limit: bool,
    ) -> Result<Option<Dut>> {
        let lab = &self.lab;
        let dut = match system {
            System::Mtugate | System::MtugateAll | System::MtugateRouter => {
                let cfg = self.a.out.join(format!("mtugate-{tag}.toml"));
                let steer = if system == System::MtugateAll {
                    "all"
                } else {
                    "exceptions"
                };
                let base = if system == System::MtugateRouter {
                    &self.router_config
                } else {
                    &self.base_config
                };
                // A run directory of its own (per lab prefix): another
                // mtugate on this machine (a test suite, another lab) must
                // not refuse this one, nor this one it.
                let run_dir = format!("/run/mtugate-{}", self.a.prefix);
                std::fs::write(
                    &cfg,
                    mtugate_config(
                        base,
                        self.a.dut_core,
                        syn_limit,
                        steer,
                        self.a.mtugate_napi.as_deref(),
                    )
                    .lines()
                    .map(|l| {
                        if l.trim_start().starts_with("run_dir") {
                            format!("run_dir = \"{run_dir}\"\n")
                        } else {
                            format!("{l}\n")
                        }
                    })
                    .collect::<String>(),
                )?;
                let stats = self.a.out.join(format!("mtugate-{tag}.final.json"));
                let _ = std::fs::remove_file(&stats);
                let err = self.a.out.join(format!("mtugate-{tag}.log"));
                let child = lab
                    .cmd("dut")
                    .arg(&self.mtugate)
                    .args(["run", "--config"])
                    .arg(&cfg)
                    .arg("--final-stats")
                    .arg(&stats)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(&err)?)
                    .spawn()
                    .context("starting mtugate")?;
                Some(Dut {
                    child,
                    stderr: err,
                    final_stats: Some(stats),
                })
            }
            System::Raw => {
                let err = self.a.out.join(format!("l2fwd-{tag}.log"));
                let child = lab
                    .cmd("dut")
                    .arg(&self.me)
                    .args(["l2fwd", "-i", "in0", "--peer", "out0", "--yield"])
                    .args(["--core", &self.a.dut_core.to_string()])
                    .args(["--duration", "600", "--interval", "0"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(&err)?)
                    .spawn()
                    .context("starting l2fwd")?;
                Some(Dut {
                    child,
                    stderr: err,
                    final_stats: None,
                })
            }
            System::XdpRedirect | System::XdpFwd => {
                let (name, defines) = if system == System::XdpRedirect {
                    // Compiled for this lab: out0's index, the server's and
                    // out0's MAC addresses.
                    let bytes = |mac: String| -> String {
                        mac.split(':')
                            .map(|b| format!("0x{b}"))
                            .collect::<Vec<_>>()
                            .join(",")
                    };
                    let dmac = bytes(lab.mac("server", "eth0")?);
                    let smac = bytes(lab.mac("dut", "out0")?);
                    let ifindex = lab.sh("dut", "cat /sys/class/net/out0/ifindex")?;
                    let defines = vec![
                        format!("-DOUT_IFINDEX={}", ifindex.trim()),
                        format!("-DDMAC={dmac}"),
                        format!("-DSMAC={smac}"),
                    ];
                    ("xdp_redirect", defines)
                } else {
                    // The kernel's FIB and neighbours name everything.
                    ("xdp_fwd", Vec::new())
                };
                let obj = self.a.out.join(format!("{name}-{tag}.o"));
                bpf_compile(&self.a.assets.join(format!("{name}.c")), &obj, &defines)?;
                let err = self.a.out.join(format!("{name}-{tag}.log"));
                // Attached while this shell lives; detached when it is
                // stopped (TERM), bounded by the same 600 s as l2fwd.
                let script = format!(
                    "ip link set dev in0 xdpdrv obj {} sec xdp || exit 1; \
                     trap 'ip link set dev in0 xdp off; exit 0' TERM INT; \
                     echo '{name}: attached to in0' >&2; \
                     i=0; while [ $i -lt 6000 ]; do sleep 0.1; i=$((i+1)); done; \
                     ip link set dev in0 xdp off",
                    obj.display()
                );
                let child = lab
                    .cmd("dut")
                    .args(["sh", "-c", &script])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(&err)?)
                    .spawn()
                    .with_context(|| format!("attaching {name}"))?;
                Some(Dut {
                    child,
                    stderr: err,
                    final_stats: None,
                })
            }
            System::Router | System::Bridge => None,
        };
        if let Some(d) = &dut {
            let want = if system.is_mtugate() {
                "mtugate running"
            } else if matches!(system, System::XdpRedirect | System::XdpFwd) {
                "attached to in0"
            } else {
                "l2fwd: in0+out0"
            };
            let end = Instant::now() + Duration::from_secs(15);
            loop {
                let log = std::fs::read_to_string(&d.stderr).unwrap_or_default();
                if log.contains(want) {
                    break;
                }
                if Instant::now() > end {
                    bail!("{} did not start: {log}", system.label());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if placement == Placement::Confined {
            let mask = format!("{:x}", 1u64 << self.a.dut_core);
            let napi = system.af_xdp() || self.a.kernel_confined == "napi";
            if napi && !system.af_xdp() {
                // The kernel's own forwarding in a NAPI thread: veth has
                // NAPI only with XDP or GRO.
                lab.sh("dut", "ethtool -K in0 gro on >/dev/null")?;
            }
            if napi {
                // mtugate may have turned threaded NAPI on itself ([xsk]
                // napi = "workers"): napi_thread turns it off and on.
                for pid in self.napi_thread("dut", "in0", self.a.dut_core)? {
                    if self.a.nice != 0 {
                        let _ = Command::new("renice")
                            .args(["-n", &self.a.nice.to_string(), "-p", &pid.to_string()])
                            .stdout(Stdio::null())
                            .status();
                    }
                }
            } else {
                lab.sh(
                    "dut",
                    &format!("echo {mask} > /sys/class/net/in0/queues/rx-0/rps_cpus"),
                )?;
            }
        }
        // Let ARP/ND and the first batches settle.
        std::thread::sleep(Duration::from_millis(200));
        Ok(dut)
    }

    /// Makes the NAPI of `iface` in namespace `which` a kernel thread and
    /// pins it to `core`; returns the threads' ids. Off and on, so that
    /// the threads that appear are this interface's (another namespace may
    /// have one of the same name).
    fn napi_thread(&self, which: &str, iface: &str, core: usize) -> Result<Vec<i32>> {
        let knob = format!("/sys/class/net/{iface}/threaded");
        self.lab.sh(which, &format!("echo 0 > {knob}"))?;
        let before = napi_threads(iface);
        self.lab.sh(which, &format!("echo 1 > {knob}"))?;
        for _ in 0..50 {
            let new: Vec<i32> = napi_threads(iface).difference(&before).copied().collect();
            if !new.is_empty() {
                let mut set = nix::sched::CpuSet::new();
                set.set(core)?;
                for &pid in &new {
                    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(pid), &set)
                        .with_context(|| format!("pinning the NAPI thread of {iface}"))?;
                }
                return Ok(new);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        bail!("no NAPI thread of {which}'s {iface} appeared after enabling threaded NAPI")
    }

    /// The generator's command line in the client namespace.
    fn gen_cmd(&self, system: System, mode: &str) -> Result<Command> {
        let lab = &self.lab;
        let dst_mac = if system.routed() {
            lab.mac("dut", "in0")?
        } else {
            lab.mac("server", "eth0")?
        };
        let (s4, d4, s6, d6) = addrs(system);
        let mut c = lab.cmd("client");
        c.args(["taskset", "-c", &self.a.gen_core.to_string()])
            .arg(&self.me)
            .arg(mode)
            .args(["-i", "eth0", "--dst-mac", &dst_mac])
            .args(["--src", s4, "--dst", d4, "--src6", s6, "--dst6", d6])
            .stdin(Stdio::null());
        match (mode, &self.livegen_obj) {
            ("livegen", Some(obj)) => {
                c.arg("--obj").arg(obj);
            }
            _ => {
                c.args(["--interval", "0"]);
            }
        }
        Ok(c)
    }

    fn throughput(
        &self,
        scenario: &str,
        placement: Placement,
        system: System,
        rep: u32,
    ) -> Result<Throughput> {
        self.traffic(scenario, placement, system, rep, None, self.duration())
    }

    /// One generator run of `scenario` for `secs`, flat out or at `rate`.
    fn traffic(
        &self,
        scenario: &str,
        placement: Placement,
        system: System,
        rep: u32,
        rate: Option<f64>,
        secs: f64,
    ) -> Result<Throughput> {
        let lab = &self.lab;
        let (profile, frags) = match scenario {
            "64" => ("udp64", 1.0),
            // 1500-byte IP packets at MTU 1400: two fragments each, except
            // through the raw forwarder, which does not fragment.
            _ => ("udp1500", if system == System::Raw { 1.0 } else { 2.0 }),
        };
        let json = self.a.out.join(format!(
            "gen-{scenario}-{}-{:?}-{rep}.json",
            placement.name(),
            system
        ));
        let load = load1();
        let c0 = lab.counters("client", "eth0", &["tx_packets", "tx_dropped"])?;
        let d0 = lab.counters("dut", "in0", &["rx_packets"])?;
        let s0 = lab.counters("server", "eth0", &["rx_packets"])?;
        let mode = if self.livegen_obj.is_some() {
            "livegen"
        } else {
            "gen"
        };
        let mut gen = self.gen_cmd(system, mode)?;
        gen.args(["-p", profile, "-d", &secs.to_string()]);
        if let Some(r) = rate {
            gen.args(["--rate", &format!("{r:.0}")]);
        }
        let out = gen
            .arg("--json")
            .arg(&json)
            .output()
            .context("running the generator")?;
        if !out.status.success() {
            bail!("generator failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(100));
        let c1 = lab.counters("client", "eth0", &["tx_packets", "tx_dropped"])?;
        let d1 = lab.counters("dut", "in0", &["rx_packets"])?;
        let s1 = lab.counters("server", "eth0", &["rx_packets"])?;
        let g: Value = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
        let secs = g["seconds"].as_f64().unwrap_or(f64::NAN);
        let offered = g["tx_completed"].as_f64().unwrap_or(f64::NAN);
        let sink = (s1[0] - s0[0]) as f64;
        let datagrams = sink / frags;
        Ok(Throughput {
            scenario: scenario.into(),
            placement,
            system,
            rep,
            seconds: secs,
            offered_pps: offered / secs,
            client_tx_pps: ((c1[0] + c1[1]) - (c0[0] + c0[1])) as f64 / secs,
            dut_rx_pps: (d1[0] - d0[0]) as f64 / secs,
            sink_pps: sink / secs,
            sink_datagrams_pps: datagrams / secs,
            loss: if offered > 0.0 {
                (1.0 - datagrams / offered).max(0.0)
            } else {
                f64::NAN
            },
            load1: load,
        })
    }

    /// The no-drop rate of `system` (set up and started by the caller):
    /// a first trial flat out, then a binary search on the offered rate
    /// between the highest rate that passed and the lowest that failed.
    fn ndr(&self, placement: Placement, system: System) -> Result<Ndr> {
        let tol = self.a.loss_tolerance;
        let secs = if self.a.short {
            1.0
        } else {
            self.a.ndr_duration
        };
        let mut trials = Vec::new();
        let mut trial = |rate: Option<f64>, n: u32| -> Result<NdrTrial> {
            let t = self.traffic("64", placement, system, 1000 + n, rate, secs)?;
            let r = NdrTrial {
                asked_pps: rate,
                offered_pps: t.offered_pps,
                loss: t.loss,
                pass: t.loss <= tol,
            };
            eprintln!(
                "compare: ndr {:9} {:40} asked {:>9} offered {:>8.0} pps loss {:.4} % {}",
                placement.name(),
                system.label(),
                rate.map_or("flat out".into(), |r| format!("{r:.0}")),
                r.offered_pps,
                r.loss * 100.0,
                if r.pass { "pass" } else { "FAIL" }
            );
            trials.push(r.clone());
            Ok(r)
        };
        // CI (--short): a flat-out trial and two halvings.
        let max_trials = if self.a.short {
            self.a.ndr_trials.min(3)
        } else {
            self.a.ndr_trials
        };
        let first = trial(None, 0)?;
        let mut b = Bracket::new(first.offered_pps, first.pass, self.a.ndr_precision);
        let mut n = 1;
        while let Some(mid) = b.next() {
            if n >= max_trials {
                break;
            }
            self.check_stop()?;
            let t = trial(Some(mid), n)?;
            n += 1;
            b.record(mid, t.offered_pps, t.pass);
        }
        Ok(Ndr {
            placement,
            system,
            tolerance: tol,
            ndr_pps: b.pass,
            fail_pps: b.fail,
            trials,
        })
    }

    fn duration(&self) -> f64 {
        if self.a.short {
            1.0
        } else {
            self.a.duration
        }
    }

    fn latency(
        &self,
        placement: Placement,
        system: System,
        rate: f64,
        extra: Option<&str>,
        tag: &str,
        secs: f64,
    ) -> Result<LatencySummary> {
        let json = self.a.out.join(format!("latency-{tag}.json"));
        let hgrm = self.a.out.join(format!("latency-{tag}.hgrm"));
        let mut c = self.gen_cmd(system, "latency")?;
        c.args(["--rate", &format!("{rate:.0}"), "-d", &secs.to_string()])
            .args(["--rx-netns", &self.lab.ns("server")])
            .args([
                "--label",
                &format!("{} ({})", system.label(), placement.name()),
            ])
            .arg("--hgrm")
            .arg(&hgrm)
            .arg("--json")
            .arg(&json);
        match (extra, &self.livegen_obj) {
            (Some(e), _) => {
                c.args(["--extra", e]);
            }
            // Probes as raw XDP frames, like the throughput runs' traffic.
            (None, Some(obj)) => {
                c.arg("--livegen-obj").arg(obj);
            }
            (None, None) => {}
        }
        let out = c.output().context("running the latency prober")?;
        if !out.status.success() {
            bail!(
                "latency prober failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let text = std::fs::read_to_string(&json)?;
        let v: Value = serde_json::from_str(&text)?;
        let mut s = LatencySummary {
            label: v["label"].as_str().unwrap_or("").into(),
            rate: v["rate"].as_f64().unwrap_or(0.0),
            sent: v["sent"].as_u64().unwrap_or(0),
            received: v["received"].as_u64().unwrap_or(0),
            loss: v["loss"].as_f64().unwrap_or(f64::NAN),
            reordered: v["reordered"].as_u64().unwrap_or(0),
            p50_us: v["p50_us"].as_f64().unwrap_or(f64::NAN),
            p90_us: v["p90_us"].as_f64().unwrap_or(f64::NAN),
            p99_us: v["p99_us"].as_f64().unwrap_or(f64::NAN),
            p999_us: v["p999_us"].as_f64().unwrap_or(f64::NAN),
            max_us: v["max_us"].as_f64().unwrap_or(f64::NAN),
            mean_us: v["mean_us"].as_f64().unwrap_or(f64::NAN),
            percentiles: Vec::new(),
            extra_sent: v["extra_sent"].as_u64().unwrap_or(0),
        };
        if let Some(ps) = v["percentiles"].as_array() {
            s.percentiles = ps
                .iter()
                .filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?)))
                .collect();
        }
        Ok(s)
    }

    /// SYN rewrites counted by the device: mtugate's final stats, or the
    /// packet counter of the TCPMSS rule.
    fn iptables_rewrites(&self) -> Result<u64> {
        let out = self
            .lab
            .sh("dut", "iptables -t mangle -L FORWARD -v -x -n")?;
        Ok(out
            .lines()
            .filter(|l| l.contains("TCPMSS"))
            .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
            .sum())
    }

    fn flood_run(
        &self,
        placement: Placement,
        system: System,
        syn_limit: bool,
        flood: bool,
    ) -> Result<Flood> {
        let label = match (system, syn_limit) {
            (System::Mtugate, true) => "mtugate, SYN limit on".to_string(),
            (System::Mtugate, false) => "mtugate, SYN limit off".to_string(),
            (System::MtugateAll, true) => "mtugate all via AF_XDP, SYN limit on".to_string(),
            (System::MtugateAll, false) => "mtugate all via AF_XDP, SYN limit off".to_string(),
            (s, _) => s.label().to_string(),
        };
        let tag = format!(
            "flood-{}-{:?}-{}-{}",
            placement.name(),
            system,
            if syn_limit { "limit" } else { "nolimit" },
            if flood { "flood" } else { "base" }
        );
        self.prepare(system, 1400)?;
        let dut = self.start(system, placement, &tag, syn_limit)?;
        let secs = if self.a.short {
            2.0
        } else {
            self.a.flood_duration
        };
        let srv_json = self.a.out.join(format!("{tag}.server.json"));
        let cli_json = self.a.out.join(format!("{tag}.client.json"));
        let probe = self.a.assets.join("tcp_probe.py");
        let mut server = self
            .lab
            .cmd("server")
            .args(["python3"])
            .arg(&probe)
            .args(["server", "5201", &format!("{}", secs + 3.0)])
            .arg(&srv_json)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the TCP server")?;
        // Wait for "listening".
        {
            use std::io::BufRead;
            let so = server.stdout.take().context("server stdout")?;
            let mut line = String::new();
            std::io::BufReader::new(so).read_line(&mut line)?;
        }
        let (_, d4, _, _) = addrs(system);
        let mut client = self
            .lab
            .cmd("client")
            .args(["taskset", "-c", &self.a.gen_core.to_string(), "python3"])
            .arg(&probe)
            .args([
                "client",
                d4,
                "5201",
                &self.a.flood_conn_rate.to_string(),
                &format!("{secs}"),
            ])
            .arg(&cli_json)
            .stdin(Stdio::null())
            .spawn()
            .context("starting the TCP client")?;
        let before = if system.af_xdp() {
            0
        } else {
            self.iptables_rewrites()?
        };
        let probes = self.latency(
            placement,
            system,
            self.a.flood_probe_rate,
            flood.then_some("syn-flood"),
            &tag,
            secs,
        );
        let _ = client.wait();
        let _ = server.wait();
        let after = if system.af_xdp() {
            0
        } else {
            self.iptables_rewrites()?
        };
        let stats = match dut {
            Some(d) => d.stop()?,
            None => None,
        };
        let probes = probes?;
        let srv: Value =
            serde_json::from_str(&std::fs::read_to_string(&srv_json).unwrap_or_default())
                .unwrap_or(Value::Null);
        let cli: Value =
            serde_json::from_str(&std::fs::read_to_string(&cli_json).unwrap_or_default())
                .unwrap_or(Value::Null);
        let (rewrites, limited) = match &stats {
            Some(s) => {
                let inside = s
                    .ports
                    .get("inside")
                    .context("mtugate's final stats have no port \"inside\"")?;
                // The XDP stage polices SYNs before the copy: what it did
                // not grant (dropped at a source's or the appliance's
                // budget, or passed unclamped over it).
                let x = s
                    .xdp
                    .iter()
                    .find(|x| x.port == "inside")
                    .map(|x| x.run)
                    .unwrap_or_default();
                (
                    inside.mss_clamped[family::V4] as f64,
                    (inside.syn_limited
                        + x.syn_source_limited
                        + x.syn_over_dropped
                        + x.syn_over_passed) as f64,
                )
            }
            None => ((after - before) as f64, 0.0),
        };
        let mut conn_mss = BTreeMap::new();
        if let Some(m) = srv["mss"].as_object() {
            for (k, v) in m {
                conn_mss.insert(k.clone(), v.as_u64().unwrap_or(0));
            }
        }
        // Flood rate: what the prober sent beyond the probes.
        let flood_pps = probes.extra_sent as f64 / secs;
        Ok(Flood {
            placement,
            system: label,
            flood,
            flood_pps,
            probe_rx_pps: probes.received as f64 / secs,
            probes,
            conns_attempted: cli["attempted"].as_u64().unwrap_or(0),
            conns_completed: cli["completed"].as_u64().unwrap_or(0),
            conn_mss,
            rewrites_pps: rewrites / secs,
            syn_limited_pps: limited / secs,
        })
    }
}

/// Runs `compare`.
pub fn run(a: CompareArgs) -> Result<()> {
    if nix::unistd::geteuid().as_raw() != 0 {
        bail!("compare needs root (network namespaces, XDP, iptables)");
    }
    std::fs::create_dir_all(&a.out)?;
    let stop = mtugate_xsk::stop_flag_on_signals()?;
    let me = std::env::current_exe()?;
    let mtugate = a
        .mtugate
        .clone()
        .unwrap_or_else(|| me.with_file_name("mtugate"));
    let systems: Vec<System> = a
        .systems
        .split(',')
        .map(System::parse)
        .collect::<Result<_>>()?;
    let placements: Vec<Placement> = a
        .placements
        .split(',')
        .map(Placement::parse)
        .collect::<Result<_>>()?;
    let scenarios: Vec<String> = a.scenarios.split(',').map(str::to_owned).collect();
    for s in &scenarios {
        if !matches!(s.as_str(), "64" | "frag" | "latency" | "flood" | "ndr") {
            bail!("unknown scenario {s:?} (64, frag, latency, flood, ndr)");
        }
    }
    if systems.iter().any(|s| s.is_mtugate()) && !mtugate.exists() {
        bail!(
            "{} not found: build it (cargo build --release -p mtugate) or give --mtugate",
            mtugate.display()
        );
    }
    let base_config = std::fs::read_to_string(&a.mtugate_config)
        .with_context(|| format!("reading {}", a.mtugate_config.display()))?;
    let router_path = a.mtugate_config.with_file_name("router.toml");
    let router_config = if systems.contains(&System::MtugateRouter) {
        std::fs::read_to_string(&router_path)
            .with_context(|| format!("reading {}", router_path.display()))?
    } else {
        String::new()
    };
    // The sink program, compiled for this kernel's headers.
    let sink_obj = a.out.join("sink_drop.o");
    bpf_compile(&a.assets.join("sink_drop.c"), &sink_obj, &[])?;
    let livegen_obj = if a.generator == "live" {
        let obj = a.out.join("xdp_livegen.o");
        // -g: libbpf needs the BTF of the program's global data.
        bpf_compile(&a.assets.join("xdp_livegen.c"), &obj, &["-g".into()])?;
        Some(obj)
    } else {
        None
    };
    let lab = Lab {
        script: a.lab.clone(),
        prefix: a.prefix.clone(),
        nice: a.nice,
    };
    let mut meta = BTreeMap::new();
    meta.insert("started".into(), now_utc());
    meta.insert(
        "load_before".into(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
            .into(),
    );
    meta.insert("kernel".into(), sh_out("uname -r"));
    meta.insert(
        "cpu".into(),
        sh_out("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
    );
    meta.insert("cpus".into(), sh_out("nproc"));
    meta.insert("sink".into(), a.sink.clone());
    meta.insert("kernel_confined".into(), a.kernel_confined.clone());
    meta.insert(
        "generator".into(),
        if a.generator == "live" {
            "live: livegen, raw XDP frames into the client's eth0 (no skb reaches in0)".into()
        } else {
            "xsk: the AF_XDP gen (skbs on the veth)".into()
        },
    );
    meta.insert("iptables".into(), sh_out("iptables -V"));
    meta.insert(
        "command".into(),
        std::env::args().collect::<Vec<_>>().join(" "),
    );
    meta.insert(
        "placement".into(),
        format!(
            "lab processes and the NAPI thread at nice {n}; generator on CPU {g}; device under test on CPU {d}. confined: in0 threaded NAPI pinned to CPU {d} (beside the worker for AF_XDP); the kernel's forwarding {k}. natural: kernel defaults (veth receive work runs on the sender's CPU {g})",
            g = a.gen_core,
            d = a.dut_core,
            n = a.nice,
            k = if a.kernel_confined == "napi" {
                "likewise (GRO on in0 for a NAPI instance)"
            } else {
                "moved there by RPS on in0 instead"
            }
        ),
    );
    let ctx = Ctx {
        a,
        lab,
        me,
        mtugate,
        sink_obj,
        livegen_obj,
        base_config,
        router_config,
        stop,
    };
    let a = &ctx.a;
    let reps = if a.short { 1 } else { a.reps };
    let mut report = Report {
        meta,
        throughput: Vec::new(),
        latency: Vec::new(),
        flood: Vec::new(),
        ndr: Vec::new(),
    };

    // 1. Throughput: 64-byte and fragmentation, systems interleaved.
    let tput: Vec<&str> = scenarios
        .iter()
        .map(String::as_str)
        .filter(|s| matches!(*s, "64" | "frag"))
        .collect();
    if !tput.is_empty() {
        for rep in 0..reps {
            for &placement in &placements {
                for &system in &systems {
                    let mtu = if system == System::Raw { 1500 } else { 1400 };
                    ctx.prepare(system, mtu)?;
                    let tag = format!("{}-{:?}-{rep}", placement.name(), system);
                    let dut = ctx.start(system, placement, &tag, true)?;
                    for &sc in &tput {
                        // The bare XDP programs do not fragment: 64 B only.
                        if matches!(system, System::XdpRedirect | System::XdpFwd) && sc != "64" {
                            continue;
                        }
                        let r = ctx.throughput(sc, placement, system, rep)?;
                        eprintln!(
                            "compare: rep {rep} {sc:>5} {:9} {:40} offered {:>8.0} sink {:>8.0} pps ({:>8.0} datagrams/s) loss {:5.1} % load {:.2}",
                            placement.name(),
                            system.label(),
                            r.offered_pps,
                            r.sink_pps,
                            r.sink_datagrams_pps,
                            r.loss * 100.0,
                            r.load1
                        );
                        report.throughput.push(r);
                    }
                    // Short (CI) mode: the latency run reuses this setup, at a
                    // fixed rate, instead of a setup of its own.
                    if a.short && rep == 0 && scenarios.iter().any(|s| s == "latency") {
                        let rate = a.latency_rate.unwrap_or(50_000.0);
                        let s = ctx.latency(placement, system, rate, None, &tag, 1.0)?;
                        report.latency.push((placement, system, s));
                    }
                    if let Some(d) = dut {
                        d.stop()?;
                    }
                }
            }
        }
    }

    // 2. Latency at 50 % of the slowest system's 64-byte rate.
    if !a.short && scenarios.iter().any(|s| s == "latency") {
        // One rate for every system and placement: 50 % of the slowest
        // system's 64-byte rate anywhere in this run, so every row carries
        // the same load (and the tester's CPU, which does the receive work
        // of AF_XDP devices in the natural placement, is not saturated).
        let rate = match a.latency_rate {
            Some(r) => r,
            None => {
                let slowest = placements
                    .iter()
                    .flat_map(|&p| systems.iter().map(move |&s| (p, s)))
                    .map(|(p, s)| med(&report.throughput, "64", p, s, |t| t.sink_pps))
                    .filter(|x| x.is_finite())
                    .fold(f64::INFINITY, f64::min);
                if slowest.is_finite() {
                    (slowest * 0.5).max(1000.0)
                } else {
                    100_000.0
                }
            }
        };
        for &placement in &placements {
            let mut runs: Vec<Vec<LatencySummary>> = vec![Vec::new(); systems.len()];
            for rep in 0..a.latency_reps.max(1) {
                for (i, &system) in systems.iter().enumerate() {
                    let mtu = if system == System::Raw { 1500 } else { 1400 };
                    ctx.prepare(system, mtu)?;
                    let tag = format!("{}-{:?}-{rep}", placement.name(), system);
                    let dut = ctx.start(system, placement, &format!("lat-{tag}"), true)?;
                    let s = ctx.latency(placement, system, rate, None, &tag, a.latency_duration)?;
                    eprintln!(
                        "compare: latency rep {rep} {:9} {:40} at {rate:.0}/s: p50 {:.1} p99 {:.1} p99.9 {:.1} max {:.1} µs, loss {:.2} %",
                        placement.name(),
                        system.label(),
                        s.p50_us,
                        s.p99_us,
                        s.p999_us,
                        s.max_us,
                        s.loss * 100.0
                    );
                    if let Some(d) = dut {
                        d.stop()?;
                    }
                    runs[i].push(s);
                }
            }
            for (i, &system) in systems.iter().enumerate() {
                let mut v = std::mem::take(&mut runs[i]);
                v.sort_by(|x, y| x.p99_us.total_cmp(&y.p99_us));
                let all_p99: Vec<String> = v.iter().map(|x| format!("{:.1}", x.p99_us)).collect();
                let mid = v.len() / 2;
                let mut chosen = v.swap_remove(mid);
                chosen.label =
                    format!("{} [p99 of the runs: {}]", chosen.label, all_p99.join(", "));
                report.latency.push((placement, system, chosen));
            }
        }
    }

    // 2b. The no-drop rate of every system in every placement.
    if scenarios.iter().any(|s| s == "ndr") {
        for &placement in &placements {
            for &system in &systems {
                let mtu = if system == System::Raw { 1500 } else { 1400 };
                ctx.prepare(system, mtu)?;
                let tag = format!("ndr-{}-{:?}", placement.name(), system);
                let dut = ctx.start(system, placement, &tag, true)?;
                let r = ctx.ndr(placement, system);
                if let Some(d) = dut {
                    d.stop()?;
                }
                report.ndr.push(r?);
            }
        }
    }

    // 3. SYN flood: mtugate with the limit on and off, and the kernel.
    if scenarios.iter().any(|s| s == "flood") {
        let placement = placements.first().copied().unwrap_or(Placement::Confined);
        let mut runs: Vec<(System, bool)> = Vec::new();
        if systems.contains(&System::Mtugate) {
            runs.push((System::Mtugate, true));
            runs.push((System::Mtugate, false));
        }
        // The short (CI) run leaves the bridge out of the flood.
        let kernels: &[System] = if a.short {
            &[System::Router]
        } else {
            &[System::Router, System::Bridge]
        };
        for &s in kernels {
            if systems.contains(&s) {
                runs.push((s, true));
            }
        }
        for (system, limit) in runs {
            for flood in [false, true] {
                let f = ctx.flood_run(placement, system, limit, flood)?;
                eprintln!(
                    "compare: flood {:9} {:32} flood {:5}: probes {:>7.0}/s rx, conns {}/{} mss {:?}, rewrites {:.0}/s, over limit {:.0}/s, p99 {:.1} µs",
                    placement.name(),
                    f.system,
                    flood,
                    f.probe_rx_pps,
                    f.conns_completed,
                    f.conns_attempted,
                    f.conn_mss,
                    f.rewrites_pps,
                    f.syn_limited_pps,
                    f.probes.p99_us
                );
                report.flood.push(f);
            }
        }
    }
    ctx.lab.down();
    report.meta.insert(
        "load_after".into(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
            .into(),
    );
    report.meta.insert("finished".into(), now_utc());

    let md = markdown(&report, &systems, &placements, reps);
    std::fs::write(a.out.join("compare.md"), &md)?;
    std::fs::write(
        a.out.join("compare.json"),
        serde_json::to_string_pretty(&report)? + "\n",
    )?;
    if !report.latency.is_empty() {
        let series: Vec<Series> = report
            .latency
            .iter()
            .map(|(p, s, l)| Series {
                label: format!("{} ({})", short_label(*s), p.name()),
                points: l.percentiles.clone(),
            })
            .collect();
        let title = "One-way latency through each device (64-byte UDP probes)";
        std::fs::write(
            a.out.join("latency.svg"),
            plot::svg(title, &series, placements.len() > 1),
        )?;
    }
    println!("{md}");
    eprintln!(
        "compare: wrote {}/compare.md, compare.json, latency.svg",
        a.out.display()
    );
    Ok(())
}

/// mtugate's configuration for a run: `base` with the worker on `core`,
/// `[xsk] steer` set to `steer` and, without `syn_limit`, the SYN limits
/// set to 0 (unlimited).
pub fn mtugate_config(
    base: &str,
    core: usize,
    syn_limit: bool,
    steer: &str,
    napi: Option<&str>,
) -> String {
    let mut out = String::new();
    let mut section = String::new();
    for line in base.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            section = t.to_owned();
            if let (Some(n), "[xsk]") = (napi, t) {
                let _ = writeln!(out, "{line}\nnapi = \"{n}\"   # compare --mtugate-napi");
                continue;
            }
        }
        if section == "[xsk]" && napi.is_some() && t.starts_with("napi") {
            continue;
        }
        if section == "[workers]" && t.starts_with("cores") {
            let _ = writeln!(out, "cores = [{core}]");
            continue;
        }
        if section == "[xsk]" && t.starts_with("steer") {
            let _ = writeln!(out, "steer = \"{steer}\"");
            continue;
        }
        if section == "[syn_limit]"
            && !syn_limit
            && (t.starts_with("rate_pps") || t.starts_with("per_source_pps"))
        {
            let key = t.split('=').next().unwrap_or("").trim();
            let _ = writeln!(out, "{key} = 0   # off for this run");
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Compiles one of the lab's BPF programs (`deploy/perf/*.c`) for this
/// kernel's headers: `clang -O2 -target bpf` (no debug info unless
/// `extra` asks for it) with `extra` flags.
fn bpf_compile(src: &std::path::Path, obj: &std::path::Path, extra: &[String]) -> Result<()> {
    let arch_inc = format!("/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    let st = Command::new("clang")
        .args(["-O2", "-g0", "-target", "bpf", "-I", &arch_inc])
        .args(extra)
        .arg("-c")
        .arg(src)
        .arg("-o")
        .arg(obj)
        .status()
        .with_context(|| format!("running clang for {}", src.display()))?;
    if !st.success() {
        bail!("compiling {} failed", src.display());
    }
    Ok(())
}

fn short_label(s: System) -> &'static str {
    match s {
        System::Mtugate => "mtugate",
        System::MtugateAll => "mtugate (all AF_XDP)",
        System::Router => "kernel router",
        System::MtugateRouter => "mtugate router",
        System::Bridge => "kernel bridge",
        System::Raw => "raw AF_XDP",
        System::XdpRedirect => "bare XDP redirect",
        System::XdpFwd => "bare XDP FIB forward",
    }
}

fn sh_out(cmd: &str) -> String {
    Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn now_utc() -> String {
    sh_out("date -u +%Y-%m-%dT%H:%M:%SZ")
}

/// Median of `f` over the repetitions of one cell.
fn med(
    t: &[Throughput],
    scenario: &str,
    placement: Placement,
    system: System,
    f: impl Fn(&Throughput) -> f64,
) -> f64 {
    median(
        t.iter()
            .filter(|x| x.scenario == scenario && x.placement == placement && x.system == system)
            .map(f)
            .collect(),
    )
}

fn fmt_ratio(a: f64, b: f64) -> String {
    if a.is_finite() && b.is_finite() && b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "—".into()
    }
}

fn fmt_num(x: f64, f: impl Fn(f64) -> String) -> String {
    if x.is_finite() {
        f(x)
    } else {
        "—".into()
    }
}

/// The generator's highest median offered 64-byte rate over the run's
/// systems and placements: what no device under test can exceed.
fn generator_ceiling(r: &Report, systems: &[System], placements: &[Placement]) -> f64 {
    placements
        .iter()
        .flat_map(|&p| {
            systems
                .iter()
                .map(move |&s| med(&r.throughput, "64", p, s, |t| t.offered_pps))
        })
        .filter(|v| v.is_finite())
        .fold(f64::NAN, f64::max)
}

/// The Markdown report: the table (a row per placement and system), the
/// goals, and the flood results.
pub fn markdown(r: &Report, systems: &[System], placements: &[Placement], reps: u32) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "| placement | system | 64 B Mpps | × kernel router | × ceiling | 64 B loss | 1514 B datagrams/s (k) | × kernel router | × ceiling | frag loss | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | probe loss |"
    );
    let _ = writeln!(
        o,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for &p in placements {
        for &s in systems {
            let m64 = med(&r.throughput, "64", p, s, |t| t.sink_pps);
            let k64 = med(&r.throughput, "64", p, System::Router, |t| t.sink_pps);
            let c64 = med(&r.throughput, "64", p, System::Raw, |t| t.sink_pps);
            let l64 = med(&r.throughput, "64", p, s, |t| t.loss);
            let fr = med(&r.throughput, "frag", p, s, |t| t.sink_datagrams_pps);
            let kfr = med(&r.throughput, "frag", p, System::Router, |t| {
                t.sink_datagrams_pps
            });
            let cfr = med(&r.throughput, "frag", p, System::Raw, |t| {
                t.sink_datagrams_pps
            });
            let lfr = med(&r.throughput, "frag", p, s, |t| t.loss);
            let lat = r
                .latency
                .iter()
                .find(|(lp, ls, _)| *lp == p && *ls == s)
                .map(|x| &x.2);
            let us = |f: fn(&LatencySummary) -> f64| {
                lat.map(|l| fmt_num(f(l), |x| format!("{x:.1}")))
                    .unwrap_or_else(|| "—".into())
            };
            let _ =
                writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                p.name(),
                s.label(),
                fmt_num(m64, |x| format!("{:.3}", x / 1e6)),
                fmt_ratio(m64, k64),
                fmt_ratio(m64, c64),
                fmt_num(l64, |x| format!("{:.1} %", x * 100.0)),
                fmt_num(fr, |x| format!("{:.0}", x / 1e3)),
                fmt_ratio(fr, kfr),
                if s == System::Raw { "—".into() } else { fmt_ratio(fr, cfr) },
                fmt_num(lfr, |x| format!("{:.1} %", x * 100.0)),
                us(|l| l.p50_us),
                us(|l| l.p90_us),
                us(|l| l.p99_us),
                us(|l| l.p999_us),
                us(|l| l.max_us),
                lat.map(|l| format!("{:.2} %", l.loss * 100.0))
                    .unwrap_or_else(|| "—".into()),
            );
        }
    }
    let _ = writeln!(
        o,
        "\nMedians of {reps} repetition(s). Mpps and datagrams/s are received at the sink. \
         The ceiling (raw AF_XDP, no processing) moves 1514-byte frames unfragmented \
         (its outside link is at MTU 1500): its frag column is frames/s."
    );
    if let Some((_, _, l)) = r.latency.first() {
        let _ = writeln!(
            o,
            "Latency: 64-byte UDP probes at {:.0}/s (50 % of the slowest system's 64-byte rate unless set); \
             per system, the run with the median p99 of its repetitions (every run's p99 is in the JSON label).",
            l.rate
        );
    }

    if !r.ndr.is_empty() {
        let tol = r.ndr[0].tolerance;
        let _ = writeln!(
            o,
            "\nNo-drop rate, 64-byte UDP: the highest offered rate that lost at most {:.3} % (a flat-out trial, then a binary search on the generator's rate):\n\n| placement | system | no-drop rate (kpps) | × kernel router | lowest failing rate (kpps) | trials |\n|---|---|---|---|---|---|",
            tol * 100.0
        );
        for n in &r.ndr {
            let k = r
                .ndr
                .iter()
                .find(|x| x.placement == n.placement && x.system == System::Router)
                .map_or(f64::NAN, |x| x.ndr_pps);
            let _ = writeln!(
                o,
                "| {} | {} | {:.0} | {} | {} | {} |",
                n.placement.name(),
                n.system.label(),
                n.ndr_pps / 1e3,
                fmt_ratio(n.ndr_pps, k),
                n.fail_pps.map_or("— (flat out passed)".into(), |f| format!(
                    "{:.0}",
                    f / 1e3
                )),
                n.trials.len()
            );
        }
    }

    // Goals.
    let _ = writeln!(
        o,
        "\n| goal | placement | measured | met |\n|---|---|---|---|"
    );
    for &p in placements {
        let m = |sc: &str, s: System| {
            if sc == "frag" {
                med(&r.throughput, sc, p, s, |t| t.sink_datagrams_pps)
            } else {
                med(&r.throughput, sc, p, s, |t| t.sink_pps)
            }
        };
        let mut goal = |name: &str, v: f64, want: f64| {
            if v.is_finite() {
                let _ = writeln!(
                    o,
                    "| {name} ≥ {want}× | {} | {v:.2}× | {} |",
                    p.name(),
                    if v >= want { "yes" } else { "**no**" }
                );
            }
        };
        goal(
            "mtugate all via AF_XDP / raw AF_XDP, 64 B",
            m("64", System::MtugateAll) / m("64", System::Raw),
            0.9,
        );
        goal(
            "mtugate fast path / kernel router, 64 B",
            m("64", System::Mtugate) / m("64", System::Router),
            if p == Placement::Confined { 2.0 } else { 1.5 },
        );
        goal(
            "mtugate fast path / all via AF_XDP (today's datapath), fragmented datagrams/s",
            m("frag", System::Mtugate) / m("frag", System::MtugateAll),
            1.0,
        );
        // Router mode against the kernel router (issue 11's goals).
        goal(
            "mtugate router / kernel router, 64 B",
            m("64", System::MtugateRouter) / m("64", System::Router),
            if p == Placement::Confined { 2.0 } else { 1.5 },
        );
        // What the lab can show at all: a bare XDP redirect against the
        // kernel router, and router mode against that ceiling.
        for (name, v) in [
            (
                "lab ceiling: bare XDP redirect / kernel router, 64 B",
                m("64", System::XdpRedirect) / m("64", System::Router),
            ),
            (
                "mtugate router / bare XDP redirect (share of the ceiling), 64 B",
                m("64", System::MtugateRouter) / m("64", System::XdpRedirect),
            ),
            (
                "lab ceiling with the kernel's FIB: bare XDP FIB forward / kernel router, 64 B",
                m("64", System::XdpFwd) / m("64", System::Router),
            ),
            (
                "mtugate router / bare XDP FIB forward (share of that ceiling), 64 B",
                m("64", System::MtugateRouter) / m("64", System::XdpFwd),
            ),
            // No device can forward more than the generator offers: its
            // highest median offered rate of the run (any system, any
            // placement) bounds every ratio from above.
            (
                "lab ceiling: the generator's rate (highest median offered) / kernel router, 64 B",
                generator_ceiling(r, systems, placements) / m("64", System::Router),
            ),
        ] {
            if v.is_finite() {
                let _ = writeln!(o, "| {name} | {} | {v:.2}× | — |", p.name());
            }
        }
        let p99 = |s: System| {
            r.latency
                .iter()
                .find(|(lp, ls, _)| *lp == p && *ls == s)
                .map(|x| x.2.p99_us)
        };
        if let (Some(a), Some(b)) = (p99(System::Mtugate), p99(System::Router)) {
            let _ = writeln!(
                o,
                "| mtugate fast path p99 ≤ kernel router p99 | {} | {a:.1} µs vs {b:.1} µs | {} |",
                p.name(),
                if a <= b { "yes" } else { "**no**" }
            );
        }
        if let (Some(a), Some(b)) = (p99(System::MtugateRouter), p99(System::Router)) {
            let _ = writeln!(
                o,
                "| mtugate router p99 ≤ kernel router p99 | {} | {a:.1} µs vs {b:.1} µs | {} |",
                p.name(),
                if a <= b { "yes" } else { "**no**" }
            );
        }
    }

    if !r.flood.is_empty() {
        let _ = writeln!(
            o,
            "\nSYN flood ({}): other traffic = 64-byte UDP probes at a fixed rate; flood = SYNs (MSS 1460) from random sources at the generator's maximum rate; legitimate connections from the client's TCP stack, MSS read from the SYN as the server received it (TCP_SAVED_SYN).\n",
            r.flood[0].placement.name()
        );
        let _ = writeln!(
            o,
            "| system | flood | flood SYNs/s | other traffic rx/s | × no-flood | probe p99 µs | legit conns completed | MSS seen by server | SYN rewrites/s | over limit/s |\n|---|---|---|---|---|---|---|---|---|---|"
        );
        for f in &r.flood {
            let base = r
                .flood
                .iter()
                .find(|b| b.system == f.system && !b.flood)
                .map(|b| b.probe_rx_pps);
            let _ = writeln!(
                o,
                "| {} | {} | {:.0} | {:.0} | {} | {:.1} | {}/{} | {} | {:.0} | {:.0} |",
                f.system,
                if f.flood { "yes" } else { "no" },
                f.flood_pps,
                f.probe_rx_pps,
                base.map(|b| fmt_ratio(f.probe_rx_pps, b))
                    .unwrap_or_else(|| "—".into()),
                f.probes.p99_us,
                f.conns_completed,
                f.conns_attempted,
                f.conn_mss
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                f.rewrites_pps,
                f.syn_limited_pps
            );
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(scenario: &str, p: Placement, s: System, pps: f64) -> Throughput {
        Throughput {
            scenario: scenario.into(),
            placement: p,
            system: s,
            rep: 0,
            seconds: 1.0,
            offered_pps: pps,
            client_tx_pps: pps,
            dut_rx_pps: pps,
            sink_pps: pps,
            sink_datagrams_pps: pps / 2.0,
            loss: 0.0,
            load1: 0.1,
        }
    }

    #[test]
    fn table_has_a_row_per_placement_and_system_and_the_ratios() {
        let all = [
            System::Mtugate,
            System::MtugateAll,
            System::Router,
            System::Bridge,
            System::Raw,
        ];
        let pl = [Placement::Confined, Placement::Natural];
        let mut r = Report {
            meta: BTreeMap::new(),
            throughput: Vec::new(),
            latency: Vec::new(),
            flood: Vec::new(),
            ndr: Vec::new(),
        };
        for p in pl {
            for (s, v) in all.iter().zip([1200e3, 600e3, 500e3, 300e3, 650e3]) {
                r.throughput.push(t("64", p, *s, v));
                r.throughput.push(t("frag", p, *s, v));
            }
        }
        let md = markdown(&r, &all, &pl, 1);
        for s in all {
            assert_eq!(md.matches(&format!("| {} |", s.label())).count(), 2, "{md}");
        }
        assert!(
            md.contains(
                "| confined | mtugate, all via AF_XDP (1 worker) | 0.600 | 1.20× | 0.92× |"
            ),
            "{md}"
        );
        assert!(md.contains(
            "| mtugate all via AF_XDP / raw AF_XDP, 64 B ≥ 0.9× | confined | 0.92× | yes |"
        ));
        assert!(
            md.contains(
                "| mtugate fast path / kernel router, 64 B ≥ 2× | confined | 2.40× | yes |"
            ),
            "{md}"
        );
        assert!(md.contains(
            "| mtugate fast path / all via AF_XDP (today's datapath), fragmented datagrams/s ≥ 1× | natural | 2.00× | yes |"
        ));
        // The generator's best offered rate (mtugate's 1.2 Mpps) over the
        // kernel router's 0.5 Mpps.
        assert!(
            md.contains("| lab ceiling: the generator's rate (highest median offered) / kernel router, 64 B | natural | 2.40× | — |"),
            "{md}"
        );
    }

    /// Against a system that loses nothing up to 412 kpps and a generator
    /// whose flat out is 1 Mpps, the search converges within its precision
    /// from below, in few trials.
    #[test]
    fn ndr_search_brackets_the_true_rate() {
        let truth = 412_000.0;
        let mut b = Bracket::new(1e6, false, 0.01);
        let mut n = 0;
        while let Some(mid) = b.next() {
            n += 1;
            assert!(n < 20, "no convergence");
            b.record(mid, mid, mid <= truth);
        }
        assert!(b.pass <= truth && b.pass >= truth * 0.98, "{b:?}");
        assert!(b.fail.unwrap() > truth, "{b:?}");
        assert!(n <= 8, "{n} trials");
        // Flat out passing ends the search at once.
        let b = Bracket::new(5e5, true, 0.01);
        assert_eq!((b.next(), b.pass), (None, 5e5));
        // A generator short of the rate asked is credited with what it
        // offered, not with the rate asked; the search still moves on.
        let mut b = Bracket::new(1e6, false, 0.01);
        b.record(5e5, 4e5, true);
        assert_eq!(b.pass, 4e5);
        assert_eq!(b.next(), Some(7.5e5));
    }

    #[test]
    fn ndr_table() {
        let ndr = |p, s, pps, fail| Ndr {
            placement: p,
            system: s,
            tolerance: 0.0,
            ndr_pps: pps,
            fail_pps: fail,
            trials: Vec::new(),
        };
        let r = Report {
            meta: BTreeMap::new(),
            throughput: Vec::new(),
            latency: Vec::new(),
            flood: Vec::new(),
            ndr: vec![
                ndr(Placement::Confined, System::Mtugate, 600e3, Some(620e3)),
                ndr(Placement::Confined, System::Router, 300e3, None),
            ],
        };
        let md = markdown(
            &r,
            &[System::Mtugate, System::Router],
            &[Placement::Confined],
            1,
        );
        assert!(
            md.contains("| confined | mtugate, fast path (1 worker) | 600 | 2.00× | 620 | 0 |"),
            "{md}"
        );
        assert!(md.contains("| 300 | 1.00× | — (flat out passed) |"), "{md}");
    }

    #[test]
    fn config_for_a_run() {
        let base = "[syn_limit]\nrate_pps = 100000\nburst = 10\nper_source_pps = 1000\n[workers]\nqueues = [0]\ncores = [3]\n";
        let base = format!("{base}[xsk]\nsteer = \"exceptions\"\n");
        let base = base.as_str();
        let on = mtugate_config(base, 1, true, "all", None);
        assert!(on.contains("rate_pps = 100000") && on.contains("cores = [1]"));
        assert!(on.contains("steer = \"all\"") && !on.contains("exceptions"));
        let off = mtugate_config(base, 1, false, "exceptions", Some("kernel"));
        assert!(off.contains("rate_pps = 0") && off.contains("per_source_pps = 0"));
        assert!(off.contains("burst = 10") && !off.contains("cores = [3]"));
        // --mtugate-napi: one napi line in [xsk], replacing the base's.
        assert!(!on.contains("napi"));
        assert_eq!(off.matches("napi = \"kernel\"").count(), 1);
        let with = format!("{base}napi = \"workers\"\n");
        let k = mtugate_config(&with, 1, true, "all", Some("kernel"));
        assert!(
            k.contains("napi = \"kernel\"") && !k.contains("napi = \"workers\""),
            "{k}"
        );
        let parsed: toml::Value = toml::from_str(&k).expect("valid TOML");
        assert_eq!(parsed["xsk"]["napi"].as_str(), Some("kernel"));
    }

    #[test]
    fn medians_skip_missing_values() {
        assert_eq!(median(vec![1.0, f64::NAN, 3.0]), 2.0);
        assert!(median(vec![]).is_nan());
        assert_eq!(fmt_ratio(1.0, 0.0), "—");
    }
}
