/* SPDX-License-Identifier: (MIT OR Apache-2.0) */
/*
 * The interface between mtugate's XDP program (mtugate.bpf.c) and user
 * space (xsk/src/fastpath.rs mirrors every layout here, with compile-time
 * size checks and a test that reads these #defines).
 *
 * One program object is loaded per port (interface). Its maps:
 *   mtg_cfg    array[1]  struct mtg_cfg: what this port does with a frame
 *   mtg_egress devmap[1] the egress interface of fast-path frames
 *   mtg_xsks   xskmap[MTG_MAX_QUEUES] the AF_XDP socket of each RX queue
 *   mtg_stats  percpu array[MTG_STAT_COUNT] u64 counters (pinned, so that
 *              what happens while no mtugate runs is counted too)
 *   mtg_syn_global array[1] struct mtg_gcra: the appliance-wide SYN budget
 *   mtg_syn_src    LRU hash struct mtg_src_key -> struct mtg_gcra: one
 *                  budget per source (IPv4 address, IPv6 /64)
 *   mtg_ports  devmap_hash ifindex -> ifindex: router mode, every port of
 *              the appliance (a FIB result naming another interface goes to
 *              the kernel)
 *   mtg_rmtu4 / mtg_rmtu6 LPM tries: router mode, the MTU and advmss of
 *              the kernel's routes (main table), mirrored by user space from
 *              netlink: bpf_fib_lookup reports a route's MTU only when it is
 *              locked, the kernel's forwarding honours it either way
 *   mtg_rmtu_min array[2] the smallest MTU in each trie (0: IPv4, 1: IPv6;
 *              0 = unknown: always look; 65535: none): frames up to it
 *              skip the lookup
 * The SYN and route maps are created by the first port's program and reused
 * by every other port's (one budget, one mirror for the appliance, shared by
 * all CPUs).
 */
#ifndef MTUGATE_H
#define MTUGATE_H

#define MTG_MAX_QUEUES 256
/* Ports of a router (entries of mtg_ports). */
#define MTG_MAX_PORTS 64

/* mtg_cfg.steer */
#define MTG_STEER_EXCEPTIONS 0 /* only frames that need work go to AF_XDP */
#define MTG_STEER_ALL 1        /* every frame goes to AF_XDP */

/* mtg_cfg.on_failure: no socket for the frame's queue (the worker is gone) */
#define MTG_FAIL_BYPASS 0 /* forward it to the egress port unprocessed */
#define MTG_FAIL_BLOCK 1  /* drop it */

/* mtg_cfg.flags */
#define MTG_FLAG_EGRESS 1 /* mtg_egress holds an egress port */
#define MTG_FLAG_CLAMP4 2 /* IPv4 SYNs entering this port are clamped */
#define MTG_FLAG_CLAMP6 4 /* IPv6 SYNs entering this port are clamped */
#define MTG_FLAG_POLICE 8 /* police those SYNs before the copy */
#define MTG_FLAG_ROUTER 16 /* router mode: the kernel's FIB decides, mtg_ports */
#define MTG_FLAG_PMTU_ERRORS 32 /* ICMP Frag Needed / ICMPv6 Packet Too Big
				  * to the workers (they learn path MTUs) */
#define MTG_FLAG_FRAG_KERNEL 64 /* router: an IPv4 packet over the route MTU
				  * with DF clear goes to the kernel, which
				  * fragments it in place as it forwards it */

/* mtg_cfg.syn_over: a SYN within its source's budget over the global one */
#define MTG_OVER_DROP 0 /* drop it (the host retransmits) */
#define MTG_OVER_PASS 1 /* forward it unclamped */

/* Entries of each route trie (routes with an MTU or advmss, and the more
 * specific routes inside them). */
#define MTG_ROUTE_ENTRIES 262144

/* Entries of mtg_syn_src (the least recently used is evicted). */
#define MTG_SRC_ENTRIES 65536

/* mtg_stats indices */
#define MTG_STAT_SEEN 0         /* frames the program ran on */
#define MTG_STAT_FAST 1         /* redirected to the egress port, no copy */
#define MTG_STAT_STEERED 2      /* handed to the AF_XDP socket */
#define MTG_STAT_BYPASSED 3     /* no socket: forwarded unprocessed */
#define MTG_STAT_BLOCKED 4      /* no socket: dropped (on_failure = block) */
#define MTG_STAT_REDIRECT_ERR 5 /* the egress redirect was refused */
#define MTG_STAT_PASSED 6       /* no socket and no egress: to the kernel */
#define MTG_STAT_SYN_SOURCE 7   /* SYN over its source's budget: dropped */
#define MTG_STAT_SYN_OVER_DROP 8 /* SYN over the global budget: dropped */
#define MTG_STAT_SYN_OVER_PASS 9 /* ... forwarded unclamped (also in FAST) */
#define MTG_STAT_SYN_GRANTED 10 /* SYN within budget, to be clamped (also in STEERED) */
#define MTG_STAT_TO_KERNEL 11   /* router: given to the kernel's stack (local, ARP/ND, no neighbour, ...) */
#define MTG_STAT_NO_ROUTE 12    /* router: ... because the FIB has no usable route (also in TO_KERNEL) */
#define MTG_STAT_FRAG_KERNEL 13 /* router: ... because it is IPv4, DF clear, over the route MTU (the kernel fragments it; also in TO_KERNEL) */
#define MTG_STAT_COUNT 14

/*
 * Budgets are GCRA (the generic cell rate algorithm): a token costs
 * `interval` ns; a SYN at `now` is granted when
 * max(tat, now) - now <= tolerance, which then moves tat to
 * max(tat, now) + interval. tolerance = (burst - 1) * interval.
 * interval 0: no limit.
 */
struct mtg_cfg {
	unsigned int flags;      /* MTG_FLAG_* */
	unsigned short egress_mtu; /* largest L3 packet the egress port takes */
	unsigned char steer;     /* MTG_STEER_* */
	unsigned char on_failure; /* MTG_FAIL_* */
	unsigned char syn_over;  /* MTG_OVER_* */
	unsigned char pad[7];
	unsigned long long global_interval;
	unsigned long long global_tolerance;
	unsigned long long source_interval;
	unsigned long long source_tolerance;
};

struct mtg_gcra {
	unsigned long long tat; /* theoretical arrival time, ns (CLOCK_MONOTONIC) */
};

/* IPv4: family 4, the address in addr[0..4]; IPv6: family 6, the /64 in addr[0..8]. */
struct mtg_src_key {
	unsigned int family;
	unsigned int pad;
	unsigned char addr[16];
};

/* Keys of mtg_rmtu4 / mtg_rmtu6 (LPM trie: prefix length, then the
 * address in network byte order). */
struct mtg_lpm4 {
	unsigned int prefixlen;
	unsigned char addr[4];
};

struct mtg_lpm6 {
	unsigned int prefixlen;
	unsigned char addr[16];
};

/* A mirrored route's metrics. oif: its egress interface (0: several, a
 * multipath route); applied only when the FIB's own result leaves by the
 * same interface (a policy rule may have chosen another table). mtu 0:
 * the route has none (the device's MTU stands); advmss 0: none. */
struct mtg_route_mtu {
	unsigned int oif;
	unsigned short mtu;
	unsigned short advmss;
};

/*
 * Router mode: what the XDP stage hands the worker in front of a frame it
 * steers (XDP metadata, bpf_xdp_adjust_meta; AF_XDP copies it into the
 * UMEM chunk just before the packet, so it ends where the packet starts).
 * The kernel's forwarding decision for the frame, made by bpf_fib_lookup:
 *
 *   why == MTG_WHY_SYN, MTG_WHY_FORWARD, MTG_WHY_NO_NEIGH (no dst_mac),
 *   or MTG_WHY_TOO_BIG for IPv4:
 *     fwd: the next hop's MAC, the egress port's MAC and its ifindex
 *   why == MTG_WHY_TTL, or MTG_WHY_TOO_BIG for IPv6 (an ICMP error only):
 *     src6: the IPv6 source of that error
 *   src4: the IPv4 source of an ICMP error (0: none found)
 *   mtu: the route MTU toward the destination
 *   rev_mtu: the route MTU toward the source (0: no route back found)
 *   advmss: SYNs only, the smaller advmss of the routes either way (0: none)
 *
 * Error sources and rev_mtu come from a second lookup, toward the frame's
 * source as this host's own output would make it (BPF_FIB_LOOKUP_OUTPUT |
 * BPF_FIB_LOOKUP_SRC): the address the kernel would send an ICMP error
 * from. Every field in network byte order except ifindex, mtu, rev_mtu,
 * advmss, magic (host order). 32 bytes: within the kernel's 32-byte limit.
 */
#define MTG_META_MAGIC 0x6d74 /* "mt" */
#define MTG_META_LEN 32

/* mtg_meta.why */
#define MTG_WHY_FORWARD 1 /* steer = all: to be forwarded by the worker */
#define MTG_WHY_SYN 2     /* a SYN to clamp (policed already) */
#define MTG_WHY_TOO_BIG 3 /* larger than the route MTU toward the destination */
#define MTG_WHY_TTL 4     /* TTL / hop limit would expire: Time Exceeded */
#define MTG_WHY_NO_NEIGH 5 /* a SYN to clamp toward a next hop the kernel has not
			    * resolved yet: fwd.dst_mac is unknown; the worker
			    * clamps it and gives it to the kernel's output,
			    * which resolves the neighbour */

struct mtg_fwd {
	unsigned char dst_mac[6];
	unsigned char src_mac[6];
	unsigned int ifindex;
};

struct mtg_meta {
	union {
		struct mtg_fwd fwd;
		unsigned char src6[16];
	};
	unsigned int src4;
	unsigned short mtu;
	unsigned short rev_mtu;
	unsigned short advmss;
	unsigned short pad2;
	unsigned char why;
	unsigned char pad;
	unsigned short magic;
};

#endif
