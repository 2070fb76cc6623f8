//! The live terminal view of `mtugate stats`: one screen that fits an
//! 80×24 terminal, rendered from a [`Stats`] document into a string (so it
//! can be tested without a terminal).

use crate::model::{Percentiles, Stats};
use mtugate_datapath::counters::CounterTable;

/// Terminal width the view fits.
pub const WIDTH: usize = 80;
/// Terminal height the view fits.
pub const HEIGHT: usize = 24;

/// A count or rate in at most 7 characters: 999, 12.3k, 4.56M, 1.23G.
pub fn compact(v: f64) -> String {
    let a = v.abs();
    if a < 1000.0 {
        if v.fract() == 0.0 || a >= 100.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.1}")
        }
    } else if a < 1e6 {
        format!("{:.1}k", v / 1e3)
    } else if a < 1e9 {
        format!("{:.2}M", v / 1e6)
    } else if a < 1e12 {
        format!("{:.2}G", v / 1e9)
    } else if a < 1e15 {
        format!("{:.2}T", v / 1e12)
    } else if a < 1e18 {
        format!("{:.2}P", v / 1e15)
    } else {
        format!("{:.2}E", v / 1e18)
    }
}

fn duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d{h:02}h{m:02}m")
    } else {
        format!("{h}h{m:02}m{s:02}s")
    }
}

/// Packs `label value` items after `head` into lines no wider than
/// [`WIDTH`], continuation lines indented like the first item.
fn pack(head: &str, items: &[(String, String)]) -> Vec<String> {
    let indent = head.chars().count();
    let mut lines = Vec::new();
    let mut cur = head.to_string();
    let mut empty = true;
    for (k, v) in items {
        let item = if v.is_empty() {
            k.clone()
        } else {
            format!("{k} {v}")
        };
        let sep = if empty { "" } else { "  " };
        if !empty && cur.chars().count() + sep.len() + item.chars().count() > WIDTH {
            lines.push(std::mem::replace(&mut cur, " ".repeat(indent)));
            cur.push_str(&item);
        } else {
            cur.push_str(sep);
            cur.push_str(&item);
        }
        empty = false;
    }
    lines.push(cur);
    lines
}

fn pct_row(label: &str, p: &Percentiles) -> String {
    if p.count == 0 {
        return format!("{label:<16}{:>9}", "-");
    }
    format!(
        "{label:<16}{:>9}{:>9}{:>9}{:>9}{:>9}{:>10}",
        compact(p.p50 as f64),
        compact(p.p90 as f64),
        compact(p.p99 as f64),
        compact(p.p99_9 as f64),
        compact(p.max as f64),
        compact(p.count as f64),
    )
}

/// Cuts a line to the terminal width.
fn fit(l: String) -> String {
    let mut l = l.trim_end().to_string();
    if l.chars().count() > WIDTH {
        l = l.chars().take(WIDTH - 1).collect();
        l.push('>');
    }
    l
}

/// Renders one screen: at most [`HEIGHT`] lines of at most [`WIDTH`]
/// characters, no trailing newline.
pub fn render(s: &Stats) -> String {
    let mut top = Vec::new();
    top.push(format!(
        "mtugate {}  up {}  config gen {}  reloads {}/{}  every {} ms",
        s.version,
        duration(s.uptime_s),
        s.config_generation,
        s.reloads.ok,
        s.reloads.invalid + s.reloads.restart_needed,
        s.interval_ms
    ));
    top.push(format!(
        "{:<6}{:<12}{:>9}{:>9}{:>9}{:>9}{:>8}{:>8}{:>9}",
        "queue", "port", "rx pps", "tx pps", "rx Mb/s", "drop/s", "busy", "frames", "in use"
    ));

    // Queue rows: as many as fit, then a line saying how many are hidden.
    let mut rows = Vec::new();
    for q in &s.queues {
        for (i, r) in q.rates.iter().enumerate() {
            let (busy, frames, inuse) = if i == 0 {
                (
                    format!("{:.1}%", 100.0 * q.busy_ratio),
                    compact(q.frames_total as f64),
                    compact(q.frames_in_flight as f64),
                )
            } else {
                Default::default()
            };
            rows.push(format!(
                "{:<6}{:<12}{:>9}{:>9}{:>9}{:>9}{:>8}{:>8}{:>9}",
                if i == 0 {
                    q.queue.to_string()
                } else {
                    String::new()
                },
                r.port.chars().take(11).collect::<String>(),
                compact(r.rx_pps),
                compact(r.tx_pps),
                format!("{:.1}", r.rx_bps / 1e6),
                compact(r.drop_ps),
                busy,
                frames,
                inuse,
            ));
        }
    }
    let total_rx_bps: f64 = s
        .queues
        .iter()
        .flat_map(|q| q.rates.iter().map(|r| r.rx_bps))
        .sum();
    let total_drops: f64 = s.rates.drops.values().sum();
    let total_row = format!(
        "{:<18}{:>9}{:>9}{:>9}{:>9}",
        "all",
        compact(s.rates.rx_pps),
        compact(s.rates.tx_pps),
        format!("{:.1}", total_rx_bps / 1e6),
        compact(total_drops),
    );

    let r = &s.rates;
    let mut bottom = Vec::new();
    let drops: Vec<(String, String)> = r
        .drops
        .iter()
        .map(|(k, v)| (k.clone(), compact(*v)))
        .collect();
    bottom.extend(pack("drops/s  ", &drops));
    bottom.extend(pack(
        "per s    ",
        &[
            ("clamp v4".into(), compact(r.mss_clamped.ipv4)),
            ("v6".into(), compact(r.mss_clamped.ipv6)),
            ("syn-limited".into(), compact(r.syn_limited)),
            ("fragmented".into(), compact(r.fragmented)),
            ("fragments".into(), compact(r.fragments_created)),
            ("icmp frag-needed".into(), compact(r.icmp_sent.frag_needed)),
            ("icmp6 too-big".into(), compact(r.icmp_sent.packet_too_big)),
            ("icmp limited".into(), compact(r.icmp_rate_limited)),
            ("malformed".into(), compact(r.malformed_passed)),
            ("non-ip".into(), compact(r.non_ip_passed)),
        ],
    ));
    bottom.push(format!(
        "{:<16}{:>9}{:>9}{:>9}{:>9}{:>9}{:>10}",
        "latency (ns)", "p50", "p90", "p99", "p99.9", "max", "packets"
    ));
    let l = &s.latency;
    bottom.push(pct_row(" cost/pkt  last", &l.packet_cost_ns.interval));
    bottom.push(pct_row(" cost/pkt  all", &l.packet_cost_ns.since_start));
    bottom.push(pct_row(" dwell     last", &l.dwell_ns.interval));
    bottom.push(pct_row(" dwell     all", &l.dwell_ns.since_start));
    let mut k = crate::model::KernelSocketStats::default();
    for t in &s.totals {
        if let Some(t) = &t.kernel {
            k.add(t);
        }
    }
    let ring_full: u64 = s.totals.iter().map(|t| t.io.tx_ring_full_drops).sum();
    bottom.extend(pack(
        "kernel   ",
        &[
            ("rx dropped".into(), compact(k.rx_dropped as f64)),
            ("rx ring full".into(), compact(k.rx_ring_full as f64)),
            ("fill empty".into(), compact(k.fill_ring_empty as f64)),
            ("tx empty".into(), compact(k.tx_ring_empty as f64)),
            (
                "invalid".into(),
                compact((k.rx_invalid_descs + k.tx_invalid_descs) as f64),
            ),
            ("tx ring full".into(), compact(ring_full as f64)),
        ],
    ));
    if !s.rules.is_empty() {
        let items: Vec<(String, String)> = s
            .rules
            .iter()
            .map(|r| {
                let c = &r.counters.0;
                (
                    r.rule.clone(),
                    format!(
                        "{}/{}/{}",
                        compact(c.matched as f64),
                        compact(c.clamped as f64),
                        compact(c.fragmented as f64)
                    ),
                )
            })
            .collect();
        // At most two lines of rules: the rest is in --json.
        let mut lines = pack("rules m/c/f ", &items);
        if lines.len() > 2 {
            let shown: usize = lines[..2]
                .iter()
                .map(|l| l.split("  ").filter(|x| !x.trim().is_empty()).count())
                .sum();
            lines.truncate(2);
            let more = format!("  +{} more", items.len().saturating_sub(shown));
            let last = &mut lines[1];
            let keep = WIDTH.saturating_sub(more.len()).min(last.len());
            last.truncate(keep);
            last.push_str(&more);
        }
        bottom.extend(lines);
    }
    let p = &s.pmtu.0;
    bottom.extend(pack(
        "pmtu     ",
        &[
            ("entries".into(), compact(p.entries as f64)),
            ("learned".into(), compact(p.learned as f64)),
            (
                "rejected".into(),
                compact(p.rejected.iter().sum::<u64>() as f64),
            ),
            ("clamped".into(), compact(p.clamped as f64)),
        ],
    ));
    if let Some(r) = &s.route_mirror {
        let mut items = vec![
            ("entries".into(), compact(r.entries as f64)),
            ("updates".into(), compact(r.updates as f64)),
            ("resyncs".into(), compact(r.resyncs as f64)),
            ("write errors".into(), compact(r.write_errors as f64)),
        ];
        if r.stale {
            items.push(("STALE".into(), String::new()));
        }
        bottom.extend(pack("routes   ", &items));
    }
    if !s.xdp.is_empty() {
        let mut x = mtugate_xsk::XdpStats::default();
        for p in &s.xdp {
            x.add(&p.stats);
        }
        bottom.extend(pack(
            "xdp      ",
            &[
                ("fast".into(), compact(x.fast as f64)),
                ("steered".into(), compact(x.steered as f64)),
                ("bypassed".into(), compact(x.bypassed as f64)),
                ("blocked".into(), compact(x.blocked as f64)),
                ("redirect err".into(), compact(x.redirect_errors as f64)),
            ],
        ));
        bottom.extend(pack(
            "syn      ",
            &[
                ("granted".into(), compact(x.syn_granted as f64)),
                ("source lim".into(), compact(x.syn_source_limited as f64)),
                ("over drop".into(), compact(x.syn_over_dropped as f64)),
                ("over pass".into(), compact(x.syn_over_passed as f64)),
            ],
        ));
    }
    // Frames lost before mtugate saw them: said in words, never hidden.
    let lost = s.lost_total();
    bottom.push(if lost.total() == 0 {
        "lost     none before mtugate (kernel and interface counters)".to_owned()
    } else {
        format!(
            "LOST     {} before mtugate: {}",
            lost.total(),
            lost.describe()
        )
    });

    // Budget: header lines, the total row, the bottom block.
    let fixed = top.len() + 1 + bottom.len();
    let room = HEIGHT.saturating_sub(fixed);
    let mut out = top;
    if rows.len() <= room {
        out.extend(rows);
    } else {
        let shown = room.saturating_sub(1);
        let hidden = rows.len() - shown;
        out.extend(rows.into_iter().take(shown));
        out.push(format!(
            "  ... {hidden} more rows (mtugate stats --once --json has them all)"
        ));
    }
    out.push(total_row);
    out.extend(bottom);
    out.truncate(HEIGHT);
    out.into_iter().map(fit).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{Aggregator, QueueInfo};
    use crate::link::{WorkerCounters, WorkerSnapshot};
    use mtugate_datapath::pipeline::DropReason;
    use std::time::Duration;

    fn stats(queues: u32, scale: u64) -> Stats {
        let mut a = Aggregator::new(
            vec!["inside-long-port-name".into(), "outside".into()],
            (0..queues)
                .map(|q| QueueInfo {
                    queue: q,
                    core: Some(q as usize + 1),
                })
                .collect(),
            Duration::from_secs(1),
        );
        for w in 0..queues as usize {
            let mut c = WorkerCounters::new(2);
            for p in 0..2 {
                c.pipeline[p].rx_packets = scale * (w as u64 + 1);
                c.pipeline[p].rx_bytes = scale;
                c.pipeline[p].drops = [scale; DropReason::COUNT];
                c.pipeline[p].mss_clamped = [scale, scale];
                c.tx_packets[p] = scale;
            }
            c.polls = 100;
            c.busy_polls = 37;
            c.frames_total = 8192;
            c.frames_in_flight = 4100;
            let mut latency = crate::link::LatencyHists::new();
            latency.record(64, 85, 2500);
            latency.record(1, 999_999_999, 999_999_999);
            a.absorb(&WorkerSnapshot {
                worker: w,
                epoch: 1,
                counters: c,
                latency,
            });
        }
        a.tick(Duration::from_secs(1));
        a.stats()
    }

    fn assert_fits(screen: &str) {
        let lines: Vec<&str> = screen.lines().collect();
        assert!(lines.len() <= HEIGHT, "{} lines:\n{screen}", lines.len());
        for l in &lines {
            assert!(
                l.chars().count() <= WIDTH,
                "{} wide: {l}",
                l.chars().count()
            );
        }
    }

    #[test]
    fn fits_80x24_with_one_queue() {
        let screen = render(&stats(1, 123_456_789));
        assert_fits(&screen);
        for want in [
            "inside-lon",
            "outside",
            "too_big",
            "syn_limit",
            "clamp v4",
            "p99.9",
            "cost/pkt",
            "dwell",
            "37.0%",
            "rx ring full",
        ] {
            assert!(screen.contains(want), "missing {want}:\n{screen}");
        }
        // 8 drop reasons at 123M/s each, all shown.
        assert!(screen.matches("246.91M").count() >= 8, "{screen}");
    }

    #[test]
    fn fits_with_many_queues_and_huge_numbers() {
        let screen = render(&stats(16, u64::MAX / 1024));
        assert_fits(&screen);
        assert!(screen.contains("more rows"), "{screen}");
        assert!(screen.contains("all "), "the total row stays: {screen}");
        assert!(screen.contains("dwell"), "{screen}");
    }

    #[test]
    fn many_rules_take_two_lines() {
        let mut s = stats(1, 5);
        s.rules = (0..64)
            .map(|i| crate::model::RuleStats {
                rule: format!("customer-{i}"),
                ..Default::default()
            })
            .collect();
        let screen = render(&s);
        assert_fits(&screen);
        assert!(screen.matches("customer-").count() > 4, "{screen}");
        assert!(screen.contains("more"), "{screen}");
        assert!(screen.contains("pmtu "), "{screen}");
        assert!(screen.contains("kernel "), "{screen}");
    }

    #[test]
    fn before_any_traffic() {
        let a = Aggregator::new(
            vec!["a".into(), "b".into()],
            vec![QueueInfo {
                queue: 0,
                core: None,
            }],
            Duration::from_secs(1),
        );
        let screen = render(&a.stats());
        assert_fits(&screen);
        assert!(screen.contains("cost/pkt"));
    }

    #[test]
    fn compact_numbers() {
        assert_eq!(compact(0.0), "0");
        assert_eq!(compact(12.5), "12.5");
        assert_eq!(compact(999.0), "999");
        assert_eq!(compact(1234.0), "1.2k");
        assert_eq!(compact(4_560_000.0), "4.56M");
        assert_eq!(compact(u64::MAX as f64), "18.45E");
    }
}
