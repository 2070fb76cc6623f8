//! `/metrics`: the Prometheus text exposition format (version 0.0.4).
//!
//! Written here rather than with `prometheus-client`: that crate encodes
//! only OpenMetrics text (a `# EOF` trailer, counter families named without
//! their `_total` suffix, `application/openmetrics-text`), and its
//! histograms are live `observe()` objects with their own buckets, while
//! ours arrive as HdrHistograms already merged from the workers' snapshots.
//! The format itself is small: `# HELP`, `# TYPE`, then one sample per
//! line, label values escaped.
//!
//! Histograms are exposed in seconds with fixed buckets from 50 ns to 1 ms
//! ([`BUCKETS_NS`]); a bucket's count is read from the HdrHistogram, so it
//! is exact up to the histogram's 3 significant digits. `_sum` is the exact
//! sum the workers kept beside the histogram.

use crate::link::LatencyHists;
use crate::model::{PortStats, Stats, ICMP_TYPES};
use hdrhistogram::Histogram;
use std::fmt::Write;

/// Upper bounds of the latency histogram buckets, in nanoseconds
/// (`+Inf` follows).
pub const BUCKETS_NS: [u64; 14] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000,
];

/// The `Content-Type` of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Escapes a label value (backslash, double quote, newline).
fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// Nanoseconds as a decimal number of seconds, exactly (no float rounding).
pub fn ns_as_secs(ns: u64) -> String {
    let (s, frac) = (ns / 1_000_000_000, ns % 1_000_000_000);
    if frac == 0 {
        return s.to_string();
    }
    let f = format!("{frac:09}");
    format!("{s}.{}", f.trim_end_matches('0'))
}

struct Out {
    s: String,
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.s, "# HELP {name} {help}");
        let _ = writeln!(self.s, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.s.push_str(name);
        if !labels.is_empty() {
            self.s.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.s.push(',');
                }
                let _ = write!(self.s, "{k}=\"{}\"", escape(v));
            }
            self.s.push('}');
        }
        let _ = writeln!(self.s, " {value}");
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram<u64>, sum_ns: u64) {
        let bucket = format!("{name}_bucket");
        for le in BUCKETS_NS {
            let n = if le >= h.high() {
                h.len()
            } else {
                h.count_between(0, le)
            };
            let le = ns_as_secs(le);
            let mut l = labels.to_vec();
            l.push(("le", &le));
            self.sample(&bucket, &l, n);
        }
        let mut l = labels.to_vec();
        l.push(("le", "+Inf"));
        self.sample(&bucket, &l, h.len());
        self.sample(&format!("{name}_sum"), labels, ns_as_secs(sum_ns));
        self.sample(&format!("{name}_count"), labels, h.len());
    }
}

type PortField = fn(&PortStats) -> Option<u64>;

/// Counters labelled `port` and `queue`.
const PORT_COUNTERS: &[(&str, &str, PortField)] = &[
    (
        "mtugate_rx_packets_total",
        "Frames received on the port.",
        |p| Some(p.counters.rx_packets),
    ),
    (
        "mtugate_rx_bytes_total",
        "Bytes of the frames received on the port.",
        |p| Some(p.counters.rx_bytes),
    ),
    (
        "mtugate_tx_packets_total",
        "Frames sent out of the port (forwards, fragments and ICMP errors).",
        |p| Some(p.tx_packets),
    ),
    (
        "mtugate_tx_bytes_total",
        "Bytes of the frames sent out of the port.",
        |p| Some(p.tx_bytes),
    ),
    (
        "mtugate_forwarded_total",
        "Frames received on the port and forwarded out of the other one.",
        |p| Some(p.counters.forwarded),
    ),
    (
        "mtugate_syn_limited_total",
        "SYNs received on the port whose MSS rewrite was skipped (or that were dropped) because of the SYN limit.",
        |p| Some(p.counters.syn_limited),
    ),
    (
        "mtugate_fragmented_total",
        "IPv4 packets received on the port and fragmented.",
        |p| Some(p.counters.fragmented),
    ),
    (
        "mtugate_fragments_created_total",
        "Fragments created from packets received on the port.",
        |p| Some(p.counters.fragments_created),
    ),
    (
        "mtugate_df_overridden_total",
        "IPv4 packets fragmented despite DF, by the DF policy.",
        |p| Some(p.counters.df_overridden),
    ),
    (
        "mtugate_icmp_errors_rate_limited_total",
        "ICMP errors not sent because of the ICMP rate limit.",
        |p| Some(p.counters.icmp_rate_limited),
    ),
    (
        "mtugate_icmp_errors_suppressed_total",
        "ICMP errors not sent because the rules forbid one (about an ICMP error, a non-first fragment, a group or invalid address).",
        |p| Some(p.counters.icmp_suppressed),
    ),
    (
        "mtugate_malformed_passed_total",
        "Packets forwarded unchanged because their TCP or IPv6 extension headers could not be parsed.",
        |p| Some(p.counters.malformed_passed),
    ),
    (
        "mtugate_non_ip_passed_total",
        "Non-IP frames (ARP, LLDP, ...) forwarded unchanged.",
        |p| Some(p.counters.non_ip_passed),
    ),
    (
        "mtugate_xsk_rx_frames_total",
        "Frames taken from the AF_XDP RX ring.",
        |p| Some(p.io.rx_frames),
    ),
    (
        "mtugate_xsk_tx_frames_total",
        "Frames put into the AF_XDP TX ring.",
        |p| Some(p.io.tx_frames),
    ),
    (
        "mtugate_xsk_tx_completed_total",
        "Frames the kernel completed from the AF_XDP TX ring.",
        |p| Some(p.io.tx_completed),
    ),
    (
        "mtugate_xsk_tx_wakeups_total",
        "sendto() wakeups of the AF_XDP TX ring.",
        |p| Some(p.io.tx_kicks),
    ),
    (
        "mtugate_xsk_fill_frames_total",
        "Frames given to the kernel through the AF_XDP fill ring.",
        |p| Some(p.io.fill_frames),
    ),
    (
        "mtugate_tx_ring_full_drops_total",
        "Frames freed because the AF_XDP TX ring of the port was full.",
        |p| Some(p.io.tx_ring_full_drops),
    ),
    (
        "mtugate_xsk_kernel_rx_dropped_total",
        "Kernel XDP_STATISTICS rx_dropped: frames dropped for other reasons (e.g. larger than a UMEM frame).",
        |p| p.kernel.as_ref().map(|k| k.rx_dropped),
    ),
    (
        "mtugate_xsk_kernel_rx_ring_full_total",
        "Kernel XDP_STATISTICS rx_ring_full: frames dropped because the RX ring was full.",
        |p| p.kernel.as_ref().map(|k| k.rx_ring_full),
    ),
    (
        "mtugate_xsk_kernel_fill_ring_empty_total",
        "Kernel XDP_STATISTICS rx_fill_ring_empty_descs: times the fill ring was found empty.",
        |p| p.kernel.as_ref().map(|k| k.fill_ring_empty),
    ),
    (
        "mtugate_xsk_kernel_tx_ring_empty_total",
        "Kernel XDP_STATISTICS tx_ring_empty_descs: times the TX ring was found empty when asked to send.",
        |p| p.kernel.as_ref().map(|k| k.tx_ring_empty),
    ),
    (
        "mtugate_xsk_kernel_rx_invalid_descs_total",
        "Kernel XDP_STATISTICS rx_invalid_descs: invalid fill ring descriptors.",
        |p| p.kernel.as_ref().map(|k| k.rx_invalid_descs),
    ),
    (
        "mtugate_xsk_kernel_tx_invalid_descs_total",
        "Kernel XDP_STATISTICS tx_invalid_descs: invalid TX ring descriptors.",
        |p| p.kernel.as_ref().map(|k| k.tx_invalid_descs),
    ),
];

/// Renders the whole exposition. `latency` is each queue's latency since
/// start (queue id, histograms), in the order of `stats.queues`.
pub fn render(stats: &Stats, latency: &[(u32, &LatencyHists)]) -> String {
    let mut o = Out {
        s: String::with_capacity(16 * 1024),
    };
    let qs: Vec<(String, &crate::model::QueueStats)> = stats
        .queues
        .iter()
        .map(|q| (q.queue.to_string(), q))
        .collect();

    o.family(
        "mtugate_build_info",
        "gauge",
        "Always 1; the version is a label.",
    );
    o.sample("mtugate_build_info", &[("version", &stats.version)], 1);
    o.family(
        "mtugate_uptime_seconds",
        "gauge",
        "Seconds since mtugate started, at the last aggregation.",
    );
    o.sample(
        "mtugate_uptime_seconds",
        &[],
        format!("{:.3}", stats.uptime_s),
    );
    o.family(
        "mtugate_config_generation",
        "gauge",
        "Configuration generation in force (1 = as started; each applied reload adds 1).",
    );
    o.sample("mtugate_config_generation", &[], stats.config_generation);
    o.family(
        "mtugate_reloads_total",
        "counter",
        "Reload requests by result.",
    );
    for (result, n) in [
        ("ok", stats.reloads.ok),
        ("invalid", stats.reloads.invalid),
        ("restart_needed", stats.reloads.restart_needed),
    ] {
        o.sample("mtugate_reloads_total", &[("result", result)], n);
    }

    for (name, help, f) in PORT_COUNTERS {
        o.family(name, "counter", help);
        for (qid, q) in &qs {
            for p in &q.ports {
                if let Some(v) = f(p) {
                    o.sample(name, &[("port", &p.port), ("queue", qid)], v);
                }
            }
        }
    }

    o.family(
        "mtugate_dropped_total",
        "counter",
        "Frames received on the port and dropped, by reason.",
    );
    for (qid, q) in &qs {
        for p in &q.ports {
            for (reason, v) in &p.counters.drops {
                o.sample(
                    "mtugate_dropped_total",
                    &[("port", &p.port), ("queue", qid), ("reason", reason)],
                    v,
                );
            }
        }
    }
    for (name, help, inserted) in [
        (
            "mtugate_mss_clamped_total",
            "SYN and SYN-ACK segments received on the port whose MSS was lowered, by address family.",
            false,
        ),
        (
            "mtugate_mss_inserted_total",
            "SYN segments received on the port that got an MSS option inserted, by address family.",
            true,
        ),
    ] {
        o.family(name, "counter", help);
        for (qid, q) in &qs {
            for p in &q.ports {
                let v = if inserted {
                    p.counters.mss_inserted
                } else {
                    p.counters.mss_clamped
                };
                for (fam, n) in [("ipv4", v.ipv4), ("ipv6", v.ipv6)] {
                    o.sample(name, &[("port", &p.port), ("queue", qid), ("family", fam)], n);
                }
            }
        }
    }
    o.family(
        "mtugate_icmp_errors_sent_total",
        "counter",
        "ICMP errors sent back out of the port about packets received on it, by type (frag_needed: ICMP type 3 code 4; packet_too_big: ICMPv6 type 2).",
    );
    for (qid, q) in &qs {
        for p in &q.ports {
            let v = p.counters.icmp_sent;
            for (t, n) in ICMP_TYPES.iter().zip([v.frag_needed, v.packet_too_big]) {
                o.sample(
                    "mtugate_icmp_errors_sent_total",
                    &[("port", &p.port), ("queue", qid), ("type", t)],
                    n,
                );
            }
        }
    }

    o.family(
        "mtugate_worker_polls_total",
        "counter",
        "Rounds of the worker's poll loop.",
    );
    for (qid, q) in &qs {
        o.sample("mtugate_worker_polls_total", &[("queue", qid)], q.polls);
    }
    o.family(
        "mtugate_worker_busy_polls_total",
        "counter",
        "Rounds of the worker's poll loop that found work.",
    );
    for (qid, q) in &qs {
        o.sample(
            "mtugate_worker_busy_polls_total",
            &[("queue", qid)],
            q.busy_polls,
        );
    }
    o.family(
        "mtugate_worker_busy_ratio",
        "gauge",
        "Polls that found work over all polls, during the last interval.",
    );
    for (qid, q) in &qs {
        o.sample(
            "mtugate_worker_busy_ratio",
            &[("queue", qid)],
            format!("{:.6}", q.busy_ratio),
        );
    }
    o.family(
        "mtugate_frames_in_flight",
        "gauge",
        "UMEM frames not in the worker's free list (in rings or being processed).",
    );
    for (qid, q) in &qs {
        o.sample(
            "mtugate_frames_in_flight",
            &[("queue", qid)],
            q.frames_in_flight,
        );
    }
    o.family("mtugate_umem_frames", "gauge", "UMEM frames of the worker.");
    for (qid, q) in &qs {
        o.sample("mtugate_umem_frames", &[("queue", qid)], q.frames_total);
    }

    o.family(
        "mtugate_packet_cost_seconds",
        "histogram",
        "Processing time of a batch divided by its size, counted once per packet, since start.",
    );
    for (queue, h) in latency {
        let qid = queue.to_string();
        o.histogram(
            "mtugate_packet_cost_seconds",
            &[("queue", &qid)],
            &h.cost,
            h.cost_sum_ns,
        );
    }
    o.family(
        "mtugate_batch_dwell_seconds",
        "histogram",
        "Time from taking a batch off the RX ring to flushing it to TX, counted once per packet, since start.",
    );
    for (queue, h) in latency {
        let qid = queue.to_string();
        o.histogram(
            "mtugate_batch_dwell_seconds",
            &[("queue", &qid)],
            &h.dwell,
            h.dwell_sum_ns,
        );
    }
    o.s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{Aggregator, QueueInfo};
    use crate::link::{WorkerCounters, WorkerSnapshot};
    use std::collections::BTreeMap;
    use std::time::Duration;

    /// A two-queue aggregator with some traffic, drops and latency.
    fn sample() -> (Aggregator, Vec<u64>) {
        let mut a = Aggregator::new(
            vec!["in\"side".into(), "outside".into()],
            vec![
                QueueInfo {
                    queue: 0,
                    core: Some(1),
                },
                QueueInfo {
                    queue: 3,
                    core: None,
                },
            ],
            Duration::from_secs(1),
        );
        let mut values = Vec::new();
        for w in 0..2 {
            let mut c = WorkerCounters::new(2);
            c.pipeline[0].rx_packets = 1000 + w as u64;
            c.pipeline[0].forwarded = 990;
            c.pipeline[0].drops[4] = 10 + w as u64;
            c.pipeline[1].mss_clamped = [7, 3];
            c.pipeline[1].icmp_sent = [2, 1];
            c.kernel[0] = Some(mtugate_xsk::XskStats {
                rx_ring_full: 5,
                ..Default::default()
            });
            let mut latency = LatencyHists::new();
            for (i, v) in [40u64, 75, 120, 900, 4_000, 2_000_000].iter().enumerate() {
                latency.record(1 + i as u64, *v, v * 3);
                values.extend(std::iter::repeat_n(*v, 1 + i));
            }
            a.absorb(&WorkerSnapshot {
                worker: w,
                epoch: 1,
                counters: c,
                latency,
            });
        }
        a.tick(Duration::from_secs(1));
        (a, values)
    }

    /// Parses sample lines into name -> [(labels, value)].
    #[allow(clippy::type_complexity)]
    fn parse(text: &str) -> BTreeMap<String, Vec<(BTreeMap<String, String>, f64)>> {
        let mut m: BTreeMap<String, Vec<(BTreeMap<String, String>, f64)>> = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (head, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match head.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}').unwrap()),
                None => (head, ""),
            };
            let mut l = BTreeMap::new();
            // Values here contain no commas; quotes are escaped as \".
            for kv in labels.split("\",").filter(|s| !s.is_empty()) {
                let (k, v) = kv.split_once("=\"").unwrap();
                l.insert(k.to_string(), v.trim_end_matches('"').to_string());
            }
            m.entry(name.to_string())
                .or_default()
                .push((l, value.parse().unwrap()));
        }
        m
    }

    #[test]
    fn every_family_has_help_and_type_before_its_samples() {
        let (a, _) = sample();
        let text = render(&a.stats(), &a.queue_latency());
        let mut typed = BTreeMap::new();
        let mut helped = std::collections::BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap();
                assert!(helped.insert(name.to_string()), "HELP twice for {name}");
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(helped.contains(name), "TYPE before HELP for {name}");
                typed.insert(name.to_string(), kind.to_string());
            } else {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(name.starts_with("mtugate_"), "{name}");
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| {
                        name.strip_suffix(s)
                            .filter(|f| typed.get(*f).is_some_and(|k| k == "histogram"))
                    })
                    .unwrap_or(name);
                let kind = typed
                    .get(family)
                    .unwrap_or_else(|| panic!("untyped {name}"));
                assert_eq!(
                    kind == "counter",
                    name.ends_with("_total"),
                    "{name} is a {kind}"
                );
            }
        }
        assert!(typed.len() > 30, "only {} families", typed.len());
    }

    #[test]
    fn labels_and_values() {
        let (a, _) = sample();
        let m = parse(&render(&a.stats(), &a.queue_latency()));
        let rx = &m["mtugate_rx_packets_total"];
        // 2 queues x 2 ports.
        assert_eq!(rx.len(), 4);
        let q3_in = rx
            .iter()
            .find(|(l, _)| l["queue"] == "3" && l["port"] == "in\\\"side")
            .expect("escaped port label, queue 3");
        assert_eq!(q3_in.1, 1001.0);
        let drops = &m["mtugate_dropped_total"];
        assert_eq!(
            drops.len(),
            2 * 2 * mtugate_datapath::pipeline::DropReason::COUNT,
            "one series per reason"
        );
        let too_big: f64 = drops
            .iter()
            .filter(|(l, _)| l["reason"] == "too_big")
            .map(|(_, v)| v)
            .sum();
        assert_eq!(too_big, 21.0);
        let clamped = &m["mtugate_mss_clamped_total"];
        let v6: f64 = clamped
            .iter()
            .filter(|(l, _)| l["family"] == "ipv6" && l["port"] == "outside")
            .map(|(_, v)| v)
            .sum();
        assert_eq!(v6, 6.0);
        let icmp = &m["mtugate_icmp_errors_sent_total"];
        assert!(icmp
            .iter()
            .any(|(l, v)| l["type"] == "packet_too_big" && *v == 1.0));
        // Kernel statistics only where the worker could read them (port 0).
        let ring_full = &m["mtugate_xsk_kernel_rx_ring_full_total"];
        assert_eq!(ring_full.len(), 2);
        assert!(ring_full
            .iter()
            .all(|(l, v)| l["port"] != "outside" && *v == 5.0));
    }

    #[test]
    fn histograms_are_cumulative_with_count_and_sum() {
        let (a, values) = sample();
        let m = parse(&render(&a.stats(), &a.queue_latency()));
        let buckets = &m["mtugate_packet_cost_seconds_bucket"];
        for q in ["0", "3"] {
            let series: Vec<(f64, f64)> = buckets
                .iter()
                .filter(|(l, _)| l["queue"] == q)
                .map(|(l, v)| {
                    let le = if l["le"] == "+Inf" {
                        f64::INFINITY
                    } else {
                        l["le"].parse().unwrap()
                    };
                    (le, *v)
                })
                .collect();
            assert_eq!(series.len(), BUCKETS_NS.len() + 1);
            assert_eq!(series[0].0, 50e-9);
            assert_eq!(series[BUCKETS_NS.len() - 1].0, 1e-3);
            for w in series.windows(2) {
                assert!(w[0].0 < w[1].0, "le increasing");
                assert!(w[0].1 <= w[1].1, "counts cumulative");
            }
            // The values of one worker: 40 (x1), 75 (x2), 120 (x3),
            // 900 (x4), 4000 (x5), 2 ms (x6).
            let per_worker = &values[..values.len() / 2];
            for (le, n) in &series {
                let want = per_worker
                    .iter()
                    .filter(|v| (**v as f64) * 1e-9 <= *le)
                    .count();
                assert_eq!(*n as usize, want, "bucket le={le}");
            }
            let count = m["mtugate_packet_cost_seconds_count"]
                .iter()
                .find(|(l, _)| l["queue"] == q)
                .unwrap()
                .1;
            assert_eq!(count, series.last().unwrap().1);
            let sum = m["mtugate_packet_cost_seconds_sum"]
                .iter()
                .find(|(l, _)| l["queue"] == q)
                .unwrap()
                .1;
            let want: u64 = per_worker.iter().sum();
            assert!((sum - want as f64 * 1e-9).abs() < 1e-12, "{sum}");
        }
        assert!(m.contains_key("mtugate_batch_dwell_seconds_bucket"));
    }

    #[test]
    fn seconds_are_exact() {
        assert_eq!(ns_as_secs(50), "0.00000005");
        assert_eq!(ns_as_secs(2_500), "0.0000025");
        assert_eq!(ns_as_secs(1_000_000), "0.001");
        assert_eq!(ns_as_secs(3_000_000_001), "3.000000001");
        assert_eq!(ns_as_secs(0), "0");
    }

    /// Prometheus' own checker, when it is installed (deploy/deps.sh
    /// installs it; CI must have it).
    #[test]
    fn promtool_accepts_it() {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let (a, _) = sample();
        let text = render(&a.stats(), &a.queue_latency());
        let child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "promtool is required in CI: {e}"
                );
                eprintln!("promtool not found ({e}): skipped; deploy/deps.sh installs it");
                return;
            }
        };
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
