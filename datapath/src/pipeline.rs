//! The packet pipeline: frames in, verdicts out.
//!
//! This is everything mtugate does to a packet, with no I/O: no clock reads
//! (`now` is passed in, read once per batch by the caller), no sockets, no
//! allocation per packet, no locks, no logging. The AF_XDP worker feeds it
//! frames straight from the UMEM; tests feed it from memory.
//!
//! For each frame received on port `p` the pipeline returns one [`Verdict`]:
//!
//! * [`Verdict::Forward`] out of the egress port it names, possibly
//!   modified in place (MSS clamped or inserted);
//! * [`Verdict::Fragments`]: the frame now holds the first fragment and the
//!   remaining ones were written into frames taken from [`ExtraFrames`], all
//!   to go out of the egress port it names;
//! * [`Verdict::Reply`]: the frame was turned into an ICMP or ICMPv6 error
//!   that goes back out of port `p` (the original packet is dropped and
//!   counted as [`DropReason::TooBig`]);
//! * [`Verdict::Drop`] with a reason, counted.
//!
//! Non-IP frames (ARP, LLDP, ...) pass untouched: in wire mode the appliance
//! is a bump in the wire and must not break neighbour discovery.
//!
//! ## Accounting
//!
//! Per ingress port, after any sequence of frames:
//! `rx_packets == forwarded + fragmented + Σ drops`, and the frames
//! transmitted are `forwarded + fragments_created + Σ icmp_sent`.
//! [`Counters::balanced`] checks the first identity.

use crate::counters::CounterTable;
use crate::ops::bucket::{source_key_v4, source_key_v6, SharedBucket, SourceLimiter};
use crate::ops::frag::{self, FragError};
use crate::ops::icmp;
use crate::ops::mss::{self, ClampParams, Plan};
use crate::ops::{L3Ctx, MacRewrite};
use crate::pmtu::{LearnTables, Learner, PmtuCounters, PmtuSettings, Seen};
use crate::prf::IdGen;
use crate::rules::{Addrs, RuleCounters, RuleError, RuleSettings, Rules};
use crate::wire::{checksum, ethernet, ipv4, ipv6, tcp, WireError};
use std::sync::Arc;

pub use crate::ops::frag::ExtraFrames;

/// Ports of a wire-mode pipeline: a bump in the wire has two.
pub const WIRE_PORTS: usize = 2;

/// A port of the pipeline: an index into [`Settings::port_mtu`] (and the
/// per-port counters), valid for the [`Config`] it was obtained from
/// ([`Config::port`], [`Config::ports`]).
///
/// The pipeline never turns a bad index into a valid one: a frame given
/// with a port its configuration does not have is dropped and counted in
/// [`State::bad_port`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PortId(u8);

impl PortId {
    /// Port number `i` (0-based). Whether a configuration has it is checked
    /// where it is used.
    ///
    /// # Panics
    /// If `i` is above 255: no configuration has that many ports.
    #[inline]
    pub fn new(i: usize) -> PortId {
        PortId(u8::try_from(i).expect("port index above 255"))
    }

    /// The index, for per-port arrays.
    #[inline]
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

impl std::fmt::Display for PortId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The IPv4 datagram size every host must accept (RFC 1812 §4.3.2.3): the
/// ceiling of an ICMP error's size.
const ICMP4_MAX_LEN: usize = 576;
/// The IPv6 minimum MTU (RFC 4443 §2.4 (c)): the ceiling of an ICMPv6 error.
const ICMP6_MAX_LEN: usize = 1280;
/// Slots of the per-source SYN limiter.
const SYN_LIMITER_SLOTS: usize = 1024;

/// The MSS to clamp to, per address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clamp {
    /// Do not clamp this family.
    Off,
    /// Derive from the MTUs: the smaller of the two ports' MTUs minus 40
    /// (IPv4) or 60 (IPv6). Both ports count because the MSS a SYN carries
    /// limits the segments that flow the *other* way, and in a bump in the
    /// wire the tunnel may be on either side.
    Auto,
    /// A fixed value.
    Fixed(u16),
}

/// What to do with a SYN that needs rewriting when the SYN limit is exhausted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverLimit {
    /// Forward it unclamped (connectivity first).
    Pass,
    /// Drop it (the host retransmits; count [`DropReason::SynLimit`]).
    Drop,
}

/// What to do with an IPv4 packet too big for the egress MTU that has DF set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DfPolicy {
    /// Honour DF: drop and send ICMP Fragmentation Needed (RFC 1191).
    Respect,
    /// Fragment UDP despite DF, like `ip_no_pmtu_disc` for UDP tunnels.
    ClearUdp,
    /// Fragment everything despite DF.
    ClearAll,
}

/// MSS clamping settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MssSettings {
    /// Clamp for IPv4 SYNs.
    pub ipv4: Clamp,
    /// Clamp for IPv6 SYNs.
    pub ipv6: Clamp,
    /// Only clamp an MSS inside this inclusive range (`-m tcpmss --mss lo:hi`).
    pub range: Option<(u16, u16)>,
    /// Insert an MSS option into SYNs that carry none (as `xt_TCPMSS`).
    pub insert: bool,
    /// Per port: clamp SYNs arriving on it (every port by default).
    pub on_ingress: Vec<bool>,
}

/// A token bucket's rate and burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Tokens per second.
    pub per_sec: u64,
    /// Bucket depth.
    pub burst: u64,
}

/// ICMP error settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpSettings {
    /// Source address of ICMPv4 errors; `None` uses the destination of the
    /// offending packet (the appliance has no address of its own in wire mode).
    pub source_v4: Option<[u8; 4]>,
    /// Source address of ICMPv6 errors; `None` as for IPv4.
    pub source_v6: Option<[u8; 16]>,
    /// Send ICMP errors at all. When false, packets too big to forward are
    /// dropped silently (counted as `icmp_suppressed`), which breaks PMTU
    /// discovery: only for operators who must not emit ICMP.
    pub enabled: bool,
    /// Limit on errors sent (both families together); `None` = unlimited.
    pub limit: Option<Rate>,
}

/// SYN rewrite limits: the answer to "MSS adjustment lets an attacker melt
/// the box with SYNs".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynLimitSettings {
    /// Limit on rewrites over all sources; `None` = unlimited.
    pub global: Option<Rate>,
    /// Limit per source address (IPv4) or /64 (IPv6); `None` = only the
    /// global one.
    pub per_source: Option<Rate>,
    /// What happens to a SYN over the limit.
    pub over_limit: OverLimit,
}

/// Everything the pipeline needs to know, as an operator states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Largest L3 packet allowed to leave through each port; its length is
    /// the number of ports (two in wire mode).
    pub port_mtu: Vec<u16>,
    /// MSS clamping.
    pub mss: MssSettings,
    /// DF policy.
    pub df: DfPolicy,
    /// ICMP errors.
    pub icmp: IcmpSettings,
    /// SYN rewrite limits.
    pub syn_limit: SynLimitSettings,
    /// Rules, in order: the first that matches a SYN chooses its clamp,
    /// the first that matches a packet too big its DF policy
    /// ([`crate::rules`]). Empty: `mss` and `df` for everything.
    pub rules: Vec<RuleSettings>,
    /// Learned path MTUs ([`crate::pmtu`]).
    pub pmtu: PmtuSettings,
    /// Give an IPv4 packet fragmented despite DF (by the DF policy) a fresh,
    /// unpredictable ID first, as OpenBSD pf's `scrub random-id` does: hosts
    /// that send ID 0 with DF would otherwise collide in reassembly.
    pub df_random_id: bool,
}

impl Default for Settings {
    /// MTU 1500 on both ports, `auto` clamp for both families, DF respected,
    /// ICMP errors limited like Linux's defaults (1000/s, burst 50), SYN
    /// rewrites 100 000/s (burst 10 000) globally and 200/s (burst 200) per
    /// source, dropped when over (never forwarded unclamped).
    fn default() -> Self {
        Settings {
            port_mtu: vec![1500; WIRE_PORTS],
            mss: MssSettings {
                ipv4: Clamp::Auto,
                ipv6: Clamp::Auto,
                range: None,
                insert: false,
                on_ingress: vec![true; WIRE_PORTS],
            },
            df: DfPolicy::Respect,
            icmp: IcmpSettings {
                source_v4: None,
                source_v6: None,
                enabled: true,
                limit: Some(Rate {
                    per_sec: 1000,
                    burst: 50,
                }),
            },
            syn_limit: SynLimitSettings {
                global: Some(Rate {
                    per_sec: 100_000,
                    burst: 10_000,
                }),
                per_source: Some(Rate {
                    per_sec: 200,
                    burst: 200,
                }),
                over_limit: OverLimit::Drop,
            },
            rules: Vec::new(),
            pmtu: PmtuSettings::default(),
            df_random_id: false,
        }
    }
}

/// A setting the pipeline cannot work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// An MTU below the IPv4 minimum of 68 (RFC 791).
    #[error("port {port} MTU {mtu} is below the IPv4 minimum of 68")]
    MtuTooSmall {
        /// Which port.
        port: PortId,
        /// The MTU given.
        mtu: u16,
    },
    /// A fixed clamp larger than the MTU allows, or zero.
    #[error("{family} MSS {mss} does not fit: it must be 1..={max} (smallest port MTU minus {overhead})")]
    ClampTooLarge {
        /// "ipv4" or "ipv6".
        family: &'static str,
        /// The MSS given.
        mss: u16,
        /// The largest acceptable value.
        max: u16,
        /// The header overhead subtracted from the MTU.
        overhead: u16,
    },
    /// An empty match range.
    #[error("MSS match range {0}:{1} is empty")]
    EmptyRange(u16, u16),
    /// A rate with a zero burst, which could never grant anything.
    #[error("{0} burst must be at least 1")]
    ZeroBurst(&'static str),
    /// A rule that cannot be compiled.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// A learned-PMTU floor below the IPv4 minimum, or no expiry.
    #[error("pmtu: min_mtu {min_mtu} must be at least 68 and expires {expires} at least 1 s")]
    Pmtu {
        /// The floor given.
        min_mtu: u16,
        /// The expiry given, in seconds.
        expires: u64,
    },
    /// Router mode: no port, more than 255, or per-port lists of
    /// different lengths.
    #[error("router mode needs 1 to 255 ports: {mtus} MTUs and {clamp_flags} clamp flags given")]
    RouterPorts {
        /// Length of `port_mtu`.
        mtus: usize,
        /// Length of `mss.on_ingress`.
        clamp_flags: usize,
    },
    /// Not two ports (wire mode), or per-port lists of different lengths.
    #[error("wire mode needs exactly 2 ports: {mtus} MTUs and {clamp_flags} clamp flags given")]
    PortCount {
        /// Length of `port_mtu`.
        mtus: usize,
        /// Length of `mss.on_ingress`.
        clamp_flags: usize,
    },
}

/// Validated settings, compiled into the form the fast path reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub(crate) settings: Settings,
    /// What a frame arriving on each port needs, by ingress port: one
    /// bounds check and one cache line per frame.
    pub(crate) plans: Vec<PortPlan>,
    /// The rules, compiled (swapped with the rest on a reload).
    pub(crate) rules: Rules,
}

/// Everything the pipeline reads per frame about its ingress port.
/// Router mode builds one per frame from the kernel's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PortPlan {
    /// Where its frames are forwarded (wire mode: the other port).
    pub(crate) egress: PortId,
    /// The MTU of that egress port.
    pub(crate) egress_mtu: u16,
    /// This port's own MTU (ICMP errors go back out of it).
    pub(crate) ingress_mtu: u16,
    /// Clamp parameters per family (0 = IPv4, 1 = IPv6).
    pub(crate) clamp: [Option<ClampParams>; 2],
    /// Rules or learning are in force: a TCP segment's clamp is chosen by
    /// `Ctx::choose_clamp`; else it is `clamp`, with nothing more to do.
    pub(crate) policy: bool,
}

impl Config {
    /// Validates and compiles settings.
    pub fn new(settings: Settings) -> Result<Config, SettingsError> {
        let nports = settings.port_mtu.len();
        if nports != WIRE_PORTS || settings.mss.on_ingress.len() != nports {
            return Err(SettingsError::PortCount {
                mtus: nports,
                clamp_flags: settings.mss.on_ingress.len(),
            });
        }
        for (port, &mtu) in settings.port_mtu.iter().enumerate() {
            if mtu < ipv4::MIN_MTU {
                let port = PortId::new(port);
                return Err(SettingsError::MtuTooSmall { port, mtu });
            }
        }
        if let Some((lo, hi)) = settings.mss.range {
            if lo > hi {
                return Err(SettingsError::EmptyRange(lo, hi));
            }
        }
        for (name, r) in [
            ("icmp", settings.icmp.limit),
            ("syn_limit", settings.syn_limit.global),
            ("syn_limit per-source", settings.syn_limit.per_source),
        ] {
            if matches!(r, Some(Rate { burst: 0, .. })) {
                return Err(SettingsError::ZeroBurst(name));
            }
        }
        let p = settings.pmtu;
        if p.min_mtu_v4 < ipv4::MIN_MTU || p.expires_secs == 0 {
            return Err(SettingsError::Pmtu {
                min_mtu: p.min_mtu_v4,
                expires: p.expires_secs,
            });
        }
        let rules = Rules::compile(&settings.rules, &settings.port_mtu)?;
        let min_mtu = settings.port_mtu.iter().copied().min().unwrap_or(0);
        let mut clamp = [vec![None; nports], vec![None; nports]];
        let families = [
            (settings.mss.ipv4, 40u16, "ipv4", mss::DEFAULT_MSS_V4),
            (settings.mss.ipv6, 60u16, "ipv6", mss::DEFAULT_MSS_V6),
        ];
        for (fam, (c, overhead, family, default)) in families.into_iter().enumerate() {
            let max = min_mtu.saturating_sub(overhead);
            let value = match c {
                Clamp::Off => continue,
                Clamp::Auto => max,
                Clamp::Fixed(v) => {
                    if v == 0 || v > max {
                        return Err(SettingsError::ClampTooLarge {
                            family,
                            mss: v,
                            max,
                            overhead,
                        });
                    }
                    v
                }
            };
            for (port, slot) in clamp[fam].iter_mut().enumerate() {
                if settings.mss.on_ingress[port] && value > 0 {
                    *slot = Some(ClampParams {
                        clamp: value,
                        range: settings.mss.range,
                        insert_default: settings.mss.insert.then_some(default),
                    });
                }
            }
        }
        // Wire mode: a bump in the wire forwards each port's frames out of
        // the other one.
        let plans = (0..nports)
            .map(|i| {
                let egress = PortId::new(1 - i);
                PortPlan {
                    egress,
                    egress_mtu: settings.port_mtu[egress.index()],
                    ingress_mtu: settings.port_mtu[i],
                    clamp: [clamp[0][i], clamp[1][i]],
                    policy: !rules.is_empty() || settings.pmtu.learn,
                }
            })
            .collect();
        Ok(Config {
            settings,
            plans,
            rules,
        })
    }

    /// The compiled rules.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Number of ports.
    pub fn port_count(&self) -> usize {
        self.plans.len()
    }

    /// Port `i`, if this configuration has it.
    pub fn port(&self, i: usize) -> Option<PortId> {
        (i < self.port_count()).then(|| PortId::new(i))
    }

    /// Every port, in order.
    pub fn ports(&self) -> impl Iterator<Item = PortId> {
        (0..self.port_count()).map(PortId::new)
    }

    /// Where frames arriving on `ingress` are forwarded.
    pub fn egress(&self, ingress: PortId) -> Option<PortId> {
        self.plans.get(ingress.index()).map(|p| p.egress)
    }

    /// The settings this configuration was built from.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The MSS SYNs of `family` (0 = IPv4, 1 = IPv6) arriving on `port` are
    /// clamped to, if any.
    pub fn clamp_for(&self, family: usize, port: PortId) -> Option<u16> {
        self.plans
            .get(port.index())
            .and_then(|p| p.clamp[family])
            .map(|p| p.clamp)
    }
}

/// Why a frame was dropped. Each has a counter per ingress port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Shorter than an Ethernet header, or cut inside its VLAN tags.
    Truncated = 0,
    /// IPv4 header unusable: version, IHL, total length longer than the frame.
    BadIpv4,
    /// IPv4 header checksum wrong on a packet we had to fragment or answer.
    BadIpv4Checksum,
    /// IPv6 header unusable: version, payload length longer than the frame,
    /// jumbogram.
    BadIpv6,
    /// Larger than the egress MTU and not fragmentable (DF set, or IPv6):
    /// an ICMP error was sent back unless the rules or the limit forbade it.
    TooBig,
    /// Fragmentation refused: MTU below 68, header too long for the MTU,
    /// malformed IPv4 options, frame too small.
    CannotFragment,
    /// No free frame for the extra fragments.
    NoFrame,
    /// A SYN over the SYN rewrite limit, with `over_limit = "drop"`.
    SynLimit,
    /// Given with a port its configuration does not have (a caller's bug).
    /// There is no such port to count it on: it is counted once per
    /// worker in [`State::bad_port`], never in a port's `drops`.
    BadPort,
    /// Router mode: the TTL or hop limit would expire; an ICMP Time
    /// Exceeded was sent back unless the rules or the limit forbade it.
    TtlExpired,
    /// Router mode: the kernel's forwarding decision was missing or named
    /// an interface that is not a port.
    NoRoute,
}

impl DropReason {
    /// Number of reasons.
    pub const COUNT: usize = 11;
    /// Every reason, in counter index order.
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::Truncated,
        DropReason::BadIpv4,
        DropReason::BadIpv4Checksum,
        DropReason::BadIpv6,
        DropReason::TooBig,
        DropReason::CannotFragment,
        DropReason::NoFrame,
        DropReason::SynLimit,
        DropReason::BadPort,
        DropReason::TtlExpired,
        DropReason::NoRoute,
    ];

    /// The label values used in metrics and JSON, in counter index order.
    pub const NAMES: [&'static str; Self::COUNT] = [
        "truncated",
        "bad_ipv4",
        "bad_ipv4_checksum",
        "bad_ipv6",
        "too_big",
        "cannot_fragment",
        "no_frame",
        "syn_limit",
        "bad_port",
        "ttl_expired",
        "no_route",
    ];

    /// The label value used in metrics (`reason="too_big"`).
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// Address family index used by per-family counters.
pub mod family {
    /// IPv4.
    pub const V4: usize = 0;
    /// IPv6.
    pub const V6: usize = 1;
    /// Label values, by index.
    pub const NAMES: [&str; 2] = ["ipv4", "ipv6"];
    /// The ICMP error each family sends about a packet too big, by index:
    /// the `type` label of the ICMP counters.
    pub const ICMP_TYPES: [&str; 2] = ["frag_needed", "packet_too_big"];
}

crate::counter_table! {
    /// Per-port counters, owned by one worker. Plain integers: the worker
    /// publishes copies to the management thread. The table
    /// ([`CounterTable::TABLE`]) names each for JSON, Prometheus and the
    /// text report; [`CounterTable::add`] sums two sets.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct Counters {
        /// Frames received.
        rx_packets: u64 {
            metric: "mtugate_rx_packets_total",
            help: "Frames received on the port.",
            text: "received",
        },
        /// Bytes received (whole frames).
        rx_bytes: u64 {
            metric: "mtugate_rx_bytes_total",
            help: "Bytes of the frames received on the port.",
            text: "received bytes",
        },
        /// Frames forwarded out of the other port (modified or not).
        forwarded: u64 {
            metric: "mtugate_forwarded_total",
            help: "Frames received on the port and forwarded out of the other one.",
            text: "forwarded",
        },
        /// SYNs whose MSS was lowered, by family.
        mss_clamped: [u64; 2] {
            metric: "mtugate_mss_clamped_total",
            help: "SYN and SYN-ACK segments received on the port whose MSS was lowered, by address family.",
            text: "mss clamped {}",
            label: ("family", &family::NAMES),
        },
        /// SYNs that got an MSS option inserted, by family.
        mss_inserted: [u64; 2] {
            metric: "mtugate_mss_inserted_total",
            help: "SYN segments received on the port that got an MSS option inserted, by address family.",
            text: "mss inserted {}",
            label: ("family", &family::NAMES),
        },
        /// SYNs that needed rewriting but were over the SYN limit (passed
        /// unclamped or dropped, per `over_limit`).
        syn_limited: u64 {
            metric: "mtugate_syn_limited_total",
            help: "SYNs received on the port whose MSS rewrite was skipped (or that were dropped) because of the SYN limit.",
            text: "syn over limit",
        },
        /// IPv4 packets fragmented.
        fragmented: u64 {
            metric: "mtugate_fragmented_total",
            help: "IPv4 packets received on the port and fragmented.",
            text: "fragmented packets",
        },
        /// Fragments created (the first one included).
        fragments_created: u64 {
            metric: "mtugate_fragments_created_total",
            help: "Fragments created from packets received on the port.",
            text: "fragments created",
        },
        /// IPv4 packets fragmented despite DF, by DF policy.
        df_overridden: u64 {
            metric: "mtugate_df_overridden_total",
            help: "IPv4 packets fragmented despite DF, by the DF policy.",
            text: "df overridden",
        },
        /// Of those, the ones given a fresh IPv4 ID first (`random_id`).
        df_random_id: u64 {
            metric: "mtugate_df_random_id_total",
            help: "IPv4 packets fragmented despite DF that were given a fresh random IPv4 ID first (df.random_id).",
            text: "df random id",
        },
        /// ICMP errors sent, by family (Fragmentation Needed, Packet Too Big).
        icmp_sent: [u64; 2] {
            metric: "mtugate_icmp_errors_sent_total",
            help: "ICMP errors sent back out of the port about packets received on it, by type (frag_needed: ICMP type 3 code 4; packet_too_big: ICMPv6 type 2).",
            text: "icmp {} sent",
            label: ("type", &family::ICMP_TYPES),
        },
        /// ICMP errors not sent because of the rate limit.
        icmp_rate_limited: u64 {
            metric: "mtugate_icmp_errors_rate_limited_total",
            help: "ICMP errors not sent because of the ICMP rate limit.",
            text: "icmp rate-limited",
        },
        /// ICMP errors not sent because the rules forbid one (about an ICMP
        /// error, a non-first fragment, a group or invalid address) or it did
        /// not fit.
        icmp_suppressed: u64 {
            metric: "mtugate_icmp_errors_suppressed_total",
            help: "ICMP errors not sent because the rules forbid one (about an ICMP error, a non-first fragment, a group or invalid address).",
            text: "icmp suppressed",
        },
        /// Router mode: ICMP Time Exceeded sent back out of the port, by
        /// family.
        time_exceeded_sent: [u64; 2] {
            metric: "mtugate_icmp_time_exceeded_sent_total",
            help: "Router mode: ICMP Time Exceeded (ICMPv6 type 3) sent back out of the port about packets received on it whose TTL or hop limit expired, by address family.",
            text: "icmp time exceeded {} sent",
            label: ("family", &family::NAMES),
        },
        /// Non-IP frames (ARP, LLDP, more than two VLAN tags, ...) passed.
        non_ip_passed: u64 {
            metric: "mtugate_non_ip_passed_total",
            help: "Non-IP frames (ARP, LLDP, ...) forwarded unchanged.",
            text: "non-ip passed",
        },
        /// Packets forwarded unchanged because their TCP header, TCP options or
        /// IPv6 extension header chain could not be parsed.
        malformed_passed: u64 {
            metric: "mtugate_malformed_passed_total",
            help: "Packets forwarded unchanged because their TCP or IPv6 extension headers could not be parsed.",
            text: "malformed passed",
        },
        /// Frames dropped, by [`DropReason`] index.
        drops: [u64; DropReason::COUNT] {
            metric: "mtugate_dropped_total",
            help: "Frames received on the port and dropped, by reason.",
            text: "dropped: {}",
            label: ("reason", &DropReason::NAMES),
        },
    }
}

impl Counters {
    /// Total drops over all reasons.
    pub fn dropped(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Frames this port's traffic put on the wire: forwards, fragments and
    /// ICMP errors.
    pub fn transmitted(&self) -> u64 {
        self.forwarded
            + self.fragments_created
            + self.icmp_sent.iter().sum::<u64>()
            + self.time_exceeded_sent.iter().sum::<u64>()
    }

    /// Whether every received frame has exactly one outcome.
    pub fn balanced(&self) -> bool {
        self.rx_packets == self.forwarded + self.fragmented + self.dropped()
    }

    /// Adds another set of counters (for aggregation across workers).
    pub fn add(&mut self, o: &Counters) {
        CounterTable::add(self, o);
    }
}

/// A worker's mutable state: counters and rate limiters.
#[derive(Debug, Clone)]
pub struct State {
    /// Counters by ingress port.
    pub counters: Vec<Counters>,
    /// Frames given with a port the configuration does not have (a bug in
    /// the caller): dropped, counted here.
    pub bad_port: u64,
    syn: Option<SourceLimiter>,
    pub(crate) budgets: Budgets,
    policy: Policy,
}

/// The appliance-wide budgets: one ICMP error bucket and one global SYN
/// rewrite bucket shared by every worker (clones share them), so that the
/// configured rates mean the whole appliance whatever the number of
/// workers and queues.
#[derive(Debug, Clone)]
pub struct Budgets {
    pub(crate) icmp: Arc<SharedBucket>,
    syn: Arc<SharedBucket>,
}

impl Budgets {
    /// Budgets for `settings`, full at `now`. Create one per appliance and
    /// give a clone to each worker's [`State::with_budgets`].
    #[must_use]
    pub fn new(settings: &Settings, now: u64) -> Budgets {
        let b = Budgets {
            icmp: Arc::new(SharedBucket::unlimited()),
            syn: Arc::new(SharedBucket::unlimited()),
        };
        b.reconfigure(settings, now);
        b
    }

    /// Applies changed rates (a reload), keeping what was spent. Every
    /// worker may call it with the same settings.
    pub fn reconfigure(&self, settings: &Settings, now: u64) {
        match settings.icmp.limit {
            Some(r) => self.icmp.set_rate(r.per_sec, r.burst, now),
            None => self.icmp.set_unlimited(),
        }
        match settings.syn_limit.global {
            Some(r) => self.syn.set_rate(r.per_sec, r.burst, now),
            None => self.syn.set_unlimited(),
        }
    }

    /// Whole ICMP error tokens left at `now` (tests, statistics).
    #[must_use]
    pub fn icmp_available(&self, now: u64) -> u64 {
        self.icmp.available(now)
    }

    /// Whole global SYN tokens left at `now` (tests, statistics).
    #[must_use]
    pub fn syn_available(&self, now: u64) -> u64 {
        self.syn.available(now)
    }
}

/// The worker's state for rules, learned path MTUs and `random_id`.
#[derive(Debug, Clone)]
struct Policy {
    /// The names of the rules `rules` counts for (the configuration's).
    names: Arc<[String]>,
    /// Per rule, in the configuration's order.
    rules: Vec<RuleCounters>,
    /// Learning, set up when it is first turned on.
    learner: Option<Learner>,
    /// The appliance's tables, shared with the other workers
    /// ([`State::share_learning`]); `None`: this worker's own.
    shared: Option<Arc<LearnTables>>,
    /// Counters of learning kept while it is off (and before it starts).
    pmtu_off: PmtuCounters,
    ids: IdGen,
    seed: u64,
}

impl Policy {
    fn new(seed: u64) -> Policy {
        Policy {
            names: Arc::from(Vec::new()),
            rules: Vec::new(),
            learner: None,
            shared: None,
            pmtu_off: PmtuCounters::default(),
            ids: IdGen::new(seed),
            seed,
        }
    }

    /// Follows a new configuration: rule counters keep their values by
    /// rule name (a renamed or new rule starts at zero); the tables are
    /// built the first time learning is on and kept (with what they
    /// learned) while it is off.
    fn reconfigure(&mut self, cfg: &Config) {
        let names = cfg.rules.names();
        if !Arc::ptr_eq(names, &self.names) && names[..] != self.names[..] {
            let old = std::mem::take(&mut self.rules);
            self.rules = names
                .iter()
                .map(|n| {
                    self.names
                        .iter()
                        .position(|o| o == n)
                        .and_then(|i| old.get(i).copied())
                        .unwrap_or_default()
                })
                .collect();
        }
        self.names = Arc::clone(names);
        self.rules.resize(names.len(), RuleCounters::default());
        if cfg.settings.pmtu.learn && self.learner.is_none() {
            let tables = match &self.shared {
                Some(t) => Arc::clone(t),
                None => Arc::new(LearnTables::new(self.seed)),
            };
            let mut l = Learner::new(tables);
            l.counters = self.pmtu_off;
            self.learner = Some(l);
        }
    }
}

impl State {
    /// New state for a lone worker, with budgets of its own. `seed` keys
    /// the per-source hash (give each worker a random one so that an
    /// attacker cannot aim at one slot).
    pub fn new(cfg: &Config, now: u64, seed: u64) -> State {
        State::with_budgets(cfg, now, seed, Budgets::new(&cfg.settings, now))
    }

    /// New state for one of several workers sharing `budgets`.
    pub fn with_budgets(cfg: &Config, now: u64, seed: u64, budgets: Budgets) -> State {
        let mut s = State {
            counters: vec![Counters::default(); cfg.port_count()],
            bad_port: 0,
            syn: None,
            budgets,
            policy: Policy::new(seed),
        };
        s.build_syn_limiter(cfg, now, seed);
        s.reconfigure(cfg, now);
        s
    }

    fn build_syn_limiter(&mut self, cfg: &Config, now: u64, seed: u64) {
        self.syn = syn_rates(&cfg.settings.syn_limit).map(|p| {
            SourceLimiter::new(
                Arc::clone(&self.budgets.syn),
                p.per_sec,
                p.burst,
                SYN_LIMITER_SLOTS,
                seed,
                now,
            )
        });
    }

    /// Applies changed rates (a live reload) without losing counters or the
    /// tokens already earned.
    pub fn reconfigure(&mut self, cfg: &Config, now: u64) {
        // A port count never changes live (it needs a restart); keep the
        // counters indexable if a caller does it anyway.
        self.counters.resize(cfg.port_count(), Counters::default());
        self.policy.reconfigure(cfg);
        self.budgets.reconfigure(&cfg.settings, now);
        match (syn_rates(&cfg.settings.syn_limit), &mut self.syn) {
            (None, _) => self.syn = None,
            (Some(p), Some(l)) => l.set_rates(p.per_sec, p.burst, now),
            (Some(_), None) => self.build_syn_limiter(cfg, now, now ^ 0x9e37_79b9_7f4a_7c15),
        }
    }

    /// The budgets this state draws on.
    #[must_use]
    pub fn budgets(&self) -> &Budgets {
        &self.budgets
    }
}

impl State {
    /// Learns into `tables`, shared with the other workers of the appliance
    /// (give every worker a clone of one `Arc`): then a worker learns from
    /// the ICMP error about a connection whose SYN another worker saw, and
    /// all clamp by what any of them learned. Without it, each worker has
    /// tables of its own.
    pub fn share_learning(&mut self, tables: Arc<LearnTables>) {
        if let Some(l) = &mut self.policy.learner {
            l.set_tables(Arc::clone(&tables));
        }
        self.policy.shared = Some(tables);
    }

    /// The rules' names and their counters, in the configuration's order.
    pub fn rule_counters(&self) -> (&Arc<[String]>, &[RuleCounters]) {
        (&self.policy.names, &self.policy.rules)
    }

    /// Learning's counters, its `entries` gauge brought up to date at `now`
    /// (a scan of the table: off the packet path, the worker calls it
    /// before publishing).
    pub fn pmtu_counters(&mut self, cfg: &Config, now: u64) -> PmtuCounters {
        match &mut self.policy.learner {
            Some(l) => {
                l.refresh(now, &cfg.settings.pmtu);
                l.counters
            }
            None => self.policy.pmtu_off,
        }
    }
}

/// The per-source SYN rate to run a limiter with, or `None` when both
/// limits are off. A missing per-source rate is "unlimited": a bucket that
/// never empties within any realistic run (the global one still holds).
fn syn_rates(sl: &SynLimitSettings) -> Option<Rate> {
    if sl.global.is_none() && sl.per_source.is_none() {
        return None;
    }
    Some(sl.per_source.unwrap_or(Rate {
        per_sec: u64::MAX / 4,
        burst: u64::MAX / 4,
    }))
}

/// What to do with one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send `len` bytes of the frame out of port `egress`.
    Forward {
        /// Frame length to transmit.
        len: usize,
        /// The port to send it out of.
        egress: PortId,
    },
    /// Send the frame (now the first fragment, `first_len` bytes) and the
    /// next `extra` frames committed to [`ExtraFrames`] out of port `egress`.
    Fragments {
        /// Length of the first fragment's frame.
        first_len: usize,
        /// How many extra frames were committed for this packet.
        extra: usize,
        /// The port to send them out of.
        egress: PortId,
    },
    /// Send `len` bytes of the frame (now an ICMP error) back out of the
    /// port it came in on.
    Reply {
        /// Frame length to transmit.
        len: usize,
    },
    /// Free the frame.
    Drop(DropReason),
}

/// One received frame: its whole buffer (so it can grow in place), the
/// length received, and the port it came in on.
#[derive(Debug)]
pub struct FrameRef<'a> {
    /// The frame's buffer, its whole capacity.
    pub buf: &'a mut [u8],
    /// Bytes received.
    pub len: usize,
    /// Ingress port.
    pub port: PortId,
}

/// Runs the pipeline over a batch. `verdicts[i]` receives the verdict of
/// `frames[i]`; frames committed to `extra` belong, in order, to the
/// [`Verdict::Fragments`] verdicts in batch order.
pub fn process<E: ExtraFrames>(
    frames: &mut [FrameRef<'_>],
    now: u64,
    cfg: &Config,
    state: &mut State,
    extra: &mut E,
    verdicts: &mut [Verdict],
) {
    for (f, v) in frames.iter_mut().zip(verdicts.iter_mut()) {
        *v = process_frame(f.buf, f.len, f.port, now, cfg, state, extra);
    }
}

/// Runs the pipeline over one frame received on `ingress`: `buf` is the
/// frame's whole buffer and `len` the bytes received.
#[inline]
pub fn process_frame<E: ExtraFrames>(
    buf: &mut [u8],
    len: usize,
    ingress: PortId,
    now: u64,
    cfg: &Config,
    state: &mut State,
    extra: &mut E,
) -> Verdict {
    process_planned(buf, len, ingress, None, now, cfg, state, extra)
}

/// [`process_frame`] with the plan of this one frame (`Some`: router mode,
/// made from the kernel's decision, with the next hop) instead of its
/// ingress port's.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(crate) fn process_planned<E: ExtraFrames>(
    buf: &mut [u8],
    len: usize,
    ingress: PortId,
    routed: Option<(&PortPlan, &crate::router::Hop)>,
    now: u64,
    cfg: &Config,
    state: &mut State,
    extra: &mut E,
) -> Verdict {
    let State {
        counters,
        bad_port,
        syn,
        budgets,
        policy,
    } = state;
    let plan = match routed {
        Some((p, _)) => Some(p),
        None => cfg.plans.get(ingress.index()),
    };
    let (Some(plan), Some(c)) = (plan, counters.get_mut(ingress.index())) else {
        *bad_port += 1;
        return Verdict::Drop(DropReason::BadPort);
    };
    let len = len.min(buf.len());
    c.rx_packets += 1;
    c.rx_bytes += len as u64;
    let mut parts = Parts {
        cfg,
        plan,
        counters: c,
        syn,
        icmp: &budgets.icmp,
        ingress,
        policy,
        hop: routed.map(|r| r.1),
    };
    let verdict = classify(buf, len, now, &mut parts, extra);
    let c = parts.counters;
    match verdict {
        Verdict::Forward { .. } => c.forwarded += 1,
        Verdict::Fragments { extra, .. } => {
            c.fragmented += 1;
            c.fragments_created += 1 + extra as u64;
        }
        Verdict::Reply { .. } => c.drops[DropReason::TooBig as usize] += 1,
        Verdict::Drop(r) => c.drops[r as usize] += 1,
    }
    verdict
}

/// What one frame's processing borrows: the configuration, its ingress
/// port's plan and counters, and the worker's limiters (the worker's
/// [`State`] split, so that nothing is looked up twice).
struct Parts<'b> {
    cfg: &'b Config,
    plan: &'b PortPlan,
    counters: &'b mut Counters,
    syn: &'b mut Option<SourceLimiter>,
    icmp: &'b SharedBucket,
    ingress: PortId,
    policy: &'b mut Policy,
    /// Router mode: the next hop and the error sources.
    hop: Option<&'b crate::router::Hop>,
}

#[inline]
fn classify<E: ExtraFrames>(
    buf: &mut [u8],
    len: usize,
    now: u64,
    parts: &mut Parts<'_>,
    extra: &mut E,
) -> Verdict {
    let egress = parts.plan.egress;
    let Ok(eth) = ethernet::Frame::new_checked(&buf[..len]) else {
        return Verdict::Drop(DropReason::Truncated);
    };
    let l2 = match eth.l2_info() {
        Ok(l2) => l2,
        Err(WireError::TooManyVlanTags) => {
            parts.counters.non_ip_passed += 1;
            return Verdict::Forward { len, egress };
        }
        Err(_) => return Verdict::Drop(DropReason::Truncated),
    };
    let mut ctx = Ctx {
        buf,
        len,
        l2: l2.header_len,
        now,
        choice: Choice::NONE,
        p: parts,
    };
    match l2.ethertype {
        ethernet::ethertype::IPV4 => ctx.ipv4(extra),
        ethernet::ethertype::IPV6 => ctx.ipv6(),
        _ => {
            ctx.p.counters.non_ip_passed += 1;
            Verdict::Forward { len, egress }
        }
    }
}

/// One frame in flight through the pipeline.
struct Ctx<'a, 'b, 'c> {
    buf: &'a mut [u8],
    len: usize,
    l2: usize,
    now: u64,
    choice: Choice,
    p: &'c mut Parts<'b>,
}

/// What chose a SYN's clamp (when rules or learning are in force): kept in
/// the frame's context, so that the path without them carries nothing.
#[derive(Clone, Copy)]
struct Choice {
    /// The rule that matched it ([`Choice::NO_RULE`]: none).
    rule: u8,
    /// Whether a learned path MTU lowered it.
    by_pmtu: bool,
}

impl Choice {
    /// No rule matched (rules are fewer than [`crate::rules::MAX_RULES`]).
    const NO_RULE: u8 = u8::MAX;
    /// Nothing chose anything.
    const NONE: Choice = Choice {
        rule: Choice::NO_RULE,
        by_pmtu: false,
    };

    fn rule(self) -> Option<usize> {
        (self.rule != Choice::NO_RULE).then_some(usize::from(self.rule))
    }
}

/// What the SYN step did to the frame.
enum SynOutcome {
    /// Carry on; the frame may have grown by `grew` bytes.
    Continue { grew: usize },
    /// Drop it (over the SYN limit with `over_limit = "drop"`).
    Drop,
}

impl Ctx<'_, '_, '_> {
    fn counters(&mut self) -> &mut Counters {
        self.p.counters
    }

    fn egress_mtu(&self) -> u16 {
        self.p.plan.egress_mtu
    }

    fn forward(&mut self) -> Verdict {
        if let Some(hop) = self.p.hop {
            hop.forward(self.buf, self.l2);
        }
        Verdict::Forward {
            len: self.len,
            egress: self.p.plan.egress,
        }
    }

    #[inline]
    fn ipv4<E: ExtraFrames>(&mut self, extra: &mut E) -> Verdict {
        let l2 = self.l2;
        let Ok(ip) = ipv4::Packet::new_checked(&self.buf[l2..self.len]) else {
            return Verdict::Drop(DropReason::BadIpv4);
        };
        let (hl, mut tl) = (ip.header_len(), usize::from(ip.total_len()));
        let (proto, df) = (ip.protocol(), ip.dont_frag());
        let first_frag = ip.frag_offset() == 0;
        let can_grow = !ip.is_fragment();
        let src = ip.src();
        if proto == ipv4::protocol::TCP && first_frag {
            if self.p.plan.policy {
                // Rules or learning: chosen out of line (the path without
                // them stays exactly as it was).
                let addrs = Addrs::V4 { src, dst: ip.dst() };
                match self.policy_syn(l2 + hl, tl, &addrs, can_grow) {
                    Ok(t) => tl = t,
                    Err(v) => return v,
                }
            } else if let Some(p) = self.p.plan.clamp[family::V4] {
                let key = source_key_v4(src);
                match self.syn(l2 + hl, l2 + tl, &p, key, family::V4, can_grow) {
                    SynOutcome::Drop => return Verdict::Drop(DropReason::SynLimit),
                    SynOutcome::Continue { grew: 0 } => {}
                    SynOutcome::Continue { grew } => tl = self.grown(family::V4, tl + grew),
                }
            }
        } else if proto == ipv4::protocol::ICMP && !ip.is_fragment() && self.learning() {
            let dst = ip.dst();
            let (toward, now) = (self.p.plan.egress, self.now);
            let set = &self.p.cfg.settings.pmtu;
            if let Some(l) = self.p.policy.learner.as_mut() {
                l.icmp_v4(&self.buf[l2 + hl..l2 + tl], dst, toward, now, set);
            }
        }
        let mtu = self.egress_mtu();
        if tl <= usize::from(mtu) {
            return self.forward();
        }
        // Too big. From here on we originate packets derived from this
        // header, so refuse to launder a corrupt one (RFC 1812 §5.2.2). The
        // ops rely on this check and do not repeat it.
        let ip = ipv4::Packet::new_unchecked(&self.buf[l2..self.len]);
        if !ip.verify_checksum() {
            return Verdict::Drop(DropReason::BadIpv4Checksum);
        }
        // Parse once: the ops get this context (the header as checked above,
        // its length as the SYN step left it), never the bare frame. Built
        // only here, off the forwarding path.
        let l3 = L3Ctx::ipv4(l2, &ip);
        let mut policy = self.p.cfg.settings.df;
        if !self.p.cfg.rules.is_empty() {
            // Not a handshake: the packet matches a rule either way round.
            let mut rule = self.choice.rule();
            if rule.is_none() {
                let (ing, eg) = (self.p.ingress, self.p.plan.egress);
                let addrs = Addrs::V4 { src, dst: ip.dst() };
                rule = self.p.cfg.rules.first_either(&addrs, ing, eg, self.vlan());
                if let Some(i) = rule {
                    // At most MAX_RULES (64): fits.
                    self.choice.rule = i as u8;
                    if let Some(c) = self.p.policy.rules.get_mut(i) {
                        c.matched += 1;
                    }
                }
            }
            if let Some(d) = rule.and_then(|i| self.p.cfg.rules.action(i)?.df) {
                policy = d;
            }
        }
        let may_fragment = !df
            || match policy {
                DfPolicy::Respect => false,
                DfPolicy::ClearUdp => proto == ipv4::protocol::UDP,
                DfPolicy::ClearAll => true,
            };
        if may_fragment {
            let fresh_id = df && self.p.cfg.settings.df_random_id;
            if fresh_id {
                // random-id: the fragments of a packet whose DF we override
                // get an ID the sender did not choose (it may send ID 0 with
                // DF, trusting that nobody fragments). The checksum follows
                // (RFC 1624); the fragmenter writes each fragment's anyway.
                let id = self.p.policy.ids.next_id();
                let mut ip = ipv4::Packet::new_unchecked(&mut self.buf[l2..self.len]);
                let (old, sum) = (ip.ident(), ip.checksum());
                ip.set_ident(id);
                ip.set_checksum(checksum::update16(sum, old, id));
            }
            // Wire mode: every fragment continues on the input's way; a
            // router's go to the next hop, their TTL decremented.
            let macs = match self.p.hop {
                Some(hop) => hop.fragments(self.buf, l2),
                None => MacRewrite::Keep,
            };
            return match frag::fragment_ipv4(self.buf, &l3, mtu, macs, extra) {
                Ok(f) => {
                    let rule = self.choice.rule();
                    if let Some(c) = rule.and_then(|i| self.p.policy.rules.get_mut(i)) {
                        c.fragmented += 1;
                    }
                    if df {
                        self.counters().df_overridden += 1;
                    }
                    if fresh_id {
                        self.counters().df_random_id += 1;
                    }
                    Verdict::Fragments {
                        first_len: f.first_len,
                        extra: f.extra,
                        egress: self.p.plan.egress,
                    }
                }
                Err(FragError::NoFrame) => Verdict::Drop(DropReason::NoFrame),
                Err(_) => Verdict::Drop(DropReason::CannotFragment),
            };
        }
        let src = self.p.cfg.settings.icmp.source_v4;
        let src = src.or(self.p.hop.and_then(|h| h.icmp_v4));
        self.too_big(
            family::V4,
            ICMP4_MAX_LEN,
            &l3,
            icmp::check_v4,
            |buf, l3, macs, max| icmp::build_frag_needed(buf, l3, macs, src, mtu, max),
        )
    }

    fn ipv6(&mut self) -> Verdict {
        let l2 = self.l2;
        let Ok(ip) = ipv6::Packet::new_checked(&self.buf[l2..self.len]) else {
            return Verdict::Drop(DropReason::BadIpv6);
        };
        let mut tl = ip.total_len();
        let src = ip.src();
        let upper = ip.upper_layer();
        match upper {
            Ok(u) if u.protocol == ipv4::protocol::TCP && u.has_header() => {
                let can_grow = u.fragment.is_none();
                if self.p.plan.policy {
                    let addrs = Addrs::V6 { src, dst: ip.dst() };
                    match self.policy_syn(l2 + u.offset, tl, &addrs, can_grow) {
                        Ok(t) => tl = t,
                        Err(v) => return v,
                    }
                } else if let Some(p) = self.p.plan.clamp[family::V6] {
                    let key = source_key_v6(&src);
                    match self.syn(l2 + u.offset, l2 + tl, &p, key, family::V6, can_grow) {
                        SynOutcome::Drop => return Verdict::Drop(DropReason::SynLimit),
                        SynOutcome::Continue { grew: 0 } => {}
                        SynOutcome::Continue { grew } => tl = self.grown(family::V6, tl + grew),
                    }
                }
            }
            Ok(u)
                if u.protocol == ipv4::protocol::ICMPV6
                    && u.fragment.is_none()
                    && self.learning() =>
            {
                let dst = ip.dst();
                let (toward, now) = (self.p.plan.egress, self.now);
                let set = &self.p.cfg.settings.pmtu;
                if let Some(l) = self.p.policy.learner.as_mut() {
                    l.icmp_v6(
                        &self.buf[l2 + u.offset..l2 + tl],
                        &src,
                        &dst,
                        toward,
                        now,
                        set,
                    );
                }
            }
            Ok(_) => {}
            Err(_) => self.counters().malformed_passed += 1,
        }
        let mtu = self.egress_mtu();
        if tl <= usize::from(mtu) {
            return self.forward();
        }
        // Parse once: the extension header walk is handed down, not redone.
        let ip = ipv6::Packet::new_unchecked(&self.buf[l2..self.len]);
        let l3 = L3Ctx::ipv6(l2, &ip, upper.ok());
        // IPv6 routers never fragment (RFC 8200 §5): Packet Too Big.
        let src = self.p.cfg.settings.icmp.source_v6;
        let src = src.or(self.p.hop.and_then(|h| h.icmp_v6));
        self.too_big(
            family::V6,
            ICMP6_MAX_LEN,
            &l3,
            icmp::check_v6,
            |buf, l3, macs, max| {
                icmp::build_packet_too_big(buf, l3, macs, src, u32::from(mtu), max)
            },
        )
    }

    /// The IP packet grew to `tl` bytes (an MSS option inserted): its
    /// length field and the frame's length follow. Returns `tl`.
    #[inline]
    fn grown(&mut self, fam: usize, tl: usize) -> usize {
        let l2 = self.l2;
        if fam == family::V4 {
            ipv4::Packet::new_unchecked(&mut self.buf[l2..]).update_total_len(tl as u16);
        } else {
            let pl = (tl - ipv6::HEADER_LEN) as u16;
            ipv6::Packet::new_unchecked(&mut self.buf[l2..]).set_payload_len(pl);
        }
        self.len = l2 + tl;
        tl
    }

    /// The SYN step with rules or learning in force, for the TCP segment
    /// at `start` of an IP packet of `tl` bytes with `addrs`: the clamp
    /// chosen ([`Ctx::choose_clamp`]), the segment clamped, the rewrite
    /// credited to what chose it. The new IP packet length, or the verdict
    /// of a SYN dropped over the limit.
    #[inline(never)]
    fn policy_syn(
        &mut self,
        start: usize,
        tl: usize,
        addrs: &Addrs,
        can_grow: bool,
    ) -> Result<usize, Verdict> {
        let fam = addrs.family();
        let end = self.l2 + tl;
        let Some(p) = self.choose_clamp(start, end, addrs) else {
            return Ok(tl);
        };
        let key = match addrs {
            Addrs::V4 { src, .. } => source_key_v4(*src),
            Addrs::V6 { src, .. } => source_key_v6(src),
        };
        let before = self.rewrites(fam);
        let tl = match self.syn(start, end, &p, key, fam, can_grow) {
            SynOutcome::Drop => return Err(Verdict::Drop(DropReason::SynLimit)),
            SynOutcome::Continue { grew: 0 } => tl,
            SynOutcome::Continue { grew } => self.grown(fam, tl + grew),
        };
        self.count_rewrite(fam, before);
        Ok(tl)
    }

    /// The outer VLAN id, for rules that name VLANs.
    #[inline]
    fn vlan(&self) -> Option<u16> {
        (self.l2 > ethernet::HEADER_LEN).then(|| {
            u16::from_be_bytes([
                self.buf[ethernet::HEADER_LEN],
                self.buf[ethernet::HEADER_LEN + 1],
            ]) & 0x0fff
        })
    }

    /// Whether path MTUs are being learned.
    #[inline]
    fn learning(&self) -> bool {
        self.p.cfg.settings.pmtu.learn
    }

    /// MSS rewrites (clamps and insertions) of family `fam` so far.
    #[inline]
    fn rewrites(&mut self, fam: usize) -> u64 {
        let c = self.counters();
        c.mss_clamped[fam] + c.mss_inserted[fam]
    }

    /// After the SYN step: credits a rewrite to the rule and the learned
    /// path MTU that chose its clamp.
    #[inline]
    fn count_rewrite(&mut self, fam: usize, before: u64) {
        let choice = self.choice;
        if choice.rule().is_none() && !choice.by_pmtu || self.rewrites(fam) == before {
            return;
        }
        let pol = &mut *self.p.policy;
        if let Some(c) = choice.rule().and_then(|i| pol.rules.get_mut(i)) {
            c.clamped += 1;
        }
        if let (true, Some(l)) = (choice.by_pmtu, pol.learner.as_mut()) {
            l.counters.clamped += 1;
        }
    }

    /// The clamp of the TCP segment at `buf[start..end]`: its ingress
    /// port's (`[mss]`), unless it is a SYN or SYN-ACK that a rule matches
    /// (the rule's) or toward a destination with a learned path MTU (that
    /// MTU's, if lower); what chose it goes to `self.choice`. Also records
    /// the SYN or SYN-ACK in the flow table when learning. Called only when
    /// rules or learning are in force (`PortPlan::policy`), out of line: the
    /// path without them stays as it was.
    #[inline]
    fn choose_clamp(&mut self, start: usize, end: usize, addrs: &Addrs) -> Option<ClampParams> {
        let fam = addrs.family();
        let mut params = self.p.plan.clamp[fam];
        let cfg = self.p.cfg;
        let seg = &self.buf[start..end];
        // Not a SYN (or too short to say): the SYN step decides and counts.
        if seg.len() < tcp::MIN_HEADER_LEN
            || seg[13] & (tcp::flags::SYN | tcp::flags::RST) != tcp::flags::SYN
        {
            return params;
        }
        let mut choice = Choice::NONE;
        let (ingress, egress, vlan) = (self.p.ingress, self.p.plan.egress, self.vlan());
        let pol = &mut *self.p.policy;
        if !cfg.rules.is_empty() {
            // A SYN-ACK is matched as the SYN it answers (came in on the
            // port this one leaves by, addresses swapped).
            let rule = if seg[13] & tcp::flags::ACK != 0 {
                cfg.rules.first_reply(addrs, egress, vlan)
            } else {
                cfg.rules.first(addrs, ingress, vlan)
            };
            if let Some(i) = rule {
                // At most MAX_RULES (64): fits.
                choice.rule = i as u8;
                params = cfg.rules.action(i).and_then(|a| a.clamp[fam]);
                if let Some(c) = pol.rules.get_mut(i) {
                    c.matched += 1;
                }
            }
        }
        if let (true, Some(l)) = (cfg.settings.pmtu.learn, pol.learner.as_mut()) {
            let (src, dst): (&[u8], &[u8]) = match addrs {
                Addrs::V4 { src, dst } => (src, dst),
                Addrs::V6 { src, dst } => (src, dst),
            };
            let seen = Seen {
                fam,
                src,
                dst,
                ports: [seg[0], seg[1], seg[2], seg[3]],
            };
            l.record_flow(&seen, ingress, self.now);
            if let Some(m) = l.clamp_for(&seen, self.now, &cfg.settings.pmtu) {
                match params {
                    Some(p) if p.clamp <= m => {}
                    p => {
                        params = Some(ClampParams {
                            clamp: m,
                            range: None,
                            insert_default: p.and_then(|p| p.insert_default),
                        });
                        choice.by_pmtu = true;
                    }
                }
            }
        }
        self.choice = choice;
        params
    }

    /// Drops a packet too big to forward and, if the rules and the ICMP
    /// limit allow, turns its frame into an ICMP error of family `fam` no
    /// larger than `ceiling` (576 / 1280) or the ingress port's MTU, sent
    /// back where it came from.
    #[inline]
    fn too_big(
        &mut self,
        fam: usize,
        ceiling: usize,
        l3: &L3Ctx,
        check: fn(&[u8], &L3Ctx) -> Result<(), icmp::IcmpRefusal>,
        build: impl FnOnce(&mut [u8], &L3Ctx, MacRewrite, usize) -> Result<usize, icmp::IcmpRefusal>,
    ) -> Verdict {
        if !self.p.cfg.settings.icmp.enabled || check(self.buf, l3).is_err() {
            self.counters().icmp_suppressed += 1;
            return Verdict::Drop(DropReason::TooBig);
        }
        if !self.p.icmp.try_take(self.now) {
            self.counters().icmp_rate_limited += 1;
            return Verdict::Drop(DropReason::TooBig);
        }
        let max = ceiling.min(usize::from(self.p.plan.ingress_mtu));
        // Wire mode: back to the sender, out of the port it came in on.
        match build(self.buf, l3, MacRewrite::Swap, max) {
            Ok(len) => {
                self.counters().icmp_sent[fam] += 1;
                Verdict::Reply { len }
            }
            Err(_) => {
                self.counters().icmp_suppressed += 1;
                Verdict::Drop(DropReason::TooBig)
            }
        }
    }

    /// The SYN step for the TCP segment at `buf[start..end]`: clamp or
    /// insert the MSS if the segment is a SYN that needs it and the SYN
    /// limit allows. `can_grow`: the packet is not a fragment, so an option
    /// may be inserted.
    #[inline]
    fn syn(
        &mut self,
        start: usize,
        end: usize,
        p: &ClampParams,
        key: u64,
        fam: usize,
        can_grow: bool,
    ) -> SynOutcome {
        let keep = SynOutcome::Continue { grew: 0 };
        let seg = &self.buf[start..end];
        if seg.len() < tcp::MIN_HEADER_LEN || usize::from(seg[12] >> 4) * 4 < tcp::MIN_HEADER_LEN {
            self.counters().malformed_passed += 1;
            return keep;
        }
        if seg[13] & (tcp::flags::SYN | tcp::flags::RST) != tcp::flags::SYN {
            return keep;
        }
        let plan = mss::plan(seg, p);
        let growing = matches!(plan, Plan::Insert(_));
        match plan {
            Plan::Keep => return keep,
            Plan::Malformed => {
                self.counters().malformed_passed += 1;
                return keep;
            }
            Plan::Insert(_) if !can_grow || end + 4 > self.buf.len() || end + 4 > 0xffff => {
                return keep;
            }
            Plan::Clamp { .. } | Plan::Insert(_) => {}
        }
        if let Some(l) = self.p.syn {
            if !l.try_take(key, self.now) {
                self.counters().syn_limited += 1;
                return match self.p.cfg.settings.syn_limit.over_limit {
                    OverLimit::Pass => keep,
                    OverLimit::Drop => SynOutcome::Drop,
                };
            }
        }
        match plan {
            Plan::Insert(v) => {
                let hl = seg.len();
                mss::insert(&mut self.buf[start..end + 4], hl, v);
                self.counters().mss_inserted[fam] += 1;
            }
            _ => {
                mss::apply_clamp(&mut self.buf[start..end], &plan);
                self.counters().mss_clamped[fam] += 1;
            }
        }
        SynOutcome::Continue {
            grew: if growing { 4 } else { 0 },
        }
    }
}
