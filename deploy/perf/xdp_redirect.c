// The fast-path ceiling of the router lab: an XDP program on the DUT's in0
// that does the least a forwarder can do: the next hop's and out0's MAC
// addresses written, redirected to out0. No parsing beyond the EtherType,
// no lookup, no TTL: what mtugate's XDP stage does per frame, minus
// mtugate. mtugate-perf compare (system `xdp-redirect`) compiles it with
// the lab's values and attaches it with ip(8):
//
// Build: clang -O2 -target bpf -DOUT_IFINDEX=3 -DDMAC=0x02,... -DSMAC=0x02,... \
//          -c xdp_redirect.c -o xdp_redirect.o
// Load:  ip link set dev in0 xdpdrv obj xdp_redirect.o sec xdp
#include <linux/bpf.h>

#define SEC(n) __attribute__((section(n), used))

static long (*bpf_redirect)(__u32 ifindex, __u64 flags) = (void *)23;

SEC("xdp")
int xdp_redirect(struct xdp_md *ctx)
{
    unsigned char *p = (unsigned char *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    static const unsigned char dmac[6] = {DMAC};
    static const unsigned char smac[6] = {SMAC};

    if ((void *)(p + 14) > end)
        return XDP_PASS;
    /* ARP and the rest: the kernel's (the lab still resolves neighbours). */
    if (!((p[12] == 0x08 && p[13] == 0x00) || (p[12] == 0x86 && p[13] == 0xdd)))
        return XDP_PASS;
    __builtin_memcpy(p, dmac, 6);
    __builtin_memcpy(p + 6, smac, 6);
    return bpf_redirect(OUT_IFINDEX, 0);
}

char _license[] SEC("license") = "GPL";
