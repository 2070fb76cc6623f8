// The benchmark sink on the server's eth0: drops the generator's traffic
// before the stack sees it, so the sink costs as little as the lab allows.
// The interface's rx_packets counter, read by mtugate-perf compare, counts
// every frame before either program runs.
//
// Two entry points over one classifier (compare's --sink picks one):
// - "tc" (tc ingress, the default): the frame has become an skb first, as
//   the kernel's own receive builds it.
// - "xdp" (native XDP on the veth): the frame is dropped in the veth's
//   NAPI poll before any skb exists; a frame redirected by XDP into the
//   veth then never becomes an skb at all. The closer model of a NIC whose
//   transmit costs the forwarder nothing but the descriptor; it is the
//   same sink for every system of a run.
//
// Dropped: IPv4/IPv6 UDP or TCP to port 9 (discard, the generator's default
// destination), and IPv4 non-first fragments (of those datagrams; the lab
// carries no other fragments). Everything else (ARP, neighbour discovery,
// latency probes to another port, real TCP connections) goes on.
//
// Build: clang -O2 -target bpf -c sink_drop.c -o sink_drop.o
// Load:  tc qdisc add dev eth0 clsact
//        tc filter add dev eth0 ingress bpf direct-action obj sink_drop.o sec tc
//   or:  ip link set dev eth0 xdpdrv obj sink_drop.o sec xdp
#include <linux/bpf.h>
#include <linux/pkt_cls.h>

#define SEC(n) __attribute__((section(n), used))
#define DISCARD_PORT 9

static __attribute__((always_inline)) int port_is_discard(unsigned char *l4, void *end)
{
    if ((void *)(l4 + 4) > end)
        return 0;
    return l4[2] == 0 && l4[3] == DISCARD_PORT;
}

// 1: the generator's traffic (drop it); 0: anything else (let it pass).
static __attribute__((always_inline)) int is_generated(unsigned char *p, void *end)
{
    if ((void *)(p + 14) > end)
        return 0;
    unsigned int et = (p[12] << 8) | p[13];
    if (et == 0x0800) {
        unsigned char *ip = p + 14;
        if ((void *)(ip + 20) > end)
            return 0;
        if (((ip[6] & 0x1f) | ip[7]) != 0)
            return 1; /* non-first fragment */
        if (ip[9] != 6 && ip[9] != 17)
            return 0;
        unsigned int ihl = (ip[0] & 0x0f) * 4;
        if (ihl < 20 || ihl > 60)
            return 0;
        return port_is_discard(ip + ihl, end);
    }
    if (et == 0x86dd) {
        unsigned char *ip = p + 14;
        if ((void *)(ip + 40) > end)
            return 0;
        if (ip[6] != 6 && ip[6] != 17)
            return 0;
        return port_is_discard(ip + 40, end);
    }
    return 0;
}

SEC("tc")
int sink_drop(struct __sk_buff *skb)
{
    unsigned char *p = (unsigned char *)(long)skb->data;
    void *end = (void *)(long)skb->data_end;
    return is_generated(p, end) ? TC_ACT_SHOT : TC_ACT_OK;
}

SEC("xdp")
int sink_drop_xdp(struct xdp_md *ctx)
{
    unsigned char *p = (unsigned char *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    return is_generated(p, end) ? XDP_DROP : XDP_PASS;
}

char _license[] SEC("license") = "GPL";
