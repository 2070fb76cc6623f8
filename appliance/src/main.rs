//! `mtugate`: the appliance binary.
//!
//! Reads a TOML config, binds AF_XDP sockets on every RX queue of the two
//! ports, runs one pinned poll-mode worker per queue, and on SIGINT/SIGTERM
//! detaches everything and prints the final counters.

#![deny(unsafe_code)]

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use mtugate::config::{FileConfig, Validated, XskModeName};
use mtugate::{engine, report};
use mtugate_datapath::pipeline::Config;
use mtugate_datapath::xsk::{stop_flag_on_signals, BindMode, BusyPoll, QueuePair, XskConfig};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mtugate: an AF_XDP bump in the wire that clamps TCP MSS and enforces a
/// tunnel MTU (fragment, or drop with ICMP "fragmentation needed" / ICMPv6
/// "packet too big"), at line rate, with every drop counted.
#[derive(Parser, Debug)]
#[command(name = "mtugate", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the appliance until SIGINT or SIGTERM.
    ///
    /// Attaches an XDP program to both ports and binds one AF_XDP socket per
    /// port and RX queue; every RX queue must be bound (or it refuses to
    /// start). Prints the final counters on exit.
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
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Run {
            config,
            force_copy,
            force_zerocopy,
            final_stats,
        } => run(&config, force_copy, force_zerocopy, final_stats.as_deref()),
        Cmd::CheckConfig { file } => check_config(&file),
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
    let ports = &v.file.ports;
    let counts = [rx_queues(&ports[0].iface)?, rx_queues(&ports[1].iface)?];
    let queues: Vec<u32> = match &v.file.workers.queues {
        Some(q) => q.clone(),
        None => (0..counts[0].max(counts[1])).collect(),
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
    let cores: Vec<usize> = match &v.file.workers.cores {
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
    Ok(Plan { queues, cores })
}

fn check_config(path: &Path) -> Result<()> {
    let v = FileConfig::load(path)?.validate()?;
    let p = plan(&v)?;
    let cfg = Config::new(v.settings)?;
    println!("{}: ok", path.display());
    for (i, port) in v.file.ports.iter().enumerate() {
        println!(
            "  port {} ({}): mtu {}, IPv4 SYNs arriving here clamped to {}, IPv6 to {}",
            port.name,
            port.iface,
            port.mtu,
            cfg.clamp_for(0, i).map_or("off".into(), |v| v.to_string()),
            cfg.clamp_for(1, i).map_or("off".into(), |v| v.to_string()),
        );
    }
    for (q, c) in p.queues.iter().zip(&p.cores) {
        println!("  queue {q} -> worker on core {c}");
    }
    Ok(())
}

fn xsk_config(v: &Validated, force_copy: bool, force_zerocopy: bool) -> XskConfig {
    let x = &v.file.xsk;
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
    let v = FileConfig::load(path)?.validate()?;
    let p = plan(&v)?;
    let cfg = Arc::new(Config::new(v.settings)?);
    let xcfg = xsk_config(&v, force_copy, force_zerocopy);
    xcfg.validate()?;
    let ifaces = [
        v.file.ports[0].iface.as_str(),
        v.file.ports[1].iface.as_str(),
    ];
    let stop = stop_flag_on_signals().context("installing SIGINT/SIGTERM handlers")?;

    // Bind every queue before starting any worker: a failure leaves nothing
    // attached (dropping a QueuePair detaches its program).
    let mut pairs = Vec::with_capacity(p.queues.len());
    for &q in &p.queues {
        let qp = QueuePair::new(ifaces, q, &xcfg)
            .with_context(|| format!("binding queue {q} of {} and {}", ifaces[0], ifaces[1]))?;
        pairs.push(qp);
    }
    if let Some(first) = pairs.first() {
        let r = first.report();
        match &r.zero_copy_error {
            Some(why) => tracing::info!("zero-copy not available ({why}); running in copy mode"),
            None => tracing::info!(mode = ?r.mode, "AF_XDP sockets bound"),
        }
        for old in pairs.iter().flat_map(|qp| qp.report().replaced.iter()) {
            tracing::warn!(
                ?old,
                "replaced an XDP program left attached by an earlier run"
            );
        }
    }
    tracing::info!(
        ports = ?ifaces,
        mtu = ?cfg.settings().port_mtu,
        clamp_v4 = ?[cfg.clamp_for(0, 0), cfg.clamp_for(0, 1)],
        clamp_v6 = ?[cfg.clamp_for(1, 0), cfg.clamp_for(1, 1)],
        queues = ?p.queues,
        cores = ?p.cores,
        "mtugate running"
    );

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x5eed);
    let mut handles = Vec::new();
    for (i, qp) in pairs.into_iter().enumerate() {
        let core = p.cores[i];
        let cfg = cfg.clone();
        let worker_seed = seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let h = std::thread::Builder::new()
            .name(format!("mtugate-q{}", p.queues[i]))
            .spawn(move || {
                if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                    tracing::warn!(core, "could not pin the worker to its core");
                }
                engine::Worker::new(qp, cfg, worker_seed).run(stop)
            })
            .context("spawning a worker thread")?;
        handles.push(h);
    }
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(100));
        if handles.iter().any(|h| h.is_finished()) {
            stop.store(true, Ordering::Relaxed);
        }
    }
    tracing::info!("stopping");
    let mut reports = Vec::new();
    for h in handles {
        match h.join() {
            Ok(r) => reports.push(r),
            Err(_) => bail!("a worker thread panicked"),
        }
    }
    let names = [v.file.ports[0].name.as_str(), v.file.ports[1].name.as_str()];
    print!("{}", report::text(&reports, names));
    if let Some(f) = final_stats {
        std::fs::write(f, report::json(&reports, names).to_string())
            .with_context(|| format!("writing {}", f.display()))?;
    }
    for r in &reports {
        if let Some(e) = &r.conservation_error {
            bail!("queue {}: {e}", r.queue);
        }
    }
    Ok(())
}
