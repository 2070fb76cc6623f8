//! Compiles the XDP program (`bpf/mtugate.bpf.c`) with clang for the BPF
//! target, into `$OUT_DIR/mtugate.bpf.o`, which `src/fastpath.rs` embeds.
//! Needs clang and the kernel's UAPI headers (linux-libc-dev) plus
//! libbpf's `bpf_helpers.h` (libbpf-dev): `deploy/deps.sh` installs them.

use std::{env, path::PathBuf, process::Command};

fn main() {
    println!("cargo:rerun-if-changed=bpf/mtugate.bpf.c");
    println!("cargo:rerun-if-changed=bpf/mtugate.h");
    if env::var_os("CARGO_FEATURE_AFXDP").is_none() {
        return;
    }
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR")).join("mtugate.bpf.o");
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".into());
    // <asm/types.h> and friends live in the multiarch include directory.
    let triple = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("aarch64") => "aarch64-linux-gnu",
        Ok("riscv64") => "riscv64-linux-gnu",
        _ => "x86_64-linux-gnu",
    };
    let status = Command::new(&clang)
        .args([
            "-O2", "-g", "-target", "bpf", "-mcpu=v3", "-Wall", "-Werror",
        ])
        .arg(format!("-I/usr/include/{triple}"))
        .args(["-c", "bpf/mtugate.bpf.c", "-o"])
        .arg(&out)
        .status()
        .unwrap_or_else(|e| panic!("running {clang} for the XDP program: {e} (install clang)"));
    assert!(
        status.success(),
        "compiling bpf/mtugate.bpf.c failed (needs clang, linux-libc-dev, libbpf-dev)"
    );
}
