// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * mtugate's XDP stage: the fast path of a two-stage datapath.
 *
 * For every frame of a port it decides, conservatively, whether the frame
 * needs work from the userspace pipeline (MSS clamping, fragmentation, ICMP
 * errors) or not:
 *
 *   - needs no work (not a TCP SYN, L3 length within the egress MTU,
 *     headers fully understood): redirected to the egress port through the
 *     devmap, never copied;
 *   - anything else (a SYN or SYN-ACK, too big, IPv6 extension headers,
 *     more than two VLAN tags, anything malformed): redirected to the
 *     AF_XDP socket of the frame's RX queue, where the pipeline does what
 *     it always did;
 *   - no socket on the queue (mtugate stopped or died; the kernel removes
 *     a closed socket from the XSKMAP): every frame is forwarded
 *     unprocessed (bypass) or dropped (block), as configured, and counted.
 *
 * SYNs that the pipeline would clamp are policed here, before they cost a
 * copy into user space (the SYN flood that MSS rewriting invites):
 *
 *   1. each host (an IPv4 address, an IPv6 /64) has a budget of its own,
 *      spent by the SYNs it sends and the SYN-ACKs it receives (the host
 *      that opens a connection pays for both halves of the handshake); a
 *      SYN over it is dropped, without touching anybody else's budget;
 *   2. a SYN within its source's budget takes a token from the one global
 *      budget (shared by every port and CPU) and goes to the pipeline to be
 *      clamped; with the global budget spent it is dropped or forwarded
 *      unclamped (mtg_cfg.syn_over).
 *
 * In wire mode the program never edits a frame: only the pipeline does. In
 * router mode (see route()) it forwards plain transit traffic itself, as a
 * router does: TTL decremented, the next hop's MAC addresses written.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "mtugate.h"

#define ETH_P_8021Q_ 0x8100
#define ETH_P_8021AD_ 0x88A8
#define IP_MF_OFFSET 0x3fff

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mtg_cfg);
} mtg_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} mtg_egress SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, MTG_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} mtg_xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MTG_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} mtg_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, MTG_MAX_PORTS);
	__type(key, __u32);
	__type(value, __u32);
} mtg_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mtg_gcra);
} mtg_syn_global SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MTG_SRC_ENTRIES);
	__type(key, struct mtg_src_key);
	__type(value, struct mtg_gcra);
} mtg_syn_src SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MTG_ROUTE_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mtg_lpm4);
	__type(value, struct mtg_route_mtu);
} mtg_rmtu4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MTG_ROUTE_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mtg_lpm6);
	__type(value, struct mtg_route_mtu);
} mtg_rmtu6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} mtg_rmtu_min SEC(".maps");

static __always_inline void count(__u32 stat)
{
	__u64 *v = bpf_map_lookup_elem(&mtg_stats, &stat);

	if (v)
		*v += 1;
}

/* Outcome of classification. */
enum verdict { FAST, SLOW, SYN };

/* What classify found out about a SYN. */
struct syn_info {
	struct mtg_src_key key; /* whose budget it spends */
	int fits;  /* the L3 packet fits the egress MTU */
	int ack;   /* a SYN-ACK */
};

#define IP6_HBH 0
#define IP6_ROUTING 43
#define IP6_FRAGMENT 44
#define IP6_DSTOPTS 60
/* Extension headers walked to find a SYN behind them (more: not a SYN we
 * police; the pipeline still sees it). */
#define IP6_MAX_EXT 4

/*
 * Walks the IPv6 extension headers that may stand before TCP (Hop-by-Hop,
 * Routing, Destination Options, Fragment; at most IP6_MAX_EXT) from *l4p,
 * a header of type *nextp, and leaves both at the first other header.
 * Returns 1 when it walked any, 0 when there were none, -1 when a header
 * runs past the frame or a later fragment has no upper-layer header.
 */
static __always_inline int ip6_walk_ext(void **l4p, void *end, __u8 *nextp)
{
	void *l4 = *l4p;
	__u8 next = *nextp;
	int ext = 0;

#pragma unroll
	for (int i = 0; i < IP6_MAX_EXT; i++) {
		if (next != IP6_HBH && next != IP6_ROUTING && next != IP6_DSTOPTS &&
		    next != IP6_FRAGMENT)
			break;
		if (l4 + 8 > end)
			return -1;
		ext = 1;
		if (next == IP6_FRAGMENT) {
			/* Not a first fragment: no TCP header to look at. */
			if (*(__u16 *)(l4 + 2) & bpf_htons(0xfff8))
				return -1;
			next = *(__u8 *)l4;
			l4 += 8;
		} else {
			__u8 len = *(__u8 *)(l4 + 1);

			next = *(__u8 *)l4;
			l4 += ((__u32)len + 1) * 8;
		}
	}
	*l4p = l4;
	*nextp = next;
	return ext;
}

/*
 * A TCP header at l4: SYN if it is a SYN or SYN-ACK without RST (what the
 * pipeline clamps), FAST if it is any other segment, SLOW if it cannot be
 * read.
 */
static __always_inline enum verdict tcp_check(void *l4, void *end, struct syn_info *info)
{
	struct tcphdr *t = l4;

	if ((void *)(t + 1) > end)
		return SLOW;
	info->ack = t->ack;
	return (t->syn && !t->rst) ? SYN : FAST;
}

static __always_inline enum verdict classify(struct xdp_md *ctx, const struct mtg_cfg *cfg,
					     struct syn_info *info)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	void *l3;
	__u16 proto;

	if ((void *)(eth + 1) > end)
		return SLOW;
	proto = eth->h_proto;
	l3 = eth + 1;
	/* Up to two VLAN tags (802.1ad outer, 802.1Q inner). */
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != bpf_htons(ETH_P_8021Q_) && proto != bpf_htons(ETH_P_8021AD_))
			break;
		if (l3 + 4 > end)
			return SLOW;
		proto = *(__u16 *)(l3 + 2);
		l3 += 4;
	}
	if (proto == bpf_htons(ETH_P_8021Q_) || proto == bpf_htons(ETH_P_8021AD_))
		return SLOW; /* a third tag */

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = l3;
		__u32 ihl, tot;
		enum verdict v;

		if ((void *)(ip + 1) > end)
			return SLOW;
		ihl = ip->ihl * 4;
		tot = bpf_ntohs(ip->tot_len);
		if (ip->version != 4 || ihl < sizeof(*ip) || tot < ihl || l3 + tot > end)
			return SLOW;
		info->fits = tot <= cfg->egress_mtu;
		/* Only a first fragment carries the TCP header. */
		if (ip->protocol == IPPROTO_TCP && !(ip->frag_off & bpf_htons(0x1fff))) {
			if (ihl > 60)
				return SLOW;
			v = tcp_check(l3 + ihl, end, info);
			if (v == SYN) {
				/*
				 * Charged to the host that opened the connection: a
				 * SYN's source, a SYN-ACK's destination. A server
				 * answering a flood then spends the flooders'
				 * budgets, never its own clients'.
				 */
				info->key.family = 4;
				__builtin_memcpy(info->key.addr, info->ack ? &ip->daddr : &ip->saddr, 4);
				return SYN;
			}
			if (v == SLOW)
				return SLOW;
		}
		/* Fragmentation Needed, for the workers that learn path MTUs. */
		if (ip->protocol == IPPROTO_ICMP && (cfg->flags & MTG_FLAG_PMTU_ERRORS) &&
		    !(ip->frag_off & bpf_htons(0x1fff))) {
			__u8 *icmp = l3 + ihl;

			if (ihl > 60 || (void *)(icmp + 2) > end)
				return SLOW;
			if (icmp[0] == 3 && icmp[1] == 4)
				return SLOW;
		}
		return info->fits ? FAST : SLOW;
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;
		void *l4 = ip6 + 1;
		__u32 tot;
		__u8 next;
		enum verdict v;
		int ext = 0;

		if ((void *)(ip6 + 1) > end)
			return SLOW;
		tot = sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
		/* payload_len 0: a jumbogram, or a frame we do not understand. */
		if (ip6->version != 6 || tot == sizeof(*ip6) || l3 + tot > end)
			return SLOW;
		info->fits = tot <= cfg->egress_mtu;
		next = ip6->nexthdr;
		/*
		 * Extension headers are the pipeline's to judge (SLOW), but a SYN
		 * behind them must still be policed, or a flood would only need a
		 * destination options header to get past the policer.
		 */
		ext = ip6_walk_ext(&l4, end, &next);
		if (ext < 0)
			return SLOW;
		switch (next) {
		case IPPROTO_TCP:
			v = tcp_check(l4, end, info);
			if (v == SYN) {
				info->key.family = 6;
				__builtin_memcpy(info->key.addr, info->ack ? &ip6->daddr : &ip6->saddr, 8);
				return SYN;
			}
			if (v == SLOW || ext)
				return SLOW;
			return info->fits ? FAST : SLOW;
		case IPPROTO_ICMPV6:
			/* Packet Too Big, for the workers that learn path MTUs. */
			if (cfg->flags & MTG_FLAG_PMTU_ERRORS) {
				__u8 *icmp = l4;

				if ((void *)(icmp + 1) > end || icmp[0] == 2)
					return SLOW;
			}
			return (info->fits && !ext) ? FAST : SLOW;
		case IPPROTO_UDP:
		case IPPROTO_ESP:
		case IPPROTO_GRE:
			return (info->fits && !ext) ? FAST : SLOW;
		default:
			return SLOW; /* more extension headers and the rest */
		}
	}
	/* Not IP (ARP, LLDP, ...): the bump in the wire passes it untouched. */
	return FAST;
}

/*
 * GCRA on a shared state: one token if the budget has one. The
 * compare-and-swap keeps CPUs from spending the same token; a refusal only
 * reads. Bounded retries: losing every race refuses (never over-grants).
 */
static __always_inline int gcra_take(__u64 *tat_p, __u64 now, __u64 interval, __u64 tolerance)
{
	if (!interval)
		return 1;
	if (interval == ~0ULL)
		return 0; /* a closed budget */
#pragma unroll
	for (int i = 0; i < 4; i++) {
		__u64 tat = *(volatile __u64 *)tat_p;
		__u64 base = tat > now ? tat : now;

		if (base - now > tolerance)
			return 0;
		if (__sync_val_compare_and_swap(tat_p, tat, base + interval) == tat)
			return 1;
	}
	return 0;
}

enum police { GRANTED, SOURCE_LIMITED, OVER_LIMIT };

/* What becomes of a policed SYN, in both modes. */
enum syn_fate {
	SYN_CLAMP, /* granted: to the workers, to be clamped */
	SYN_DROP,  /* over its host's budget, or over the appliance's with
		    * over_limit = "drop": drop it (counted) */
	SYN_PASS,  /* over the appliance's budget, over_limit = "pass":
		    * forward it unclamped if the caller can */
};

static __always_inline enum police police(const struct mtg_cfg *cfg, struct syn_info *info)
{
	__u64 now = bpf_ktime_get_ns();
	__u32 zero = 0;
	struct mtg_gcra *g;

	if (cfg->source_interval) {
		struct mtg_gcra *s = bpf_map_lookup_elem(&mtg_syn_src, &info->key);

		if (s) {
			if (!gcra_take(&s->tat, now, cfg->source_interval, cfg->source_tolerance))
				return SOURCE_LIMITED;
		} else {
			/* A new source: its first token, from a full budget. */
			struct mtg_gcra fresh = { .tat = now + cfg->source_interval };

			bpf_map_update_elem(&mtg_syn_src, &info->key, &fresh, BPF_NOEXIST);
		}
	}
	g = bpf_map_lookup_elem(&mtg_syn_global, &zero);
	if (!g)
		return OVER_LIMIT; /* cannot happen: an array always has its element */
	if (!gcra_take(&g->tat, now, cfg->global_interval, cfg->global_tolerance))
		return OVER_LIMIT;
	return GRANTED;
}

/* The policer's decision and the over-limit policy, with the drops counted. */
static __always_inline enum syn_fate syn_fate(const struct mtg_cfg *cfg, struct syn_info *info)
{
	switch (police(cfg, info)) {
	case SOURCE_LIMITED:
		count(MTG_STAT_SYN_SOURCE);
		return SYN_DROP;
	case OVER_LIMIT:
		if (cfg->syn_over != MTG_OVER_PASS) {
			count(MTG_STAT_SYN_OVER_DROP);
			return SYN_DROP;
		}
		return SYN_PASS;
	default:
		return SYN_CLAMP;
	}
}

static __always_inline int fail(const struct mtg_cfg *cfg)
{
	if (cfg->on_failure == MTG_FAIL_BLOCK) {
		count(MTG_STAT_BLOCKED);
		return XDP_DROP;
	}
	if (!(cfg->flags & MTG_FLAG_EGRESS)) {
		count(MTG_STAT_PASSED);
		return XDP_PASS;
	}
	if (bpf_redirect_map(&mtg_egress, 0, 0) == XDP_REDIRECT) {
		count(MTG_STAT_BYPASSED);
		return XDP_REDIRECT;
	}
	count(MTG_STAT_REDIRECT_ERR);
	return XDP_DROP;
}

static __always_inline int forward(void)
{
	if (bpf_redirect_map(&mtg_egress, 0, 0) == XDP_REDIRECT) {
		count(MTG_STAT_FAST);
		return XDP_REDIRECT;
	}
	count(MTG_STAT_REDIRECT_ERR);
	return XDP_DROP;
}

/*
 * Router mode (MTG_FLAG_ROUTER): the kernel is the control plane. Each
 * IPv4/IPv6 frame is looked up in the kernel's FIB and neighbour table
 * (bpf_fib_lookup), then:
 *
 *   - for this host, ARP/ND, multicast, link-local, IPv6 extension headers,
 *     VLAN tags, no neighbour yet, no route, an egress that is not one of
 *     our ports: XDP_PASS, the kernel's stack answers as it always does;
 *   - TTL / hop limit <= 1, a SYN to clamp, larger than the route MTU:
 *     the worker, with the kernel's decision in front of the frame
 *     (struct mtg_meta);
 *   - the rest: TTL decremented (checksum updated, RFC 1624), MACs of the
 *     next hop written, redirected to the egress port. No copy.
 *
 * Without a worker (no socket on the queue) the fast path keeps going; the
 * frames that need work go to the kernel (bypass: forwarded unclamped, its
 * own ICMP errors) or are dropped (block).
 */
#define AF_INET_ 2
#define AF_INET6_ 10

/* Where the worker's frames are, and the lookup that decided. */
struct route_ctx {
	struct bpf_fib_lookup fib; /* the lookup toward the destination */
	__u16 advmss;              /* SYNs: the route's advmss (0: none) */
	__u8 syn;                  /* a SYN the worker clamps */
	__u8 why;
	__u8 v6;
};

/* Whether a frame of `tot` bytes could exceed a mirrored route MTU: the
 * trie is only searched for those (and for SYNs). */
static __always_inline int route_mtu_may_apply(int v6, __u32 tot)
{
	__u32 k = v6;
	__u32 *min = bpf_map_lookup_elem(&mtg_rmtu_min, &k);

	return !min || tot > *min;
}

/*
 * The kernel's route toward `addr` as mirrored from netlink (see mtugate.h,
 * mtg_rmtu4): its MTU lowers *mtu when it is smaller and the route leaves
 * by `ifindex`, as the FIB said; its advmss goes to *advmss. Needed because
 * bpf_fib_lookup reports a route MTU only when it is locked.
 */
static __always_inline void route_metrics(int v6, const void *addr, __u32 ifindex, __u16 *mtu,
					  __u16 *advmss)
{
	struct mtg_route_mtu *e;

	if (v6) {
		struct mtg_lpm6 k = { .prefixlen = 128 };

		__builtin_memcpy(k.addr, addr, 16);
		e = bpf_map_lookup_elem(&mtg_rmtu6, &k);
	} else {
		struct mtg_lpm4 k = { .prefixlen = 32 };

		__builtin_memcpy(k.addr, addr, 4);
		e = bpf_map_lookup_elem(&mtg_rmtu4, &k);
	}
	if (!e || (e->oif && e->oif != ifindex))
		return;
	if (e->mtu && e->mtu < *mtu)
		*mtu = e->mtu;
	if (advmss)
		*advmss = e->advmss;
}

/* TTL minus one with the header checksum updated in place (RFC 1624): the
 * TTL is the high byte of its 16-bit word, so the word drops by 0x0100 and
 * the one's complement checksum rises by as much, end-around carry added. */
static __always_inline void ttl_decrement(struct iphdr *ip)
{
	__u32 sum = (__u32)ip->check + bpf_htons(0x0100);

	ip->check = (__u16)(sum + (sum >> 16));
	ip->ttl--;
}

/* The route back toward the frame's source, as this host's own output
 * would take it: its MTU and the source address of an ICMP error. */
static __always_inline void reverse_lookup(struct xdp_md *ctx, struct route_ctx *r,
					   struct mtg_meta *m)
{
	struct bpf_fib_lookup b = {};
	long rc;

	b.family = r->fib.family;
	b.l4_protocol = r->fib.l4_protocol;
	b.ifindex = ctx->ingress_ifindex;
	if (r->v6)
		__builtin_memcpy(b.ipv6_dst, r->fib.ipv6_src, 16);
	else
		b.ipv4_dst = r->fib.ipv4_src;
	rc = bpf_fib_lookup(ctx, &b, sizeof(b),
			    BPF_FIB_LOOKUP_OUTPUT | BPF_FIB_LOOKUP_SKIP_NEIGH | BPF_FIB_LOOKUP_SRC);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return;
	m->rev_mtu = b.mtu_result;
	if (r->syn) {
		__u16 adv = 0;

		/* The clamp looks both ways (--clamp-mss-to-pmtu). */
		if (r->v6)
			route_metrics(1, r->fib.ipv6_src, b.ifindex, &m->rev_mtu, &adv);
		else
			route_metrics(0, &r->fib.ipv4_src, b.ifindex, &m->rev_mtu, &adv);
		if (adv && (!m->advmss || adv < m->advmss))
			m->advmss = adv;
	}
	if (r->v6) {
		if (r->why == MTG_WHY_TTL || r->why == MTG_WHY_TOO_BIG)
			__builtin_memcpy(m->src6, b.ipv6_src, 16);
	} else {
		m->src4 = b.ipv4_src;
	}
}

/* The slow path: the kernel's decision in front of the frame, then the
 * socket of this RX queue. */
static __always_inline int route_slow(struct xdp_md *ctx, const struct mtg_cfg *cfg,
				      struct route_ctx *r, int granted)
{
	__u32 queue = ctx->rx_queue_index;
	struct mtg_meta *m;
	void *data;

	if (!bpf_map_lookup_elem(&mtg_xsks, &queue)) {
		/* No worker: the kernel does the work unclamped, or nothing. */
		if (cfg->on_failure == MTG_FAIL_BLOCK) {
			count(MTG_STAT_BLOCKED);
			return XDP_DROP;
		}
		count(MTG_STAT_BYPASSED);
		return XDP_PASS;
	}
	if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(struct mtg_meta)))
		goto no_meta;
	data = (void *)(long)ctx->data;
	m = (void *)(long)ctx->data_meta;
	if ((void *)(m + 1) > data)
		goto no_meta;
	__builtin_memset(m, 0, sizeof(*m));
	if (!(r->v6 && r->why == MTG_WHY_TTL) && !(r->v6 && r->why == MTG_WHY_TOO_BIG)) {
		__builtin_memcpy(m->fwd.dst_mac, r->fib.dmac, 6);
		__builtin_memcpy(m->fwd.src_mac, r->fib.smac, 6);
		m->fwd.ifindex = r->fib.ifindex;
	}
	m->mtu = r->fib.mtu_result;
	m->advmss = r->syn ? r->advmss : 0;
	m->why = r->why;
	m->magic = MTG_META_MAGIC;
	reverse_lookup(ctx, r, m);
	if (bpf_redirect_map(&mtg_xsks, queue, 0) == XDP_REDIRECT) {
		count(MTG_STAT_STEERED);
		if (granted)
			count(MTG_STAT_SYN_GRANTED);
		return XDP_REDIRECT;
	}
no_meta:
	count(MTG_STAT_TO_KERNEL);
	return XDP_PASS;
}

static __always_inline int to_kernel(void)
{
	count(MTG_STAT_TO_KERNEL);
	return XDP_PASS;
}

static __always_inline int route(struct xdp_md *ctx, const struct mtg_cfg *cfg)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = NULL;
	struct ipv6hdr *ip6 = NULL;
	struct route_ctx r = {};
	struct syn_info si = {};
	__u32 tot, hops;
	int syn = 0, granted = 0, no_neigh = 0, df = 0, ext = 0;
	__u8 dst[16] = {}; /* the frame's destination (the lookup overwrites it) */
	long rc;

	if ((void *)(eth + 1) > end)
		return to_kernel();
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		__u32 ihl;

		ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end)
			return to_kernel();
		ihl = ip->ihl * 4;
		tot = bpf_ntohs(ip->tot_len);
		if (ip->version != 4 || ihl < sizeof(*ip) || tot < ihl || (void *)ip + tot > end)
			return to_kernel();
		/* Multicast, limited broadcast, class E: the kernel's. */
		if ((bpf_ntohl(ip->daddr) >> 28) >= 0xe)
			return to_kernel();
		if (ip->protocol == IPPROTO_TCP && !(ip->frag_off & bpf_htons(0x1fff))) {
			if (ihl > 60)
				return to_kernel();
			if (tcp_check((void *)ip + ihl, end, &si) == SYN) {
				/* The host that opened the connection pays: a
				 * SYN's source, a SYN-ACK's destination. Taken
				 * here: the FIB lookup rewrites ipv4_dst with the
				 * gateway. */
				syn = 1;
				si.key.family = 4;
				__builtin_memcpy(si.key.addr, si.ack ? &ip->daddr : &ip->saddr, 4);
			}
		}
		hops = ip->ttl;
		df = !!(ip->frag_off & bpf_htons(0x4000));
		r.fib.family = AF_INET_;
		r.fib.tos = ip->tos;
		r.fib.l4_protocol = ip->protocol;
		r.fib.ipv4_src = ip->saddr;
		r.fib.ipv4_dst = ip->daddr;
		__builtin_memcpy(dst, &ip->daddr, 4);
		if (syn)
			r.fib.l4_protocol = IPPROTO_TCP;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		__u8 d0;

		ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end)
			return to_kernel();
		tot = sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
		if (ip6->version != 6 || tot == sizeof(*ip6) || (void *)ip6 + tot > end)
			return to_kernel();
		d0 = ip6->daddr.in6_u.u6_addr8[0];
		/* Multicast (ND among it), link-local either way: the kernel's. */
		if (d0 == 0xff || (d0 == 0xfe && (ip6->daddr.in6_u.u6_addr8[1] & 0xc0) == 0x80) ||
		    (ip6->saddr.in6_u.u6_addr8[0] == 0xfe &&
		     (ip6->saddr.in6_u.u6_addr8[1] & 0xc0) == 0x80))
			return to_kernel();
		switch (ip6->nexthdr) {
		case IPPROTO_TCP:
			if (tcp_check(ip6 + 1, end, &si) == SYN) {
				syn = 1;
				si.key.family = 6;
				__builtin_memcpy(si.key.addr, si.ack ? &ip6->daddr : &ip6->saddr, 8);
			}
			break;
		case IPPROTO_UDP:
		case IPPROTO_ICMPV6:
		case IPPROTO_ESP:
		case IPPROTO_GRE:
			break;
		default: {
			/*
			 * Extension headers: the kernel forwards them (Hop-by-Hop
			 * options are a router's to examine), except a SYN behind
			 * them, which the worker clamps as any other (its parser
			 * walks the same headers): a host that adds a Destination
			 * Options header must not get past the clamp, nor a flood
			 * past the policer.
			 */
			void *l4 = ip6 + 1;
			__u8 next = ip6->nexthdr;

			if (ip6_walk_ext(&l4, end, &next) < 0 || next != IPPROTO_TCP ||
			    tcp_check(l4, end, &si) != SYN)
				return to_kernel();
			syn = 1;
			ext = 1;
			si.key.family = 6;
			__builtin_memcpy(si.key.addr, si.ack ? &ip6->daddr : &ip6->saddr, 8);
			break;
		}
		}
		hops = ip6->hop_limit;
		r.v6 = 1;
		r.fib.family = AF_INET6_;
		r.fib.flowinfo = *(__be32 *)ip6 & bpf_htonl(0x0fffffff);
		r.fib.l4_protocol = ext ? IPPROTO_TCP : ip6->nexthdr;
		__builtin_memcpy(r.fib.ipv6_src, &ip6->saddr, 16);
		__builtin_memcpy(r.fib.ipv6_dst, &ip6->daddr, 16);
		__builtin_memcpy(dst, &ip6->daddr, 16);
	} else {
		/* ARP, LLDP, VLAN-tagged frames ...: the kernel's. */
		return to_kernel();
	}

	r.fib.ifindex = ctx->ingress_ifindex;
	/* tot_len 0: never FRAG_NEEDED; the route MTU comes back in mtu_result. */
	rc = bpf_fib_lookup(ctx, &r.fib, sizeof(r.fib), 0);
	switch (rc) {
	case BPF_FIB_LKUP_RET_SUCCESS:
		break;
	case BPF_FIB_LKUP_RET_NO_NEIGH:
		/* The kernel resolves the neighbour and forwards this one
		 * itself, unless it expires here (the worker answers) or is a
		 * SYN to clamp: the kernel would forward that unclamped, so the
		 * worker clamps it and hands it to the kernel's output. */
		if (hops <= 1 && bpf_map_lookup_elem(&mtg_ports, &r.fib.ifindex)) {
			r.why = MTG_WHY_TTL;
			return route_slow(ctx, cfg, &r, 0);
		}
		if (!syn || !(cfg->flags & (r.v6 ? MTG_FLAG_CLAMP6 : MTG_FLAG_CLAMP4)))
			return to_kernel();
		/* Again without the neighbour: the egress and the route MTU.
		 * The first lookup left the gateway in the destination and the
		 * egress in ifindex: put the frame's own back. */
		r.fib.ifindex = ctx->ingress_ifindex;
		__builtin_memcpy(r.fib.ipv6_dst, dst, 16); /* ipv4_dst: its first 4 */
		if (bpf_fib_lookup(ctx, &r.fib, sizeof(r.fib), BPF_FIB_LOOKUP_SKIP_NEIGH) !=
		    BPF_FIB_LKUP_RET_SUCCESS)
			return to_kernel();
		no_neigh = 1;
		break;
	case BPF_FIB_LKUP_RET_BLACKHOLE:
	case BPF_FIB_LKUP_RET_UNREACHABLE:
	case BPF_FIB_LKUP_RET_PROHIBIT:
		count(MTG_STAT_NO_ROUTE);
		return to_kernel();
	default:
		/* For this host, forwarding off, encapsulation, errors. */
		return to_kernel();
	}
	/*
	 * The egress must be one of our ports. Asking for the redirect now
	 * is that check and the fast path's redirect in one devmap lookup
	 * (the redirect happens when the program returns; the slow path's
	 * own redirect to a socket replaces it). Not ours: XDP_PASS, the
	 * frame still untouched.
	 */
	if (bpf_redirect_map(&mtg_ports, r.fib.ifindex, XDP_PASS) != XDP_REDIRECT)
		return to_kernel();
	/* The route's own MTU (unlocked ones too) and advmss. */
	if (syn || route_mtu_may_apply(r.v6, tot))
		route_metrics(r.v6, dst, r.fib.ifindex, &r.fib.mtu_result, &r.advmss);

	if (hops <= 1) {
		r.why = MTG_WHY_TTL;
		return route_slow(ctx, cfg, &r, 0);
	}
	if (syn && (cfg->flags & (r.v6 ? MTG_FLAG_CLAMP6 : MTG_FLAG_CLAMP4))) {
		if (cfg->flags & MTG_FLAG_POLICE) {
			switch (syn_fate(cfg, &si)) {
			case SYN_DROP:
				return XDP_DROP;
			case SYN_PASS:
				count(MTG_STAT_SYN_OVER_PASS);
				syn = 0; /* forwarded unclamped, below */
				break;
			case SYN_CLAMP:
				granted = 1;
				break;
			}
		}
		r.syn = syn;
		if (syn && no_neigh) {
			/* Too big as well: the kernel's (its own ICMP error). */
			if (tot > r.fib.mtu_result)
				return to_kernel();
			r.why = MTG_WHY_NO_NEIGH;
			return route_slow(ctx, cfg, &r, granted);
		}
		if (syn) {
			r.why = (tot > r.fib.mtu_result) ? MTG_WHY_TOO_BIG : MTG_WHY_SYN;
			return route_slow(ctx, cfg, &r, granted);
		}
	}
	/* No neighbour and nothing to clamp (over the SYN budget, "pass"),
	 * or extension headers and nothing to clamp: the kernel's. */
	if (no_neigh || ext)
		return to_kernel();
	if (tot > r.fib.mtu_result) {
		/* IPv4 that may be fragmented: the kernel forwards it and
		 * fragments it in place at the same route MTU (it honours a
		 * plain route mtu when forwarding), where a worker would copy it
		 * in and each fragment out. DF set: the worker's ICMP error. */
		if (!r.v6 && !df && (cfg->flags & MTG_FLAG_FRAG_KERNEL)) {
			count(MTG_STAT_FRAG_KERNEL);
			return to_kernel();
		}
		r.why = MTG_WHY_TOO_BIG;
		return route_slow(ctx, cfg, &r, 0);
	}
	if (cfg->steer == MTG_STEER_ALL) {
		r.why = MTG_WHY_FORWARD;
		return route_slow(ctx, cfg, &r, 0);
	}

	/* The fast path: the kernel's next hop, no copy. Bounds were checked
	 * above; the verifier wants them again after the helper calls. */
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > end)
		return to_kernel();
	if (r.v6) {
		ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end)
			return to_kernel();
		ip6->hop_limit--;
	} else {
		ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end)
			return to_kernel();
		ttl_decrement(ip);
	}
	__builtin_memcpy(eth->h_dest, r.fib.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, r.fib.smac, ETH_ALEN);
	count(MTG_STAT_FAST);
	return XDP_REDIRECT; /* to the port asked for above */
}

SEC("xdp")
int mtugate_xdp(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u32 queue = ctx->rx_queue_index;
	const struct mtg_cfg *cfg = bpf_map_lookup_elem(&mtg_cfg, &zero);
	int egress, granted = 0;

	count(MTG_STAT_SEEN);
	if (!cfg)
		return XDP_PASS; /* cannot happen: an array always has its element */
	if (cfg->flags & MTG_FLAG_ROUTER)
		return route(ctx, cfg);

	/*
	 * No socket on this queue: no worker runs (it stopped or died; the
	 * kernel removes a closed socket from the map). Every frame then gets
	 * the failure mode, the ones that need no work too: "block" means
	 * nothing crosses.
	 */
	if (!bpf_map_lookup_elem(&mtg_xsks, &queue))
		return fail(cfg);

	egress = cfg->flags & MTG_FLAG_EGRESS;
	if ((cfg->steer == MTG_STEER_EXCEPTIONS && egress) || (cfg->flags & MTG_FLAG_POLICE)) {
		struct syn_info info = {};
		enum verdict v = classify(ctx, cfg, &info);

		if (v == SYN) {
			__u32 want = info.key.family == 4 ? MTG_FLAG_CLAMP4 : MTG_FLAG_CLAMP6;

			if (!(cfg->flags & want)) {
				/* Not clamped on this port: an ordinary segment. */
				v = info.fits ? FAST : SLOW;
			} else if (cfg->flags & MTG_FLAG_POLICE) {
				switch (syn_fate(cfg, &info)) {
				case SYN_DROP:
					return XDP_DROP;
				case SYN_PASS:
					if (egress && info.fits) {
						count(MTG_STAT_SYN_OVER_PASS);
						return forward();
					}
					/* Too big to pass as it is: the pipeline's. */
					v = SLOW;
					break;
				case SYN_CLAMP:
					granted = 1;
					v = SLOW;
					break;
				}
			} else {
				v = SLOW;
			}
		}
		if (v == FAST && cfg->steer == MTG_STEER_EXCEPTIONS && egress)
			return forward();
	}
	/* The slow path: the socket of this RX queue, if a worker has one. */
	if (bpf_redirect_map(&mtg_xsks, queue, 0) == XDP_REDIRECT) {
		count(MTG_STAT_STEERED);
		if (granted)
			count(MTG_STAT_SYN_GRANTED);
		return XDP_REDIRECT;
	}
	return fail(cfg);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
