//! The management thread and its two listeners.
//!
//! - `mtugate-mgmt`: takes in the workers' snapshots, closes an interval
//!   every `interval` (asking every worker for a snapshot by bumping the
//!   epoch, waiting briefly for their answers, then aggregating), logs the
//!   periodic summary, and runs the reload that SIGHUP asks for.
//! - `mtugate-http`: the HTTP listener (`mgmt.listen`): reads only.
//! - `mtugate-ctl`: the same endpoints over the control socket
//!   `<run_dir>/mtugate.sock` (mode 0600, in a directory only its owner can
//!   write), plus `POST /reload`, the one way to change a running appliance.
//!
//! The lock around the aggregator is taken by these threads only; workers
//! never see it.

use crate::aggregate::{Aggregator, QueueInfo};
use crate::client::SOCKET_NAME;
use crate::link::{self, Applied, Epoch, Reload, WorkerLink, WorkerSnapshot};
use crate::model::PortStage;
use crate::model::{Reloads, RouteMirrorStats, Stats};
use crate::{hgrm, prom};
use crossbeam_channel::{Receiver, Sender};
use mtugate_datapath::pipeline::Config;
use std::fs;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tiny_http::{Header, Method, Request, Response, Server};

/// How often the threads look at their stop flag and SIGHUP.
const POLL: Duration = Duration::from_millis(100);
/// How long an aggregation waits for the workers' snapshots.
const COLLECT: Duration = Duration::from_millis(100);
/// How long a reload waits for every worker to confirm.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// Reads the XDP stage's counters, per port in port order (a map lookup
/// per port and counter: called by the management thread once per
/// statistics interval, never by a worker).
pub type XdpSource = Arc<dyn Fn() -> Vec<PortStage> + Send + Sync>;

/// Reads the route mirror's counters (router mode), once per statistics
/// interval.
pub type RouteMirrorSource = Arc<dyn Fn() -> RouteMirrorStats + Send + Sync>;

/// What the management thread is started with.
#[derive(Clone)]
pub struct MgmtOptions {
    /// The read-only HTTP listener.
    pub listen: SocketAddr,
    /// The directory of the control socket.
    pub run_dir: PathBuf,
    /// Aggregation interval; `None` turns statistics collection off (the
    /// workers then record and publish nothing; reloads still work).
    pub interval: Option<Duration>,
    /// Period of the one-line summary in the log; `None` = never.
    pub summary: Option<Duration>,
    /// Port names, in port order.
    pub port_names: Vec<String>,
    /// The workers, in the order their links are returned.
    pub queues: Vec<QueueInfo>,
    /// Install a SIGHUP handler that reloads.
    pub sighup: bool,
    /// The XDP stage's counters, if there is one.
    pub xdp: Option<XdpSource>,
    /// The route mirror's counters (router mode).
    pub route_mirror: Option<RouteMirrorSource>,
    /// The source revision of the binary, for `mtugate_build_info`.
    pub revision: String,
}

impl std::fmt::Debug for MgmtOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MgmtOptions")
            .field("listen", &self.listen)
            .field("run_dir", &self.run_dir)
            .field("interval", &self.interval)
            .field("summary", &self.summary)
            .field("port_names", &self.port_names)
            .field("queues", &self.queues)
            .field("sighup", &self.sighup)
            .field("xdp", &self.xdp.is_some())
            .field("route_mirror", &self.route_mirror.is_some())
            .field("revision", &self.revision)
            .finish()
    }
}

/// A configuration ready to apply, and what changes.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The new configuration.
    pub config: Arc<Config>,
    /// One line per changed key (`mss.ipv4: 1360 -> 1300`); empty when
    /// nothing changed.
    pub changes: Vec<String>,
}

/// Why a reload was refused. Either way nothing changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The file does not validate.
    Invalid(String),
    /// It changes something that only a restart can (ports, queues, cores).
    RestartNeeded(String),
}

/// Re-reads and checks the configuration: the appliance's side of a reload.
pub trait Reloader: Send {
    /// Reads the file again, validates it fully and compares it with the
    /// configuration in force.
    fn prepare(&mut self) -> Result<Prepared, Refusal>;
    /// The prepared configuration is now in force.
    fn commit(&mut self);
}

/// Why the management thread could not start.
#[derive(Debug, thiserror::Error)]
pub enum MgmtError {
    /// Another appliance holds the control socket.
    #[error("another mtugate is running and answers on {0}: stop it first, or give this one its own mgmt.run_dir")]
    AlreadyRunning(String),
    /// The run directory is unusable.
    #[error("mgmt.run_dir: {0}")]
    RunDir(String),
    /// The HTTP listener could not bind.
    #[error("mgmt.listen {addr}: {message}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// What failed.
        message: String,
    },
    /// SIGHUP could not be caught.
    #[error("installing the SIGHUP handler: {0}")]
    Signal(io::Error),
    /// A thread could not be started.
    #[error("starting a management thread: {0}")]
    Thread(io::Error),
}

struct WorkerCtl {
    queue: u32,
    reloads: Sender<Reload>,
    applied: Arc<Applied>,
}

struct Control {
    reloader: Box<dyn Reloader>,
    workers: Vec<WorkerCtl>,
    generation: u64,
}

struct Shared {
    agg: Mutex<Aggregator>,
    control: Mutex<Control>,
    epoch: Arc<Epoch>,
    quit: AtomicBool,
    stats_on: bool,
    start: Instant,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The running management thread. Dropping it stops its threads.
pub struct Mgmt {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    control_path: PathBuf,
    http_addr: Option<SocketAddr>,
    sighup: Option<signal_hook::SigId>,
}

impl std::fmt::Debug for Mgmt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mgmt")
            .field("control_path", &self.control_path)
            .field("http_addr", &self.http_addr)
            .finish_non_exhaustive()
    }
}

/// Creates (0700) or checks the run directory and binds the control
/// socket in it (0600), replacing a stale socket left by a killed run and
/// refusing if another appliance answers on it.
fn bind_control(run_dir: &Path) -> Result<(UnixListener, PathBuf), MgmtError> {
    let err = |m: String| MgmtError::RunDir(m);
    let d = run_dir.display();
    if !run_dir.is_absolute() {
        return Err(err(format!("{d} is not an absolute path")));
    }
    match fs::metadata(run_dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(run_dir)
                .map_err(|e| err(format!("creating {d}: {e}")))?;
        }
        Err(e) => return Err(err(format!("{d}: {e}"))),
        Ok(m) if !m.is_dir() => return Err(err(format!("{d} is not a directory"))),
        Ok(m) => {
            let me = fs::metadata("/proc/self").map(|p| p.uid()).unwrap_or(0);
            if m.uid() != me || m.mode() & 0o022 != 0 {
                return Err(err(format!(
                    "{d} (owner uid {}, mode {:o}) can be written by another user; the control socket needs a directory only its owner can change: fix it, or point mgmt.run_dir elsewhere",
                    m.uid(),
                    m.mode() & 0o7777
                )));
            }
        }
    }
    let path = run_dir.join(SOCKET_NAME);
    if let Ok(m) = fs::symlink_metadata(&path) {
        if !m.file_type().is_socket() {
            return Err(err(format!(
                "{} exists and is not a socket",
                path.display()
            )));
        }
        match UnixStream::connect(&path) {
            Ok(_) => return Err(MgmtError::AlreadyRunning(path.display().to_string())),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                fs::remove_file(&path)
                    .map_err(|e| err(format!("removing stale {}: {e}", path.display())))?;
                tracing::info!(
                    socket = %path.display(),
                    "removed a stale control socket (left by a run that did not exit cleanly)"
                );
            }
            Err(e) => return Err(err(format!("{}: {e}", path.display()))),
        }
    }
    let l = UnixListener::bind(&path).map_err(|e| err(format!("{}: {e}", path.display())))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
        .map_err(|e| err(format!("{}: {e}", path.display())))?;
    Ok((l, path))
}

fn text(status: u16, body: impl Into<String>) -> Response<io::Cursor<Vec<u8>>> {
    Response::from_string(body.into())
        .with_status_code(status)
        .with_header(content_type("text/plain; charset=utf-8"))
}

fn content_type(v: &str) -> Header {
    Header::from_bytes(&b"Content-Type"[..], v.as_bytes()).expect("valid header")
}

const INDEX: &str = "mtugate management\n\
GET  /metrics            Prometheus text format\n\
GET  /stats              JSON (counters, rates, latency percentiles)\n\
GET  /hgrm/packet_cost   latency histogram, HdrHistogram percentile format (µs); ?window=interval for the last interval\n\
GET  /hgrm/dwell         the same for the dwell time\n\
POST /reload             re-read the configuration (control socket only)\n";

impl Shared {
    fn absorb(&self, mut snap: Box<WorkerSnapshot>, spares: &[Sender<Box<WorkerSnapshot>>]) {
        lock(&self.agg).absorb(&snap);
        snap.latency.reset();
        if let Some(s) = spares.get(snap.worker) {
            let _ = s.try_send(snap);
        }
    }

    fn count(&self, f: impl FnOnce(&mut Reloads)) {
        f(lock(&self.agg).reloads_mut());
    }

    /// Re-reads the configuration and applies it at every worker's next
    /// batch boundary. `Err((status, message))` when refused or unconfirmed.
    fn reload(&self, source: &str) -> Result<String, (u16, String)> {
        let mut c = lock(&self.control);
        let prepared = match c.reloader.prepare() {
            Ok(p) => p,
            Err(Refusal::Invalid(m)) => {
                self.count(|r| r.invalid += 1);
                let m = format!("invalid configuration, nothing changed: {m}");
                tracing::warn!(%source, "reload refused: {m}");
                return Err((422, m));
            }
            Err(Refusal::RestartNeeded(m)) => {
                self.count(|r| r.restart_needed += 1);
                let m = format!("restart needed, nothing changed: {m}");
                tracing::warn!(%source, "reload refused: {m}");
                return Err((409, m));
            }
        };
        if prepared.changes.is_empty() {
            c.reloader.commit();
            self.count(|r| r.ok += 1);
            let m = format!(
                "no change: the configuration in force (generation {}) is the file's",
                c.generation
            );
            tracing::info!(%source, "reload: {m}");
            return Ok(m);
        }
        let generation = c.generation + 1;
        let mut unreachable = Vec::new();
        for w in &c.workers {
            let r = Reload {
                generation,
                config: prepared.config.clone(),
            };
            if w.reloads.send_timeout(r, ACK_TIMEOUT).is_err() {
                unreachable.push(w.queue);
            }
        }
        self.epoch.0.fetch_add(1, Ordering::Release);
        let deadline = Instant::now() + ACK_TIMEOUT;
        let pending = loop {
            let pending: Vec<u32> = c
                .workers
                .iter()
                .filter(|w| w.applied.0.load(Ordering::Acquire) < generation)
                .map(|w| w.queue)
                .collect();
            if pending.is_empty() || Instant::now() >= deadline {
                break pending;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        // What was sent will be applied by every live worker: it is the
        // configuration now, confirmed or not.
        c.generation = generation;
        c.reloader.commit();
        lock(&self.agg).set_generation(generation);
        let changes = prepared.changes.join("; ");
        if pending.is_empty() {
            self.count(|r| r.ok += 1);
            let m = format!(
                "reloaded: generation {generation} in force on {} worker(s): {changes}",
                c.workers.len()
            );
            tracing::info!(%source, "{m}");
            Ok(m)
        } else {
            let m = format!(
                "generation {generation} sent ({changes}) but queue(s) {pending:?} did not confirm within {} s{}",
                ACK_TIMEOUT.as_secs(),
                if unreachable.is_empty() {
                    String::new()
                } else {
                    format!(" (queue(s) {unreachable:?} have stopped)")
                }
            );
            tracing::warn!(%source, "{m}");
            Err((504, m))
        }
    }

    fn off(&self) -> Response<io::Cursor<Vec<u8>>> {
        text(
            503,
            "statistics collection is off (mgmt.interval_ms = 0); final totals are printed when mtugate run exits\n",
        )
    }

    fn handle(&self, req: Request, writes: bool) {
        let url = req.url().to_string();
        let (path, query) = url.split_once('?').unwrap_or((&url, ""));
        let method = req.method().clone();
        let read = matches!(method, Method::Get | Method::Head);
        let resp = match path {
            "/metrics" if read => {
                if !self.stats_on {
                    self.off()
                } else {
                    let a = lock(&self.agg);
                    let body = prom::render(&a.stats(), &a.queue_latency());
                    drop(a);
                    text(200, body).with_header(content_type(prom::CONTENT_TYPE))
                }
            }
            "/stats" if read => {
                if !self.stats_on {
                    self.off()
                } else {
                    let s = lock(&self.agg).stats();
                    let body = serde_json::to_string_pretty(&s).unwrap_or_default() + "\n";
                    text(200, body).with_header(content_type("application/json"))
                }
            }
            "/hgrm/packet_cost" | "/hgrm/dwell" if read => {
                if !self.stats_on {
                    self.off()
                } else {
                    let since_start = !query.split('&').any(|kv| kv == "window=interval");
                    let a = lock(&self.agg);
                    let l = a.merged_latency(since_start);
                    let h = if path.ends_with("dwell") {
                        &l.dwell
                    } else {
                        &l.cost
                    };
                    text(200, hgrm::percentile_distribution(h))
                }
            }
            "/" if read => text(200, INDEX),
            "/reload" if writes && method == Method::Post => {
                match self.reload("mtugate reload") {
                    Ok(m) => text(200, m + "\n"),
                    Err((status, m)) => text(status, m + "\n"),
                }
            }
            _ if !writes && !read => text(
                405,
                "this HTTP listener is read-only: changes go through the control socket (mtugate reload, as root)\n",
            )
            .with_header(Header::from_bytes(&b"Allow"[..], &b"GET, HEAD"[..]).expect("header")),
            _ if read => text(404, format!("no such page: {path}\n{INDEX}")),
            _ => text(405, format!("{method} {path} is not supported\n{INDEX}")),
        };
        let _ = req.respond(resp);
    }

    fn serve(&self, server: &Server, writes: bool) {
        while !self.quit.load(Ordering::Acquire) {
            match server.recv_timeout(POLL) {
                Ok(Some(req)) => self.handle(req, writes),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!("management listener: {e}");
                    std::thread::sleep(POLL);
                }
            }
        }
    }
}

/// One line for the log: rates over the last interval.
pub fn summary_line(s: &Stats) -> String {
    let r = &s.rates;
    let drops: f64 = r.drops.values().sum();
    let busy = if s.queues.is_empty() {
        0.0
    } else {
        s.queues.iter().map(|q| q.busy_ratio).sum::<f64>() / s.queues.len() as f64
    };
    let lost = s.lost_total();
    let lost = if lost.total() == 0 {
        "lost before mtugate: none".to_owned()
    } else {
        format!(
            "LOST before mtugate since start: {} ({})",
            lost.total(),
            lost.describe()
        )
    };
    format!(
        "rx {:.0} pps, tx {:.0} pps, drops {:.0}/s, mss clamped {:.0}/s, syn-limited {:.0}/s, fragmented {:.0}/s, icmp errors {:.0}/s, busy {:.1}%, cost/pkt p50 {} ns p99 {} ns, {lost}",
        r.rx_pps,
        r.tx_pps,
        drops,
        r.mss_clamped.ipv4 + r.mss_clamped.ipv6,
        r.syn_limited,
        r.fragmented,
        r.icmp_sent.frag_needed + r.icmp_sent.packet_too_big,
        100.0 * busy,
        s.latency.packet_cost_ns.interval.p50,
        s.latency.packet_cost_ns.interval.p99,
    )
}

struct Ticker {
    shared: Arc<Shared>,
    xdp: Option<XdpSource>,
    route_mirror: Option<RouteMirrorSource>,
    snaps: Receiver<Box<WorkerSnapshot>>,
    spares: Vec<Sender<Box<WorkerSnapshot>>>,
    hup: Arc<AtomicBool>,
    interval: Option<Duration>,
    summary: Option<Duration>,
}

impl Ticker {
    fn drain(&self) {
        while let Ok(s) = self.snaps.try_recv() {
            self.shared.absorb(s, &self.spares);
        }
    }

    fn run(self) {
        let start = self.shared.start;
        let mut next_tick = self.interval.map(|i| start + i);
        let mut next_summary = self.summary.map(|s| start + s);
        loop {
            let mut wake = Instant::now() + POLL;
            if let Some(t) = next_tick {
                wake = wake.min(t);
            }
            if let Ok(s) = self.snaps.recv_deadline(wake) {
                self.shared.absorb(s, &self.spares);
            }
            self.drain();
            if self.hup.swap(false, Ordering::AcqRel) {
                let _ = self.shared.reload("SIGHUP");
            }
            if self.shared.quit.load(Ordering::Acquire) {
                // The workers published their last snapshots before the
                // appliance asked us to stop.
                self.drain();
                if self.shared.stats_on {
                    self.read_xdp();
                    lock(&self.shared.agg).tick(start.elapsed());
                }
                return;
            }
            let (Some(t), Some(interval)) = (next_tick, self.interval) else {
                continue;
            };
            if Instant::now() < t {
                continue;
            }
            self.collect();
            self.read_xdp();
            lock(&self.shared.agg).tick(start.elapsed());
            let now = Instant::now();
            next_tick = Some(if t + interval > now {
                t + interval
            } else {
                now + interval
            });
            if let (Some(ns), Some(period)) = (next_summary, self.summary) {
                if now >= ns {
                    let s = lock(&self.shared.agg).stats();
                    tracing::info!("summary: {}", summary_line(&s));
                    next_summary = Some(ns + period.max(interval));
                }
            }
        }
    }

    /// Asks every worker for a snapshot and waits (bounded) for them.
    /// The XDP stage's counters, read outside the aggregator's lock.
    fn read_xdp(&self) {
        if let Some(f) = &self.xdp {
            let v = f();
            lock(&self.shared.agg).set_xdp(v);
        }
        if let Some(f) = &self.route_mirror {
            let v = f();
            lock(&self.shared.agg).set_route_mirror(v);
        }
    }

    fn collect(&self) {
        let epoch = self.shared.epoch.0.fetch_add(1, Ordering::Release) + 1;
        let mut answered = vec![false; self.spares.len()];
        let deadline = Instant::now() + COLLECT;
        while !answered.iter().all(|a| *a) {
            let Ok(s) = self.snaps.recv_deadline(deadline) else {
                break;
            };
            if s.epoch >= epoch {
                if let Some(a) = answered.get_mut(s.worker) {
                    *a = true;
                }
            }
            self.shared.absorb(s, &self.spares);
        }
    }
}

impl Mgmt {
    /// Binds the control socket and the HTTP listener, starts the
    /// management threads, and returns the workers' links (one per entry
    /// of `opts.queues`, in order). Nothing is attached to an interface
    /// here: start this before binding the AF_XDP sockets, so that a second
    /// appliance is refused before it touches anything.
    pub fn start(
        opts: MgmtOptions,
        reloader: Box<dyn Reloader>,
    ) -> Result<(Mgmt, Vec<WorkerLink>), MgmtError> {
        let (unix, control_path) = bind_control(&opts.run_dir)?;
        let ctl_server = Server::from_listener(unix, None)
            .map_err(|e| MgmtError::RunDir(format!("{}: {e}", control_path.display())))?;
        let http_server = Server::http(opts.listen).map_err(|e| MgmtError::Listen {
            addr: opts.listen,
            message: e.to_string(),
        })?;
        let http_addr = http_server.server_addr().to_ip();

        let hup = Arc::new(AtomicBool::new(false));
        let sighup = if opts.sighup {
            Some(
                signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())
                    .map_err(MgmtError::Signal)?,
            )
        } else {
            None
        };

        let stats_on = opts.interval.is_some();
        let epoch = Arc::new(Epoch::default());
        let n = opts.queues.len();
        let (out_tx, out_rx) = crossbeam_channel::bounded(2 * n + 2);
        let mut links = Vec::with_capacity(n);
        let mut spares = Vec::with_capacity(n);
        let mut workers = Vec::with_capacity(n);
        for (i, q) in opts.queues.iter().enumerate() {
            let (l, end) = link::link(i, epoch.clone(), out_tx.clone(), stats_on, 1);
            links.push(l);
            spares.push(end.spare);
            workers.push(WorkerCtl {
                queue: q.queue,
                reloads: end.reloads,
                applied: end.applied,
            });
        }
        let interval = opts.interval.unwrap_or(Duration::ZERO);
        let shared = Arc::new(Shared {
            agg: Mutex::new({
                let mut a = Aggregator::new(opts.port_names, opts.queues, interval);
                a.set_revision(opts.revision);
                a
            }),
            control: Mutex::new(Control {
                reloader,
                workers,
                generation: 1,
            }),
            epoch,
            quit: AtomicBool::new(false),
            stats_on,
            start: Instant::now(),
        });
        let mut mgmt = Mgmt {
            shared: shared.clone(),
            threads: Vec::new(),
            control_path,
            http_addr,
            sighup,
        };
        let ticker = Ticker {
            xdp: opts.xdp.clone(),
            route_mirror: opts.route_mirror.clone(),
            shared: shared.clone(),
            snaps: out_rx,
            spares,
            hup,
            interval: opts.interval,
            summary: opts.summary,
        };
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.to_string())
                .spawn(f)
                .map_err(MgmtError::Thread)
        };
        mgmt.threads
            .push(spawn("mtugate-mgmt", Box::new(move || ticker.run()))?);
        let s = shared.clone();
        mgmt.threads.push(spawn(
            "mtugate-http",
            Box::new(move || s.serve(&http_server, false)),
        )?);
        let s = shared;
        mgmt.threads.push(spawn(
            "mtugate-ctl",
            Box::new(move || s.serve(&ctl_server, true)),
        )?);
        Ok((mgmt, links))
    }

    /// The control socket's path.
    pub fn control_path(&self) -> &Path {
        &self.control_path
    }

    /// The address the HTTP listener is bound to.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The document as of the last aggregation.
    pub fn stats(&self) -> Stats {
        lock(&self.shared.agg).stats()
    }

    /// Reloads now, as `mtugate reload` would (for the appliance and tests).
    pub fn reload(&self, source: &str) -> Result<String, String> {
        self.shared.reload(source).map_err(|(_, m)| m)
    }

    fn stop(&mut self) {
        self.shared.quit.store(true, Ordering::Release);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(id) = self.sighup.take() {
            signal_hook::low_level::unregister(id);
        }
    }

    /// Stops the threads (after a last aggregation of whatever the workers
    /// published) and returns the final document.
    pub fn shutdown(mut self) -> Stats {
        self.stop();
        self.stats()
    }
}

impl Drop for Mgmt {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{request, Endpoint};
    use crate::link::WorkerCounters;
    use mtugate_datapath::pipeline::{Clamp, Settings};
    use std::sync::atomic::AtomicU64;

    type Next = Arc<Mutex<Result<Prepared, Refusal>>>;

    struct Fake {
        next: Next,
        commits: Arc<AtomicU64>,
    }

    impl Reloader for Fake {
        fn prepare(&mut self) -> Result<Prepared, Refusal> {
            lock(&self.next).clone()
        }
        fn commit(&mut self) {
            self.commits.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn config(mss: u16) -> Arc<Config> {
        let mut s = Settings {
            port_mtu: vec![1500, 1400],
            ..Settings::default()
        };
        s.mss.ipv4 = Clamp::Fixed(mss);
        Arc::new(Config::new(s).unwrap())
    }

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir()
            .join(format!("mtugate-mgmt-{}-{name}", std::process::id()))
            .join("run");
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn options(run_dir: &Path) -> MgmtOptions {
        MgmtOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            run_dir: run_dir.to_path_buf(),
            interval: Some(Duration::from_millis(100)),
            summary: None,
            port_names: vec!["inside".into(), "outside".into()],
            xdp: None,
            route_mirror: None,
            revision: "0123456789ab".into(),
            queues: vec![
                QueueInfo {
                    queue: 0,
                    core: Some(1),
                },
                QueueInfo {
                    queue: 1,
                    core: Some(1),
                },
            ],
            sighup: false,
        }
    }

    /// A stand-in for a worker: counts packets, records latency, applies
    /// reloads (publishing the clamp in force), answers the epoch.
    struct FakeWorkers {
        stop: Arc<AtomicBool>,
        clamps: Vec<Arc<AtomicU64>>,
        threads: Vec<JoinHandle<()>>,
    }

    fn run_workers(links: Vec<WorkerLink>) -> FakeWorkers {
        let stop = Arc::new(AtomicBool::new(false));
        let mut clamps = Vec::new();
        let mut threads = Vec::new();
        for mut link in links {
            let stop = stop.clone();
            let clamp = Arc::new(AtomicU64::new(1360));
            clamps.push(clamp.clone());
            threads.push(std::thread::spawn(move || {
                let mut c = WorkerCounters::new(2);
                let deadline = Instant::now() + Duration::from_secs(20);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    c.pipeline[0].rx_packets += 10;
                    c.pipeline[0].forwarded += 10;
                    c.tx_packets[1] += 10;
                    c.polls += 2;
                    c.busy_polls += 1;
                    link.record(10, 50, 700);
                    if link.signalled() {
                        if let Some(r) = link.take_reload() {
                            let v = r
                                .config
                                .clamp_for(0, mtugate_datapath::pipeline::PortId::new(0))
                                .unwrap_or(0);
                            clamp.store(u64::from(v), Ordering::SeqCst);
                            link.ack(r.generation);
                        }
                        link.publish(&c);
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                link.publish_final(&c, Duration::from_millis(100));
            }));
        }
        FakeWorkers {
            stop,
            clamps,
            threads,
        }
    }

    impl Drop for FakeWorkers {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
        }
    }

    fn start(dir: &Path, next: Next) -> (Mgmt, FakeWorkers, Arc<AtomicU64>) {
        let commits = Arc::new(AtomicU64::new(0));
        let fake = Fake {
            next,
            commits: commits.clone(),
        };
        let (m, links) = Mgmt::start(options(dir), Box::new(fake)).unwrap();
        (m, run_workers(links), commits)
    }

    fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn serves_reads_on_both_listeners_and_writes_only_on_the_socket() {
        let dir = temp_dir("serve");
        let next = Arc::new(Mutex::new(Err(Refusal::Invalid("unused".into()))));
        let (m, workers, _) = start(&dir, next);
        let unix = Endpoint::Unix(m.control_path().to_path_buf());
        let tcp = Endpoint::Tcp(m.http_addr().unwrap().to_string());
        let mode = fs::metadata(m.control_path()).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);

        wait_for("two aggregations with traffic", || {
            let s = m.stats();
            s.seq >= 2 && s.rx_packets() > 0 && s.latency.packet_cost_ns.since_start.count > 0
        });
        let r = request(&unix, "GET", "/stats").unwrap();
        assert_eq!(r.status, 200);
        let s: Stats = serde_json::from_str(&r.body).unwrap();
        assert_eq!(s.queues.len(), 2);
        assert!(s.totals[0].counters.rx_packets > 0);
        assert!(s.rates.rx_pps > 0.0, "{:?}", s.rates);
        assert_eq!(s.latency.packet_cost_ns.since_start.p50, 50);
        assert!(s.latency.dwell_ns.since_start.p99.abs_diff(700) <= 1);
        assert!((s.queues[0].busy_ratio - 0.5).abs() < 0.01);

        let r = request(&tcp, "GET", "/metrics").unwrap();
        assert_eq!(r.status, 200);
        assert!(r
            .body
            .contains("mtugate_rx_packets_total{port=\"inside\",queue=\"1\"}"));
        assert!(r
            .body
            .contains("mtugate_packet_cost_seconds_bucket{queue=\"0\",le=\"+Inf\"}"));
        let r = request(&tcp, "GET", "/hgrm/dwell").unwrap();
        assert!(r.body.trim_start().starts_with("Value"), "{}", r.body);

        for method in ["POST", "PUT", "DELETE"] {
            let r = request(&tcp, method, "/reload").unwrap();
            assert_eq!(r.status, 405, "{method} over HTTP");
            assert!(r.body.contains("read-only"), "{}", r.body);
        }
        assert_eq!(request(&tcp, "GET", "/nope").unwrap().status, 404);
        assert_eq!(
            m.stats().reloads,
            Reloads::default(),
            "no reload was attempted"
        );
        drop(workers);
        let last = m.shutdown();
        assert!(last.rx_packets() > 0);
        assert!(
            !dir.join(SOCKET_NAME).exists(),
            "the socket is removed on exit"
        );
    }

    #[test]
    fn reload_reaches_every_worker_and_refusals_change_nothing() {
        let dir = temp_dir("reload");
        let next: Next = Arc::new(Mutex::new(Ok(Prepared {
            config: config(1300),
            changes: vec!["mss.ipv4: 1360 -> 1300".into()],
        })));
        let (m, workers, commits) = start(&dir, next.clone());
        let unix = Endpoint::Unix(m.control_path().to_path_buf());

        let r = request(&unix, "POST", "/reload").unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.body.contains("generation 2"), "{}", r.body);
        // Confirmed by every worker before the answer.
        for c in &workers.clamps {
            assert_eq!(c.load(Ordering::SeqCst), 1300);
        }
        assert_eq!(commits.load(Ordering::SeqCst), 1);

        *lock(&next) = Err(Refusal::Invalid("mss.ipv4: 1361 is too large".into()));
        let r = request(&unix, "POST", "/reload").unwrap();
        assert_eq!(r.status, 422);
        assert!(r.body.contains("nothing changed"), "{}", r.body);
        *lock(&next) = Err(Refusal::RestartNeeded("port[1].iface: out0 -> out1".into()));
        let r = request(&unix, "POST", "/reload").unwrap();
        assert_eq!(r.status, 409);
        assert!(r.body.contains("port[1].iface"), "{}", r.body);
        std::thread::sleep(Duration::from_millis(50));
        for c in &workers.clamps {
            assert_eq!(c.load(Ordering::SeqCst), 1300, "refusals changed nothing");
        }
        assert_eq!(commits.load(Ordering::SeqCst), 1);
        let s = m.stats();
        assert_eq!(s.config_generation, 2);
        assert_eq!(
            s.reloads,
            Reloads {
                ok: 1,
                invalid: 1,
                restart_needed: 1
            }
        );
        drop(workers);
        drop(m);
    }

    #[test]
    fn a_second_appliance_is_refused_and_a_stale_socket_replaced() {
        let dir = temp_dir("twice");
        let next: Next = Arc::new(Mutex::new(Err(Refusal::Invalid("unused".into()))));
        let (m, workers, _) = start(&dir, next.clone());
        let e = Mgmt::start(
            options(&dir),
            Box::new(Fake {
                next: next.clone(),
                commits: Arc::default(),
            }),
        )
        .unwrap_err();
        assert!(matches!(e, MgmtError::AlreadyRunning(_)), "{e}");
        assert!(e.to_string().contains("another mtugate is running"), "{e}");
        // The refused one did not disturb the first.
        let unix = Endpoint::Unix(m.control_path().to_path_buf());
        assert_eq!(request(&unix, "GET", "/").unwrap().status, 200);
        drop(workers);
        drop(m);

        // A killed run leaves its socket file behind, with nobody listening.
        let stale = UnixListener::bind(dir.join(SOCKET_NAME)).unwrap();
        drop(stale);
        assert!(dir.join(SOCKET_NAME).exists());
        let (m, workers, _) = start(&dir, next);
        let unix = Endpoint::Unix(m.control_path().to_path_buf());
        assert_eq!(request(&unix, "GET", "/").unwrap().status, 200);
        drop(workers);
        drop(m);
    }

    #[test]
    fn a_run_dir_others_can_write_is_refused() {
        let dir = temp_dir("loose");
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let e = bind_control(&dir).unwrap_err();
        assert!(e.to_string().starts_with("mgmt.run_dir:"), "{e}");
        assert!(e.to_string().contains("another user"), "{e}");
        let e = bind_control(Path::new("relative/dir")).unwrap_err();
        assert!(e.to_string().contains("absolute"), "{e}");
    }

    #[test]
    fn a_file_in_the_sockets_place_is_left_alone() {
        let dir = temp_dir("file");
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        fs::write(dir.join(SOCKET_NAME), "not a socket").unwrap();
        let e = bind_control(&dir).unwrap_err();
        assert!(e.to_string().contains("is not a socket"), "{e}");
        assert_eq!(
            fs::read_to_string(dir.join(SOCKET_NAME)).unwrap(),
            "not a socket"
        );
    }

    #[test]
    fn summary_is_one_line_of_rates() {
        let mut s = Stats::default();
        s.rates.rx_pps = 1234.4;
        s.rates.tx_pps = 1200.0;
        s.rates.drops.insert("too_big".into(), 3.0);
        s.rates.drops.insert("no_frame".into(), 1.0);
        s.rates.mss_clamped.ipv4 = 10.0;
        s.latency.packet_cost_ns.interval.p99 = 321;
        let line = summary_line(&s);
        assert!(!line.contains('\n'));
        for want in [
            "rx 1234 pps",
            "tx 1200 pps",
            "drops 4/s",
            "mss clamped 10/s",
            "p99 321 ns",
        ] {
            assert!(line.contains(want), "{want}: {line}");
        }
    }

    #[test]
    fn statistics_off_still_reloads() {
        let dir = temp_dir("off");
        let mut o = options(&dir);
        o.interval = None;
        let next: Next = Arc::new(Mutex::new(Ok(Prepared {
            config: config(1200),
            changes: vec!["mss.ipv4: 1360 -> 1200".into()],
        })));
        let (m, links) = Mgmt::start(
            o,
            Box::new(Fake {
                next,
                commits: Arc::default(),
            }),
        )
        .unwrap();
        assert!(links.iter().all(|l| !l.stats_enabled()));
        let workers = run_workers(links);
        let unix = Endpoint::Unix(m.control_path().to_path_buf());
        assert_eq!(request(&unix, "GET", "/stats").unwrap().status, 503);
        assert_eq!(request(&unix, "POST", "/reload").unwrap().status, 200);
        for c in &workers.clamps {
            assert_eq!(c.load(Ordering::SeqCst), 1200);
        }
        drop(workers);
        drop(m);
    }
}
