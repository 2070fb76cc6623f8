//! The interfaces' own receive-drop counters (`/sys/class/net/<iface>/
//! statistics`), as deltas since mtugate started: frames a driver dropped
//! before any XDP program or socket saw them. With zero-copy, a starved
//! fill ring shows here rather than in the socket's statistics.

use mtugate_mgmt::model::NicDrops;

/// One interface's counters now; a counter the driver does not report
/// reads as zero.
pub fn read(iface: &str) -> NicDrops {
    let get = |name: &str| {
        std::fs::read_to_string(format!("/sys/class/net/{iface}/statistics/{name}"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    NicDrops {
        rx_dropped: get("rx_dropped"),
        rx_missed: get("rx_missed_errors"),
    }
}

/// The counters of a set of interfaces at a start, to report what changed
/// since.
#[derive(Debug, Clone)]
pub struct NicBaseline {
    ifaces: Vec<String>,
    base: Vec<NicDrops>,
}

impl NicBaseline {
    /// Reads every interface's counters now.
    pub fn new<S: AsRef<str>>(ifaces: &[S]) -> NicBaseline {
        NicBaseline {
            ifaces: ifaces.iter().map(|i| i.as_ref().to_owned()).collect(),
            base: ifaces.iter().map(|i| read(i.as_ref())).collect(),
        }
    }

    /// Drops since the baseline, per interface (in the order given).
    pub fn since(&self) -> Vec<NicDrops> {
        self.ifaces
            .iter()
            .zip(&self.base)
            .map(|(i, b)| {
                let n = read(i);
                NicDrops {
                    rx_dropped: n.rx_dropped.saturating_sub(b.rx_dropped),
                    rx_missed: n.rx_missed.saturating_sub(b.rx_missed),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_reads_and_a_missing_interface_is_zero() {
        // `lo` exists in every network namespace; its counters only grow.
        let b = NicBaseline::new(&["lo".to_owned(), "mtugate-no-such-if".to_owned()]);
        let d = b.since();
        assert_eq!(d.len(), 2);
        assert_eq!(d[1], NicDrops::default());
        assert_eq!(read("mtugate-no-such-if"), NicDrops::default());
    }
}
