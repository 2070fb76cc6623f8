//! Final counters, printed when `mtugate run` exits: a table for people and
//! JSON for scripts (the lab tests read it).

use crate::engine::WorkerReport;
use mtugate_datapath::pipeline::{family, Counters, DropReason};
use mtugate_mgmt::model::{Percentiles, Stats};
use serde_json::{json, Value};

fn totals(reports: &[WorkerReport], ports: usize) -> Vec<Counters> {
    let mut t = vec![Counters::default(); ports];
    for r in reports {
        for (a, b) in t.iter_mut().zip(&r.counters.pipeline) {
            a.add(b);
        }
    }
    t
}

/// The counters of one ingress port as a JSON object.
pub fn counters_json(c: &Counters) -> Value {
    let drops: serde_json::Map<String, Value> = DropReason::ALL
        .iter()
        .map(|r| (r.name().to_string(), json!(c.drops[*r as usize])))
        .collect();
    json!({
        "rx_packets": c.rx_packets,
        "rx_bytes": c.rx_bytes,
        "forwarded": c.forwarded,
        "dropped": c.dropped(),
        "drops": drops,
        "mss_clamped": { family::NAMES[0]: c.mss_clamped[0], family::NAMES[1]: c.mss_clamped[1] },
        "mss_inserted": { family::NAMES[0]: c.mss_inserted[0], family::NAMES[1]: c.mss_inserted[1] },
        "syn_limited": c.syn_limited,
        "malformed_passed": c.malformed_passed,
        "non_ip_passed": c.non_ip_passed,
        "fragmented": c.fragmented,
        "fragments_created": c.fragments_created,
        "df_overridden": c.df_overridden,
        "icmp_sent": { family::NAMES[0]: c.icmp_sent[0], family::NAMES[1]: c.icmp_sent[1] },
        "icmp_rate_limited": c.icmp_rate_limited,
        "icmp_suppressed": c.icmp_suppressed,
        "transmitted": c.transmitted(),
        "balanced": c.balanced(),
    })
}

/// Everything as JSON: per ingress port (by name), AF_XDP counters per
/// port and queue.
pub fn json(reports: &[WorkerReport], names: &[&str]) -> Value {
    let t = totals(reports, names.len());
    let ports: serde_json::Map<String, Value> = (0..names.len())
        .map(|i| (names[i].to_string(), counters_json(&t[i])))
        .collect();
    let queues: Vec<Value> = reports
        .iter()
        .map(|r| {
            let c = &r.counters;
            let io: Vec<Value> = (0..names.len())
                .map(|p| {
                    let k = c.kernel[p];
                    json!({
                        "port": names[p],
                        "rx_frames": c.io[p].rx_frames,
                        "tx_frames": c.io[p].tx_frames,
                        "tx_completed": c.io[p].tx_completed,
                        "tx_kicks": c.io[p].tx_kicks,
                        "tx_ring_full_drops": c.tx_ring_full_drops[p],
                        "tx_packets": c.tx_packets[p],
                        "tx_bytes": c.tx_bytes[p],
                        "kernel_rx_dropped": k.map(|k| k.rx_dropped),
                        "kernel_rx_ring_full": k.map(|k| k.rx_ring_full),
                        "kernel_fill_ring_empty": k.map(|k| k.rx_fill_ring_empty_descs),
                        "kernel_tx_ring_empty": k.map(|k| k.tx_ring_empty_descs),
                        "kernel_rx_invalid": k.map(|k| k.rx_invalid_descs),
                        "kernel_tx_invalid": k.map(|k| k.tx_invalid_descs),
                    })
                })
                .collect();
            json!({
                "queue": r.queue,
                "io": io,
                "frames_total": r.frames.total,
                "frames_free": r.frames.free,
                "conservation_error": r.conservation_error,
                "polls": c.polls,
                "busy_polls": c.busy_polls,
            })
        })
        .collect();
    json!({ "ports": ports, "queues": queues })
}

/// A table for the terminal.
pub fn text(reports: &[WorkerReport], names: &[&str]) -> String {
    let t = totals(reports, names.len());
    let mut s = String::from("mtugate final counters (by ingress port)\n");
    let row = |s: &mut String, label: &str, f: &dyn Fn(&Counters) -> u64| {
        s.push_str(&format!("  {label:<28}"));
        for c in &t {
            s.push_str(&format!("{:>16}", f(c)));
        }
        s.push('\n');
    };
    s.push_str(&format!("  {:<28}", ""));
    for n in names {
        s.push_str(&format!("{n:>16}"));
    }
    s.push('\n');
    row(&mut s, "received", &|c| c.rx_packets);
    row(&mut s, "forwarded", &|c| c.forwarded);
    row(&mut s, "mss clamped ipv4", &|c| c.mss_clamped[0]);
    row(&mut s, "mss clamped ipv6", &|c| c.mss_clamped[1]);
    row(&mut s, "mss inserted", &|c| {
        c.mss_inserted[0] + c.mss_inserted[1]
    });
    row(&mut s, "syn over limit", &|c| c.syn_limited);
    row(&mut s, "fragmented packets", &|c| c.fragmented);
    row(&mut s, "fragments created", &|c| c.fragments_created);
    row(&mut s, "icmp frag-needed sent", &|c| c.icmp_sent[0]);
    row(&mut s, "icmpv6 too-big sent", &|c| c.icmp_sent[1]);
    row(&mut s, "icmp rate-limited", &|c| c.icmp_rate_limited);
    row(&mut s, "icmp suppressed", &|c| c.icmp_suppressed);
    row(&mut s, "non-ip passed", &|c| c.non_ip_passed);
    row(&mut s, "malformed passed", &|c| c.malformed_passed);
    for r in DropReason::ALL {
        row(&mut s, &format!("dropped: {}", r.name()), &|c| {
            c.drops[r as usize]
        });
    }
    let full: u64 = reports
        .iter()
        .flat_map(|r| &r.counters.tx_ring_full_drops)
        .sum();
    s.push_str(&format!("  tx ring full (frames freed): {full}\n"));
    s.push_str(&format!(
        "  accounting: {}\n",
        if t.iter().all(Counters::balanced) {
            "balanced (received = forwarded + fragmented + dropped)"
        } else {
            "NOT BALANCED"
        }
    ));
    s
}

/// Latency since start, from the management thread's last aggregation.
pub fn latency_text(s: &Stats) -> String {
    let row = |label: &str, p: &Percentiles| {
        format!(
            "  {label:<32}p50 {}, p90 {}, p99 {}, p99.9 {}, max {} ({} packets)\n",
            p.p50, p.p90, p.p99, p.p99_9, p.max, p.count
        )
    };
    let mut out = String::from("latency since start (per packet)\n");
    out.push_str(&row(
        "processing cost (ns)",
        &s.latency.packet_cost_ns.since_start,
    ));
    out.push_str(&row(
        "dwell, rx to tx (ns)",
        &s.latency.dwell_ns.since_start,
    ));
    out
}
