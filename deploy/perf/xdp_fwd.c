// The ceiling of a fast path that asks the kernel's FIB, in the router
// lab: an XDP program on the DUT's in0 that does what any such forwarder
// must and nothing more. IPv4 and IPv6 only; bpf_fib_lookup (route and
// neighbour); TTL / hop limit decremented (the IPv4 checksum updated,
// RFC 1624); the next hop's and the egress port's MAC addresses written;
// redirected to the egress the FIB named. Anything else (no neighbour, for
// this host, TTL <= 1, ARP...) goes to the kernel. What mtugate's router
// mode does per transit frame, minus mtugate: no counters, no SYN or MTU
// checks, no policer, no route mirror. mtugate-perf compare (system
// `xdp-fwd`) attaches it with ip(8):
//
// Build: clang -O2 -target bpf -c xdp_fwd.c -o xdp_fwd.o
// Load:  ip link set dev in0 xdpdrv obj xdp_fwd.o sec xdp
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>

#define SEC(n) __attribute__((section(n), used))
#define AF_INET_ 2
#define AF_INET6_ 10

static long (*bpf_redirect)(__u32 ifindex, __u64 flags) = (void *)23;
static long (*bpf_fib_lookup)(void *ctx, struct bpf_fib_lookup *params, int plen,
                              __u32 flags) = (void *)69;

SEC("xdp")
int xdp_fwd(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    struct bpf_fib_lookup fib = {};
    struct iphdr *ip;
    struct ipv6hdr *ip6;
    int v6 = 0;

    if ((void *)(eth + 1) > end)
        return XDP_PASS;
    if (eth->h_proto == __builtin_bswap16(ETH_P_IP)) {
        ip = (void *)(eth + 1);
        if ((void *)(ip + 1) > end || ip->ttl <= 1)
            return XDP_PASS;
        fib.family = AF_INET_;
        fib.tos = ip->tos;
        fib.l4_protocol = ip->protocol;
        fib.tot_len = __builtin_bswap16(ip->tot_len);
        fib.ipv4_src = ip->saddr;
        fib.ipv4_dst = ip->daddr;
    } else if (eth->h_proto == __builtin_bswap16(ETH_P_IPV6)) {
        ip6 = (void *)(eth + 1);
        if ((void *)(ip6 + 1) > end || ip6->hop_limit <= 1)
            return XDP_PASS;
        v6 = 1;
        fib.family = AF_INET6_;
        fib.l4_protocol = ip6->nexthdr;
        fib.tot_len = __builtin_bswap16(ip6->payload_len) + sizeof(*ip6);
        __builtin_memcpy(fib.ipv6_src, &ip6->saddr, 16);
        __builtin_memcpy(fib.ipv6_dst, &ip6->daddr, 16);
    } else {
        return XDP_PASS;
    }
    fib.ifindex = ctx->ingress_ifindex;
    if (bpf_fib_lookup(ctx, &fib, sizeof(fib), 0) != BPF_FIB_LKUP_RET_SUCCESS)
        return XDP_PASS;
    /* Bounds again: the verifier forgets them over the helper call. */
    data = (void *)(long)ctx->data;
    end = (void *)(long)ctx->data_end;
    eth = data;
    if (v6) {
        ip6 = (void *)(eth + 1);
        if ((void *)(ip6 + 1) > end)
            return XDP_PASS;
        ip6->hop_limit--;
    } else {
        __u32 sum;

        ip = (void *)(eth + 1);
        if ((void *)(ip + 1) > end)
            return XDP_PASS;
        sum = (__u32)ip->check + __builtin_bswap16(0x0100);
        ip->check = (__u16)(sum + (sum >> 16));
        ip->ttl--;
    }
    __builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
    __builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);
    return bpf_redirect(fib.ifindex, 0);
}

char _license[] SEC("license") = "GPL";
