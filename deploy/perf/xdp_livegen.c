// The lab's XDP-fed generator: run by `mtugate-perf livegen` with
// BPF_PROG_TEST_RUN in live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES,
// Linux 5.18+). The kernel copies the given frame into page-pool pages and
// runs this program on each; the redirect sends it out of the client's
// eth0 as an xdp_frame, so the veth peer (the DUT's in0) receives raw
// frames with no socket buffer behind them, as from a NIC's receive ring.
//
// Pacing: with cfg.gap_ns set, a frame leaves only when its slot is due
// (at most BURST slots of credit after a pause); the others are dropped
// here (XDP_DROP recycles the page at once, on this CPU) and counted as
// held. Without pacing the veth's ring refuses what the device cannot
// take, and those frames go back to this run's page pool through its
// shared ring, which the device's CPU, returning the frames it forwarded,
// contends for.
//
// The pages are recycled without being rewritten: a forwarder that
// rewrote the MAC addresses and the TTL in place (the kernel, mtugate, any
// XDP router) would hand this generator its own edits back. So every frame
// that leaves gets the first 64 bytes of the original again (every
// profile's frame is at least that long: Ethernet, IP and UDP headers and
// the start of the stamp).
//
// Stamps (cfg.stamp_off, latency probes): the sequence number (the frame
// count) and the transmit time, CLOCK_REALTIME as the receiver's socket
// timestamps are (TAI less cfg.tai_offset_ns, which livegen measured), big
// endian after the magic, as pkt.rs writes them. IPv4 only: livegen
// clears the UDP checksum of the template (optional in IPv4).
//
// Build: clang -O2 -g -target bpf -c xdp_livegen.c -o xdp_livegen.o
#include <linux/bpf.h>

#define SEC(n) __attribute__((section(n), used))
#define HEAD 64
#define BURST 32

static long (*bpf_redirect)(__u32 ifindex, __u64 flags) = (void *)23;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;
static __u64 (*bpf_ktime_get_tai_ns)(void) = (void *)208; // Linux 6.1+

// Set by livegen before loading (.rodata): one struct, so that its layout
// is the one livegen writes (out_ifindex at 0, stamp_off at 4, gap_ns at
// 8, tai_offset_ns at 16, head at 24).
struct livegen_cfg {
    __u32 out_ifindex;
    __u32 stamp_off; // 0: no stamps
    __u64 gap_ns;    // 0: flat out
    __u64 tai_offset_ns;
    __u64 head[HEAD / 8];
};
const volatile struct livegen_cfg cfg = {0};

// Read by livegen after the run (.bss; frames at 0, held at 8). Plain
// updates: a test run executes on one CPU, the caller's.
struct livegen_state {
    __u64 frames;  // redirected
    __u64 held;    // dropped by the pacing
    __u64 next_ns; // the next slot
};
struct livegen_state st = {0};

SEC("xdp")
int xdp_livegen(struct xdp_md *ctx)
{
    __u64 *p = (__u64 *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;

    if (cfg.gap_ns) {
        __u64 now = bpf_ktime_get_ns();
        __u64 floor = now - BURST * cfg.gap_ns;

        if (now < st.next_ns) {
            st.held++;
            return XDP_DROP;
        }
        st.next_ns = (st.next_ns > floor ? st.next_ns : floor) + cfg.gap_ns;
    }
    if ((void *)(p + HEAD / 8) > end)
        return XDP_ABORTED;
#pragma unroll
    for (int i = 0; i < HEAD / 8; i++)
        p[i] = cfg.head[i];
    if (cfg.stamp_off) {
        unsigned char *s = (unsigned char *)p + (cfg.stamp_off & (HEAD - 1));
        __u64 seq = __builtin_bswap64(st.frames);
        __u64 ts = __builtin_bswap64(bpf_ktime_get_tai_ns() - cfg.tai_offset_ns);

        if ((void *)(s + 20) > end)
            return XDP_ABORTED;
        __builtin_memcpy(s + 4, &seq, 8);
        __builtin_memcpy(s + 12, &ts, 8);
    }
    st.frames++;
    return bpf_redirect(cfg.out_ifindex, 0);
}

char _license[] SEC("license") = "GPL";
