#!/usr/bin/env python3
"""Legitimate TCP connections through a device under test, for the SYN
flood scenario of `mtugate-perf compare`.

  tcp_probe.py server PORT SECONDS OUT.json   (in the server's namespace)
  tcp_probe.py client ADDR PORT RATE SECONDS OUT.json   (in the client's)

The server listens with TCP_SAVE_SYN and reads, for every connection it
accepts, the SYN exactly as it arrived (TCP_SAVED_SYN): the MSS option
there is what the device under test let through. The client opens RATE
connections a second (each sends a line and waits for the echo), bounded
by SECONDS; a connection that does not complete in 1 s counts as failed.
"""
import json
import socket
import sys
import time

TCP_SAVE_SYN = 27
TCP_SAVED_SYN = 28


def mss_of_saved_syn(b):
    if not b:
        return None
    v = b[0] >> 4
    if v == 4:
        off = (b[0] & 0x0F) * 4
    elif v == 6:
        off = 40  # the lab's SYNs carry no extension headers
    else:
        return None
    tcp = b[off:]
    if len(tcp) < 20:
        return None
    doff = (tcp[12] >> 4) * 4
    i = 20
    while i < doff and i < len(tcp):
        kind = tcp[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(tcp):
            break
        ln = tcp[i + 1]
        if ln < 2:
            break
        if kind == 2 and ln == 4 and i + 4 <= len(tcp):
            return (tcp[i + 2] << 8) | tcp[i + 3]
        i += ln
    return None


def server(port, seconds, out):
    fam = socket.AF_INET6
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.IPPROTO_TCP, TCP_SAVE_SYN, 1)
    s.bind(("::", port))
    s.listen(1024)
    s.settimeout(0.2)
    end = time.monotonic() + seconds
    accepted = 0
    mss = {}
    print("listening", flush=True)
    while time.monotonic() < end:
        try:
            c, _ = s.accept()
        except socket.timeout:
            continue
        accepted += 1
        try:
            syn = c.getsockopt(socket.IPPROTO_TCP, TCP_SAVED_SYN, 512)
            m = mss_of_saved_syn(syn)
        except OSError:
            m = None
        mss[str(m)] = mss.get(str(m), 0) + 1
        try:
            c.settimeout(0.5)
            data = c.recv(64)
            c.sendall(data)
        except OSError:
            pass
        c.close()
    json.dump({"accepted": accepted, "mss": mss}, open(out, "w"))


def client(addr, port, rate, seconds, out):
    end = time.monotonic() + seconds
    gap = 1.0 / rate
    nxt = time.monotonic()
    attempted = completed = 0
    times = []
    while time.monotonic() < end:
        now = time.monotonic()
        if now < nxt:
            time.sleep(nxt - now)
        nxt += gap
        attempted += 1
        t0 = time.monotonic()
        try:
            c = socket.create_connection((addr, port), timeout=1.0)
            c.sendall(b"mtugate-perf\n")
            if c.recv(64):
                completed += 1
                times.append((time.monotonic() - t0) * 1000.0)
            c.close()
        except OSError:
            pass
    times.sort()
    p50 = times[len(times) // 2] if times else None
    json.dump({"attempted": attempted, "completed": completed, "p50_ms": p50}, open(out, "w"))


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(int(sys.argv[2]), float(sys.argv[3]), sys.argv[4])
    elif sys.argv[1] == "client":
        client(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), sys.argv[6])
    else:
        sys.exit("usage: tcp_probe.py server|client ...")
