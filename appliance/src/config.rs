//! The configuration file (TOML): parsing, validation, and translation into
//! the datapath's [`Settings`].
//!
//! Every mistake produces one error line that names the offending key, and
//! validation finishes before anything is attached to an interface.

use mtugate_datapath::pipeline::{
    Clamp, DfPolicy, IcmpSettings, MssSettings, OverLimit, Rate, Settings, SynLimitSettings,
};
use serde::Deserialize;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// Bytes of a UMEM frame not available to a packet: the kernel puts the
/// packet `XDP_PACKET_HEADROOM` (256) bytes in, and an L3 packet needs an
/// Ethernet header plus up to two VLAN tags in front of it.
pub const FRAME_OVERHEAD: u32 = 256 + 14 + 8;

/// A configuration error: which key, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key, or a value of the wrong type.
    #[error("{path}: {message}")]
    Parse {
        /// The path given.
        path: String,
        /// What toml/serde said, with line and column.
        message: String,
    },
    /// A value that parses but is not acceptable.
    #[error("{key}: {message}")]
    Invalid {
        /// The dotted key, e.g. `port[1].mtu`.
        key: String,
        /// What is wrong and what would be right.
        message: String,
    },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// The whole file, as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Operating mode: only `"wire"` today.
    pub mode: String,
    /// Exactly two ports.
    #[serde(rename = "port")]
    pub ports: Vec<PortConfig>,
    /// MSS clamping.
    #[serde(default)]
    pub mss: MssConfig,
    /// DF policy.
    #[serde(default)]
    pub df: DfConfig,
    /// ICMP errors.
    #[serde(default)]
    pub icmp: IcmpConfig,
    /// SYN rewrite limit.
    #[serde(default)]
    pub syn_limit: SynLimitConfig,
    /// Queues and cores.
    #[serde(default)]
    pub workers: WorkersConfig,
    /// AF_XDP socket tuning.
    #[serde(default)]
    pub xsk: XskConfig,
    /// Management thread.
    #[serde(default)]
    pub mgmt: MgmtConfig,
}

/// One `[[port]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    /// A name for logs and metric labels.
    pub name: String,
    /// The network interface.
    pub iface: String,
    /// Largest L3 packet allowed to leave through this port.
    pub mtu: u32,
}

/// An MSS setting: `"auto"`, `"off"`, or a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum MssValue {
    /// A fixed MSS.
    Fixed(u32),
    /// `"auto"` or `"off"`.
    Word(MssWord),
}

/// The words an MSS setting may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MssWord {
    /// Derive from the MTUs.
    Auto,
    /// Do not clamp.
    Off,
}

/// `[mss]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MssConfig {
    /// IPv4 clamp.
    #[serde(default = "auto")]
    pub ipv4: MssValue,
    /// IPv6 clamp.
    #[serde(default = "auto")]
    pub ipv6: MssValue,
    /// Only clamp MSS values in `"lo:hi"` (inclusive), like `-m tcpmss`.
    #[serde(default, rename = "match")]
    pub match_range: Option<String>,
    /// Insert an MSS option into SYNs without one.
    #[serde(default)]
    pub insert: bool,
}

fn auto() -> MssValue {
    MssValue::Word(MssWord::Auto)
}

impl Default for MssConfig {
    fn default() -> Self {
        MssConfig {
            ipv4: auto(),
            ipv6: auto(),
            match_range: None,
            insert: false,
        }
    }
}

/// `[df]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DfConfig {
    /// `respect`, `clear-udp` or `clear-all`.
    #[serde(default)]
    pub policy: DfPolicyName,
}

/// DF policy names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DfPolicyName {
    /// Honour DF.
    #[default]
    Respect,
    /// Fragment UDP despite DF.
    ClearUdp,
    /// Fragment everything despite DF.
    ClearAll,
}

/// `[icmp]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IcmpConfig {
    /// Source of ICMPv4 errors (default: the offending packet's destination).
    pub source_v4: Option<Ipv4Addr>,
    /// Source of ICMPv6 errors (default: the offending packet's destination).
    pub source_v6: Option<Ipv6Addr>,
    /// Errors per second, both families; 0 sends none (and breaks PMTU
    /// discovery for your hosts: only if you must not emit ICMP).
    #[serde(default = "icmp_rate")]
    pub rate_pps: u64,
    /// Bucket depth.
    #[serde(default = "icmp_burst")]
    pub burst: u64,
}

fn icmp_rate() -> u64 {
    1000
}
fn icmp_burst() -> u64 {
    50
}

impl Default for IcmpConfig {
    fn default() -> Self {
        IcmpConfig {
            source_v4: None,
            source_v6: None,
            rate_pps: icmp_rate(),
            burst: icmp_burst(),
        }
    }
}

/// `[syn_limit]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynLimitConfig {
    /// SYN rewrites per second over all sources; 0 = unlimited.
    #[serde(default = "syn_rate")]
    pub rate_pps: u64,
    /// Bucket depth.
    #[serde(default = "syn_burst")]
    pub burst: u64,
    /// SYN rewrites per second per source /24 or /64; 0 = no per-source limit.
    #[serde(default = "syn_src_rate")]
    pub per_source_pps: u64,
    /// Per-source bucket depth.
    #[serde(default = "syn_src_burst")]
    pub per_source_burst: u64,
    /// `pass` (forward unclamped) or `drop`.
    #[serde(default)]
    pub over_limit: OverLimitName,
}

fn syn_rate() -> u64 {
    100_000
}
fn syn_burst() -> u64 {
    10_000
}
fn syn_src_rate() -> u64 {
    1000
}
fn syn_src_burst() -> u64 {
    100
}

impl Default for SynLimitConfig {
    fn default() -> Self {
        SynLimitConfig {
            rate_pps: syn_rate(),
            burst: syn_burst(),
            per_source_pps: syn_src_rate(),
            per_source_burst: syn_src_burst(),
            over_limit: OverLimitName::default(),
        }
    }
}

/// Over-limit actions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OverLimitName {
    /// Forward unclamped.
    #[default]
    Pass,
    /// Drop.
    Drop,
}

/// `[workers]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkersConfig {
    /// Queue ids to bind; default: every RX queue of the ports.
    pub queues: Option<Vec<u32>>,
    /// Core for each queue's worker, in order; default: cores 1.. (core 0
    /// is left to the system), wrapping.
    pub cores: Option<Vec<usize>>,
}

/// `[xsk]`: AF_XDP socket tuning.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XskConfig {
    /// `auto` (zero-copy if the driver can, else copy), `copy`, `zerocopy`.
    #[serde(default)]
    pub mode: XskModeName,
    /// UMEM frame size: 2048 or 4096.
    #[serde(default = "frame_size")]
    pub frame_size: u32,
    /// UMEM frames per queue (shared by both ports).
    #[serde(default = "frames")]
    pub frames: u32,
    /// RX and TX ring size (power of two).
    #[serde(default = "ring")]
    pub ring_size: u32,
    /// Descriptors per batch.
    #[serde(default = "batch")]
    pub batch: u32,
    /// Busy polling (SO_PREFER_BUSY_POLL, SO_BUSY_POLL) where the kernel
    /// offers it.
    #[serde(default)]
    pub busy_poll: bool,
}

fn frame_size() -> u32 {
    4096
}
fn frames() -> u32 {
    8192
}
fn ring() -> u32 {
    2048
}
fn batch() -> u32 {
    64
}

impl Default for XskConfig {
    fn default() -> Self {
        XskConfig {
            mode: XskModeName::default(),
            frame_size: frame_size(),
            frames: frames(),
            ring_size: ring(),
            batch: batch(),
            busy_poll: false,
        }
    }
}

/// AF_XDP bind modes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XskModeName {
    /// Zero-copy if possible, else copy.
    #[default]
    Auto,
    /// Copy mode only.
    Copy,
    /// Zero-copy or fail.
    Zerocopy,
}

/// `[mgmt]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MgmtConfig {
    /// Address of the read-only HTTP endpoint (`/metrics`, `/stats`).
    #[serde(default = "listen")]
    pub listen: SocketAddr,
    /// Must be true to listen on a non-loopback address.
    #[serde(default)]
    pub allow_remote: bool,
    /// Statistics interval in milliseconds; 0 turns collection off (the
    /// workers then record and publish nothing).
    #[serde(default = "interval_ms")]
    pub interval_ms: u64,
    /// Log a one-line summary every this many seconds; 0 = never.
    #[serde(default)]
    pub summary_secs: u64,
    /// Directory of the control socket (`mtugate.sock`, root only).
    #[serde(default = "run_dir")]
    pub run_dir: PathBuf,
}

fn listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9090))
}
fn interval_ms() -> u64 {
    1000
}
/// The default `mgmt.run_dir`.
pub const DEFAULT_RUN_DIR: &str = "/run/mtugate";
fn run_dir() -> PathBuf {
    PathBuf::from(DEFAULT_RUN_DIR)
}

impl Default for MgmtConfig {
    fn default() -> Self {
        MgmtConfig {
            listen: listen(),
            allow_remote: false,
            interval_ms: interval_ms(),
            summary_secs: 0,
            run_dir: run_dir(),
        }
    }
}

/// A validated configuration: the file as written plus the datapath
/// settings derived from it.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The file.
    pub file: FileConfig,
    /// What the pipeline runs with.
    pub settings: Settings,
}

impl FileConfig {
    /// Reads and parses a file (no validation beyond types and known keys).
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<FileConfig, String> {
        toml::from_str(text).map_err(|e| {
            // toml's message spans lines (a snippet of the file); keep it on
            // one line for logs.
            e.to_string()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
    }

    /// Checks every value that can be checked without touching the system
    /// and derives the datapath settings.
    pub fn validate(self) -> Result<Validated, ConfigError> {
        if self.mode != "wire" {
            return Err(invalid(
                "mode",
                format!(
                    "\"{}\" is not supported; the only mode is \"wire\"",
                    self.mode
                ),
            ));
        }
        if self.ports.len() != 2 {
            return Err(invalid(
                "port",
                format!(
                    "wire mode needs exactly two [[port]] tables, found {}",
                    self.ports.len()
                ),
            ));
        }
        let x = &self.xsk;
        if x.frame_size != 2048 && x.frame_size != 4096 {
            return Err(invalid(
                "xsk.frame_size",
                format!("{} is not 2048 or 4096", x.frame_size),
            ));
        }
        for (key, v) in [("xsk.ring_size", x.ring_size), ("xsk.frames", x.frames)] {
            if !v.is_power_of_two() || v < 64 {
                return Err(invalid(
                    key,
                    format!("{v} must be a power of two and at least 64"),
                ));
            }
        }
        if x.frames < 2 * x.ring_size {
            return Err(invalid(
                "xsk.frames",
                format!(
                    "{} frames cannot keep two ports' rings ({} each) supplied; use at least {}",
                    x.frames,
                    x.ring_size,
                    2 * x.ring_size
                ),
            ));
        }
        if x.batch == 0 || x.batch > x.ring_size || x.batch > 256 {
            return Err(invalid(
                "xsk.batch",
                format!("{} must be 1..=256 and at most xsk.ring_size", x.batch),
            ));
        }
        let mut mtus = [0u16; 2];
        for (i, p) in self.ports.iter().enumerate() {
            if p.iface.is_empty() || p.iface.len() > 15 || p.iface.contains('/') {
                return Err(invalid(
                    format!("port[{i}].iface"),
                    format!("\"{}\" is not an interface name", p.iface),
                ));
            }
            let max = x.frame_size - FRAME_OVERHEAD;
            if p.mtu < 68 || p.mtu > max {
                return Err(invalid(
                    format!("port[{i}].mtu"),
                    format!(
                        "{} is outside 68..={max} (68 is the IPv4 minimum; {max} is what an xsk.frame_size of {} leaves after headroom and L2 headers)",
                        p.mtu, x.frame_size
                    ),
                ));
            }
            mtus[i] = p.mtu as u16;
        }
        if self.ports[0].iface == self.ports[1].iface {
            return Err(invalid(
                "port[1].iface",
                "both ports name the same interface",
            ));
        }
        if self.ports[0].name == self.ports[1].name {
            return Err(invalid("port[1].name", "both ports have the same name"));
        }
        let min_mtu = u32::from(mtus[0].min(mtus[1]));
        let clamp = |key: &str, v: MssValue, overhead: u32| -> Result<Clamp, ConfigError> {
            match v {
                MssValue::Word(MssWord::Auto) => Ok(Clamp::Auto),
                MssValue::Word(MssWord::Off) => Ok(Clamp::Off),
                MssValue::Fixed(n) => {
                    let max = min_mtu.saturating_sub(overhead);
                    if n == 0 || n > max {
                        Err(invalid(
                            key,
                            format!(
                                "{n} is larger than the smallest port MTU ({min_mtu}) minus {overhead}: use at most {max}, or \"auto\""
                            ),
                        ))
                    } else {
                        Ok(Clamp::Fixed(n as u16))
                    }
                }
            }
        };
        let ipv4 = clamp("mss.ipv4", self.mss.ipv4, 40)?;
        let ipv6 = clamp("mss.ipv6", self.mss.ipv6, 60)?;
        let range = match &self.mss.match_range {
            None => None,
            Some(s) => Some(parse_range(s).ok_or_else(|| {
                invalid(
                    "mss.match",
                    format!("\"{s}\" is not \"lo:hi\" with 1 <= lo <= hi <= 65535"),
                )
            })?),
        };
        let rate = |key: &str, pps: u64, burst: u64| -> Result<Option<Rate>, ConfigError> {
            if pps == 0 {
                return Ok(None);
            }
            if burst == 0 {
                return Err(invalid(key, "burst must be at least 1 when a rate is set"));
            }
            Ok(Some(Rate {
                per_sec: pps,
                burst,
            }))
        };
        // rate_pps = 0 means "send none" (not "unlimited"): ICMP errors are
        // the one thing an operator may need to switch off entirely.
        let icmp_limit = rate("icmp.burst", self.icmp.rate_pps, self.icmp.burst)?;
        let s = &self.syn_limit;
        let settings = Settings {
            port_mtu: mtus,
            mss: MssSettings {
                ipv4,
                ipv6,
                range,
                insert: self.mss.insert,
                on_ingress: [true, true],
            },
            df: match self.df.policy {
                DfPolicyName::Respect => DfPolicy::Respect,
                DfPolicyName::ClearUdp => DfPolicy::ClearUdp,
                DfPolicyName::ClearAll => DfPolicy::ClearAll,
            },
            icmp: IcmpSettings {
                source_v4: self.icmp.source_v4.map(|a| a.octets()),
                source_v6: self.icmp.source_v6.map(|a| a.octets()),
                enabled: self.icmp.rate_pps > 0,
                limit: icmp_limit,
            },
            syn_limit: SynLimitSettings {
                global: rate("syn_limit.burst", s.rate_pps, s.burst)?,
                per_source: rate(
                    "syn_limit.per_source_burst",
                    s.per_source_pps,
                    s.per_source_burst,
                )?,
                over_limit: match s.over_limit {
                    OverLimitName::Pass => OverLimit::Pass,
                    OverLimitName::Drop => OverLimit::Drop,
                },
            },
        };
        if let Some(src) = self.icmp.source_v4 {
            if !mtugate_datapath::wire::ipv4::is_unicast_source(src.octets()) {
                return Err(invalid(
                    "icmp.source_v4",
                    format!("{src} is not a unicast address"),
                ));
            }
        }
        if let Some(src) = self.icmp.source_v6 {
            if !mtugate_datapath::wire::ipv6::is_unicast_source(&src.octets()) {
                return Err(invalid(
                    "icmp.source_v6",
                    format!("{src} is not a unicast address"),
                ));
            }
        }
        if let Some(q) = &self.workers.queues {
            if q.is_empty() {
                return Err(invalid("workers.queues", "the list is empty"));
            }
            let mut sorted = q.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if sorted.len() != q.len() {
                return Err(invalid("workers.queues", "a queue id appears twice"));
            }
        }
        if let (Some(q), Some(c)) = (&self.workers.queues, &self.workers.cores) {
            if q.len() != c.len() {
                return Err(invalid(
                    "workers.cores",
                    format!(
                        "{} cores for {} queues: give one core per queue",
                        c.len(),
                        q.len()
                    ),
                ));
            }
        }
        if !self.mgmt.listen.ip().is_loopback() && !self.mgmt.allow_remote {
            return Err(invalid(
                "mgmt.listen",
                format!(
                    "{} is not a loopback address; set mgmt.allow_remote = true to expose the read-only endpoint",
                    self.mgmt.listen
                ),
            ));
        }
        let m = &self.mgmt;
        if m.interval_ms != 0 && !(100..=60_000).contains(&m.interval_ms) {
            return Err(invalid(
                "mgmt.interval_ms",
                format!(
                    "{} must be 0 (statistics off) or 100..=60000",
                    m.interval_ms
                ),
            ));
        }
        if m.summary_secs > 86_400 {
            return Err(invalid(
                "mgmt.summary_secs",
                format!("{} is more than a day (86400)", m.summary_secs),
            ));
        }
        if m.summary_secs > 0 && m.interval_ms == 0 {
            return Err(invalid(
                "mgmt.summary_secs",
                "a summary needs statistics: set mgmt.interval_ms above 0, or summary_secs = 0",
            ));
        }
        if !m.run_dir.is_absolute() || m.run_dir == Path::new("/") {
            return Err(invalid(
                "mgmt.run_dir",
                format!(
                    "\"{}\" must be an absolute path of a directory of its own (default {DEFAULT_RUN_DIR})",
                    m.run_dir.display()
                ),
            ));
        }
        // The datapath's own checks (they should all have been caught above).
        mtugate_datapath::pipeline::Config::new(settings)
            .map_err(|e| invalid("config", e.to_string()))?;
        Ok(Validated {
            file: self,
            settings,
        })
    }
}

/// One key whose value differs between two configurations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The dotted key, e.g. `mss.ipv4`.
    pub key: String,
    /// The value in force.
    pub old: String,
    /// The value in the file.
    pub new: String,
    /// Whether a running appliance can apply it (else: restart).
    pub live: bool,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} -> {}", self.key, self.old, self.new)
    }
}

fn show_mss(v: MssValue) -> String {
    match v {
        MssValue::Fixed(n) => n.to_string(),
        MssValue::Word(MssWord::Auto) => "auto".into(),
        MssValue::Word(MssWord::Off) => "off".into(),
    }
}

fn show_opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map_or("none".into(), |v| v.to_string())
}

fn show_list<T: std::fmt::Debug>(v: &Option<Vec<T>>) -> String {
    v.as_ref().map_or("default".into(), |v| format!("{v:?}"))
}

/// What differs between the configuration in force and a new one, key by
/// key. Live: port MTUs, `[mss]`, `[df]`, `[icmp]`, `[syn_limit]`. Restart:
/// the mode, the ports' names and interfaces, `[workers]`, `[xsk]` and
/// `[mgmt]` (they shape sockets, threads and listeners).
pub fn diff(old: &FileConfig, new: &FileConfig) -> Vec<Change> {
    let mut out = Vec::new();
    let mut cmp = |key: &str, a: String, b: String, live: bool| {
        if a != b {
            out.push(Change {
                key: key.to_string(),
                old: a,
                new: b,
                live,
            });
        }
    };
    cmp("mode", old.mode.clone(), new.mode.clone(), false);
    cmp(
        "port",
        format!("{} ports", old.ports.len()),
        format!("{} ports", new.ports.len()),
        false,
    );
    for (i, (a, b)) in old.ports.iter().zip(&new.ports).enumerate() {
        cmp(
            &format!("port[{i}].name"),
            a.name.clone(),
            b.name.clone(),
            false,
        );
        cmp(
            &format!("port[{i}].iface"),
            a.iface.clone(),
            b.iface.clone(),
            false,
        );
        cmp(
            &format!("port[{i}].mtu"),
            a.mtu.to_string(),
            b.mtu.to_string(),
            true,
        );
    }
    let (a, b) = (&old.mss, &new.mss);
    cmp("mss.ipv4", show_mss(a.ipv4), show_mss(b.ipv4), true);
    cmp("mss.ipv6", show_mss(a.ipv6), show_mss(b.ipv6), true);
    cmp(
        "mss.match",
        show_opt(&a.match_range),
        show_opt(&b.match_range),
        true,
    );
    cmp(
        "mss.insert",
        a.insert.to_string(),
        b.insert.to_string(),
        true,
    );
    cmp(
        "df.policy",
        format!("{:?}", old.df.policy),
        format!("{:?}", new.df.policy),
        true,
    );
    let (a, b) = (&old.icmp, &new.icmp);
    cmp(
        "icmp.source_v4",
        show_opt(&a.source_v4),
        show_opt(&b.source_v4),
        true,
    );
    cmp(
        "icmp.source_v6",
        show_opt(&a.source_v6),
        show_opt(&b.source_v6),
        true,
    );
    cmp(
        "icmp.rate_pps",
        a.rate_pps.to_string(),
        b.rate_pps.to_string(),
        true,
    );
    cmp("icmp.burst", a.burst.to_string(), b.burst.to_string(), true);
    let (a, b) = (&old.syn_limit, &new.syn_limit);
    cmp(
        "syn_limit.rate_pps",
        a.rate_pps.to_string(),
        b.rate_pps.to_string(),
        true,
    );
    cmp(
        "syn_limit.burst",
        a.burst.to_string(),
        b.burst.to_string(),
        true,
    );
    cmp(
        "syn_limit.per_source_pps",
        a.per_source_pps.to_string(),
        b.per_source_pps.to_string(),
        true,
    );
    cmp(
        "syn_limit.per_source_burst",
        a.per_source_burst.to_string(),
        b.per_source_burst.to_string(),
        true,
    );
    cmp(
        "syn_limit.over_limit",
        format!("{:?}", a.over_limit),
        format!("{:?}", b.over_limit),
        true,
    );
    let (a, b) = (&old.workers, &new.workers);
    cmp(
        "workers.queues",
        show_list(&a.queues),
        show_list(&b.queues),
        false,
    );
    cmp(
        "workers.cores",
        show_list(&a.cores),
        show_list(&b.cores),
        false,
    );
    let (a, b) = (&old.xsk, &new.xsk);
    cmp(
        "xsk.mode",
        format!("{:?}", a.mode),
        format!("{:?}", b.mode),
        false,
    );
    cmp(
        "xsk.frame_size",
        a.frame_size.to_string(),
        b.frame_size.to_string(),
        false,
    );
    cmp(
        "xsk.frames",
        a.frames.to_string(),
        b.frames.to_string(),
        false,
    );
    cmp(
        "xsk.ring_size",
        a.ring_size.to_string(),
        b.ring_size.to_string(),
        false,
    );
    cmp("xsk.batch", a.batch.to_string(), b.batch.to_string(), false);
    cmp(
        "xsk.busy_poll",
        a.busy_poll.to_string(),
        b.busy_poll.to_string(),
        false,
    );
    let (a, b) = (&old.mgmt, &new.mgmt);
    cmp(
        "mgmt.listen",
        a.listen.to_string(),
        b.listen.to_string(),
        false,
    );
    cmp(
        "mgmt.allow_remote",
        a.allow_remote.to_string(),
        b.allow_remote.to_string(),
        false,
    );
    cmp(
        "mgmt.interval_ms",
        a.interval_ms.to_string(),
        b.interval_ms.to_string(),
        false,
    );
    cmp(
        "mgmt.summary_secs",
        a.summary_secs.to_string(),
        b.summary_secs.to_string(),
        false,
    );
    cmp(
        "mgmt.run_dir",
        a.run_dir.display().to_string(),
        b.run_dir.display().to_string(),
        false,
    );
    // A key this function does not know yet must not pass as "no change".
    if out.is_empty() && old != new {
        out.push(Change {
            key: "config".into(),
            old: "(in force)".into(),
            new: "(changed in a way not applied live)".into(),
            live: false,
        });
    }
    out
}

fn parse_range(s: &str) -> Option<(u16, u16)> {
    let (lo, hi) = s.split_once(':')?;
    let lo: u16 = lo.trim().parse().ok()?;
    let hi: u16 = hi.trim().parse().ok()?;
    (lo >= 1 && lo <= hi).then_some((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAB: &str = r#"
mode = "wire"
[[port]]
name = "inside"
iface = "in0"
mtu = 1500
[[port]]
name = "outside"
iface = "out0"
mtu = 1400
"#;

    fn err(text: &str) -> String {
        match FileConfig::parse(text) {
            Err(m) => m,
            Ok(f) => f.validate().unwrap_err().to_string(),
        }
    }

    #[test]
    fn lab_defaults() {
        let v = FileConfig::parse(LAB).unwrap().validate().unwrap();
        assert_eq!(v.settings.port_mtu, [1500, 1400]);
        assert_eq!(v.settings.mss.ipv4, Clamp::Auto);
        let cfg = mtugate_datapath::pipeline::Config::new(v.settings).unwrap();
        assert_eq!(cfg.clamp_for(0, 0), Some(1360));
        assert_eq!(cfg.clamp_for(1, 1), Some(1340));
        assert_eq!(v.file.mgmt.listen.port(), 9090);
    }

    #[test]
    fn every_example_config_validates() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/configs");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                FileConfig::load(&p)
                    .and_then(FileConfig::validate)
                    .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                n += 1;
            }
        }
        assert!(n >= 4, "expected the example configs, found {n}");
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (format!("{LAB}\n[mss]\nipv4 = 1361\n"), "mss.ipv4"),
            (format!("{LAB}\n[mss]\nipv6 = 1341\n"), "mss.ipv6"),
            (format!("{LAB}\n[mss]\nipv4 = \"sometimes\"\n"), "ipv4"),
            (LAB.replace("mtu = 1400", "mtu = 67"), "port[1].mtu"),
            (LAB.replace("mtu = 1400", "mtu = 9000"), "port[1].mtu"),
            (LAB.replace("out0", "in0"), "port[1].iface"),
            (LAB.replace("\"wire\"", "\"router\""), "mode"),
            (format!("{LAB}\nbogus = 1\n"), "bogus"),
            (format!("{LAB}\n[df]\npolicy = \"ignore\"\n"), "policy"),
            (
                format!("{LAB}\n[mss]\nmatch = \"1536:1361\"\n"),
                "mss.match",
            ),
            (
                format!("{LAB}\n[syn_limit]\nburst = 0\n"),
                "syn_limit.burst",
            ),
            (
                format!("{LAB}\n[icmp]\nsource_v4 = \"224.0.0.1\"\n"),
                "icmp.source_v4",
            ),
            (
                format!("{LAB}\n[workers]\nqueues = [0, 1]\ncores = [1]\n"),
                "workers.cores",
            ),
            (
                format!("{LAB}\n[workers]\nqueues = [0, 0]\n"),
                "workers.queues",
            ),
            (
                format!("{LAB}\n[xsk]\nframe_size = 3000\n"),
                "xsk.frame_size",
            ),
            (
                format!("{LAB}\n[mgmt]\nlisten = \"0.0.0.0:9090\"\n"),
                "mgmt.listen",
            ),
            (format!("{LAB}\n[mss]\nwhatever = 1\n"), "whatever"),
        ];
        for (text, key) in cases {
            let e = err(&text);
            assert!(e.contains(key), "error for {key} does not name it: {e}");
            assert!(!e.contains('\n'), "not one line: {e}");
        }
    }

    #[test]
    fn icmp_rate_zero_sends_none() {
        let v = FileConfig::parse(&format!("{LAB}\n[icmp]\nrate_pps = 0\n"))
            .unwrap()
            .validate()
            .unwrap();
        assert!(!v.settings.icmp.enabled);
        let v = FileConfig::parse(LAB).unwrap().validate().unwrap();
        assert!(v.settings.icmp.enabled);
        assert_eq!(v.settings.icmp.limit.map(|r| r.per_sec), Some(1000));
    }

    #[test]
    fn mgmt_keys() {
        let v = FileConfig::parse(LAB).unwrap().validate().unwrap();
        assert_eq!(v.file.mgmt.interval_ms, 1000);
        assert_eq!(v.file.mgmt.summary_secs, 0);
        assert_eq!(v.file.mgmt.run_dir, Path::new(DEFAULT_RUN_DIR));
        let t = format!(
            "{LAB}\n[mgmt]\ninterval_ms = 0\nrun_dir = \"/run/mtugate-lab\"\nlisten = \"0.0.0.0:9100\"\nallow_remote = true\n"
        );
        let v = FileConfig::parse(&t).unwrap().validate().unwrap();
        assert_eq!(v.file.mgmt.interval_ms, 0);
        assert_eq!(v.file.mgmt.run_dir, Path::new("/run/mtugate-lab"));
        for (text, key) in [
            (
                format!("{LAB}\n[mgmt]\ninterval_ms = 50\n"),
                "mgmt.interval_ms",
            ),
            (
                format!("{LAB}\n[mgmt]\ninterval_ms = 60001\n"),
                "mgmt.interval_ms",
            ),
            (
                format!("{LAB}\n[mgmt]\nsummary_secs = 86401\n"),
                "mgmt.summary_secs",
            ),
            (
                format!("{LAB}\n[mgmt]\ninterval_ms = 0\nsummary_secs = 10\n"),
                "mgmt.summary_secs",
            ),
            (
                format!("{LAB}\n[mgmt]\nrun_dir = \"run/x\"\n"),
                "mgmt.run_dir",
            ),
            (format!("{LAB}\n[mgmt]\nrun_dir = \"/\"\n"), "mgmt.run_dir"),
            (format!("{LAB}\n[mgmt]\ninterval_ms = -1\n"), "interval_ms"),
            (
                format!("{LAB}\n[mgmt]\nlisten = \"[::]:9090\"\n"),
                "mgmt.listen",
            ),
        ] {
            let e = err(&text);
            assert!(e.contains(key), "error for {key} does not name it: {e}");
            assert!(!e.contains('\n'), "not one line: {e}");
        }
    }

    fn parsed(extra: &str) -> FileConfig {
        FileConfig::parse(&format!("{LAB}\n{extra}")).unwrap()
    }

    #[test]
    fn diff_sorts_live_from_restart() {
        let base = parsed("[mss]\nipv4 = 1360\n");
        assert!(diff(&base, &base.clone()).is_empty());

        let d = diff(
            &base,
            &parsed("[mss]\nipv4 = 1300\n[df]\npolicy = \"clear-udp\"\n[icmp]\nrate_pps = 10\n"),
        );
        let keys: Vec<(&str, bool)> = d.iter().map(|c| (c.key.as_str(), c.live)).collect();
        assert_eq!(
            keys,
            [
                ("mss.ipv4", true),
                ("df.policy", true),
                ("icmp.rate_pps", true)
            ]
        );
        assert_eq!(d[0].to_string(), "mss.ipv4: 1360 -> 1300");

        let mtu = FileConfig::parse(
            &format!("{LAB}\n[mss]\nipv4 = 1360\n").replace("mtu = 1400", "mtu = 1380"),
        )
        .unwrap();
        let d = diff(&base, &mtu);
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].key.as_str(), d[0].live), ("port[1].mtu", true));

        let iface =
            FileConfig::parse(&format!("{LAB}\n[mss]\nipv4 = 1360\n").replace("out0", "out1"))
                .unwrap();
        let d = diff(&base, &iface);
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].key.as_str(), d[0].live), ("port[1].iface", false));

        for (extra, key) in [
            ("[workers]\nqueues = [0]\n", "workers.queues"),
            ("[workers]\ncores = [1]\n", "workers.cores"),
            ("[xsk]\nbatch = 32\n", "xsk.batch"),
            ("[mgmt]\nlisten = \"127.0.0.1:9191\"\n", "mgmt.listen"),
            ("[mgmt]\ninterval_ms = 0\n", "mgmt.interval_ms"),
        ] {
            let d = diff(&base, &parsed(&format!("[mss]\nipv4 = 1360\n{extra}")));
            assert_eq!(d.len(), 1, "{extra}: {d:?}");
            assert_eq!(d[0].key, key);
            assert!(!d[0].live, "{key} must need a restart");
        }
    }

    #[test]
    fn fixed_and_off() {
        let t = format!(
            "{LAB}\n[mss]\nipv4 = 1360\nipv6 = \"off\"\nmatch = \"1361:1536\"\ninsert = true\n"
        );
        let v = FileConfig::parse(&t).unwrap().validate().unwrap();
        assert_eq!(v.settings.mss.ipv4, Clamp::Fixed(1360));
        assert_eq!(v.settings.mss.ipv6, Clamp::Off);
        assert_eq!(v.settings.mss.range, Some((1361, 1536)));
        assert!(v.settings.mss.insert);
    }
}
