//! Router mode: the slow path of an L3 gateway whose control plane is the
//! Linux kernel.
//!
//! The XDP stage looks every frame up in the kernel's FIB and neighbour
//! table and forwards plain transit traffic itself. What it steers to a
//! worker arrives with the kernel's decision for that frame (the next hop's
//! MAC address, the egress port, the route MTUs toward the destination and
//! back toward the source, the source address of an ICMP error), which the
//! appliance turns into a [`Route`]. This module runs the pipeline with it:
//!
//! - [`process_routed`]: the wire-mode pipeline with a plan made for this
//!   frame: egress and its MTU from the route, the MSS clamp (`auto`: the
//!   smaller of the two route MTUs minus 40 / 60, as Linux's
//!   `--clamp-mss-to-pmtu`, VECTORS R5), and a forwarded frame (or each
//!   fragment) leaving with its TTL / hop limit decremented (RFC 1812
//!   §5.3.1; the IPv4 header checksum updated incrementally, RFC 1624,
//!   VECTORS R3) and the next hop's MAC addresses. Errors about it (Frag
//!   Needed, Packet Too Big) go back with the kernel's source address
//!   (VECTORS R7) unless `[icmp] source_*` says otherwise.
//! - [`time_exceeded`]: a frame whose TTL or hop limit would expire here is
//!   dropped and answered with ICMP Time Exceeded (RFC 792 type 11 code 0,
//!   RFC 4443 §3.3; VECTORS R1, R2, R4), under the same rules and budget
//!   as every other error.
//!
//! Deliberately left out: route lookups (the kernel's, in the XDP stage),
//! frames for this host, ARP and ND (never steered here), IPv6 packets
//! with extension headers other than SYNs (the XDP stage gives those to
//! the kernel; a SYN behind them is clamped here like any other).

use crate::ops::icmp::{self, IcmpRefusal};
use crate::ops::mss::{ClampParams, DEFAULT_MSS_V4, DEFAULT_MSS_V6};
use crate::ops::{L3Ctx, MacRewrite};
use crate::pipeline::{
    family, process_planned, Clamp, Config, DropReason, ExtraFrames, PortId, PortPlan, Settings,
    SettingsError, State, Verdict,
};
use crate::rules::Rules;
use crate::wire::{checksum, ethernet, ipv4, ipv6};

/// The kernel's forwarding decision for one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The port it leaves by.
    pub egress: PortId,
    /// The next hop's MAC address.
    pub next_hop: [u8; 6],
    /// The egress port's own MAC address.
    pub src_mac: [u8; 6],
    /// The route MTU toward the destination.
    pub mtu: u16,
    /// The route MTU toward the source, if the kernel has a route back.
    pub reverse_mtu: Option<u16>,
    /// The smaller `advmss` of those two routes, if either has one: an
    /// `auto` clamp goes no higher (a fixed one is the operator's word).
    pub advmss: Option<u16>,
    /// Source of an ICMPv4 error about the frame (the address the kernel
    /// would use to reach its sender).
    pub icmp_v4: Option<[u8; 4]>,
    /// Source of an ICMPv6 error about the frame.
    pub icmp_v6: Option<[u8; 16]>,
}

/// What the pipeline needs of a [`Route`] beyond its plan: the next hop and
/// the error sources.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hop {
    macs: MacRewrite,
    pub(crate) icmp_v4: Option<[u8; 4]>,
    pub(crate) icmp_v6: Option<[u8; 16]>,
}

impl Hop {
    /// A frame forwarded whole: one hop less, to the next hop.
    pub(crate) fn forward(&self, buf: &mut [u8], l2: usize) {
        decrement_hops(buf, l2);
        self.macs.apply(&mut buf[..l2]);
    }

    /// A packet about to be fragmented: one hop less (every fragment
    /// copies the header), and the addresses the fragments get.
    pub(crate) fn fragments(&self, buf: &mut [u8], l2: usize) -> MacRewrite {
        decrement_hops(buf, l2);
        self.macs
    }
}

/// The TTL (header checksum updated, RFC 1624) or hop limit of the IP
/// packet at `l2`, minus one. The caller has checked the header and that
/// the value is above 1.
fn decrement_hops(buf: &mut [u8], l2: usize) {
    match buf.get(l2).map(|b| b >> 4) {
        Some(4) => {
            let mut ip = ipv4::Packet::new_unchecked(&mut buf[l2..]);
            let (ttl, proto) = (ip.ttl(), ip.protocol());
            let new = ttl.saturating_sub(1);
            let check = checksum::update16(
                ip.checksum(),
                u16::from_be_bytes([ttl, proto]),
                u16::from_be_bytes([new, proto]),
            );
            ip.set_ttl(new);
            ip.set_checksum(check);
        }
        Some(6) => {
            let mut ip = ipv6::Packet::new_unchecked(&mut buf[l2..]);
            let h = ip.hop_limit();
            ip.set_hop_limit(h.saturating_sub(1));
        }
        _ => {}
    }
}

impl Config {
    /// A router's configuration over `settings.port_mtu.len()` ports (1 to
    /// 255). The port MTUs only bound the ICMP errors sent back out of each
    /// port; the MTU a frame is held to is its route's. A fixed clamp must
    /// fit the largest IPv4 / IPv6 packet.
    pub fn router(settings: Settings) -> Result<Config, SettingsError> {
        let n = settings.port_mtu.len();
        if n == 0 || n > 255 || settings.mss.on_ingress.len() != n {
            return Err(SettingsError::RouterPorts {
                mtus: n,
                clamp_flags: settings.mss.on_ingress.len(),
            });
        }
        for (port, &mtu) in settings.port_mtu.iter().enumerate() {
            if mtu < ipv4::MIN_MTU {
                let port = PortId::new(port);
                return Err(SettingsError::MtuTooSmall { port, mtu });
            }
        }
        // Every other rule is wire mode's: check it on a two-port copy
        // whose MTUs bound nothing.
        let mut probe = settings.clone();
        probe.port_mtu = vec![u16::MAX; 2];
        probe.mss.on_ingress = vec![true; 2];
        Config::new(probe)?;
        let plans = (0..n)
            .map(|i| PortPlan {
                egress: PortId::new(i),
                egress_mtu: settings.port_mtu[i],
                ingress_mtu: settings.port_mtu[i],
                clamp: [None; 2],
                policy: false,
            })
            .collect();
        // Rules and learned path MTUs are wire mode's for now: the router
        // clamps to the route MTUs the kernel gives.
        let rules = Rules::compile(&[], &settings.port_mtu)?;
        Ok(Config {
            settings,
            plans,
            rules,
        })
    }

    /// Router mode: the MSS SYNs of `fam` (0 = IPv4, 1 = IPv6) arriving on
    /// `ingress` are clamped to on a path with these route MTUs (`auto`:
    /// the smaller minus 40 / 60), if any.
    pub fn router_clamp(&self, fam: usize, ingress: PortId, route: &Route) -> Option<u16> {
        self.router_clamp_params(fam, ingress, route)
            .map(|p| p.clamp)
    }

    fn router_clamp_params(
        &self,
        fam: usize,
        ingress: PortId,
        route: &Route,
    ) -> Option<ClampParams> {
        let (mtu, reverse_mtu) = (route.mtu, route.reverse_mtu);
        let m = &self.settings.mss;
        if !m.on_ingress.get(ingress.index()).copied().unwrap_or(false) {
            return None;
        }
        let (c, overhead, default) = if fam == family::V4 {
            (m.ipv4, 40, DEFAULT_MSS_V4)
        } else {
            (m.ipv6, 60, DEFAULT_MSS_V6)
        };
        let clamp = match c {
            Clamp::Off => return None,
            Clamp::Fixed(v) => v,
            Clamp::Auto => mtu
                .min(reverse_mtu.unwrap_or(mtu))
                .saturating_sub(overhead)
                .min(route.advmss.unwrap_or(u16::MAX)),
        };
        (clamp > 0).then_some(ClampParams {
            clamp,
            range: m.range,
            insert_default: m.insert.then_some(default),
        })
    }
}

/// Runs the pipeline over a frame received on `ingress` that the kernel
/// routes as `route` (see the module docs). A frame that is not IPv4 or
/// IPv6, or whose TTL / hop limit is 1 or less, is not forwarded: the
/// first is dropped as [`DropReason::NoRoute`], the second answered as by
/// [`time_exceeded`].
#[allow(clippy::too_many_arguments)]
pub fn process_routed<E: ExtraFrames>(
    buf: &mut [u8],
    len: usize,
    ingress: PortId,
    route: &Route,
    now: u64,
    cfg: &Config,
    state: &mut State,
    extra: &mut E,
) -> Verdict {
    let len = len.min(buf.len());
    let Some(ingress_mtu) = cfg.plans.get(ingress.index()).map(|p| p.ingress_mtu) else {
        return process_planned(buf, len, ingress, None, now, cfg, state, extra);
    };
    match hops_left(&buf[..len]) {
        Some(h) if h > 1 => {}
        Some(_) => {
            return time_exceeded(
                buf,
                len,
                ingress,
                route.icmp_v4,
                route.icmp_v6,
                now,
                cfg,
                state,
            )
        }
        None => return drop_unrouted(len, ingress, state),
    }
    let plan = PortPlan {
        egress: route.egress,
        egress_mtu: route.mtu,
        ingress_mtu,
        clamp: [family::V4, family::V6].map(|f| cfg.router_clamp_params(f, ingress, route)),
        policy: false,
    };
    let hop = Hop {
        macs: MacRewrite::Set {
            dst: route.next_hop,
            src: route.src_mac,
        },
        icmp_v4: route.icmp_v4,
        icmp_v6: route.icmp_v6,
    };
    process_planned(
        buf,
        len,
        ingress,
        Some((&plan, &hop)),
        now,
        cfg,
        state,
        extra,
    )
}

/// The TTL or hop limit of an IPv4 / IPv6 frame; `None` for anything else.
fn hops_left(frame: &[u8]) -> Option<u8> {
    let l2 = ethernet::Frame::new_checked(frame).ok()?.l2_info().ok()?;
    let l3 = frame.get(l2.header_len..)?;
    match l2.ethertype {
        ethernet::ethertype::IPV4 => ipv4::Packet::new_checked(l3).ok().map(|p| p.ttl()),
        ethernet::ethertype::IPV6 => ipv6::Packet::new_checked(l3).ok().map(|p| p.hop_limit()),
        _ => None,
    }
}

/// Drops a frame received on `ingress` that came without a usable
/// forwarding decision (counted, as every drop).
pub fn drop_unrouted(len: usize, ingress: PortId, state: &mut State) -> Verdict {
    let Some(c) = state.counters.get_mut(ingress.index()) else {
        state.bad_port += 1;
        return Verdict::Drop(DropReason::BadPort);
    };
    c.rx_packets += 1;
    c.rx_bytes += len as u64;
    c.drops[DropReason::NoRoute as usize] += 1;
    Verdict::Drop(DropReason::NoRoute)
}

/// Drops a frame received on `ingress` whose TTL or hop limit would expire
/// here and, if the rules (VECTORS R4) and the ICMP budget allow, turns it
/// into an ICMP Time Exceeded back to its sender, from `src_v4` / `src_v6`
/// (`[icmp] source_*` first, when set). Counted as
/// [`DropReason::TtlExpired`] either way.
#[allow(clippy::too_many_arguments)]
pub fn time_exceeded(
    buf: &mut [u8],
    len: usize,
    ingress: PortId,
    src_v4: Option<[u8; 4]>,
    src_v6: Option<[u8; 16]>,
    now: u64,
    cfg: &Config,
    state: &mut State,
) -> Verdict {
    let len = len.min(buf.len());
    let (Some(plan), Some(c)) = (
        cfg.plans.get(ingress.index()),
        state.counters.get_mut(ingress.index()),
    ) else {
        state.bad_port += 1;
        return Verdict::Drop(DropReason::BadPort);
    };
    c.rx_packets += 1;
    c.rx_bytes += len as u64;
    let verdict = (|| {
        let l3 = match L3Ctx::parse(&buf[..len]) {
            Ok(l3) => l3,
            Err(_) => return Verdict::Drop(DropReason::NoRoute),
        };
        let v4 = buf[l3.l2_len] >> 4 == 4;
        // RFC 1812 §5.2.2: a header with a bad checksum is discarded silently.
        if v4 && !ipv4::Packet::new_unchecked(&buf[l3.l2_len..len]).verify_checksum() {
            return Verdict::Drop(DropReason::BadIpv4Checksum);
        }
        let s = &cfg.settings.icmp;
        let allowed = if v4 {
            icmp::check_v4(buf, &l3)
        } else {
            icmp::check_v6(buf, &l3)
        };
        if !s.enabled || allowed.is_err() {
            c.icmp_suppressed += 1;
            return Verdict::Drop(DropReason::TtlExpired);
        }
        if !state.budgets.icmp.try_take(now) {
            c.icmp_rate_limited += 1;
            return Verdict::Drop(DropReason::TtlExpired);
        }
        let ingress_mtu = usize::from(plan.ingress_mtu);
        let built: Result<usize, IcmpRefusal> = if v4 {
            let max = icmp::V4_MAX_ERROR_LEN.min(ingress_mtu);
            let src = s.source_v4.or(src_v4);
            icmp::build_time_exceeded_v4(buf, &l3, MacRewrite::Swap, src, max)
        } else {
            let max = icmp::V6_MAX_ERROR_LEN.min(ingress_mtu);
            let src = s.source_v6.or(src_v6);
            icmp::build_time_exceeded_v6(buf, &l3, MacRewrite::Swap, src, max)
        };
        match built {
            Ok(len) => {
                c.time_exceeded_sent[if v4 { family::V4 } else { family::V6 }] += 1;
                Verdict::Reply { len }
            }
            Err(_) => {
                c.icmp_suppressed += 1;
                Verdict::Drop(DropReason::TtlExpired)
            }
        }
    })();
    match verdict {
        Verdict::Reply { .. } => c.drops[DropReason::TtlExpired as usize] += 1,
        Verdict::Drop(r) => c.drops[r as usize] += 1,
        _ => {}
    }
    verdict
}
