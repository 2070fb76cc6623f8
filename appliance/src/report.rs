//! Final counters, printed when `mtugate run` exits: a table for people and
//! the final-stats document ([`FinalStats`]) for scripts (the lab tests
//! and `mtugate-perf compare` read it). Both are walked from the counter
//! tables: a row per counter (per label value for an array), in table order.

use crate::engine::WorkerReport;
use mtugate_datapath::counters::CounterTable;
use mtugate_datapath::pipeline::Counters;
use mtugate_datapath::pmtu::PmtuCounters;
use mtugate_mgmt::final_stats::{FinalPortIo, FinalQueue, FinalStats};
use mtugate_mgmt::model::{Percentiles, PipelineCounters, RuleStats, Stats, Tabled};

fn totals(reports: &[WorkerReport], ports: usize) -> Vec<Counters> {
    let mut t = vec![Counters::default(); ports];
    for r in reports {
        for (a, b) in t.iter_mut().zip(&r.counters.pipeline) {
            a.add(b);
        }
    }
    t
}

/// Per rule (by name, in the order first seen) and learning, summed over
/// the workers.
fn policy_totals(reports: &[WorkerReport]) -> (Vec<RuleStats>, PmtuCounters) {
    let mut rules: Vec<RuleStats> = Vec::new();
    let mut pmtu = PmtuCounters::default();
    let mut entries = 0;
    for r in reports {
        let c = &r.counters;
        for (name, rc) in c.rule_names.iter().zip(&c.rules) {
            match rules.iter_mut().find(|x| &x.rule == name) {
                Some(x) => x.counters.0.add(rc),
                None => rules.push(RuleStats {
                    rule: name.clone(),
                    counters: Tabled(*rc),
                }),
            }
        }
        pmtu.add(&c.pmtu);
        entries = entries.max(c.pmtu.entries);
    }
    // The tables are shared: every worker reports the same number.
    pmtu.entries = entries;
    (rules, pmtu)
}

/// The final-stats document: per ingress port (by name), AF_XDP counters
/// per port and queue.
pub fn json(reports: &[WorkerReport], names: &[&str]) -> FinalStats {
    let t = totals(reports, names.len());
    let (rules, pmtu) = policy_totals(reports);
    FinalStats {
        rules,
        pmtu: Tabled(pmtu),
        ports: names
            .iter()
            .zip(t)
            .map(|(n, c)| (n.to_string(), PipelineCounters(c)))
            .collect(),
        queues: reports
            .iter()
            .map(|r| FinalQueue {
                queue: r.queue,
                io: names
                    .iter()
                    .enumerate()
                    .map(|(p, n)| FinalPortIo::new(n, &r.counters, p))
                    .collect(),
                frames_total: r.frames.total as u64,
                frames_free: r.frames.free as u64,
                conservation_error: r.conservation_error.clone(),
                polls: r.counters.polls,
                busy_polls: r.counters.busy_polls,
            })
            .collect(),
        // The XDP stage is the caller's to add (it owns the programs).
        xdp: Vec::new(),
    }
}

/// A table for the terminal.
pub fn text(reports: &[WorkerReport], names: &[&str]) -> String {
    let t = totals(reports, names.len());
    let mut s = String::from("mtugate final counters (by ingress port)\n");
    s.push_str(&format!("  {:<28}", ""));
    for n in names {
        s.push_str(&format!("{n:>16}"));
    }
    s.push('\n');
    for (i, d) in Counters::TABLE.iter().enumerate() {
        for k in 0..d.len() {
            s.push_str(&format!("  {:<28}", d.text_of(k)));
            for c in &t {
                s.push_str(&format!("{:>16}", c.values(i)[k]));
            }
            s.push('\n');
        }
    }
    let full: u64 = reports
        .iter()
        .flat_map(|r| &r.counters.tx_ring_full_drops)
        .sum();
    s.push_str(&format!("  tx ring full (frames freed): {full}\n"));
    let (rules, pmtu) = policy_totals(reports);
    for r in &rules {
        s.push_str(&format!("  rule {}:", r.rule));
        r.counters
            .0
            .for_each(|d, v| s.push_str(&format!(" {} {}", d.text, v[0])));
        s.push('\n');
    }
    s.push_str("  learned path MTUs:");
    for (i, d) in PmtuCounters::TABLE.iter().enumerate() {
        for (k, v) in pmtu.values(i).iter().enumerate() {
            let label = d.text_of(k);
            s.push_str(&format!(" {} {v},", label.trim_start_matches("pmtu ")));
        }
    }
    s.pop();
    s.push('\n');
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

#[cfg(test)]
mod tests {
    use super::*;
    use mtugate_mgmt::WorkerCounters;
    use mtugate_xsk::FrameCounts;

    fn reports() -> Vec<WorkerReport> {
        (0..2)
            .map(|q| {
                let mut c = WorkerCounters::new(3);
                for p in 0..3 {
                    let mut n = 0;
                    for i in 0..Counters::TABLE.len() {
                        for v in c.pipeline[p].values_mut(i) {
                            n += 1;
                            *v = n * 10 + p as u64;
                        }
                    }
                }
                c.tx_ring_full_drops[2] = 4;
                WorkerReport {
                    queue: q,
                    counters: c,
                    frames: FrameCounts::default(),
                    conservation_error: None,
                }
            })
            .collect()
    }

    /// Every counter of the table has its row (one per label value), with
    /// the sum over queues for each of the ports.
    #[test]
    fn text_has_a_row_per_counter() {
        let r = reports();
        let names = ["inside", "outside", "dmz"];
        let text = text(&r, &names);
        let rows: Vec<&str> = text.lines().collect();
        let mut at = 2;
        let mut n = 0;
        for d in Counters::TABLE {
            for k in 0..d.len() {
                n += 1;
                let want: Vec<String> = (0..3).map(|p| (2 * (n * 10 + p)).to_string()).collect();
                let row = rows[at];
                assert!(row.starts_with(&format!("  {}", d.text_of(k))), "{row}");
                let got: Vec<&str> = row[30..].split_whitespace().collect();
                assert_eq!(got, want, "{row}");
                at += 1;
            }
        }
        assert!(text.contains("dropped: too_big"));
        assert!(text.contains("mss clamped ipv6"));
        assert!(text.contains("tx ring full (frames freed): 8"));
        assert!(text.contains("accounting: NOT BALANCED"));
    }

    #[test]
    fn final_stats_sum_queues_per_port_name() {
        let r = reports();
        let f = json(&r, &["inside", "outside", "dmz"]);
        assert_eq!(f.ports.len(), 3);
        let mut want = r[0].counters.pipeline[2];
        want.add(&r[1].counters.pipeline[2]);
        assert_eq!(f.ports["dmz"].0, want);
        assert_eq!(f.queues.len(), 2);
        assert_eq!(f.queues[1].queue, 1);
        assert_eq!(f.queues[1].io[2].port, "dmz");
        assert_eq!(f.queues[1].io[2].io.tx_ring_full_drops, 4);
        let back: FinalStats = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        assert_eq!(back, f);
    }
}
