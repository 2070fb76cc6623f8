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
use crate::model::{IoStats, KernelSocketStats, PortStats, QueueStats, Stats};
use hdrhistogram::Histogram;
use mtugate_datapath::counters::CounterTable;
use mtugate_datapath::pipeline::Counters;
use mtugate_datapath::pmtu::PmtuCounters;
use mtugate_datapath::rules::RuleCounters;
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

type PortField = fn(&PortStats) -> u64;

/// The per-port families that are not in a counter table: what the
/// worker sent out of each (egress) port.
const PORT_TX: &[(&str, &str, PortField)] = &[
    (
        "mtugate_tx_packets_total",
        "Frames sent out of the port (forwards, fragments and ICMP errors).",
        |p| p.tx_packets,
    ),
    (
        "mtugate_tx_bytes_total",
        "Bytes of the frames sent out of the port.",
        |p| p.tx_bytes,
    ),
];

/// Every counter of table `T`, one family each, labelled `port` and
/// `queue` (and the table's label for an array); `get` picks a port's
/// counters, `None` where that port has none (no series then).
fn table_families<T: CounterTable>(
    o: &mut Out,
    qs: &[(String, &QueueStats)],
    get: impl Fn(&PortStats) -> Option<&T>,
) {
    for (i, d) in T::TABLE.iter().enumerate() {
        o.family(d.metric, d.kind.as_str(), d.help);
        for (qid, q) in qs {
            for p in &q.ports {
                let Some(t) = get(p) else { continue };
                let v = t.values(i);
                match d.label {
                    None => o.sample(d.metric, &[("port", &p.port), ("queue", qid)], v[0]),
                    Some(l) => {
                        for (lv, n) in l.values.iter().zip(v) {
                            o.sample(
                                d.metric,
                                &[("port", &p.port), ("queue", qid), (l.name, lv)],
                                n,
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Renders the whole exposition. `latency` is each queue's latency since
/// start (queue id, histograms), in the order of `stats.queues`.
pub fn render(stats: &Stats, latency: &[(u32, &LatencyHists)]) -> String {
    let mut o = Out {
        s: String::with_capacity(16 * 1024),
    };
    let qs: Vec<(String, &QueueStats)> = stats
        .queues
        .iter()
        .map(|q| (q.queue.to_string(), q))
        .collect();

    o.family(
        "mtugate_build_info",
        "gauge",
        "Always 1; the version and the source revision (git) are labels.",
    );
    o.sample(
        "mtugate_build_info",
        &[("version", &stats.version), ("revision", &stats.revision)],
        1,
    );
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

    table_families::<Counters>(&mut o, &qs, |p| Some(&p.counters.0));
    for (name, help, f) in PORT_TX {
        o.family(name, "counter", help);
        for (qid, q) in &qs {
            for p in &q.ports {
                o.sample(name, &[("port", &p.port), ("queue", qid)], f(p));
            }
        }
    }
    // Per rule, labelled by the rule's name only: as many series as rules.
    if !stats.rules.is_empty() {
        for (i, d) in RuleCounters::TABLE.iter().enumerate() {
            o.family(d.metric, d.kind.as_str(), d.help);
            for r in &stats.rules {
                o.sample(d.metric, &[("rule", &r.rule)], r.counters.0.values(i)[0]);
            }
        }
    }
    for (i, d) in PmtuCounters::TABLE.iter().enumerate() {
        o.family(d.metric, d.kind.as_str(), d.help);
        let v = stats.pmtu.0.values(i);
        match d.label {
            None => o.sample(d.metric, &[], v[0]),
            Some(l) => {
                for (lv, n) in l.values.iter().zip(v) {
                    o.sample(d.metric, &[(l.name, lv)], n);
                }
            }
        }
    }
    table_families::<IoStats>(&mut o, &qs, |p| Some(&p.io));
    table_families::<KernelSocketStats>(&mut o, &qs, |p| p.kernel.as_ref());

    if !stats.xdp.is_empty() {
        o.family(
        "mtugate_xdp_frames_total",
        "counter",
        "Frames the XDP stage handled, by ingress port and outcome: fast (forwarded by the XDP program, no copy), steered (to the AF_XDP workers), bypassed / blocked (no worker: forwarded unprocessed / dropped), redirect_error, to_kernel, syn_policed (SYNs the policer dropped). seen is their sum.",
    );
        for p in &stats.xdp {
            let x = &p.stats;
            for (outcome, n) in [
                ("seen", x.seen),
                ("fast", x.fast),
                ("steered", x.steered),
                ("bypassed", x.bypassed),
                ("blocked", x.blocked),
                ("redirect_error", x.redirect_errors),
                ("to_kernel", x.passed + x.to_kernel),
                ("syn_policed", x.dropped()),
            ] {
                o.sample(
                    "mtugate_xdp_frames_total",
                    &[("port", &p.port), ("outcome", outcome)],
                    n,
                );
            }
        }
        // Router mode: why frames went to the kernel, one counter per
        // ingress port each (parts of the to_kernel outcome).
        type Count = fn(&mtugate_xsk::XdpStats) -> u64;
        let to_kernel: [(&str, &str, Count); 2] = [
            (
                "mtugate_xdp_no_route_total",
                "Router mode: frames the XDP stage gave to the kernel because the kernel's FIB had no usable route (unreachable, blackhole, prohibit), by ingress port (part of the to_kernel outcome).",
                |s| s.no_route,
            ),
            (
                "mtugate_xdp_frag_to_kernel_total",
                "Router mode with [router] fragment = \"kernel\": IPv4 packets with DF clear over their route's MTU that the XDP stage gave to the kernel to fragment as it forwards them, by ingress port (part of the to_kernel outcome; the kernel counts the fragments as Ip FragCreates).",
                |s| s.frag_to_kernel,
            ),
        ];
        for (name, help, count) in to_kernel {
            o.family(name, "counter", help);
            for p in &stats.xdp {
                o.sample(name, &[("port", &p.port)], count(&p.stats));
            }
        }
        o.family(
            "mtugate_xdp_syn_total",
            "counter",
            "SYNs (and SYN-ACKs) the XDP stage policed before the copy, by ingress port and decision: granted (within budget, clamped by a worker), source_limited (over its source's budget: dropped), over_dropped / over_passed (within its source's budget, over the global one: dropped / forwarded unclamped).",
        );
        for p in &stats.xdp {
            let x = &p.stats;
            for (decision, n) in [
                ("granted", x.syn_granted),
                ("source_limited", x.syn_source_limited),
                ("over_dropped", x.syn_over_dropped),
                ("over_passed", x.syn_over_passed),
            ] {
                o.sample(
                    "mtugate_xdp_syn_total",
                    &[("port", &p.port), ("decision", decision)],
                    n,
                );
            }
        }
    }
    if let Some(r) = &stats.route_mirror {
        for (name, kind, help, v) in [
            (
                "mtugate_route_mirror_entries",
                "gauge",
                "Router mode: prefixes the route mirror holds in the XDP stage's tries (kernel routes with an mtu or advmss, and the more specific routes inside them).",
                r.entries,
            ),
            (
                "mtugate_route_mirror_updates_total",
                "counter",
                "Router mode: updates of the XDP stage's route tries from the kernel's route changes (the first fill included).",
                r.updates,
            ),
            (
                "mtugate_route_mirror_resyncs_total",
                "counter",
                "Router mode: full re-reads of the kernel's main table after route notifications were lost or unreadable.",
                r.resyncs,
            ),
            (
                "mtugate_route_mirror_write_errors_total",
                "counter",
                "Router mode: failed writes of the XDP stage's route tries (each retried until one succeeds).",
                r.write_errors,
            ),
            (
                "mtugate_route_mirror_stale",
                "gauge",
                "Router mode: 1 while the XDP stage's route tries lag the kernel's table (a write failed and is being retried): route MTUs and advmss may be out of date.",
                u64::from(r.stale),
            ),
        ] {
            o.family(name, kind, help);
            o.sample(name, &[], v);
        }
    }
    o.family(
        "mtugate_frames_lost_total",
        "counter",
        "Frames lost before mtugate could see them, by ingress port and where: xsk_rx_dropped (AF_XDP: no free frame in the fill ring, or too big), xsk_rx_ring_full (AF_XDP: the worker did not empty its RX ring in time), nic_rx_dropped / nic_rx_missed (the interface's own counters, since mtugate started; a driver may count a failed redirect into a socket there again, as veth does, so the socket and interface series can overlap: alert on either being above zero).",
    );
    for (name, lost) in stats.port_names.iter().zip(stats.lost()) {
        for (place, _, n) in lost.places() {
            o.sample(
                "mtugate_frames_lost_total",
                &[("port", name), ("where", place)],
                n,
            );
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
    use mtugate_datapath::pipeline::DropReason;
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
            c.rule_names = vec!["into-tunnel".to_string(), "vlan \"7\"".to_string()].into();
            c.rules = vec![
                RuleCounters {
                    matched: 5 + w as u64,
                    clamped: 4,
                    fragmented: 1,
                },
                RuleCounters::default(),
            ];
            c.pmtu.learned = 2;
            c.pmtu.entries = 1;
            c.pmtu.rejected[3] = 9;
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
    fn build_info_carries_version_and_revision() {
        let (mut a, _) = sample();
        let line = |a: &Aggregator| {
            render(&a.stats(), &a.queue_latency())
                .lines()
                .find(|l| l.starts_with("mtugate_build_info{"))
                .map(str::to_owned)
        };
        let v = env!("CARGO_PKG_VERSION");
        assert_eq!(
            line(&a).as_deref(),
            Some(format!("mtugate_build_info{{version=\"{v}\",revision=\"unknown\"}} 1").as_str())
        );
        a.set_revision("0123456789ab-dirty".into());
        assert_eq!(
            line(&a).as_deref(),
            Some(
                format!("mtugate_build_info{{version=\"{v}\",revision=\"0123456789ab-dirty\"}} 1")
                    .as_str()
            )
        );
    }

    #[test]
    fn rules_by_name_and_learning_over_workers() {
        let (a, _) = sample();
        let m = parse(&render(&a.stats(), &a.queue_latency()));
        let rule = |metric: &str, name: &str| {
            m[metric]
                .iter()
                .find(|(l, _)| l.get("rule").map(String::as_str) == Some(name))
                .map(|(l, v)| (l.len(), *v))
        };
        assert_eq!(
            rule("mtugate_rule_matched_total", "into-tunnel"),
            Some((1, 11.0))
        );
        assert_eq!(
            rule("mtugate_rule_clamped_total", "into-tunnel"),
            Some((1, 8.0))
        );
        assert_eq!(
            rule("mtugate_rule_fragmented_total", "into-tunnel"),
            Some((1, 2.0))
        );
        assert_eq!(
            m["mtugate_rule_matched_total"].len(),
            2,
            "one series per rule"
        );
        assert_eq!(m["mtugate_pmtu_learned_total"][0].1, 4.0);
        assert_eq!(
            m["mtugate_pmtu_entries"][0].1, 1.0,
            "shared tables: every worker reports the same entries, not summed"
        );
        let no_flow = m["mtugate_pmtu_rejected_total"]
            .iter()
            .find(|(l, _)| l["reason"] == "no_flow")
            .unwrap();
        assert_eq!(no_flow.1, 18.0);
        // /stats: the same, and it reads back.
        let j = serde_json::to_value(a.stats()).unwrap();
        assert_eq!(j["rules"][0]["rule"], "into-tunnel");
        assert_eq!(j["rules"][0]["counters"]["clamped"], 8);
        assert_eq!(j["pmtu"]["rejected"]["no_flow"], 18);
        let back: Stats = serde_json::from_value(j).unwrap();
        assert_eq!(back, a.stats());
        // mtugate stats: a line each.
        let screen = crate::view::render(&a.stats());
        assert!(screen.contains("into-tunnel 11/8/2"), "{screen}");
        assert!(
            screen.contains("pmtu     entries 1  learned 4  rejected 18"),
            "{screen}"
        );
    }

    #[test]
    fn route_mirror_only_in_router_mode() {
        let (mut a, _) = sample();
        let text = render(&a.stats(), &a.queue_latency());
        assert!(!text.contains("mtugate_route_mirror"), "wire mode: none");
        a.set_route_mirror(crate::model::RouteMirrorStats {
            entries: 3,
            updates: 5,
            resyncs: 1,
            write_errors: 2,
            stale: true,
        });
        a.tick(Duration::from_secs(2));
        let m = parse(&render(&a.stats(), &a.queue_latency()));
        for (name, v) in [
            ("mtugate_route_mirror_entries", 3.0),
            ("mtugate_route_mirror_updates_total", 5.0),
            ("mtugate_route_mirror_resyncs_total", 1.0),
            ("mtugate_route_mirror_write_errors_total", 2.0),
            ("mtugate_route_mirror_stale", 1.0),
        ] {
            assert_eq!(m[name], vec![(BTreeMap::new(), v)], "{name}");
        }
        let j = serde_json::to_value(a.stats()).unwrap();
        assert_eq!(j["route_mirror"]["entries"], 3);
        assert_eq!(j["route_mirror"]["stale"], true);
        let screen = crate::view::render(&a.stats());
        assert!(
            screen.contains("routes   entries 3  updates 5  resyncs 1  write errors 2  STALE"),
            "{screen}"
        );
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
            2 * 2 * DropReason::COUNT,
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

    /// Every value of `t` set to a distinct number from `n` on.
    fn distinct<T: CounterTable>(t: &mut T, n: &mut u64) {
        for i in 0..T::TABLE.len() {
            for v in t.values_mut(i) {
                *n += 1;
                *v = *n;
            }
        }
    }

    /// Checks that every counter of `t`'s table is in the exposition `m`
    /// (port "outside", queue "5") and in the JSON object `j`, with its
    /// value; returns how many values it checked.
    #[allow(clippy::type_complexity)]
    fn everywhere<T: CounterTable>(
        t: &T,
        m: &BTreeMap<String, Vec<(BTreeMap<String, String>, f64)>>,
        j: &serde_json::Value,
    ) -> usize {
        mtugate_datapath::counters::check::<T>().unwrap();
        let mut checked = 0;
        t.for_each(|d, vs| {
            let series = m
                .get(d.metric)
                .unwrap_or_else(|| panic!("{} not in /metrics", d.metric));
            for (k, v) in vs.iter().enumerate() {
                let found: Vec<f64> = series
                    .iter()
                    .filter(|(l, _)| l["port"] == "outside" && l["queue"] == "5")
                    .filter(|(l, _)| d.label.is_none_or(|lb| l[lb.name] == lb.values[k]))
                    .map(|(_, v)| *v)
                    .collect();
                assert_eq!(found, [*v as f64], "{} element {k} in /metrics", d.metric);
                let json = match d.label {
                    None => &j[d.name],
                    Some(lb) => &j[d.name][lb.values[k]],
                };
                assert_eq!(
                    json.as_u64(),
                    Some(*v),
                    "{} element {k} in JSON: {j}",
                    d.name
                );
                checked += 1;
            }
        });
        checked
    }

    /// A counter added to a table cannot be forgotten: every one of every
    /// table, and every drop reason, is in `/metrics` and in the `/stats`
    /// JSON with its own value.
    #[test]
    fn every_counter_of_every_table_in_metrics_and_json() {
        let mut n = 1000;
        let mut port = PortStats {
            port: "outside".into(),
            kernel: Some(KernelSocketStats::default()),
            ..PortStats::default()
        };
        distinct(&mut port.counters.0, &mut n);
        distinct(&mut port.io, &mut n);
        distinct(port.kernel.as_mut().unwrap(), &mut n);
        let stats = Stats {
            port_names: vec!["inside".into(), "outside".into()],
            queues: vec![QueueStats {
                queue: 5,
                ports: vec![
                    PortStats {
                        port: "inside".into(),
                        ..PortStats::default()
                    },
                    port.clone(),
                ],
                ..Default::default()
            }],
            totals: vec![port.clone()],
            ..Stats::default()
        };
        let m = parse(&render(&stats, &[]));
        let j = serde_json::to_value(&stats).unwrap();
        let jp = &j["queues"][0]["ports"][1];
        let mut checked = everywhere(&port.counters.0, &m, &jp["counters"]);
        checked += everywhere(&port.io, &m, &jp["io"]);
        checked += everywhere(port.kernel.as_ref().unwrap(), &m, &jp["kernel"]);
        assert_eq!(checked as u64, n - 1000, "every value checked");
        for r in DropReason::ALL {
            let want = port.counters.drops[r as usize];
            assert!(m["mtugate_dropped_total"]
                .iter()
                .any(|(l, v)| l["reason"] == r.name()
                    && l["port"] == "outside"
                    && *v == want as f64));
            assert_eq!(jp["counters"]["drops"][r.name()], want);
            assert_eq!(j["totals"][0]["counters"]["drops"][r.name()], want);
        }
        // The derived values ride along in the JSON, and it reads back.
        assert_eq!(jp["counters"]["dropped"], port.counters.dropped());
        assert_eq!(jp["counters"]["transmitted"], port.counters.transmitted());
        assert_eq!(jp["counters"]["balanced"], false);
        let back: Stats = serde_json::from_value(j).unwrap();
        assert_eq!(back, stats);
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
