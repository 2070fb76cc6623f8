//! `mtugate`: the appliance binary.
//!
//! Reads a TOML config, binds AF_XDP sockets on every RX queue of the two
//! ports, runs one pinned poll-mode worker per queue and the management
//! thread, and on SIGINT/SIGTERM detaches everything and prints the final
//! counters. `mtugate stats` and `mtugate reload` talk to a running one.

#![deny(unsafe_code)]

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use mtugate::config::{
    FileConfig, Fragmenter, Mode, NapiPlacement, Validated, XskModeName, DEFAULT_RUN_DIR,
};
use mtugate::nic::NicBaseline;
use mtugate::reload::FileReloader;
use mtugate::{engine, idle, napi, privs, report, routes};
use mtugate_datapath::pipeline::{Clamp, DfPolicy, PortId};
use mtugate_datapath::pmtu::LearnTables;
use mtugate_mgmt::client::{self, ClientError, Endpoint};
use mtugate_mgmt::model::{PortStage, Stats};
use mtugate_mgmt::{final_stats::FinalXdp, view, Mgmt, MgmtOptions, QueueInfo};
use mtugate_xsk::{
    open_queue, stop_flag_on_signals, AttachOptions, BindMode, BusyPoll, FastPath, OnFailure,
    PortProgram, PortSpec, Takeover, XdpStats, XskConfig,
};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mtugate: an AF_XDP bump in the wire that clamps TCP MSS and enforces a
/// tunnel MTU (fragment, or drop with ICMP "fragmentation needed" / ICMPv6
/// "packet too big"), at line rate, with every drop counted.
#[derive(Parser, Debug)]
#[command(name = "mtugate", version = mtugate::VERSION, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the appliance until SIGINT or SIGTERM.
    ///
    /// Takes ownership of the ports (one live mtugate per interface),
    /// attaches the XDP stage to each through a pinned bpf_link (or swaps a
    /// new program into the link a previous run left) and binds one AF_XDP
    /// socket per port and RX queue; every RX queue must be bound (or it
    /// refuses to start). Prints the final counters on exit. The XDP stage
    /// stays, in its `[wire] on_failure` mode, after the process ends:
    /// `mtugate detach` removes it.
    Run {
        /// The configuration file (TOML; see deploy/configs/).
        #[arg(long, short)]
        config: PathBuf,
        /// Use copy mode even where the driver supports zero-copy.
        #[arg(long, conflicts_with = "force_zerocopy")]
        force_copy: bool,
        /// Require zero-copy; fail to start where the driver cannot.
        #[arg(long)]
        force_zerocopy: bool,
        /// Also write the final counters as JSON to this file on exit.
        #[arg(long, value_name = "FILE")]
        final_stats: Option<PathBuf>,
    },
    /// Validate a configuration file, including that its interfaces exist
    /// and which queues and cores it would use; attaches nothing.
    CheckConfig {
        /// The configuration file.
        file: PathBuf,
    },
    /// Show a running appliance's statistics: a live view refreshed every
    /// second (Ctrl-C quits), or once, or as JSON, or a latency histogram.
    Stats {
        /// Print one screen (or one JSON document) and exit.
        #[arg(long)]
        once: bool,
        /// The JSON document (`GET /stats`) instead of the view.
        #[arg(long)]
        json: bool,
        /// Write the merged latency histogram in the HdrHistogram
        /// percentile format (values in µs) to FILE ("-": stdout) and exit.
        #[arg(long, value_name = "FILE")]
        hgrm: Option<PathBuf>,
        /// Which latency `--hgrm` writes.
        #[arg(long, value_enum, default_value_t = LatencyKind::PacketCost)]
        latency: LatencyKind,
        /// With `--hgrm`: the last interval only, not since start.
        #[arg(long)]
        last_interval: bool,
        /// Refresh the live view this many times, then exit.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        #[command(flatten)]
        target: Target,
    },
    /// Remove the XDP stage (the pinned bpf_link and its program) from the
    /// ports of a configuration, for good. Refuses while an mtugate runs on
    /// them.
    Detach {
        /// The configuration file whose ports to release.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Make the running appliance re-read its configuration file and apply
    /// what can change live (MSS, MTUs, DF policy, rate limits, ICMP
    /// sources) at every worker's next batch boundary. An invalid file, or
    /// one that changes ports, queues or cores, changes nothing. Same as
    /// sending SIGHUP to `mtugate run`. Needs root (the control socket).
    Reload {
        #[command(flatten)]
        target: Target,
    },
    /// Write the man pages and shell completions into DIR (packaging).
    #[command(hide = true)]
    Generate {
        /// The output directory (man/ and completions/ go under it).
        dir: PathBuf,
    },
}

/// Which latency histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LatencyKind {
    /// Processing time per packet (batch time / batch size).
    PacketCost,
    /// Time from receive to transmit of a batch.
    Dwell,
}

/// Which appliance to talk to.
#[derive(Args, Debug)]
struct Target {
    /// The appliance's run directory (its control socket is
    /// DIR/mtugate.sock). Default: mgmt.run_dir of --config, else
    /// /run/mtugate.
    #[arg(long, value_name = "DIR")]
    run_dir: Option<PathBuf>,
    /// Take mgmt.run_dir from this configuration file.
    #[arg(long, short, value_name = "FILE", conflicts_with = "run_dir")]
    config: Option<PathBuf>,
    /// Read from the HTTP listener instead (e.g. http://127.0.0.1:9090);
    /// reads only.
    #[arg(long, value_name = "URL", conflicts_with_all = ["run_dir", "config"])]
    url: Option<String>,
}

impl Target {
    fn endpoint(&self) -> Result<Endpoint> {
        if let Some(u) = &self.url {
            return Ok(Endpoint::from_url(u)?);
        }
        let dir = match (&self.run_dir, &self.config) {
            (Some(d), _) => d.clone(),
            (None, Some(f)) => FileConfig::load(f)?.mgmt.run_dir,
            (None, None) => PathBuf::from(DEFAULT_RUN_DIR),
        };
        Ok(Endpoint::control(&dir))
    }
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // No colour codes in the journal (systemd: stderr is no terminal).
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Run {
            config,
            force_copy,
            force_zerocopy,
            final_stats,
        } => {
            run(&config, force_copy, force_zerocopy, final_stats.as_deref()).map_err(privs::explain)
        }
        Cmd::CheckConfig { file } => check_config(&file),
        Cmd::Stats {
            once,
            json,
            hgrm,
            latency,
            last_interval,
            count,
            target,
        } => match hgrm {
            Some(f) => stats_hgrm(&target, &f, latency, last_interval),
            None => stats(&target, once, json, count),
        },
        Cmd::Reload { target } => reload(&target),
        Cmd::Detach { config } => detach(&config),
        Cmd::Generate { dir } => generate(&dir),
    };
    if let Err(e) = r {
        // One line: the chain of causes, outermost first.
        let msg: Vec<String> = e.chain().map(|c| c.to_string()).collect();
        eprintln!("mtugate: {}", msg.join(": "));
        std::process::exit(2);
    }
}

/// A plan of what `run` would bind: queues and cores.
struct Plan {
    queues: Vec<u32>,
    cores: Vec<usize>,
    /// Allowed cores no worker uses: where the management threads go.
    spare: Vec<usize>,
}

/// RX queue count of an interface, from sysfs (namespace-aware under
/// `ip netns exec`, which remounts /sys).
fn rx_queues(iface: &str) -> Result<u32> {
    let dir = Path::new("/sys/class/net").join(iface);
    if !dir.exists() {
        bail!("interface {iface} does not exist (in this network namespace)");
    }
    let q = std::fs::read_dir(dir.join("queues"))
        .with_context(|| format!("reading the queues of {iface}"))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
        .count();
    Ok(q as u32)
}

fn plan(v: &Validated) -> Result<Plan> {
    let ports = &v.restart.ports;
    let counts = ports
        .iter()
        .map(|p| rx_queues(&p.iface))
        .collect::<Result<Vec<u32>>>()?;
    let queues: Vec<u32> = match &v.restart.workers.queues {
        Some(q) => q.clone(),
        None => (0..counts.iter().copied().max().unwrap_or(1)).collect(),
    };
    for (i, p) in ports.iter().enumerate() {
        let unbound: Vec<String> = (0..counts[i])
            .filter(|q| !queues.contains(q))
            .map(|q| q.to_string())
            .collect();
        if !unbound.is_empty() {
            bail!(
                "workers.queues: {} (port {}) has RX queues {} that would not be bound, and their packets would bypass mtugate; add them, or reduce the queues with `ethtool -L {} combined N`",
                p.iface,
                p.name,
                unbound.join(","),
                p.iface
            );
        }
        if let Some(q) = queues.iter().find(|&&q| q >= counts[i]) {
            bail!(
                "workers.queues: {} (port {}) has {} RX queue(s), there is no queue {q}",
                p.iface,
                p.name,
                counts[i]
            );
        }
    }
    let available: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    if available.is_empty() {
        bail!("cannot read the CPU cores this process may run on");
    }
    let cores: Vec<usize> = match &v.restart.workers.cores {
        Some(c) => {
            if let Some(bad) = c.iter().find(|c| !available.contains(c)) {
                bail!(
                    "workers.cores: core {bad} does not exist or is not allowed (available: {:?})",
                    available
                );
            }
            c.clone()
        }
        None => {
            // Leave the first core to the system when there is more than one.
            let pool: Vec<usize> = if available.len() > 1 {
                available[1..].to_vec()
            } else {
                available.clone()
            };
            (0..queues.len()).map(|i| pool[i % pool.len()]).collect()
        }
    };
    let spare = available
        .iter()
        .copied()
        .filter(|c| !cores.contains(c))
        .collect();
    Ok(Plan {
        queues,
        cores,
        spare,
    })
}

fn check_config(path: &Path) -> Result<()> {
    if idle::is_unconfigured(path) {
        idle::validate(path)?;
        println!("{}: ok\n  {}", path.display(), idle::notice(path));
        return Ok(());
    }
    let v = FileConfig::load(path)?.validate()?;
    let p = plan(&v)?;
    let cfg = v.worker_config()?;
    println!("{}: ok", path.display());
    if v.restart.mode == Mode::Router {
        println!(
            "  router: the kernel's routes decide; IPv4 SYNs clamped to {}, IPv6 to {}",
            clamp_word(v.settings.mss.ipv4, 40),
            clamp_word(v.settings.mss.ipv6, 60)
        );
        let r = &v.restart.router;
        println!(
            "  router: DF-clear IPv4 over the route MTU fragmented by {}; with no worker running, frames that need work are {}",
            match r.fragment {
                Fragmenter::Kernel => "the kernel (fragment = \"kernel\")",
                Fragmenter::Workers => "the workers (fragment = \"workers\")",
            },
            match r.on_failure {
                OnFailure::Bypass => "forwarded by the kernel, unclamped (on_failure = \"bypass\")",
                OnFailure::Block => "dropped (on_failure = \"block\")",
            }
        );
    }
    for (i, port) in v.restart.ports.iter().enumerate() {
        if v.restart.mode == Mode::Router {
            println!("  port {} ({})", port.name, port.iface);
            continue;
        }
        println!(
            "  port {} ({}): mtu {}, IPv4 SYNs arriving here clamped to {}, IPv6 to {}",
            port.name,
            port.iface,
            v.live.ports[i].mtu.unwrap_or_default(),
            cfg.clamp_for(0, PortId::new(i))
                .map_or("off".into(), |v| v.to_string()),
            cfg.clamp_for(1, PortId::new(i))
                .map_or("off".into(), |v| v.to_string()),
        );
    }
    let rules = cfg.rules();
    for (i, r) in v.live.rules.iter().enumerate() {
        let Some(a) = rules.action(i) else { continue };
        let mss = |f: usize| a.clamp[f].map_or("off".into(), |c| c.clamp.to_string());
        println!(
            "  rule {} {}: from {}, src {}, dst {}, vlan {}: IPv4 SYNs clamped to {}, IPv6 to {}, DF {}",
            i + 1,
            r.name,
            r.from.as_deref().unwrap_or("any port"),
            if r.src.is_empty() { "any".into() } else { r.src.join(" ") },
            if r.dst.is_empty() { "any".into() } else { r.dst.join(" ") },
            if r.vlan.is_empty() {
                "any".into()
            } else {
                format!("{:?}", r.vlan)
            },
            mss(0),
            mss(1),
            match a.df {
                None => "as [df]",
                Some(DfPolicy::Respect) => "respect",
                Some(DfPolicy::ClearUdp) => "clear-udp",
                Some(DfPolicy::ClearAll) => "clear-all",
            },
        );
    }
    if !rules.is_empty() {
        println!("  (first match wins; a SYN-ACK is matched as its SYN; no match: [mss] and [df])");
    }
    let pm = &v.settings.pmtu;
    println!(
        "  learned path MTUs: {}",
        if pm.learn {
            format!(
                "on (floor {} / 1280, kept {} s)",
                pm.min_mtu_v4, pm.expires_secs
            )
        } else {
            "off".into()
        }
    );
    for (q, c) in p.queues.iter().zip(&p.cores) {
        println!("  queue {q} -> worker on core {c}");
    }
    let m = &v.restart.mgmt;
    println!(
        "  mgmt: {}, http://{} (read-only), control socket {}, statistics {}",
        p.spare.first().map_or(
            "on the workers' cores (none left over)".into(),
            |c| format!("on core {c}")
        ),
        m.listen,
        Endpoint::control(&m.run_dir),
        if m.interval_ms == 0 {
            "off".to_string()
        } else {
            format!("every {} ms", m.interval_ms)
        }
    );
    Ok(())
}

/// Router mode: what `[mss] ipv4` / `ipv6` means, in words.
fn clamp_word(c: Clamp, overhead: u16) -> String {
    match c {
        Clamp::Off => "nothing (off)".into(),
        Clamp::Fixed(n) => n.to_string(),
        Clamp::Auto => {
            format!("the smaller route MTU (toward source, toward destination) minus {overhead}")
        }
    }
}

/// GET `path` from the appliance; the body of a 2xx answer.
fn get(ep: &Endpoint, path: &str) -> Result<String> {
    let r = client::request(ep, "GET", path)?;
    if !r.is_success() {
        bail!("{ep}: {}", r.body.trim());
    }
    Ok(r.body)
}

fn fetch_stats(ep: &Endpoint) -> Result<(String, Stats)> {
    let body = get(ep, "/stats")?;
    let s = serde_json::from_str(&body).with_context(|| format!("{ep}: reading /stats"))?;
    Ok((body, s))
}

fn stats(target: &Target, once: bool, json: bool, count: Option<u64>) -> Result<()> {
    let ep = target.endpoint()?;
    let mut out = std::io::stdout();
    let mut shown = 0u64;
    loop {
        let (body, s) = match fetch_stats(&ep) {
            Ok(x) => x,
            Err(e) if shown > 0 && e.downcast_ref::<ClientError>().is_some() => {
                println!();
                return Err(e.context("the appliance went away"));
            }
            Err(e) => return Err(e),
        };
        if json {
            out.write_all(body.as_bytes())?;
        } else if once {
            writeln!(out, "{}", view::render(&s))?;
        } else {
            // Home, clear, one screen.
            write!(out, "\x1b[H\x1b[2J{}", view::render(&s))?;
        }
        out.flush()?;
        shown += 1;
        if once || count.is_some_and(|c| shown >= c) {
            if !json && !once {
                writeln!(out)?;
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn stats_hgrm(target: &Target, file: &Path, kind: LatencyKind, last: bool) -> Result<()> {
    let ep = target.endpoint()?;
    let path = format!(
        "/hgrm/{}{}",
        match kind {
            LatencyKind::PacketCost => "packet_cost",
            LatencyKind::Dwell => "dwell",
        },
        if last { "?window=interval" } else { "" }
    );
    let body = get(&ep, &path)?;
    if file == Path::new("-") {
        print!("{body}");
    } else {
        std::fs::write(file, body).with_context(|| format!("writing {}", file.display()))?;
    }
    Ok(())
}

fn reload(target: &Target) -> Result<()> {
    if target.url.is_some() {
        bail!("reload goes through the control socket (--run-dir or --config), never over HTTP");
    }
    let ep = target.endpoint()?;
    let r = client::request(&ep, "POST", "/reload")?;
    if !r.is_success() {
        bail!("reload: {}", r.body.trim());
    }
    println!("{}", r.body.trim());
    Ok(())
}

fn xsk_config(v: &Validated, force_copy: bool, force_zerocopy: bool) -> XskConfig {
    let x = &v.restart.xsk;
    let mode = if force_copy {
        XskModeName::Copy
    } else if force_zerocopy {
        XskModeName::Zerocopy
    } else {
        x.mode
    };
    XskConfig {
        frame_size: x.frame_size,
        frame_count: x.frames,
        rx_ring_size: x.ring_size,
        tx_ring_size: x.ring_size,
        fill_ring_size: x.ring_size,
        comp_ring_size: x.ring_size,
        batch: x.batch,
        bind_mode: match mode {
            XskModeName::Auto => BindMode::Auto,
            XskModeName::Copy => BindMode::ForceCopy,
            XskModeName::Zerocopy => BindMode::ForceZeroCopy,
        },
        busy_poll: x.busy_poll.then(BusyPoll::default),
        ..XskConfig::default()
    }
}

fn run(
    path: &Path,
    force_copy: bool,
    force_zerocopy: bool,
    final_stats: Option<&Path>,
) -> Result<()> {
    if idle::is_unconfigured(path) {
        let stop = stop_flag_on_signals().context("installing SIGINT/SIGTERM handlers")?;
        return Ok(idle::wait(path, stop)?);
    }
    let v = FileConfig::load(path)?.validate()?;
    let p = plan(&v)?;
    let cfg = Arc::new(v.worker_config()?);
    let xcfg = xsk_config(&v, force_copy, force_zerocopy);
    xcfg.validate()?;
    privs::preflight(privs::RunNeeds::new(
        p.queues.len(),
        xcfg.frame_count,
        xcfg.frame_size,
        &v.restart.xsk.bpffs,
    ))?;
    let ifaces: Vec<&str> = v.restart.ports.iter().map(|p| p.iface.as_str()).collect();
    let specs: Vec<PortSpec> = ifaces.iter().map(|i| PortSpec::new(i)).collect();
    let stop = stop_flag_on_signals().context("installing SIGINT/SIGTERM handlers")?;

    // The management threads (and tiny_http's, which they spawn) inherit
    // this thread's affinity: keep them off the workers' cores when a core
    // is left over.
    if let Some(&c) = p.spare.first() {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: c }) {
            tracing::warn!(
                core = c,
                "could not move the management threads to core {c}"
            );
        }
    }
    // The management thread first: it refuses a second appliance on the same
    // run directory before anything is attached to an interface.
    let m = &v.restart.mgmt;
    // The ports' XDP programs, once attached below (the reloader keeps their
    // egress MTUs in step; the management thread reads their counters).
    let xdp_cell: Arc<OnceLock<Vec<Arc<PortProgram>>>> = Arc::default();
    // The interfaces' drop counters from here on: what they lose while
    // mtugate runs is reported, never hidden.
    let nic = Arc::new(NicBaseline::new(&ifaces));
    // Router mode: the route mirror's counters (the mirror starts below).
    let mirror_counters =
        (v.restart.mode == Mode::Router).then(|| Arc::new(routes::MirrorCounters::default()));
    let opts = MgmtOptions {
        listen: m.listen,
        run_dir: m.run_dir.clone(),
        interval: (m.interval_ms > 0).then(|| Duration::from_millis(m.interval_ms)),
        summary: (m.summary_secs > 0).then(|| Duration::from_secs(m.summary_secs)),
        port_names: v.restart.ports.iter().map(|p| p.name.clone()).collect(),
        queues: p
            .queues
            .iter()
            .zip(&p.cores)
            .map(|(&queue, &core)| QueueInfo {
                queue,
                core: Some(core),
            })
            .collect(),
        sighup: true,
        revision: mtugate::REVISION.to_owned(),
        route_mirror: mirror_counters.clone().map(|c| {
            let f: mtugate_mgmt::server::RouteMirrorSource = Arc::new(move || c.snapshot());
            f
        }),
        xdp: Some({
            let (cell, nic) = (xdp_cell.clone(), nic.clone());
            Arc::new(move || {
                let Some(ps) = cell.get() else {
                    return Vec::new();
                };
                ps.iter()
                    .zip(nic.since())
                    .map(|(p, nic)| PortStage {
                        xdp: p.stats().unwrap_or_default(),
                        nic,
                    })
                    .collect()
            })
        }),
    };
    let reloader = FileReloader::new(path.to_path_buf(), v.clone()).with_xdp(xdp_cell.clone());
    let (mgmt, links) = Mgmt::start(opts, Box::new(reloader))?;

    // The XDP stage of every port: ownership first (a live owner is
    // refused before anything changes), then the program.
    let mut attach = attach_options(&v, path);
    // Router mode: the routes' MTU and advmss, which the kernel's FIB
    // lookup in the XDP stage does not report, mirrored from netlink; in
    // the tries before the first frame.
    let mirror = if let Some(c) = &mirror_counters {
        let m =
            routes::Mirror::read(c.clone()).context("reading the kernel's routes (rtnetlink)")?;
        attach.routes = m.entries();
        Some(m)
    } else {
        None
    };
    // The first port's program creates the SYN policer's budgets and the
    // route mirror; every other port's shares them (one for the appliance).
    let mut programs: Vec<Arc<PortProgram>> = Vec::with_capacity(ifaces.len());
    for (i, iface) in ifaces.iter().enumerate() {
        let fp = fast_path(&v, i)?;
        let p = PortProgram::attach_sharing(iface, &fp, &attach, programs.first().map(|p| &**p))
            .with_context(|| format!("the XDP stage of {iface}"))?;
        programs.push(Arc::new(p));
    }
    // Router mode: every port's program may forward to every port.
    let router_ports: Option<Vec<u32>> =
        (v.restart.mode == Mode::Router).then(|| programs.iter().map(|p| p.ifindex()).collect());
    if let Some(ix) = &router_ports {
        for p in &programs {
            p.set_router_ports(ix)
                .with_context(|| format!("the XDP stage of {}", p.iface()))?;
        }
    }
    for p in &programs {
        log_takeover(p);
    }
    // The ports' receive work onto the workers' cores (the programs are
    // attached: a veth has NAPI only then).
    let napi = match v.restart.xsk.napi {
        NapiPlacement::Workers => Some(napi::place(&ifaces, &p.cores)),
        NapiPlacement::Kernel => None,
    };
    let routes_thread = match (mirror, programs.first()) {
        (Some(m), Some(first)) => Some(
            m.spawn(first.route_table()?, stop)
                .context("following the kernel's routes (rtnetlink)")?,
        ),
        _ => None,
    };
    let prog_refs: Vec<&PortProgram> = programs.iter().map(|p| p.as_ref()).collect();

    // Set once, here: nothing else sets it.
    let _ = xdp_cell.set(programs.clone());

    // Bind every queue before starting any worker: a failure closes the
    // sockets and leaves the XDP stage in its failure mode.
    let mut pairs = Vec::with_capacity(p.queues.len());
    for &q in &p.queues {
        match open_queue(&specs, q, &xcfg, &prog_refs) {
            Ok(qp) => pairs.push(qp),
            Err(e) => {
                drop((pairs, prog_refs, mgmt, links));
                // Programs attached by this failed start go again; one taken
                // over from an earlier run stays (it keeps the wire up).
                for prog in &programs {
                    if !matches!(prog.takeover(), Takeover::PinnedLink { .. }) {
                        if let Err(e) = prog.remove() {
                            tracing::warn!("removing the XDP stage again: {e}");
                        }
                    }
                }
                return Err(anyhow::Error::new(e)
                    .context(format!("binding queue {q} of {}", ifaces.join(" and "))));
            }
        }
    }
    if let Some(first) = pairs.first() {
        let r = first.backend().report();
        match &r.zero_copy_error {
            Some(why) => tracing::info!("zero-copy not available ({why}); running in copy mode"),
            None => tracing::info!(mode = ?r.mode, "AF_XDP sockets bound"),
        }
    }
    tracing::info!(
        mode = v.restart.mode.name(),
        ports = ?ifaces,
        mtu = ?cfg.settings().port_mtu,
        clamp_v4 = ?cfg.ports().map(|p| cfg.clamp_for(0, p)).collect::<Vec<_>>(),
        clamp_v6 = ?cfg.ports().map(|p| cfg.clamp_for(1, p)).collect::<Vec<_>>(),
        queues = ?p.queues,
        cores = ?p.cores,
        mgmt_core = ?p.spare.first(),
        http = %m.listen,
        control = %mgmt.control_path().display(),
        stats_interval_ms = m.interval_ms,
        "mtugate running"
    );

    // One set of budgets for every worker: the configured rates mean the
    // appliance, whatever the number of queues.
    let shared = engine::Shared::new(&cfg);
    // One set of learned-PMTU tables for every worker: the ICMP error about
    // a connection may arrive on another queue than its SYN.
    let learn_tables = Arc::new(LearnTables::new(
        random_seed().context("reading /dev/urandom for the learning tables' key")?,
    ));
    let mut handles = Vec::new();
    for (i, (qp, link)) in pairs.into_iter().zip(links).enumerate() {
        let shared = shared.clone();
        let core = p.cores[i];
        let cfg = cfg.clone();
        let learn_tables = Arc::clone(&learn_tables);
        // Each worker's secret: it keys the per-source SYN limiter and
        // random-id, so it must not be guessable.
        let worker_seed = random_seed().context("reading /dev/urandom for a worker's seed")?;
        let router_ports = router_ports.clone();
        // Router mode: each worker's own path into the kernel's output.
        let kernel = match &router_ports {
            Some(_) => Some(engine::KernelOutput::open().context(
                "opening raw IP sockets (the kernel's output for SYNs toward unresolved neighbours)",
            )?),
            None => None,
        };
        let h = std::thread::Builder::new()
            .name(format!("mtugate-q{}", p.queues[i]))
            .spawn(move || {
                if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                    tracing::warn!(core, "could not pin the worker to its core");
                }
                let mut w =
                    engine::Worker::sharing(qp, cfg, worker_seed, link, engine::IDLE, &shared);
                w.share_learning(learn_tables);
                match router_ports {
                    Some(ix) => w.routing(ix, kernel).run(stop),
                    None => w.run(stop),
                }
            })
            .context("spawning a worker thread")?;
        handles.push(h);
    }
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if handles.iter().any(|h| h.is_finished()) {
            stop.store(true, Ordering::Relaxed);
        }
    }
    tracing::info!("stopping");
    if let Some(t) = routes_thread {
        let _ = t.join();
    }
    if let Some(n) = napi {
        n.restore();
    }
    let mut reports = Vec::new();
    for h in handles {
        match h.join() {
            Ok(r) => reports.push(r),
            Err(_) => bail!("a worker thread panicked"),
        }
    }
    let last = mgmt.shutdown();
    let names: Vec<&str> = v.restart.ports.iter().map(|p| p.name.as_str()).collect();
    print!("{}", report::text(&reports, &names));
    // The XDP stage's counters, read once: the text and the JSON agree
    // (the stage keeps counting, in its failure mode, after the workers end).
    let xdp: Vec<XdpStats> = programs
        .iter()
        .map(|p| {
            p.stats().unwrap_or_else(|e| {
                tracing::warn!(iface = p.iface(), "reading the XDP counters: {e}");
                XdpStats::default()
            })
        })
        .collect();
    print!("{}", xdp_text(&programs, &xdp, &reports));
    let nic_drops = nic.since();
    print!("{}", report::accounting(&reports, &names, &xdp, &nic_drops));
    if v.restart.mgmt.interval_ms > 0 {
        print!("{}", report::latency_text(&last));
    }
    if let Some(f) = final_stats {
        let mut doc = report::json(&reports, &names);
        doc.xdp = programs
            .iter()
            .zip(&names)
            .zip(&xdp)
            .enumerate()
            .map(|(i, ((p, n), x))| {
                let nic = nic_drops.get(i).copied().unwrap_or_default();
                FinalXdp {
                    port: (*n).to_owned(),
                    iface: p.iface().to_owned(),
                    run: *x,
                    inherited: p.inherited_stats(),
                    nic,
                    lost: report::lost(&reports, i, nic),
                }
            })
            .collect();
        let doc = serde_json::to_string(&doc)?;
        std::fs::write(f, doc).with_context(|| format!("writing {}", f.display()))?;
    }
    for r in &reports {
        if let Some(e) = &r.conservation_error {
            bail!("queue {}: {e}", r.queue);
        }
    }
    Ok(())
}

/// Where and how the ports' XDP programs are attached.
fn attach_options(v: &Validated, path: &Path) -> AttachOptions {
    AttachOptions {
        bpffs: v.restart.xsk.bpffs.clone(),
        replace_foreign: false,
        persist: true,
        owner: format!("config {}", path.display()),
        ..AttachOptions::default()
    }
}

/// The XDP stage of port `i`: wire mode forwards to the other port, whose
/// MTU bounds the fast path.
fn fast_path(v: &Validated, i: usize) -> Result<FastPath> {
    if v.restart.mode == Mode::Router {
        return v.router_fast_path(i).context("no such port");
    }
    let j = v.egress_port(i).context("no egress port")?;
    let ifindex = ifindex_of(&v.restart.ports[j].iface)?;
    v.fast_path(i, ifindex).context("no egress port")
}

/// The index of `iface` (sysfs of this network namespace).
fn ifindex_of(iface: &str) -> Result<u32> {
    let p = format!("/sys/class/net/{iface}/ifindex");
    let s = std::fs::read_to_string(&p)
        .with_context(|| format!("interface {iface} does not exist (in this network namespace)"))?;
    s.trim()
        .parse()
        .with_context(|| format!("reading the index of {iface}"))
}

fn log_takeover(p: &PortProgram) {
    match p.takeover() {
        Takeover::Fresh => tracing::info!(
            iface = p.iface(),
            prog_id = p.prog_id(),
            mode = ?p.mode(),
            "XDP stage attached (pinned bpf_link)"
        ),
        Takeover::PinnedLink { previous_prog_id } => {
            let s = p.inherited_stats();
            tracing::info!(
                iface = p.iface(),
                prog_id = p.prog_id(),
                previous_prog_id,
                "took over the pinned XDP link of a previous run: program swapped in atomically"
            );
            tracing::info!(
                iface = p.iface(),
                bypassed = s.bypassed,
                blocked = s.blocked,
                passed = s.passed,
                "while no worker ran (since the link was made): frames bypassed / blocked"
            );
        }
        Takeover::Replaced(old) => tracing::warn!(
            ?old,
            "replaced an XDP program left attached by an earlier run"
        ),
    }
    if p.pin_is_private() {
        tracing::warn!(
            iface = p.iface(),
            "bpffs was mounted in this process's own mount namespace (ip netns exec?): \
             the XDP stage ends with the process; set [xsk] bpffs to a bpffs mount outside /sys"
        );
    }
}

/// The XDP stage's counters and the accounting across both stages.
fn xdp_text(
    programs: &[Arc<PortProgram>],
    xdp: &[XdpStats],
    reports: &[engine::WorkerReport],
) -> String {
    let mut s = String::from("XDP stage (by ingress port)\n");
    for (i, (p, x)) in programs.iter().zip(xdp).enumerate() {
        // Steered frames reach a worker or are dropped by the kernel on
        // the way (fill ring empty, RX ring full).
        let rx: u64 = reports.iter().map(|r| r.counters.io[i].rx_frames).sum();
        // The socket side of what the accounting line reports as lost.
        let l = report::lost(reports, i, Default::default());
        let lost = l.xsk_rx_dropped + l.xsk_rx_ring_full;
        s.push_str(&format!(
            "  {}: seen {} = fast {} + steered {} + bypassed {} + blocked {} + redirect errors {} + to kernel {} (no route {}, to fragment {}) + SYNs policed {}{}\n",
            p.iface(),
            x.seen,
            x.fast,
            x.steered,
            x.bypassed,
            x.blocked,
            x.redirect_errors,
            x.passed + x.to_kernel,
            x.no_route,
            x.frag_to_kernel,
            x.dropped(),
            if x.balanced() { "" } else { " (NOT BALANCED)" }
        ));
        s.push_str(&format!(
            "  {}: SYN policer: granted {}, over the source's budget {} (dropped), over the global budget {} dropped + {} passed unclamped\n",
            p.iface(),
            x.syn_granted,
            x.syn_source_limited,
            x.syn_over_dropped,
            x.syn_over_passed
        ));
        s.push_str(&format!(
            "  {}: steered {} -> received by workers {}, dropped by the kernel on the way {}\n",
            p.iface(),
            x.steered,
            rx,
            lost
        ));
    }
    s
}

fn detach(path: &Path) -> Result<()> {
    if idle::is_unconfigured(path) {
        println!(
            "{}: no [[port]] configured: nothing to detach",
            path.display()
        );
        return Ok(());
    }
    let v = FileConfig::load(path)?.validate()?;
    let o = attach_options(&v, path);
    for port in &v.restart.ports {
        let found = PortProgram::detach(&port.iface, &o)
            .with_context(|| format!("detaching the XDP stage of {}", port.iface))?;
        if found {
            println!("{}: XDP stage detached", port.iface);
        } else {
            println!("{}: no pinned XDP stage", port.iface);
        }
    }
    Ok(())
}

/// The hidden `mtugate generate DIR`: man pages and completions.
fn generate(dir: &Path) -> Result<()> {
    use clap::CommandFactory;
    for f in mtugate::docs::generate(Cli::command(), dir)? {
        println!("{}", f.display());
    }
    Ok(())
}

/// 64 bits from the kernel's random source (`/dev/urandom` never blocks
/// once the kernel's pool is initialised, which it is long before mtugate
/// starts).
fn random_seed() -> std::io::Result<u64> {
    use std::io::Read;
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}
