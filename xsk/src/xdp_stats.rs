//! The XDP stage's counters (`mtg_stats` in `bpf/mtugate.h`), as user
//! space sums them over CPUs. Outside the `afxdp` feature, so that crates
//! which only report them (mgmt) can name them.

use serde::{Deserialize, Serialize};

/// Number of counters (`MTG_STAT_COUNT`).
pub(crate) const STAT_COUNT: usize = 14;

/// The XDP program's counters of one port (summed over CPUs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct XdpStats {
    /// Frames the program ran on.
    pub seen: u64,
    /// Forwarded to the egress port by the program (no copy).
    pub fast: u64,
    /// Handed to the AF_XDP socket of their queue.
    pub steered: u64,
    /// No socket: forwarded unprocessed (`on_failure = "bypass"`).
    pub bypassed: u64,
    /// No socket: dropped (`on_failure = "block"`).
    pub blocked: u64,
    /// The egress redirect was refused (frame dropped).
    pub redirect_errors: u64,
    /// No socket and no egress port: given to the kernel's stack.
    pub passed: u64,
    /// SYNs over their source's budget: dropped before the copy.
    #[serde(default)]
    pub syn_source_limited: u64,
    /// SYNs within their source's budget over the global one: dropped
    /// (`over_limit = "drop"`).
    #[serde(default)]
    pub syn_over_dropped: u64,
    /// ... forwarded unclamped (`over_limit = "pass"`; also in `fast`).
    #[serde(default)]
    pub syn_over_passed: u64,
    /// SYNs within budget, steered to be clamped (also in `steered`).
    #[serde(default)]
    pub syn_granted: u64,
    /// Router mode: given to the kernel's stack (for this host, ARP/ND,
    /// multicast, no neighbour yet, no route, an egress that is not a port).
    #[serde(default)]
    pub to_kernel: u64,
    /// Router mode: ... because the kernel's FIB had no usable route
    /// (unreachable, blackhole, prohibit; also in `to_kernel`).
    #[serde(default)]
    pub no_route: u64,
    /// Router mode: ... because it was IPv4 with DF clear over its route's
    /// MTU, for the kernel to fragment (`[router] fragment = "kernel"`;
    /// also in `to_kernel`).
    #[serde(default)]
    pub frag_to_kernel: u64,
}

impl XdpStats {
    pub(crate) fn from_array(v: [u64; STAT_COUNT]) -> XdpStats {
        XdpStats {
            seen: v[0],
            fast: v[1],
            steered: v[2],
            bypassed: v[3],
            blocked: v[4],
            redirect_errors: v[5],
            passed: v[6],
            syn_source_limited: v[7],
            syn_over_dropped: v[8],
            syn_over_passed: v[9],
            syn_granted: v[10],
            to_kernel: v[11],
            no_route: v[12],
            frag_to_kernel: v[13],
        }
    }

    pub(crate) fn to_array(self) -> [u64; STAT_COUNT] {
        [
            self.seen,
            self.fast,
            self.steered,
            self.bypassed,
            self.blocked,
            self.redirect_errors,
            self.passed,
            self.syn_source_limited,
            self.syn_over_dropped,
            self.syn_over_passed,
            self.syn_granted,
            self.to_kernel,
            self.no_route,
            self.frag_to_kernel,
        ]
    }

    /// `self - base`, per counter (counters since `base` was read).
    pub fn since(self, base: XdpStats) -> XdpStats {
        let (a, b) = (self.to_array(), base.to_array());
        XdpStats::from_array(std::array::from_fn(|i| a[i].wrapping_sub(b[i])))
    }

    /// Adds another port's or run's counters.
    pub fn add(&mut self, o: &XdpStats) {
        let (a, b) = (self.to_array(), o.to_array());
        *self = XdpStats::from_array(std::array::from_fn(|i| a[i] + b[i]));
    }

    /// Frames with exactly one outcome: `seen` = the sum of the outcomes
    /// (`syn_over_passed` and `syn_granted` are parts of `fast` and
    /// `steered`, `no_route` and `frag_to_kernel` of `to_kernel`).
    pub fn balanced(&self) -> bool {
        self.seen
            == self.fast
                + self.steered
                + self.bypassed
                + self.blocked
                + self.redirect_errors
                + self.passed
                + self.to_kernel
                + self.dropped()
    }

    /// Frames the program dropped on purpose: SYNs the policer refused.
    pub fn dropped(&self) -> u64 {
        self.syn_source_limited + self.syn_over_dropped
    }
}
