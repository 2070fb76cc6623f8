//! Writes the fuzz target's seed corpus (`datapath/fuzz/corpus/pipeline/`):
//! one file per interesting frame, prefixed with the 4 control bytes the
//! fuzz target reads (MTU, policy bits, ingress port).
//!
//! Run: `cargo run -p mtugate-datapath --example fuzz_seeds`.

use etherparse::{PacketBuilder, TcpOptionElement};
use std::path::Path;

fn main() -> std::io::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/pipeline");
    std::fs::create_dir_all(&dir)?;
    let a = [2, 0, 0, 0, 0, 1];
    let b = [2, 0, 0, 0, 0, 2];
    let s4 = [192, 0, 2, 1];
    let d4 = [192, 0, 2, 2];
    let s6 = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let d6 = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    let mss = [
        TcpOptionElement::MaximumSegmentSize(1460),
        TcpOptionElement::SelectiveAcknowledgementPermitted,
    ];
    let mut seeds: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut v = Vec::new();
    PacketBuilder::ethernet2(a, b)
        .ipv4(s4, d4, 64)
        .tcp(1, 2, 3, 4)
        .syn()
        .options(&mss)
        .unwrap()
        .write(&mut v, &[])
        .unwrap();
    seeds.push(("syn4", v));
    let mut v = Vec::new();
    PacketBuilder::ethernet2(a, b)
        .ipv6(s6, d6, 64)
        .tcp(1, 2, 3, 4)
        .syn()
        .options(&mss)
        .unwrap()
        .write(&mut v, &[])
        .unwrap();
    seeds.push(("syn6", v));
    let mut v = Vec::new();
    PacketBuilder::ethernet2(a, b)
        .single_vlan(etherparse::VlanId::try_new(10).unwrap())
        .ipv4(s4, d4, 64)
        .tcp(1, 2, 3, 4)
        .syn()
        .write(&mut v, &[])
        .unwrap();
    seeds.push(("syn4_vlan_no_mss", v));
    let mut v = Vec::new();
    PacketBuilder::ethernet2(a, b)
        .ipv4(s4, d4, 64)
        .udp(1, 2)
        .write(&mut v, &[0x5a; 1472])
        .unwrap();
    seeds.push(("udp4_1500_df", v.clone()));
    v[20] &= !0x40;
    seeds.push(("udp4_1500_nodf_badsum", v));
    let mut v = Vec::new();
    PacketBuilder::ethernet2(a, b)
        .ipv6(s6, d6, 64)
        .udp(1, 2)
        .write(&mut v, &[0x5a; 1452])
        .unwrap();
    seeds.push(("udp6_1500", v));
    let mut v = Vec::new();
    PacketBuilder::ethernet2(a, b)
        .ipv4(s4, d4, 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut v, &[0; 1400])
        .unwrap();
    seeds.push(("ping4_1428", v));
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&a);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&[0; 32]);
    seeds.push(("arp", arp));
    // Issue 12: a Fragmentation Needed and a Packet Too Big crossing
    // toward a host (learning on, a rule in force: see the ctl bits below).
    let mut quote = Vec::new();
    PacketBuilder::ipv4(s4, d4, 64)
        .tcp(40000, 443, 1, 2)
        .write(&mut quote, &[0; 1460])
        .unwrap();
    quote.truncate(28);
    let mut v = Vec::new();
    PacketBuilder::ethernet2(b, a)
        .ipv4(d4, s4, 64)
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1300 },
        ))
        .write(&mut v, &quote)
        .unwrap();
    seeds.push(("icmp4_frag_needed", v));
    let mut quote = Vec::new();
    PacketBuilder::ipv6(s6, d6, 64)
        .tcp(40000, 443, 1, 2)
        .write(&mut quote, &[0; 1440])
        .unwrap();
    quote.truncate(200);
    let mut v = Vec::new();
    PacketBuilder::ethernet2(b, a)
        .ipv6(d6, s6, 64)
        .icmpv6(etherparse::Icmpv6Type::PacketTooBig { mtu: 1280 })
        .write(&mut v, &quote)
        .unwrap();
    seeds.push(("icmp6_packet_too_big", v));
    for (i, (name, frame)) in seeds.iter().enumerate() {
        // MTU 68 + 1332 = 1400, policy bits varied, port 0 or 1.
        let mut ctl = [0x05, 0x34, i as u8, (i & 1) as u8];
        if name.starts_with("icmp") {
            ctl[3] |= 0x0a; // learning on, a rule in force
        }
        let mut data = ctl.to_vec();
        data.extend_from_slice(frame);
        std::fs::write(dir.join(name), data)?;
    }
    println!("wrote {} seeds to {}", seeds.len(), dir.display());
    Ok(())
}
