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

/* mtg_stats indices */
#define MTG_STAT_SEEN 0         /* frames the program ran on */
#define MTG_STAT_FAST 1         /* redirected to the egress port, no copy */
#define MTG_STAT_STEERED 2      /* handed to the AF_XDP socket */
#define MTG_STAT_BYPASSED 3     /* no socket: forwarded unprocessed */
#define MTG_STAT_BLOCKED 4      /* no socket: dropped (on_failure = block) */
#define MTG_STAT_REDIRECT_ERR 5 /* the egress redirect was refused */
#define MTG_STAT_PASSED 6       /* no socket and no egress: to the kernel */
#define MTG_STAT_COUNT 7

struct mtg_cfg {
	unsigned int flags;      /* MTG_FLAG_* */
	unsigned short egress_mtu; /* largest L3 packet the egress port takes */
	unsigned char steer;     /* MTG_STEER_* */
	unsigned char on_failure; /* MTG_FAIL_* */
};

#endif
