// The benchmark sink: a tc ingress program on the server's eth0 that drops
// the generator's traffic before the stack sees it, so the sink costs
// (almost) nothing. The interface's rx_packets counter, read by
// mtugate-perf compare, counts every frame before tc runs.
//
// Dropped: IPv4/IPv6 UDP or TCP to port 9 (discard, the generator's default
// destination), and IPv4 non-first fragments (of those datagrams; the lab
// carries no other fragments). Everything else (ARP, neighbour discovery,
// latency probes to another port, real TCP connections) goes on.
//
// Build: clang -O2 -target bpf -c sink_drop.c -o sink_drop.o
// Load:  tc qdisc add dev eth0 clsact
//        tc filter add dev eth0 ingress bpf direct-action obj sink_drop.o sec tc
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

SEC("tc")
int sink_drop(struct __sk_buff *skb)
{
    unsigned char *p = (unsigned char *)(long)skb->data;
    void *end = (void *)(long)skb->data_end;
    if ((void *)(p + 14) > end)
        return TC_ACT_OK;
    unsigned int et = (p[12] << 8) | p[13];
    if (et == 0x0800) {
        unsigned char *ip = p + 14;
        if ((void *)(ip + 20) > end)
            return TC_ACT_OK;
        if (((ip[6] & 0x1f) | ip[7]) != 0)
            return TC_ACT_SHOT; /* non-first fragment */
        if (ip[9] != 6 && ip[9] != 17)
            return TC_ACT_OK;
        unsigned int ihl = (ip[0] & 0x0f) * 4;
        if (ihl < 20 || ihl > 60)
            return TC_ACT_OK;
        return port_is_discard(ip + ihl, end) ? TC_ACT_SHOT : TC_ACT_OK;
    }
    if (et == 0x86dd) {
        unsigned char *ip = p + 14;
        if ((void *)(ip + 40) > end)
            return TC_ACT_OK;
        if (ip[6] != 6 && ip[6] != 17)
            return TC_ACT_OK;
        return port_is_discard(ip + 40, end) ? TC_ACT_SHOT : TC_ACT_OK;
    }
    return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
