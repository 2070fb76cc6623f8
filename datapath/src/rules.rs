//! Rules: which SYNs are clamped to what, and which packets get which DF
//! policy, by ingress port, source and destination prefixes and outer VLAN.
//!
//! An ordered list; the first rule that matches decides. A rule states any
//! of: `from` (the ingress port), `src` and `dst` (lists of IPv4 and IPv6
//! prefixes), `vlan` (outer VLAN ids); a condition it does not state
//! matches everything. A packet no rule matches gets the configuration's
//! `[mss]` and `[df]`, and without rules nothing changes.
//!
//! **One rule covers a connection both ways.** A SYN is matched as it is
//! (its source, destination and ingress port); a SYN-ACK is matched as the
//! SYN it answers was: source and destination swapped, and ingress port
//! replaced by the port the SYN came in on (in wire mode, the SYN-ACK's
//! egress port). That is stateless and exact: the SYN-ACK of a connection
//! whose SYN matched rule *r* also matches *r* (and no earlier rule, since
//! the earlier ones did not match the SYN). A packet too big for the
//! egress MTU (for the per-rule DF policy) is not part of a handshake, so
//! it matches a rule in either orientation.
//!
//! # The lookup
//!
//! Compiled once, when the configuration is loaded; a lookup allocates
//! nothing and costs a few binary searches, whatever the number of rules
//! (at most [`MAX_RULES`]) and prefixes:
//!
//! * Rules are bits of a `u64`. Each condition becomes the set of rules it
//!   lets through: `from` a table by port, `vlan` a sorted array of
//!   `(vlan id, rules)`, `src` / `dst` per family an interval map. The
//!   sets are intersected and the first match is the lowest bit left.
//! * An interval map answers "which rules list a prefix that contains
//!   this address" with one binary search. Prefixes are nested or
//!   disjoint, so the address space splits into at most `2n + 1` intervals
//!   on which that answer is constant; the build sweeps the sorted
//!   prefixes with a stack of the open ones and writes each interval's
//!   start and rule set (the union over its enclosing prefixes). This is
//!   longest-prefix matching with every enclosing prefix's rules folded
//!   into the longest one, which is what "the rule lists a prefix that
//!   contains the address" needs.

use crate::ops::mss::{self, ClampParams};
use crate::pipeline::{Clamp, DfPolicy, PortId};
use std::sync::Arc;

/// The most rules a configuration may have (the bits of a `u64`).
pub const MAX_RULES: usize = 64;

/// An IPv4 or IPv6 prefix: an address and how many leading bits count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prefix {
    /// An IPv4 prefix (`len` 0..=32).
    V4 {
        /// The network address (host bits zero).
        addr: [u8; 4],
        /// Prefix length.
        len: u8,
    },
    /// An IPv6 prefix (`len` 0..=128).
    V6 {
        /// The network address (host bits zero).
        addr: [u8; 16],
        /// Prefix length.
        len: u8,
    },
}

/// Why a prefix or a rule is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// Not `ADDRESS/LEN` or `ADDRESS`.
    #[error("{0:?} is not a prefix: use ADDRESS/LEN, e.g. 10.8.0.0/16 or fd08::/32")]
    BadPrefix(String),
    /// Bits set after the prefix length.
    #[error("{given} has host bits set: did you mean {canonical}?")]
    HostBits {
        /// As written.
        given: String,
        /// With the host bits cleared.
        canonical: String,
    },
    /// More than [`MAX_RULES`].
    #[error("{0} rules: at most {MAX_RULES} are supported")]
    TooMany(usize),
    /// Two rules with one name (counters are labelled by name).
    #[error("rule name {0:?} is used twice")]
    DuplicateName(String),
    /// An empty name, or one with characters a metric label should not carry.
    #[error("rule name {0:?}: use 1..=64 characters of A-Z a-z 0-9 . _ -")]
    BadName(String),
    /// A VLAN id outside 0..=4095.
    #[error("VLAN id {0} is outside 0..=4095")]
    BadVlan(u16),
    /// A port the configuration does not have.
    #[error("rule {rule:?}: port {port} does not exist")]
    BadPort {
        /// The rule.
        rule: String,
        /// The port index given.
        port: PortId,
    },
    /// A fixed MSS that does not fit the smallest port MTU.
    #[error("rule {rule:?}: {family} MSS {mss} does not fit: it must be 1..={max} (smallest port MTU minus {overhead})")]
    ClampTooLarge {
        /// The rule.
        rule: String,
        /// "ipv4" or "ipv6".
        family: &'static str,
        /// The MSS given.
        mss: u16,
        /// The largest acceptable value.
        max: u16,
        /// The header overhead subtracted from the MTU.
        overhead: u16,
    },
    /// An empty match range.
    #[error("rule {rule:?}: MSS match range {lo}:{hi} is empty")]
    EmptyRange {
        /// The rule.
        rule: String,
        /// Low end.
        lo: u16,
        /// High end.
        hi: u16,
    },
}

fn mask_bytes<const N: usize>(mut a: [u8; N], len: u8) -> [u8; N] {
    for (i, b) in a.iter_mut().enumerate() {
        let keep = (usize::from(len)).saturating_sub(8 * i).min(8);
        *b &= (0xff00u16 >> keep) as u8;
    }
    a
}

impl Prefix {
    /// Parses `ADDRESS/LEN` or a bare `ADDRESS` (a host: /32 or /128).
    /// Host bits must be zero (`10.8.0.1/16` is refused, naming `10.8.0.0/16`).
    pub fn parse(s: &str) -> Result<Prefix, RuleError> {
        let bad = || RuleError::BadPrefix(s.to_string());
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: std::net::IpAddr = a.trim().parse().map_err(|_| bad())?;
        let (max, p) = match addr {
            std::net::IpAddr::V4(v) => (
                32,
                Prefix::V4 {
                    addr: v.octets(),
                    len: 32,
                },
            ),
            std::net::IpAddr::V6(v) => (
                128,
                Prefix::V6 {
                    addr: v.octets(),
                    len: 128,
                },
            ),
        };
        let len = match l {
            None => max,
            Some(l) => l
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&n| n <= max)
                .ok_or_else(bad)?,
        };
        let p = match p {
            Prefix::V4 { addr, .. } => Prefix::V4 { addr, len },
            Prefix::V6 { addr, .. } => Prefix::V6 { addr, len },
        };
        let c = p.canonical();
        if c != p {
            return Err(RuleError::HostBits {
                given: s.to_string(),
                canonical: c.to_string(),
            });
        }
        Ok(p)
    }

    /// The same prefix with its host bits cleared.
    pub fn canonical(self) -> Prefix {
        match self {
            Prefix::V4 { addr, len } => Prefix::V4 {
                addr: mask_bytes(addr, len),
                len,
            },
            Prefix::V6 { addr, len } => Prefix::V6 {
                addr: mask_bytes(addr, len),
                len,
            },
        }
    }

    /// Whether `addr` (4 or 16 bytes) is in this prefix: a plain bitwise
    /// comparison, the reference the compiled lookup is tested against.
    pub fn contains(&self, addr: &[u8]) -> bool {
        match (self, addr.len()) {
            (Prefix::V4 { addr: a, len }, 4) => {
                let x: [u8; 4] = addr.try_into().unwrap_or_default();
                mask_bytes(x, *len) == *a
            }
            (Prefix::V6 { addr: a, len }, 16) => {
                let x: [u8; 16] = addr.try_into().unwrap_or_default();
                mask_bytes(x, *len) == *a
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Prefix::V4 { addr, len } => write!(f, "{}/{len}", std::net::Ipv4Addr::from(*addr)),
            Prefix::V6 { addr, len } => write!(f, "{}/{len}", std::net::Ipv6Addr::from(*addr)),
        }
    }
}

/// A rule's MSS: per family, like `[mss]`, plus the match range and
/// insertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleMss {
    /// Clamp for IPv4 SYNs the rule matches.
    pub ipv4: Clamp,
    /// Clamp for IPv6 SYNs the rule matches.
    pub ipv6: Clamp,
    /// Only clamp an MSS in this inclusive range.
    pub range: Option<(u16, u16)>,
    /// Insert an MSS option into matching SYNs that carry none.
    pub insert: bool,
}

impl Default for RuleMss {
    /// `auto` for both families, no range, no insertion.
    fn default() -> Self {
        RuleMss {
            ipv4: Clamp::Auto,
            ipv6: Clamp::Auto,
            range: None,
            insert: false,
        }
    }
}

/// One rule as an operator states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSettings {
    /// Its name: the `rule` label of its counters.
    pub name: String,
    /// Only packets (SYNs) arriving on this port; `None`: any port.
    pub from: Option<PortId>,
    /// Only packets from an address in one of these; empty: any source.
    pub src: Vec<Prefix>,
    /// Only packets to an address in one of these; empty: any destination.
    pub dst: Vec<Prefix>,
    /// Only frames whose outer VLAN id is one of these (untagged frames
    /// never match a rule that lists VLANs); empty: any frame.
    pub vlan: Vec<u16>,
    /// The clamp of the SYNs and SYN-ACKs it matches.
    pub mss: RuleMss,
    /// The DF policy of the packets it matches; `None`: `[df]`'s.
    pub df: Option<DfPolicy>,
}

impl RuleSettings {
    /// A rule matching everything, clamping `auto`.
    pub fn new(name: &str) -> RuleSettings {
        RuleSettings {
            name: name.to_string(),
            from: None,
            src: Vec::new(),
            dst: Vec::new(),
            vlan: Vec::new(),
            mss: RuleMss::default(),
            df: None,
        }
    }
}

/// The addresses of a packet, by family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addrs {
    /// IPv4 source and destination.
    V4 {
        /// Source.
        src: [u8; 4],
        /// Destination.
        dst: [u8; 4],
    },
    /// IPv6 source and destination.
    V6 {
        /// Source.
        src: [u8; 16],
        /// Destination.
        dst: [u8; 16],
    },
}

impl Addrs {
    /// Source and destination swapped.
    #[inline]
    pub fn swapped(self) -> Addrs {
        match self {
            Addrs::V4 { src, dst } => Addrs::V4 { src: dst, dst: src },
            Addrs::V6 { src, dst } => Addrs::V6 { src: dst, dst: src },
        }
    }

    /// 0 for IPv4, 1 for IPv6 (the per-family counter index).
    #[inline]
    pub fn family(&self) -> usize {
        match self {
            Addrs::V4 { .. } => 0,
            Addrs::V6 { .. } => 1,
        }
    }
}

crate::counter_table! {
    /// The counters of one rule, per worker (labelled by the rule's name
    /// where they are published: the label set is bounded by the rules).
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct RuleCounters {
        /// SYNs, SYN-ACKs and too-big packets for which it was the first match.
        matched: u64 {
            metric: "mtugate_rule_matched_total",
            help: "SYN and SYN-ACK segments, and packets too big for the egress MTU, for which the rule was the first match.",
            text: "matched",
        },
        /// SYNs and SYN-ACKs it matched whose MSS was lowered or inserted.
        clamped: u64 {
            metric: "mtugate_rule_clamped_total",
            help: "SYN and SYN-ACK segments the rule matched whose MSS was lowered (or an MSS option inserted).",
            text: "clamped",
        },
        /// Packets it matched that were fragmented.
        fragmented: u64 {
            metric: "mtugate_rule_fragmented_total",
            help: "IPv4 packets the rule matched that were fragmented.",
            text: "fragmented",
        },
    }
}

/// What a rule does once it matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleAction {
    /// Clamp per family (0 = IPv4, 1 = IPv6); `None`: `off`.
    pub clamp: [Option<ClampParams>; 2],
    /// DF policy; `None`: the configuration's.
    pub df: Option<DfPolicy>,
}

/// An address as an unsigned integer (big-endian order of its bytes).
trait Key: Copy + Ord + std::fmt::Debug {
    const ZERO: Self;
    fn succ(self) -> Option<Self>;
}

impl Key for u32 {
    const ZERO: u32 = 0;
    fn succ(self) -> Option<u32> {
        self.checked_add(1)
    }
}

impl Key for u128 {
    const ZERO: u128 = 0;
    fn succ(self) -> Option<u128> {
        self.checked_add(1)
    }
}

/// A map from addresses to rule sets, constant on intervals: `starts[i]`
/// is where interval `i` begins, `sets[i]` its rules. Built from prefixes
/// (see the module doc), looked up with one binary search. (The module
/// doc's "interval map".)
#[derive(Debug, Clone, PartialEq, Eq)]
struct IntervalMap<A> {
    starts: Vec<A>,
    sets: Vec<u64>,
}

impl<A: Key> IntervalMap<A> {
    /// From `(first address, last address, rules)` of prefixes (each a
    /// prefix's range, so any two are nested or disjoint).
    fn build(mut ranges: Vec<(A, A, u64)>) -> IntervalMap<A> {
        // By start, the enclosing (longer range) first; one entry per range.
        ranges.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        ranges.dedup_by(|b, a| {
            let same = a.0 == b.0 && a.1 == b.1;
            if same {
                a.2 |= b.2;
            }
            same
        });
        let mut m = IntervalMap {
            starts: vec![A::ZERO],
            sets: vec![0],
        };
        // Open ranges: (last address, rules including the enclosing ones).
        let mut open: Vec<(A, u64)> = Vec::new();
        for (first, last, rules) in ranges {
            while let Some(&(end, _)) = open.last() {
                if end >= first {
                    break;
                }
                open.pop();
                let outer = open.last().map_or(0, |o| o.1);
                if let Some(at) = end.succ() {
                    m.set_from(at, outer);
                }
            }
            let set = rules | open.last().map_or(0, |o| o.1);
            open.push((last, set));
            m.set_from(first, set);
        }
        while let Some((end, _)) = open.pop() {
            let outer = open.last().map_or(0, |o| o.1);
            if let Some(at) = end.succ() {
                m.set_from(at, outer);
            }
        }
        m
    }

    /// Starts a new interval at `at` (never before the last one) with `set`.
    fn set_from(&mut self, at: A, set: u64) {
        let n = self.starts.len();
        if self.starts[n - 1] == at {
            self.sets[n - 1] = set;
        } else if self.sets[n - 1] != set {
            self.starts.push(at);
            self.sets.push(set);
        }
    }

    /// The rules whose prefixes contain `a`.
    #[inline]
    fn get(&self, a: A) -> u64 {
        let i = self.starts.partition_point(|&s| s <= a);
        // starts[0] is zero, so i >= 1.
        self.sets.get(i.wrapping_sub(1)).copied().unwrap_or(0)
    }

    /// Number of intervals.
    fn len(&self) -> usize {
        self.starts.len()
    }
}

/// One address condition (`src` or `dst`) of every rule, for one family.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Field<A> {
    /// Rules that do not state this condition (they match any address).
    any: u64,
    /// Rules that do, by address.
    map: IntervalMap<A>,
}

impl<A: Key> Field<A> {
    #[inline]
    fn get(&self, a: A) -> u64 {
        self.any | self.map.get(a)
    }
}

/// The compiled rules of a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    names: Arc<[String]>,
    actions: Vec<RuleAction>,
    /// Every rule.
    all: u64,
    /// Rules with no `from`.
    from_any: u64,
    /// Rules with `from` = that port, by port.
    from: Vec<u64>,
    /// Rules with no `vlan`.
    vlan_any: u64,
    /// Rules listing that VLAN id, sorted by id.
    vlan: Vec<(u16, u64)>,
    /// IPv4 `src`, `dst`.
    v4: [Field<u32>; 2],
    /// IPv6 `src`, `dst`.
    v6: [Field<u128>; 2],
}

impl Default for Rules {
    /// No rules.
    fn default() -> Self {
        Rules::compile(&[], &[1500, 1500]).expect("no rules always compile")
    }
}

fn check_name(n: &str) -> bool {
    (1..=64).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Rules {
    /// Validates and compiles `rules` for ports with MTUs `port_mtu`
    /// (`auto` is the smaller port MTU minus 40 / 60, as for `[mss]`).
    pub fn compile(rules: &[RuleSettings], port_mtu: &[u16]) -> Result<Rules, RuleError> {
        if rules.len() > MAX_RULES {
            return Err(RuleError::TooMany(rules.len()));
        }
        let min_mtu = port_mtu.iter().copied().min().unwrap_or(0);
        let mut names: Vec<String> = Vec::with_capacity(rules.len());
        let mut actions = Vec::with_capacity(rules.len());
        let (mut from_any, mut vlan_any) = (0u64, 0u64);
        let mut from = vec![0u64; port_mtu.len()];
        let mut vlan: Vec<(u16, u64)> = Vec::new();
        let mut any4 = [0u64; 2];
        let mut any6 = [0u64; 2];
        let mut r4: [Vec<(u32, u32, u64)>; 2] = Default::default();
        let mut r6: [Vec<(u128, u128, u64)>; 2] = Default::default();
        for (i, r) in rules.iter().enumerate() {
            let bit = 1u64 << i;
            if !check_name(&r.name) {
                return Err(RuleError::BadName(r.name.clone()));
            }
            if names.contains(&r.name) {
                return Err(RuleError::DuplicateName(r.name.clone()));
            }
            names.push(r.name.clone());
            match r.from {
                None => from_any |= bit,
                Some(p) => match from.get_mut(p.index()) {
                    Some(f) => *f |= bit,
                    None => {
                        return Err(RuleError::BadPort {
                            rule: r.name.clone(),
                            port: p,
                        })
                    }
                },
            }
            if r.vlan.is_empty() {
                vlan_any |= bit;
            }
            for &v in &r.vlan {
                if v > 4095 {
                    return Err(RuleError::BadVlan(v));
                }
                match vlan.iter_mut().find(|(id, _)| *id == v) {
                    Some((_, m)) => *m |= bit,
                    None => vlan.push((v, bit)),
                }
            }
            for (f, list) in [&r.src, &r.dst].into_iter().enumerate() {
                if list.is_empty() {
                    any4[f] |= bit;
                    any6[f] |= bit;
                }
                for p in list {
                    match p.canonical() {
                        Prefix::V4 { addr, len } => {
                            let a = u32::from_be_bytes(addr);
                            let host = u32::MAX.checked_shr(u32::from(len)).unwrap_or(0);
                            r4[f].push((a, a | host, bit));
                        }
                        Prefix::V6 { addr, len } => {
                            let a = u128::from_be_bytes(addr);
                            let host = u128::MAX.checked_shr(u32::from(len)).unwrap_or(0);
                            r6[f].push((a, a | host, bit));
                        }
                    }
                }
            }
            if let Some((lo, hi)) = r.mss.range {
                if lo > hi {
                    return Err(RuleError::EmptyRange {
                        rule: r.name.clone(),
                        lo,
                        hi,
                    });
                }
            }
            let mut clamp = [None; 2];
            for (fam, (c, overhead, family, default)) in [
                (r.mss.ipv4, 40u16, "ipv4", mss::DEFAULT_MSS_V4),
                (r.mss.ipv6, 60u16, "ipv6", mss::DEFAULT_MSS_V6),
            ]
            .into_iter()
            .enumerate()
            {
                let max = min_mtu.saturating_sub(overhead);
                let value = match c {
                    Clamp::Off => continue,
                    Clamp::Auto => max,
                    Clamp::Fixed(v) if v == 0 || v > max => {
                        return Err(RuleError::ClampTooLarge {
                            rule: r.name.clone(),
                            family,
                            mss: v,
                            max,
                            overhead,
                        })
                    }
                    Clamp::Fixed(v) => v,
                };
                if value > 0 {
                    clamp[fam] = Some(ClampParams {
                        clamp: value,
                        range: r.mss.range,
                        insert_default: r.mss.insert.then_some(default),
                    });
                }
            }
            actions.push(RuleAction { clamp, df: r.df });
        }
        vlan.sort_unstable();
        let all = u64::MAX.checked_shr(64 - rules.len() as u32).unwrap_or(0);
        let [s4, d4] = r4;
        let [s6, d6] = r6;
        Ok(Rules {
            names: names.into(),
            actions,
            all,
            from_any,
            from,
            vlan_any,
            vlan,
            v4: [
                Field {
                    any: any4[0],
                    map: IntervalMap::build(s4),
                },
                Field {
                    any: any4[1],
                    map: IntervalMap::build(d4),
                },
            ],
            v6: [
                Field {
                    any: any6[0],
                    map: IntervalMap::build(s6),
                },
                Field {
                    any: any6[1],
                    map: IntervalMap::build(d6),
                },
            ],
        })
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.actions.len()
    }

    /// Whether there are none (the pipeline then skips every lookup).
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// The rules' names, in order (shared: publishing them copies a pointer).
    pub fn names(&self) -> &Arc<[String]> {
        &self.names
    }

    /// What rule `i` does.
    pub fn action(&self, i: usize) -> Option<&RuleAction> {
        self.actions.get(i)
    }

    /// The set of rules (bit `i` = rule `i`) that a packet with `addrs`,
    /// arriving on `from`, in outer VLAN `vlan`, matches.
    #[inline]
    pub fn matching(&self, addrs: &Addrs, from: PortId, vlan: Option<u16>) -> u64 {
        let mut m = self.all & (self.from_any | self.from.get(from.index()).copied().unwrap_or(0));
        if self.vlan_any != self.all && m != 0 {
            let tagged = vlan.map_or(0, |v| {
                self.vlan
                    .binary_search_by_key(&v, |e| e.0)
                    .map_or(0, |i| self.vlan[i].1)
            });
            m &= self.vlan_any | tagged;
        }
        if m == 0 {
            return 0;
        }
        match addrs {
            Addrs::V4 { src, dst } => {
                m &= self.v4[0].get(u32::from_be_bytes(*src));
                if m != 0 {
                    m &= self.v4[1].get(u32::from_be_bytes(*dst));
                }
            }
            Addrs::V6 { src, dst } => {
                m &= self.v6[0].get(u128::from_be_bytes(*src));
                if m != 0 {
                    m &= self.v6[1].get(u128::from_be_bytes(*dst));
                }
            }
        }
        m
    }

    /// The first rule a packet matches (see [`Rules::matching`]).
    #[inline]
    pub fn first(&self, addrs: &Addrs, from: PortId, vlan: Option<u16>) -> Option<usize> {
        first_of(self.matching(addrs, from, vlan))
    }

    /// The first rule a SYN-ACK matches: the one its SYN matched, i.e. with
    /// its addresses swapped and the SYN's ingress port `syn_from`.
    #[inline]
    pub fn first_reply(&self, addrs: &Addrs, syn_from: PortId, vlan: Option<u16>) -> Option<usize> {
        first_of(self.matching(&addrs.swapped(), syn_from, vlan))
    }

    /// The first rule a packet matches in either orientation (as it is, or
    /// as a reply to a packet that came in on `other`).
    #[inline]
    pub fn first_either(
        &self,
        addrs: &Addrs,
        from: PortId,
        other: PortId,
        vlan: Option<u16>,
    ) -> Option<usize> {
        first_of(self.matching(addrs, from, vlan) | self.matching(&addrs.swapped(), other, vlan))
    }

    /// The number of intervals of each address map (v4 src, v4 dst, v6
    /// src, v6 dst): the size of what a lookup searches.
    pub fn intervals(&self) -> [usize; 4] {
        [
            self.v4[0].map.len(),
            self.v4[1].map.len(),
            self.v6[0].map.len(),
            self.v6[1].map.len(),
        ]
    }
}

#[inline]
fn first_of(m: u64) -> Option<usize> {
    (m != 0).then(|| m.trailing_zeros() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        Prefix::parse(s).unwrap()
    }

    fn v4(src: [u8; 4], dst: [u8; 4]) -> Addrs {
        Addrs::V4 { src, dst }
    }

    #[test]
    fn prefixes_parse_and_refuse() {
        assert_eq!(
            p("10.8.0.0/16"),
            Prefix::V4 {
                addr: [10, 8, 0, 0],
                len: 16
            }
        );
        assert_eq!(
            p("192.0.2.7"),
            Prefix::V4 {
                addr: [192, 0, 2, 7],
                len: 32
            }
        );
        assert_eq!(p("fd08::/32").to_string(), "fd08::/32");
        assert_eq!(p("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(p("::/0").to_string(), "::/0");
        assert_eq!(
            Prefix::parse("10.8.0.1/16"),
            Err(RuleError::HostBits {
                given: "10.8.0.1/16".into(),
                canonical: "10.8.0.0/16".into()
            })
        );
        for bad in [
            "10.8.0.0/33",
            "fd08::/129",
            "10.8/16",
            "x",
            "",
            "10.8.0.0/",
            "/8",
        ] {
            assert!(
                matches!(Prefix::parse(bad), Err(RuleError::BadPrefix(_))),
                "{bad}"
            );
        }
        assert!(p("10.8.0.0/16").contains(&[10, 8, 255, 1]));
        assert!(!p("10.8.0.0/16").contains(&[10, 9, 0, 0]));
        assert!(!p("10.8.0.0/16").contains(&[0; 16]), "other family");
        assert!(p("fd08::/15").contains(&[0xfd, 0x09, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]));
    }

    #[test]
    fn interval_map_folds_enclosing_prefixes() {
        let m = IntervalMap::build(vec![
            (0x0a00_0000u32, 0x0aff_ffff, 1), // 10/8 -> rule 0
            (0x0a08_0000, 0x0a08_ffff, 2),    // 10.8/16 -> rule 1
            (0x0a08_0100, 0x0a08_01ff, 4),    // 10.8.1/24 -> rule 2
            (0x0a08_0000, 0x0a08_ffff, 8),    // 10.8/16 again -> rule 3
            (0xffff_ffff, 0xffff_ffff, 16),   // the last address
        ]);
        assert_eq!(m.get(0x0900_0000), 0);
        assert_eq!(m.get(0x0a00_0000), 1);
        assert_eq!(m.get(0x0a07_ffff), 1);
        assert_eq!(m.get(0x0a08_0000), 1 | 2 | 8);
        assert_eq!(m.get(0x0a08_0150), 1 | 2 | 4 | 8);
        assert_eq!(m.get(0x0a08_0200), 1 | 2 | 8);
        assert_eq!(m.get(0x0a09_0000), 1);
        assert_eq!(m.get(0x0b00_0000), 0);
        assert_eq!(m.get(0xffff_fffe), 0);
        assert_eq!(m.get(0xffff_ffff), 16);
        let all = IntervalMap::build(vec![(0u32, u32::MAX, 1)]);
        assert_eq!((all.get(0), all.get(u32::MAX), all.len()), (1, 1, 1));
        let none = IntervalMap::<u32>::build(vec![]);
        assert_eq!((none.get(7), none.len()), (0, 1));
    }

    #[test]
    fn first_match_wins_and_conditions_combine() {
        let mut a = RuleSettings::new("a");
        a.from = Some(PortId::new(0));
        a.dst = vec![p("10.8.0.0/16"), p("fd08::/32")];
        a.vlan = vec![100, 200];
        let mut b = RuleSettings::new("b");
        b.dst = vec![p("10.0.0.0/8")];
        let c = RuleSettings::new("catch-all");
        let r = Rules::compile(&[a, b, c], &[1500, 1400]).unwrap();
        let (p0, p1) = (PortId::new(0), PortId::new(1));
        let x = v4([192, 0, 2, 1], [10, 8, 1, 1]);
        assert_eq!(r.first(&x, p0, Some(100)), Some(0));
        assert_eq!(r.first(&x, p0, Some(300)), Some(1), "other VLAN");
        assert_eq!(r.first(&x, p0, None), Some(1), "untagged");
        assert_eq!(r.first(&x, p1, Some(100)), Some(1), "other port");
        assert_eq!(r.first(&v4([1; 4], [11, 0, 0, 1]), p0, None), Some(2));
        // The SYN-ACK of x's SYN: swapped addresses, arriving on port 1.
        assert_eq!(r.first_reply(&x.swapped(), p0, Some(100)), Some(0));
        assert_eq!(r.first(&x.swapped(), p1, Some(100)), Some(2), "not as-is");
        assert_eq!(r.first_either(&x.swapped(), p1, p0, Some(100)), Some(0));
        let v6 = Addrs::V6 {
            src: [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            dst: [0xfd, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        };
        assert_eq!(r.first(&v6, p0, Some(200)), Some(0));
        // "auto" resolves with the smaller port MTU.
        assert_eq!(r.action(0).unwrap().clamp[0].unwrap().clamp, 1360);
        assert_eq!(r.action(0).unwrap().clamp[1].unwrap().clamp, 1340);
        assert_eq!(r.names()[2], "catch-all");
    }

    #[test]
    fn no_rules_match_nothing() {
        let r = Rules::default();
        assert!(r.is_empty());
        assert_eq!(r.first(&v4([1; 4], [2; 4]), PortId::new(0), None), None);
    }

    #[test]
    fn compile_refuses() {
        let mut big = RuleSettings::new("big");
        big.mss.ipv4 = Clamp::Fixed(1361);
        assert!(matches!(
            Rules::compile(&[big], &[1500, 1400]),
            Err(RuleError::ClampTooLarge { max: 1360, .. })
        ));
        let twice = [RuleSettings::new("x"), RuleSettings::new("x")];
        assert_eq!(
            Rules::compile(&twice, &[1500, 1500]),
            Err(RuleError::DuplicateName("x".into()))
        );
        assert!(matches!(
            Rules::compile(&[RuleSettings::new("a b")], &[1500, 1500]),
            Err(RuleError::BadName(_))
        ));
        let mut port = RuleSettings::new("p");
        port.from = Some(PortId::new(2));
        assert!(matches!(
            Rules::compile(&[port], &[1500, 1500]),
            Err(RuleError::BadPort { .. })
        ));
        let many: Vec<_> = (0..65)
            .map(|i| RuleSettings::new(&format!("r{i}")))
            .collect();
        assert_eq!(
            Rules::compile(&many, &[1500, 1500]),
            Err(RuleError::TooMany(65))
        );
        let all64 = Rules::compile(&many[..64], &[1500, 1500]).unwrap();
        assert_eq!(
            all64.first(&v4([1; 4], [2; 4]), PortId::new(1), None),
            Some(0)
        );
    }
}
