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
 * The two SYN maps are created by the first port's program and reused by
 * every other port's (one budget for the appliance, shared by all CPUs).
 */
#ifndef MTUGATE_H
#define MTUGATE_H

#define MTG_MAX_QUEUES 256

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
#define MTG_FLAG_PMTU_ERRORS 16 /* ICMP Frag Needed / ICMPv6 Packet Too Big
				  * to the workers (they learn path MTUs) */

/* mtg_cfg.syn_over: a SYN within its source's budget over the global one */
#define MTG_OVER_DROP 0 /* drop it (the host retransmits) */
#define MTG_OVER_PASS 1 /* forward it unclamped */

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
#define MTG_STAT_COUNT 11

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

#endif
