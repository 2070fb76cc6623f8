//! The statistics document: what `GET /stats` serves as JSON, what
//! `mtugate stats` reads back and renders, and what `/metrics` is
//! rendered from. Counters are cumulative since the appliance started;
//! `rates` are per second over the last interval.

use crate::table;
use mtugate_datapath::counters::CounterTable;
use mtugate_datapath::pipeline::Counters;
use mtugate_datapath::pmtu::PmtuCounters;
use mtugate_datapath::rules::RuleCounters;
use mtugate_xsk::{PortCounters, XdpStats, XskStats};
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};

/// One value per address family.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PerFamily<T> {
    /// IPv4.
    pub ipv4: T,
    /// IPv6.
    pub ipv6: T,
}

/// ICMP errors by type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PerIcmpType<T> {
    /// ICMP Destination Unreachable, Fragmentation Needed (type 3 code 4).
    pub frag_needed: T,
    /// ICMPv6 Packet Too Big (type 2).
    pub packet_too_big: T,
}

/// The pipeline's counters for the packets that arrived on one port, as
/// the documents show them: every counter of the pipeline's table
/// ([`Counters`], [`CounterTable::TABLE`]) under its field name (an array
/// as an object keyed by label value: `"drops": {"too_big": 7, ...}`,
/// `"mss_clamped": {"ipv4": 1, "ipv6": 0}`), then the derived `dropped`
/// (all reasons), `transmitted` (forwards, fragments and ICMP errors) and
/// `balanced` (`rx_packets == forwarded + fragmented + dropped`). Reading
/// it back requires every counter of the table and recomputes the
/// derived values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipelineCounters(pub Counters);

impl Deref for PipelineCounters {
    type Target = Counters;
    fn deref(&self) -> &Counters {
        &self.0
    }
}

impl DerefMut for PipelineCounters {
    fn deref_mut(&mut self) -> &mut Counters {
        &mut self.0
    }
}

/// The keys derived from the counters, written after them.
const DERIVED: [&str; 3] = ["dropped", "transmitted", "balanced"];

impl Serialize for PipelineCounters {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        table::serialize_entries(&self.0, "", &mut m)?;
        m.serialize_entry(DERIVED[0], &self.dropped())?;
        m.serialize_entry(DERIVED[1], &self.transmitted())?;
        m.serialize_entry(DERIVED[2], &self.balanced())?;
        m.end()
    }
}

impl<'de> Deserialize<'de> for PipelineCounters {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PipelineCounters;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("the pipeline counters of a port")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut c = Counters::default();
                let mut seen = [false; Counters::TABLE.len()];
                while let Some(k) = m.next_key::<String>()? {
                    if !table::deserialize_entry(&mut c, &mut seen, &k, &mut m)? {
                        m.next_value::<IgnoredAny>()?; // derived, or newer
                    }
                }
                table::all_seen::<Counters, _>(&seen)?;
                Ok(PipelineCounters(c))
            }
        }
        d.deserialize_map(V)
    }
}

/// Any counter table as the documents show it: every counter under its
/// field name (an array as an object keyed by label value). Reading it
/// back requires every counter of the table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tabled<T>(pub T);

impl<T: CounterTable> Serialize for Tabled<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        table::serialize_entries(&self.0, "", &mut m)?;
        m.end()
    }
}

impl<'de, T: CounterTable> Deserialize<'de> for Tabled<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: CounterTable> Visitor<'de> for V<T> {
            type Value = Tabled<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a table of counters")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut c = T::default();
                let mut seen = vec![false; T::TABLE.len()];
                while let Some(k) = m.next_key::<String>()? {
                    if !table::deserialize_entry(&mut c, &mut seen, &k, &mut m)? {
                        m.next_value::<IgnoredAny>()?;
                    }
                }
                table::all_seen::<T, _>(&seen)?;
                Ok(Tabled(c))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// One rule's counters, summed over the workers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleStats {
    /// The rule's name.
    pub rule: String,
    /// Its counters ([`RuleCounters`]).
    pub counters: Tabled<RuleCounters>,
}

mtugate_datapath::counter_table! {
    /// AF_XDP socket counters of one port, as the worker's queue counts them
    /// ([`PortCounters`], converted by [`IoStats::new`]).
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct IoStats {
        /// Frames taken from the RX ring.
        rx_frames: u64 {
            metric: "mtugate_xsk_rx_frames_total",
            help: "Frames taken from the AF_XDP RX ring.",
            text: "rx frames",
        },
        /// Frames put into the TX ring.
        tx_frames: u64 {
            metric: "mtugate_xsk_tx_frames_total",
            help: "Frames put into the AF_XDP TX ring.",
            text: "tx frames",
        },
        /// Frames completed by the kernel.
        tx_completed: u64 {
            metric: "mtugate_xsk_tx_completed_total",
            help: "Frames the kernel completed from the AF_XDP TX ring.",
            text: "tx completed",
        },
        /// TX wakeups (`sendto`).
        tx_kicks: u64 {
            metric: "mtugate_xsk_tx_wakeups_total",
            help: "sendto() wakeups of the AF_XDP TX ring.",
            text: "tx wakeups",
        },
        /// Frames put into the fill ring.
        fill_frames: u64 {
            metric: "mtugate_xsk_fill_frames_total",
            help: "Frames given to the kernel through the AF_XDP fill ring.",
            text: "fill frames",
        },
        /// Frames freed because the TX ring was full.
        tx_ring_full_drops: u64 {
            metric: "mtugate_tx_ring_full_drops_total",
            help: "Frames freed because the AF_XDP TX ring of the port was full.",
            text: "tx ring full (frames freed)",
        },
        /// TX wakeups (`sendto`) that failed.
        tx_kick_errors: u64 {
            metric: "mtugate_xsk_tx_wakeup_errors_total",
            help: "sendto() wakeups of the AF_XDP TX ring that failed (EAGAIN/EBUSY: kernel busy; ENXIO/ENETDOWN: interface gone or down).",
            text: "tx wakeup errors",
        },
        /// Fill-ring wakeups (`poll`) that failed.
        fill_wakeup_errors: u64 {
            metric: "mtugate_xsk_fill_wakeup_errors_total",
            help: "poll() wakeups of the AF_XDP fill ring that failed.",
            text: "fill wakeup errors",
        },
    }
}

impl IoStats {
    /// The queue's counters of one port, and the frames the worker freed
    /// because that port's TX ring was full.
    pub fn new(io: &PortCounters, tx_ring_full_drops: u64) -> IoStats {
        IoStats {
            rx_frames: io.rx_frames,
            tx_frames: io.tx_frames,
            tx_completed: io.tx_completed,
            tx_kicks: io.tx_kicks,
            fill_frames: io.fill_frames,
            tx_ring_full_drops,
            tx_kick_errors: io.tx_kick_errors,
            fill_wakeup_errors: io.fill_wakeup_errors,
        }
    }
}

mtugate_datapath::counter_table! {
    /// The kernel's statistics of one AF_XDP socket (`XDP_STATISTICS`,
    /// [`XskStats`]).
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct KernelSocketStats {
        /// Dropped for other reasons.
        rx_dropped: u64 {
            metric: "mtugate_xsk_kernel_rx_dropped_total",
            help: "Kernel XDP_STATISTICS rx_dropped: frames dropped for other reasons (e.g. larger than a UMEM frame).",
            text: "rx dropped",
        },
        /// Dropped because the RX ring was full.
        rx_ring_full: u64 {
            metric: "mtugate_xsk_kernel_rx_ring_full_total",
            help: "Kernel XDP_STATISTICS rx_ring_full: frames dropped because the RX ring was full.",
            text: "rx ring full",
        },
        /// Times the fill ring was empty.
        fill_ring_empty: u64 {
            metric: "mtugate_xsk_kernel_fill_ring_empty_total",
            help: "Kernel XDP_STATISTICS rx_fill_ring_empty_descs: times the fill ring was found empty.",
            text: "fill empty",
        },
        /// Times the TX ring was empty when asked to send.
        tx_ring_empty: u64 {
            metric: "mtugate_xsk_kernel_tx_ring_empty_total",
            help: "Kernel XDP_STATISTICS tx_ring_empty_descs: times the TX ring was found empty when asked to send.",
            text: "tx empty",
        },
        /// Invalid fill/RX descriptors.
        rx_invalid_descs: u64 {
            metric: "mtugate_xsk_kernel_rx_invalid_descs_total",
            help: "Kernel XDP_STATISTICS rx_invalid_descs: invalid fill ring descriptors.",
            text: "rx invalid",
        },
        /// Invalid TX descriptors.
        tx_invalid_descs: u64 {
            metric: "mtugate_xsk_kernel_tx_invalid_descs_total",
            help: "Kernel XDP_STATISTICS tx_invalid_descs: invalid TX ring descriptors.",
            text: "tx invalid",
        },
    }
}

impl From<&XskStats> for KernelSocketStats {
    fn from(k: &XskStats) -> Self {
        KernelSocketStats {
            rx_dropped: k.rx_dropped,
            rx_ring_full: k.rx_ring_full,
            fill_ring_empty: k.rx_fill_ring_empty_descs,
            tx_ring_empty: k.tx_ring_empty_descs,
            rx_invalid_descs: k.rx_invalid_descs,
            tx_invalid_descs: k.tx_invalid_descs,
        }
    }
}

/// One port (of one queue, or summed over queues).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PortStats {
    /// The port's name.
    pub port: String,
    /// Pipeline counters of the packets received on this port.
    pub counters: PipelineCounters,
    /// Frames sent out of this port.
    pub tx_packets: u64,
    /// Bytes sent out of this port.
    pub tx_bytes: u64,
    /// AF_XDP counters.
    pub io: IoStats,
    /// Kernel socket statistics (`None` if the query failed).
    pub kernel: Option<KernelSocketStats>,
}

/// Per-second rates of one port over the last interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PortRates {
    /// The port's name.
    pub port: String,
    /// Packets received per second.
    pub rx_pps: f64,
    /// Bits received per second.
    pub rx_bps: f64,
    /// Packets sent per second.
    pub tx_pps: f64,
    /// Bits sent per second.
    pub tx_bps: f64,
    /// Drops per second (packets received on this port).
    pub drop_ps: f64,
}

/// Percentiles of a latency histogram, in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Packets recorded.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p99_9: u64,
    /// Largest value.
    pub max: u64,
}

/// A latency measure over the last interval and since start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Windows {
    /// The last interval.
    pub interval: Percentiles,
    /// Since the appliance started.
    pub since_start: Percentiles,
}

/// Latency, all queues merged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Processing time per packet (batch time / batch size), ns.
    pub packet_cost_ns: Windows,
    /// Time from receive to transmit of a batch, ns.
    pub dwell_ns: Windows,
}

/// One worker (queue id).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueStats {
    /// Queue id.
    pub queue: u32,
    /// The core the worker is pinned to.
    pub core: Option<usize>,
    /// Rounds of the poll loop.
    pub polls: u64,
    /// Rounds that found work.
    pub busy_polls: u64,
    /// Busy rounds / all rounds over the last interval.
    pub busy_ratio: f64,
    /// UMEM frames not in the free list.
    pub frames_in_flight: u64,
    /// UMEM frames.
    pub frames_total: u64,
    /// Both ports.
    pub ports: Vec<PortStats>,
    /// Rates over the last interval, per port.
    pub rates: Vec<PortRates>,
    /// Latency of this queue.
    pub latency: Latency,
}

/// Per-second rates over the last interval, all queues and ports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    /// Packets received.
    pub rx_pps: f64,
    /// Packets sent.
    pub tx_pps: f64,
    /// Drops, by reason.
    pub drops: BTreeMap<String, f64>,
    /// MSS clamps.
    pub mss_clamped: PerFamily<f64>,
    /// SYN rewrites skipped by the SYN limit.
    pub syn_limited: f64,
    /// Packets fragmented.
    pub fragmented: f64,
    /// Fragments created.
    pub fragments_created: f64,
    /// ICMP errors sent.
    pub icmp_sent: PerIcmpType<f64>,
    /// ICMP errors held back by the limit.
    pub icmp_rate_limited: f64,
    /// Malformed packets passed.
    pub malformed_passed: f64,
    /// Non-IP frames passed.
    pub non_ip_passed: f64,
}

/// Reload outcomes since start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reloads {
    /// Applied.
    pub ok: u64,
    /// Refused: invalid configuration.
    pub invalid: u64,
    /// Refused: a change that needs a restart.
    pub restart_needed: u64,
}

/// The whole document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// mtugate's version.
    pub version: String,
    /// The source revision it was built from (git), or `unknown`.
    #[serde(default)]
    pub revision: String,
    /// Seconds since the management thread started, at this aggregation.
    pub uptime_s: f64,
    /// The aggregation interval.
    pub interval_ms: u64,
    /// Aggregations so far.
    pub seq: u64,
    /// Configuration generation in force (1 = as started).
    pub config_generation: u64,
    /// Reload outcomes.
    pub reloads: Reloads,
    /// The two port names, in port order.
    pub port_names: Vec<String>,
    /// Per queue.
    pub queues: Vec<QueueStats>,
    /// Per port, summed over queues.
    pub totals: Vec<PortStats>,
    /// Rates over the last interval, all queues and ports.
    pub rates: Rates,
    /// Latency, all queues merged.
    pub latency: Latency,
    /// The XDP stage per port (empty without one).
    #[serde(default)]
    pub xdp: Vec<XdpPortStats>,
    /// Per rule, in the configuration's order (empty without rules).
    #[serde(default)]
    pub rules: Vec<RuleStats>,
    /// Learned path MTUs, summed over the workers.
    #[serde(default)]
    pub pmtu: Tabled<PmtuCounters>,
    /// Router mode: the route metric mirror (`None` in wire mode).
    #[serde(default)]
    pub route_mirror: Option<RouteMirrorStats>,
}

/// Router mode: the mirror of route metrics (`mtu`, `advmss`) from the
/// kernel's main table into the XDP stage's tries, since mtugate started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteMirrorStats {
    /// Prefixes in the tries now (routes with metrics, and the more
    /// specific routes inside them).
    pub entries: u64,
    /// Updates of the tries (a batch of route changes each), the first
    /// fill included.
    pub updates: u64,
    /// Full re-reads of the table (notifications lost or unreadable).
    pub resyncs: u64,
    /// Failed writes of the tries (each retried until one succeeds).
    pub write_errors: u64,
    /// The tries lag the kernel's table now (a write failed; retried).
    pub stale: bool,
}

/// The XDP stage's counters of one port since mtugate started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct XdpPortStats {
    /// The port's name.
    pub port: String,
    /// Its counters.
    #[serde(flatten)]
    pub stats: XdpStats,
    /// The interface's own drop counters since mtugate started.
    #[serde(default)]
    pub nic: NicDrops,
}

/// What the kernel side of one port reports besides the sockets: the XDP
/// program's counters and the interface's drop counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStage {
    /// The XDP program's counters.
    pub xdp: XdpStats,
    /// The interface's drop counters.
    pub nic: NicDrops,
}

/// An interface's receive drops (`/sys/class/net/<iface>/statistics`),
/// since mtugate started: frames the driver dropped before any program or
/// socket saw them (with zero-copy, a starved fill ring shows here), where
/// the driver reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicDrops {
    /// `rx_dropped`.
    pub rx_dropped: u64,
    /// `rx_missed_errors` (the NIC had no room).
    pub rx_missed: u64,
}

/// Frames of one port lost before mtugate could see them, by where.
///
/// Each kernel event is counted once: the AF_XDP `rx_fill_ring_empty_descs`
/// counts the same events as `rx_dropped` and is left out; and a driver may
/// count a failed redirect into a socket again in its own `rx_dropped`
/// (veth does, measured: every "RX ring full" drop appeared in both), so
/// [`total`](Self::total) is the larger of the socket side and the
/// interface side, never their sum: a lower bound that never double counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lost {
    /// AF_XDP `rx_dropped`: no free frame in the fill ring (copy mode), or
    /// a frame larger than a UMEM frame.
    pub xsk_rx_dropped: u64,
    /// AF_XDP `rx_ring_full`: the worker did not empty its RX ring in time.
    pub xsk_rx_ring_full: u64,
    /// The interface's `rx_dropped`.
    pub nic_rx_dropped: u64,
    /// The interface's `rx_missed_errors`.
    pub nic_rx_missed: u64,
}

impl Lost {
    /// Every place, with its label (`/metrics` `where`) and text.
    pub fn places(&self) -> [(&'static str, &'static str, u64); 4] {
        [
            (
                "xsk_rx_dropped",
                "AF_XDP rx_dropped (fill ring empty)",
                self.xsk_rx_dropped,
            ),
            (
                "xsk_rx_ring_full",
                "AF_XDP RX ring full",
                self.xsk_rx_ring_full,
            ),
            (
                "nic_rx_dropped",
                "interface rx_dropped",
                self.nic_rx_dropped,
            ),
            ("nic_rx_missed", "interface rx_missed", self.nic_rx_missed),
        ]
    }

    /// Frames lost: the larger of the sockets' count and the interface's
    /// (see the type's documentation).
    pub fn total(&self) -> u64 {
        let sockets = self.xsk_rx_dropped + self.xsk_rx_ring_full;
        let nic = self.nic_rx_dropped + self.nic_rx_missed;
        sockets.max(nic)
    }

    /// Adds another port's.
    pub fn add(&mut self, o: &Lost) {
        self.xsk_rx_dropped += o.xsk_rx_dropped;
        self.xsk_rx_ring_full += o.xsk_rx_ring_full;
        self.nic_rx_dropped += o.nic_rx_dropped;
        self.nic_rx_missed += o.nic_rx_missed;
    }

    /// `"1200 AF_XDP rx_dropped (fill ring empty), 300 AF_XDP RX ring full"`:
    /// the places with losses.
    pub fn describe(&self) -> String {
        self.places()
            .iter()
            .filter(|p| p.2 > 0)
            .map(|p| format!("{} {}", p.2, p.1))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Stats {
    /// Packets received on all ports and queues.
    pub fn rx_packets(&self) -> u64 {
        self.totals.iter().map(|p| p.counters.rx_packets).sum()
    }

    /// Frames lost before mtugate saw them, per port (port order).
    pub fn lost(&self) -> Vec<Lost> {
        self.totals
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let k = t.kernel.unwrap_or_default();
                let nic = self.xdp.get(i).map(|x| x.nic).unwrap_or_default();
                Lost {
                    xsk_rx_dropped: k.rx_dropped,
                    xsk_rx_ring_full: k.rx_ring_full,
                    nic_rx_dropped: nic.rx_dropped,
                    nic_rx_missed: nic.rx_missed,
                }
            })
            .collect()
    }

    /// All ports' [`lost`](Self::lost), summed.
    pub fn lost_total(&self) -> Lost {
        let mut l = Lost::default();
        for p in self.lost() {
            l.add(&p);
        }
        l
    }
}

#[cfg(test)]
mod tests {
    use crate::aggregate::{Aggregator, QueueInfo};
    use crate::link::{LatencyHists, WorkerCounters, WorkerSnapshot};
    use serde_json::Value;
    use std::time::Duration;

    /// The JSON shape scripts rely on (`GET /stats`, `mtugate stats --json`).
    #[test]
    fn json_shape() {
        let mut a = Aggregator::new(
            vec!["inside".into(), "outside".into()],
            vec![QueueInfo {
                queue: 2,
                core: Some(1),
            }],
            Duration::from_millis(500),
        );
        let mut c = WorkerCounters::new(2);
        c.pipeline[0].rx_packets = 7;
        c.pipeline[0].drops[4] = 7;
        let mut latency = LatencyHists::new();
        latency.record(7, 120, 840);
        a.absorb(&WorkerSnapshot {
            worker: 0,
            epoch: 1,
            counters: c,
            latency,
        });
        a.tick(Duration::from_millis(500));
        let j: Value = serde_json::to_value(a.stats()).unwrap();
        let keys: Vec<&str> = j.as_object().unwrap().keys().map(String::as_str).collect();
        for k in [
            "version",
            "uptime_s",
            "interval_ms",
            "seq",
            "config_generation",
            "reloads",
            "port_names",
            "queues",
            "totals",
            "rates",
            "latency",
        ] {
            assert!(keys.contains(&k), "missing {k} in {keys:?}");
        }
        assert_eq!(j["interval_ms"], 500);
        assert_eq!(j["totals"][0]["port"], "inside");
        assert_eq!(j["totals"][0]["counters"]["drops"]["too_big"], 7);
        assert_eq!(
            j["totals"][0]["counters"]["drops"]
                .as_object()
                .unwrap()
                .len(),
            mtugate_datapath::pipeline::DropReason::COUNT
        );
        assert_eq!(j["totals"][0]["counters"]["balanced"], true);
        assert_eq!(j["totals"][1]["counters"]["mss_clamped"]["ipv6"], 0);
        assert_eq!(j["queues"][0]["queue"], 2);
        assert_eq!(j["queues"][0]["ports"][1]["port"], "outside");
        assert_eq!(j["rates"]["drops"]["too_big"], 14.0, "7 in half a second");
        for window in ["interval", "since_start"] {
            let p = &j["latency"]["packet_cost_ns"][window];
            for k in ["count", "mean", "p50", "p90", "p99", "p99_9", "max"] {
                assert!(p[k].is_number(), "{window}.{k}: {p}");
            }
            assert_eq!(p["count"], 7);
            assert_eq!(p["p50"], 120);
            assert_eq!(j["latency"]["dwell_ns"][window]["max"], 840);
        }
        // And it reads back into the same document.
        let back: super::Stats = serde_json::from_value(j).unwrap();
        assert_eq!(back, a.stats());
    }
}
