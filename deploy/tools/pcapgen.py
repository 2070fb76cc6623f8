#!/usr/bin/env python3
"""Writes pcap files of test traffic for the lab (replayed with tcpreplay).

Independent of mtugate's code: headers and checksums are built here with the
standard library only, from RFC 791 / 793 / 768 / 8200.

  pcapgen.py syn  OUT --src-mac M --dst-mac M --dst IP [--sources N] [--per-source K]
                      [--src-net A.B.C.D] [--first-host H] [--mss 1460] [--v6]
  pcapgen.py udp  OUT --src-mac M --dst-mac M --src IP --dst IP --count N [--size BYTES]
                      [--flows F]

`syn`: N distinct sources (hosts H, H+1, ... of --src-net, a /16 or wider is
needed beyond 254), K SYNs each (source ports differ), in round-robin order.
IPv6 (--v6): sources are distinct /64s under 2001:db8:f000::/36.
`udp`: N datagrams of BYTES (L3 length), spread over F flows (source ports).
"""
import argparse
import ipaddress
import struct
import sys


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def mac(s: str) -> bytes:
    return bytes(int(x, 16) for x in s.split(":"))


def ipv4(src: bytes, dst: bytes, proto: int, payload: bytes, ident: int) -> bytes:
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident & 0xFFFF, 0x4000, 64, proto, 0, src, dst)
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + payload


def ipv6(src: bytes, dst: bytes, proto: int, payload: bytes) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), proto, 64, src, dst) + payload


def tcp_syn(src: bytes, dst: bytes, sport: int, dport: int, mss: int, seq: int, v6: bool) -> bytes:
    opts = struct.pack("!BBH", 2, 4, mss)
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, (5 + len(opts) // 4) << 4, 0x02, 64240, 0, 0) + opts
    if v6:
        pseudo = src + dst + struct.pack("!IxxxB", len(hdr), 6)
    else:
        pseudo = src + dst + struct.pack("!BBH", 0, 6, len(hdr))
    c = csum(pseudo + hdr)
    return hdr[:16] + struct.pack("!H", c) + hdr[18:]


def udp(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    hdr = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
    pseudo = src + dst + struct.pack("!BBH", 0, 17, 8 + len(payload))
    c = csum(pseudo + hdr + payload) or 0xFFFF
    return hdr[:6] + struct.pack("!H", c) + payload


def write(path: str, frames) -> int:
    n = 0
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for fr in frames:
            f.write(struct.pack("<IIII", 0, n, len(fr), len(fr)))
            f.write(fr)
            n += 1
    return n


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["syn", "udp"])
    ap.add_argument("out")
    ap.add_argument("--src-mac", required=True)
    ap.add_argument("--dst-mac", required=True)
    ap.add_argument("--dst", required=True)
    ap.add_argument("--src")
    ap.add_argument("--sources", type=int, default=1)
    ap.add_argument("--per-source", type=int, default=1)
    ap.add_argument("--src-net", default="10.0.0.0")
    ap.add_argument("--first-host", type=int, default=1)
    ap.add_argument("--mss", type=int, default=1460)
    ap.add_argument("--dport", type=int, default=80)
    ap.add_argument("--v6", action="store_true")
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--flows", type=int, default=1)
    a = ap.parse_args()
    eth = mac(a.dst_mac) + mac(a.src_mac)
    dst = ipaddress.ip_address(a.dst).packed

    def syns():
        base = int(ipaddress.ip_address(a.src_net))
        for k in range(a.per_source):
            for i in range(a.sources):
                sport = 1024 + (k * 7919 + i) % 60000
                seq = (i * 2654435761 + k) & 0xFFFFFFFF
                if a.v6:
                    src = ipaddress.IPv6Address((0x20010DB8F << 92) | ((i + 1) << 64) | 1).packed
                    seg = tcp_syn(src, dst, sport, a.dport, a.mss, seq, True)
                    yield eth + b"\x86\xdd" + ipv6(src, dst, 6, seg)
                else:
                    src = ipaddress.IPv4Address(base + a.first_host + i).packed
                    seg = tcp_syn(src, dst, sport, a.dport, a.mss, seq, False)
                    yield eth + b"\x08\x00" + ipv4(src, dst, 6, seg, i + k)

    def udps():
        src = ipaddress.ip_address(a.src).packed
        payload = bytes(max(0, a.size - 28))
        for n in range(a.count):
            seg = udp(src, dst, 20000 + n % a.flows, 9, payload)
            yield eth + b"\x08\x00" + ipv4(src, dst, 17, seg, n)

    n = write(a.out, syns() if a.kind == "syn" else udps())
    print(f"{a.out}: {n} frames", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
