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
 * The program never edits a frame. Only the pipeline does.
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

static __always_inline void count(__u32 stat)
{
	__u64 *v = bpf_map_lookup_elem(&mtg_stats, &stat);

	if (v)
		*v += 1;
}

/* Outcome of classification. */
enum verdict { FAST, SLOW };

/* A TCP header at l4: SLOW if it is a SYN (or cannot be read). */
static __always_inline enum verdict tcp_check(void *l4, void *end)
{
	struct tcphdr *t = l4;

	if ((void *)(t + 1) > end)
		return SLOW;
	return t->syn ? SLOW : FAST;
}

static __always_inline enum verdict classify(struct xdp_md *ctx, const struct mtg_cfg *cfg)
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

		if ((void *)(ip + 1) > end)
			return SLOW;
		ihl = ip->ihl * 4;
		tot = bpf_ntohs(ip->tot_len);
		if (ip->version != 4 || ihl < sizeof(*ip) || tot < ihl || l3 + tot > end)
			return SLOW;
		if (tot > cfg->egress_mtu)
			return SLOW;
		/* Only a first fragment carries the TCP header. */
		if (ip->protocol == IPPROTO_TCP && !(ip->frag_off & bpf_htons(0x1fff))) {
			if (ihl > 60)
				return SLOW;
			return tcp_check(l3 + ihl, end);
		}
		return FAST;
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;
		__u32 tot;

		if ((void *)(ip6 + 1) > end)
			return SLOW;
		tot = sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
		/* payload_len 0: a jumbogram, or a frame we do not understand. */
		if (ip6->version != 6 || tot == sizeof(*ip6) || l3 + tot > end)
			return SLOW;
		if (tot > cfg->egress_mtu)
			return SLOW;
		switch (ip6->nexthdr) {
		case IPPROTO_TCP:
			return tcp_check(ip6 + 1, end);
		case IPPROTO_UDP:
		case IPPROTO_ICMPV6:
		case IPPROTO_ESP:
		case IPPROTO_GRE:
			return FAST;
		default:
			return SLOW; /* extension headers and the rest */
		}
	}
	/* Not IP (ARP, LLDP, ...): the bump in the wire passes it untouched. */
	return FAST;
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

SEC("xdp")
int mtugate_xdp(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u32 queue = ctx->rx_queue_index;
	const struct mtg_cfg *cfg = bpf_map_lookup_elem(&mtg_cfg, &zero);

	count(MTG_STAT_SEEN);
	if (!cfg)
		return XDP_PASS; /* cannot happen: an array always has its element */

	/*
	 * No socket on this queue: no worker runs (it stopped or died; the
	 * kernel removes a closed socket from the map). Every frame then gets
	 * the failure mode, the ones that need no work too: "block" means
	 * nothing crosses.
	 */
	if (!bpf_map_lookup_elem(&mtg_xsks, &queue))
		return fail(cfg);

	if (cfg->steer == MTG_STEER_EXCEPTIONS && (cfg->flags & MTG_FLAG_EGRESS) &&
	    classify(ctx, cfg) == FAST) {
		if (bpf_redirect_map(&mtg_egress, 0, 0) == XDP_REDIRECT) {
			count(MTG_STAT_FAST);
			return XDP_REDIRECT;
		}
		count(MTG_STAT_REDIRECT_ERR);
		return XDP_DROP;
	}
	/* The slow path: the socket of this RX queue, if a worker has one. */
	if (bpf_redirect_map(&mtg_xsks, queue, 0) == XDP_REDIRECT) {
		count(MTG_STAT_STEERED);
		return XDP_REDIRECT;
	}
	return fail(cfg);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
