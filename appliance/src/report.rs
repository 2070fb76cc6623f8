//! Final counters, printed when `mtugate run` exits: a table for people and
//! the final-stats document ([`FinalStats`]) for scripts (the lab tests
//! and `mtugate-perf compare` read it). Both are walked from the counter
//! tables: a row per counter (per label value for an array), in table order.

use crate::engine::WorkerReport;
use mtugate_datapath::counters::CounterTable;
use mtugate_datapath::pipeline::Counters;
use mtugate_datapath::pmtu::PmtuCounters;
use mtugate_mgmt::final_stats::{FinalPortIo, FinalQueue, FinalStats};
use mtugate_mgmt::model::{
    Lost, NicDrops, Percentiles, PipelineCounters, RuleStats, Stats, Tabled,
};
use mtugate_xsk::XdpStats;

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
    s
}

/// Frames of port `p` lost before mtugate saw them: the workers' AF_XDP
/// socket statistics (each kernel event once: `rx_fill_ring_empty_descs`
/// counts the same events as `rx_dropped`) and the interface's drops.
pub fn lost(reports: &[WorkerReport], p: usize, nic: NicDrops) -> Lost {
    let mut l = Lost {
        nic_rx_dropped: nic.rx_dropped,
        nic_rx_missed: nic.rx_missed,
        ..Lost::default()
    };
    for k in reports
        .iter()
        .filter_map(|r| r.counters.kernel.get(p).copied().flatten())
    {
        l.xsk_rx_dropped += k.rx_dropped;
        l.xsk_rx_ring_full += k.rx_ring_full;
    }
    l
}

/// The accounting line. It says "balanced" only when every frame the ports
/// received is accounted for: the XDP stage's outcomes add up, the
/// pipeline's do, and neither the sockets nor the interfaces lost a frame
/// before mtugate could see it. Otherwise it says how many, and where.
/// `xdp` and `nic` are per port (empty / short: not known).
pub fn accounting(
    reports: &[WorkerReport],
    names: &[&str],
    xdp: &[XdpStats],
    nic: &[NicDrops],
) -> String {
    let t = totals(reports, names.len());
    let mut problems = Vec::new();
    let mut lost_any = false;
    for (p, (name, c)) in names.iter().zip(&t).enumerate() {
        if !c.balanced() {
            problems.push(format!(
                "{name}: the pipeline's counters do not add up (received {} != forwarded {} + fragmented {} + dropped {})",
                c.rx_packets,
                c.forwarded,
                c.fragmented,
                c.dropped()
            ));
        }
        if let Some(x) = xdp.get(p) {
            if !x.balanced() {
                problems.push(format!(
                    "{name}: the XDP stage's outcomes do not add up to the {} frames it saw",
                    x.seen
                ));
            }
        }
        let l = lost(reports, p, nic.get(p).copied().unwrap_or_default());
        if l.total() > 0 {
            lost_any = true;
            problems.push(format!(
                "{name}: {} frames LOST before mtugate saw them: {}",
                l.total(),
                l.describe()
            ));
        }
    }
    if problems.is_empty() {
        return "  accounting: balanced (every frame the ports received is accounted for: XDP outcomes, pipeline, no kernel or interface drops)\n".to_owned();
    }
    let mut s = String::from("  accounting: NOT BALANCED\n");
    for p in problems {
        s.push_str(&format!("    - {p}\n"));
    }
    if lost_any {
        s.push_str("    (frames lost on the way to a worker: raise [xsk] frames and ring_size, or give the workers cores of their own)\n");
    }
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
        // Made-up counters do not add up.
        assert!(accounting(&r, &names, &[], &[]).contains("accounting: NOT BALANCED"));
    }

    /// Balanced counters on one port, then each kind of loss.
    #[test]
    fn accounting_says_balanced_only_when_nothing_was_lost() {
        let mut c = WorkerCounters::new(1);
        c.pipeline[0].rx_packets = 10;
        c.pipeline[0].forwarded = 10;
        c.kernel[0] = Some(mtugate_xsk::XskStats::default());
        let mut r = vec![WorkerReport {
            queue: 0,
            counters: c,
            frames: FrameCounts::default(),
            conservation_error: None,
        }];
        let x = XdpStats {
            seen: 30,
            fast: 20,
            steered: 10,
            ..XdpStats::default()
        };
        let ok = accounting(&r, &["in"], &[x], &[NicDrops::default()]);
        assert!(ok.contains("accounting: balanced"), "{ok}");

        // The kernel dropped 1200 (fill ring empty: counted once, not
        // again as fill_ring_empty) and 300 (RX ring full).
        r[0].counters.kernel[0] = Some(mtugate_xsk::XskStats {
            rx_dropped: 1200,
            rx_ring_full: 300,
            rx_fill_ring_empty_descs: 1200,
            ..Default::default()
        });
        let bad = accounting(&r, &["in"], &[x], &[NicDrops::default()]);
        assert!(bad.contains("NOT BALANCED"), "{bad}");
        assert!(bad.contains("1500 frames LOST"), "{bad}");
        // veth counts a redirect that found the RX ring full again as the
        // interface's rx_dropped: the same 300 frames, not 300 more.
        let veth = NicDrops {
            rx_dropped: 300,
            rx_missed: 0,
        };
        let bad = accounting(&r, &["in"], &[x], &[veth]);
        assert!(bad.contains("1500 frames LOST"), "{bad}");
        assert!(bad.contains("1200 AF_XDP rx_dropped"), "{bad}");
        assert!(bad.contains("300 AF_XDP RX ring full"), "{bad}");

        r[0].counters.kernel[0] = Some(mtugate_xsk::XskStats::default());
        let nic = NicDrops {
            rx_dropped: 0,
            rx_missed: 7,
        };
        let bad = accounting(&r, &["in"], &[x], &[nic]);
        assert!(
            bad.contains("7 frames LOST before mtugate saw them: 7 interface rx_missed"),
            "{bad}"
        );

        let unbalanced = XdpStats { seen: 31, ..x };
        let bad = accounting(&r, &["in"], &[unbalanced], &[NicDrops::default()]);
        assert!(bad.contains("XDP stage's outcomes do not add up"), "{bad}");
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
