//! The final-stats document: what `mtugate run --final-stats FILE` writes
//! when the appliance stops, and what `mtugate-perf compare` (and the lab
//! scripts) read back.
//!
//! It lives here, beside the `/stats` document ([`crate::model`]), because
//! both are made of the same parts (the pipeline counters of a port as
//! [`PipelineCounters`], the AF_XDP counters as [`IoStats`] and
//! [`KernelSocketStats`], each written from its counter table) and because
//! the two binaries that write and read it both depend on this crate; the
//! datapath crate, which declares the tables, stays free of serde.
//!
//! ```json
//! {"ports": {"inside": {"rx_packets": 7, ..., "drops": {"too_big": 0, ...},
//!                       "dropped": 0, "transmitted": 7, "balanced": true}},
//!  "queues": [{"queue": 0, "frames_total": 8192, "frames_free": 4096,
//!              "conservation_error": null, "polls": 9, "busy_polls": 3,
//!              "io": [{"port": "inside", "rx_frames": 7, ..., "tx_packets": 0,
//!                      "tx_bytes": 0, "kernel_rx_dropped": 0, ...}]}]}
//! ```
//!
//! An AF_XDP record is flat (the lab scripts read `io["rx_frames"]` and
//! `io["kernel_rx_ring_full"]`): the [`IoStats`] keys, then the
//! [`KernelSocketStats`] keys prefixed `kernel_`, each `null` when the
//! kernel could not be asked.

use crate::link::WorkerCounters;
use crate::model::{IoStats, KernelSocketStats, PipelineCounters, RuleStats, Tabled};
use crate::table;
use mtugate_datapath::counters::CounterTable;
use mtugate_datapath::pmtu::PmtuCounters;
use mtugate_xsk::XdpStats;
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;

/// The whole document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FinalStats {
    /// Pipeline counters by ingress port name, summed over queues.
    pub ports: BTreeMap<String, PipelineCounters>,
    /// Per queue (worker).
    pub queues: Vec<FinalQueue>,
    /// The XDP stage, per port in port order (empty when it was not read).
    #[serde(default)]
    pub xdp: Vec<FinalXdp>,
    /// Per rule, summed over queues (empty without rules).
    #[serde(default)]
    pub rules: Vec<RuleStats>,
    /// Learned path MTUs, summed over queues.
    #[serde(default)]
    pub pmtu: Tabled<PmtuCounters>,
}

/// The XDP stage of one port at the end of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalXdp {
    /// The port's name.
    pub port: String,
    /// Its interface.
    pub iface: String,
    /// What the program counted during this run.
    pub run: XdpStats,
    /// What it counted before this run took it over (frames bypassed or
    /// blocked while no mtugate ran, since the pinned link was made).
    pub inherited: XdpStats,
    /// The interface's receive drops during this run.
    #[serde(default)]
    pub nic: crate::model::NicDrops,
    /// Frames of this port lost before mtugate saw them (sockets and
    /// interface, each kernel event once).
    #[serde(default)]
    pub lost: crate::model::Lost,
}

/// One worker at its end.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FinalQueue {
    /// Queue id.
    pub queue: u32,
    /// AF_XDP counters, per port in port order.
    pub io: Vec<FinalPortIo>,
    /// Frames in the UMEM.
    pub frames_total: u64,
    /// Frames in the worker's free list at the end.
    pub frames_free: u64,
    /// Why the frames did not add up at the end (`None`: they did).
    pub conservation_error: Option<String>,
    /// Rounds of the poll loop.
    pub polls: u64,
    /// Rounds that found work.
    pub busy_polls: u64,
}

/// The AF_XDP side of one port of one queue (a flat JSON object, see the
/// module documentation).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FinalPortIo {
    /// The port's name.
    pub port: String,
    /// The queue's counters of the port.
    pub io: IoStats,
    /// Frames put on the TX path of the port.
    pub tx_packets: u64,
    /// Bytes of those frames.
    pub tx_bytes: u64,
    /// The kernel's socket statistics (`None`: the query failed).
    pub kernel: Option<KernelSocketStats>,
}

/// Prefix of the kernel's statistics in a [`FinalPortIo`] object.
const KERNEL: &str = "kernel_";

impl FinalPortIo {
    /// Port `p` of a worker's counters, named `name`.
    pub fn new(name: &str, c: &WorkerCounters, p: usize) -> FinalPortIo {
        FinalPortIo {
            port: name.to_string(),
            io: IoStats::new(&c.io[p], c.tx_ring_full_drops[p]),
            tx_packets: c.tx_packets[p],
            tx_bytes: c.tx_bytes[p],
            kernel: c.kernel[p].as_ref().map(KernelSocketStats::from),
        }
    }
}

impl Serialize for FinalPortIo {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("port", &self.port)?;
        table::serialize_entries(&self.io, "", &mut m)?;
        m.serialize_entry("tx_packets", &self.tx_packets)?;
        m.serialize_entry("tx_bytes", &self.tx_bytes)?;
        for (i, d) in KernelSocketStats::TABLE.iter().enumerate() {
            let v = self.kernel.as_ref().map(|k| k.values(i)[0]);
            m.serialize_entry(&format!("{KERNEL}{}", d.name), &v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for FinalPortIo {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FinalPortIo;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("the AF_XDP counters of a port")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut r = FinalPortIo::default();
                let (mut port, mut tx_packets, mut tx_bytes) = (false, false, false);
                let mut seen = [false; IoStats::TABLE.len()];
                let mut kernel = KernelSocketStats::default();
                let mut kernel_seen = [false; KernelSocketStats::TABLE.len()];
                let mut kernel_null = false;
                while let Some(k) = m.next_key::<String>()? {
                    match k.as_str() {
                        "port" => (r.port, port) = (m.next_value()?, true),
                        "tx_packets" => (r.tx_packets, tx_packets) = (m.next_value()?, true),
                        "tx_bytes" => (r.tx_bytes, tx_bytes) = (m.next_value()?, true),
                        _ => {
                            if table::deserialize_entry(&mut r.io, &mut seen, &k, &mut m)? {
                                continue;
                            }
                            let i = k.strip_prefix(KERNEL).and_then(KernelSocketStats::index_of);
                            match i {
                                Some(i) => {
                                    kernel_seen[i] = true;
                                    match m.next_value::<Option<u64>>()? {
                                        Some(v) => kernel.values_mut(i)[0] = v,
                                        None => kernel_null = true,
                                    }
                                }
                                None => {
                                    m.next_value::<IgnoredAny>()?;
                                }
                            }
                        }
                    }
                }
                for (ok, name) in [
                    (port, "port"),
                    (tx_packets, "tx_packets"),
                    (tx_bytes, "tx_bytes"),
                ] {
                    if !ok {
                        return Err(A::Error::missing_field(name));
                    }
                }
                table::all_seen::<IoStats, _>(&seen)?;
                if let Some(i) = kernel_seen.iter().position(|s| !s) {
                    let d = &KernelSocketStats::TABLE[i];
                    return Err(A::Error::custom(format!(
                        "missing field `{KERNEL}{}`",
                        d.name
                    )));
                }
                r.kernel = (!kernel_null).then_some(kernel);
                Ok(r)
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mtugate_datapath::pipeline::{Counters, DropReason};
    use mtugate_xsk::XskStats;
    use serde_json::Value;

    fn sample() -> FinalStats {
        let mut c = WorkerCounters::new(2);
        let mut n = 0;
        for p in 0..2 {
            for i in 0..Counters::TABLE.len() {
                for v in c.pipeline[p].values_mut(i) {
                    n += 1;
                    *v = n;
                }
            }
            c.io[p].rx_frames = 11 + p as u64;
            c.io[p].tx_kick_errors = 2;
            c.tx_ring_full_drops[p] = 3;
            c.tx_packets[p] = 4;
            c.tx_bytes[p] = 5;
        }
        c.kernel[0] = Some(XskStats {
            rx_ring_full: 6,
            rx_invalid_descs: 7,
            ..XskStats::default()
        });
        let names = ["inside", "outside"];
        FinalStats {
            rules: Vec::new(),
            pmtu: Tabled::default(),
            ports: names
                .iter()
                .zip(&c.pipeline)
                .map(|(n, c)| (n.to_string(), PipelineCounters(*c)))
                .collect(),
            queues: vec![FinalQueue {
                queue: 3,
                io: (0..2).map(|p| FinalPortIo::new(names[p], &c, p)).collect(),
                frames_total: 8192,
                frames_free: 4000,
                conservation_error: Some("lost 1".into()),
                polls: 10,
                busy_polls: 9,
            }],
            xdp: vec![FinalXdp {
                port: "inside".into(),
                iface: "in0".into(),
                run: XdpStats {
                    seen: 9,
                    fast: 5,
                    steered: 4,
                    ..XdpStats::default()
                },
                inherited: XdpStats {
                    bypassed: 2,
                    ..XdpStats::default()
                },
                nic: crate::model::NicDrops {
                    rx_dropped: 1,
                    rx_missed: 0,
                },
                lost: crate::model::Lost {
                    xsk_rx_ring_full: 6,
                    nic_rx_dropped: 1,
                    ..Default::default()
                },
            }],
        }
    }

    #[test]
    fn round_trip() {
        let s = sample();
        let text = serde_json::to_string(&s).unwrap();
        let back: FinalStats = serde_json::from_str(&text).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.queues[0].io[1].kernel, None);
        assert_eq!(back.queues[0].io[0].kernel.unwrap().rx_invalid_descs, 7);
        // A document missing a counter is refused, not read as zero.
        let mut j: Value = serde_json::from_str(&text).unwrap();
        j["ports"]["inside"]
            .as_object_mut()
            .unwrap()
            .remove("syn_limited");
        let e = serde_json::from_value::<FinalStats>(j).unwrap_err();
        assert!(e.to_string().contains("syn_limited"), "{e}");
        let mut j: Value = serde_json::from_str(&text).unwrap();
        j["queues"][0]["io"][0]
            .as_object_mut()
            .unwrap()
            .remove("kernel_rx_ring_full");
        let e = serde_json::from_value::<FinalStats>(j).unwrap_err();
        assert!(e.to_string().contains("kernel_rx_ring_full"), "{e}");
    }

    /// The keys the lab scripts (deploy/e2e*.sh, bench-mgmt.sh) read, and
    /// every counter of the tables.
    #[test]
    fn keys_scripts_read() {
        let s = sample();
        let j: Value = serde_json::to_value(&s).unwrap();
        let inside = &j["ports"]["inside"];
        for k in [
            "rx_packets",
            "forwarded",
            "fragmented",
            "fragments_created",
            "syn_limited",
            "transmitted",
        ] {
            assert!(inside[k].is_u64(), "ports.inside.{k}: {inside}");
        }
        assert!(inside["balanced"].is_boolean());
        assert_eq!(
            inside["mss_clamped"]["ipv4"],
            s.ports["inside"].mss_clamped[0]
        );
        assert_eq!(inside["icmp_sent"].as_object().unwrap().len(), 2);
        for r in DropReason::ALL {
            assert_eq!(
                inside["drops"][r.name()],
                s.ports["inside"].drops[r as usize]
            );
        }
        s.ports["outside"].for_each(|d, v| match d.label {
            None => assert_eq!(j["ports"]["outside"][d.name], v[0]),
            Some(l) => {
                for (lv, v) in l.values.iter().zip(v) {
                    assert_eq!(j["ports"]["outside"][d.name][lv], *v, "{}", d.name);
                }
            }
        });
        let q = &j["queues"][0];
        for k in [
            "queue",
            "frames_total",
            "frames_free",
            "polls",
            "busy_polls",
        ] {
            assert!(q[k].is_u64(), "{k}: {q}");
        }
        assert_eq!(q["conservation_error"], "lost 1");
        let io = &q["io"][0];
        assert_eq!(io["port"], "inside");
        assert_eq!(io["rx_frames"], 11);
        assert_eq!(io["tx_frames"], 0);
        assert_eq!(io["tx_ring_full_drops"], 3);
        assert_eq!(io["tx_packets"], 4);
        assert_eq!(io["kernel_rx_dropped"], 0);
        assert_eq!(io["kernel_rx_ring_full"], 6);
        for d in IoStats::TABLE {
            assert!(io[d.name].is_u64(), "{}", d.name);
        }
        for d in KernelSocketStats::TABLE {
            assert!(io[format!("kernel_{}", d.name)].is_u64(), "{}", d.name);
            assert!(q["io"][1][format!("kernel_{}", d.name)].is_null());
        }
    }
}
