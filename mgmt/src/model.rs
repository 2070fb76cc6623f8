//! The statistics document: what `GET /stats` serves as JSON, what
//! `mtugate stats` reads back and renders, and what `/metrics` is
//! rendered from. Counters are cumulative since the appliance started;
//! `rates` are per second over the last interval.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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

/// The ICMP `type` label values, in the order of [`PerIcmpType`].
pub const ICMP_TYPES: [&str; 2] = ["frag_needed", "packet_too_big"];

/// The pipeline's counters for the packets that arrived on one port.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PipelineCounters {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames forwarded out of the other port.
    pub forwarded: u64,
    /// Frames dropped, all reasons.
    pub dropped: u64,
    /// Frames dropped, by reason (every `DropReason`, zeroes included).
    pub drops: BTreeMap<String, u64>,
    /// SYNs whose MSS was lowered.
    pub mss_clamped: PerFamily<u64>,
    /// SYNs that got an MSS option.
    pub mss_inserted: PerFamily<u64>,
    /// SYN rewrites skipped (or SYNs dropped) by the SYN limit.
    pub syn_limited: u64,
    /// Packets passed unchanged because their headers could not be parsed.
    pub malformed_passed: u64,
    /// Non-IP frames passed.
    pub non_ip_passed: u64,
    /// IPv4 packets fragmented.
    pub fragmented: u64,
    /// Fragments created.
    pub fragments_created: u64,
    /// Packets fragmented despite DF (DF policy).
    pub df_overridden: u64,
    /// ICMP errors sent, by type.
    pub icmp_sent: PerIcmpType<u64>,
    /// ICMP errors not sent because of the rate limit.
    pub icmp_rate_limited: u64,
    /// ICMP errors not sent because the rules forbid one.
    pub icmp_suppressed: u64,
    /// `rx_packets == forwarded + fragmented + dropped`.
    pub balanced: bool,
}

/// AF_XDP socket counters of one port.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IoStats {
    /// Frames taken from the RX ring.
    pub rx_frames: u64,
    /// Frames put into the TX ring.
    pub tx_frames: u64,
    /// Frames completed by the kernel.
    pub tx_completed: u64,
    /// TX wakeups (`sendto`).
    pub tx_kicks: u64,
    /// Frames put into the fill ring.
    pub fill_frames: u64,
    /// Frames freed because the TX ring was full.
    pub tx_ring_full_drops: u64,
}

/// The kernel's statistics of one AF_XDP socket (`XDP_STATISTICS`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KernelSocketStats {
    /// Dropped for other reasons.
    pub rx_dropped: u64,
    /// Dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was empty.
    pub fill_ring_empty: u64,
    /// Times the TX ring was empty when asked to send.
    pub tx_ring_empty: u64,
    /// Invalid fill/RX descriptors.
    pub rx_invalid_descs: u64,
    /// Invalid TX descriptors.
    pub tx_invalid_descs: u64,
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
}

impl Stats {
    /// Packets received on all ports and queues.
    pub fn rx_packets(&self) -> u64 {
        self.totals.iter().map(|p| p.counters.rx_packets).sum()
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
