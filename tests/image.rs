//! The container image (`Dockerfile`) runs the binary on `gcr.io/distroless/cc-debian12`, which
//! carries glibc, libgcc, libstdc++, libgomp and OpenSSL 3 (libssl3) — nothing else. The binary
//! must link nothing beyond those (zlib, zstd and libcurl are linked statically), or the pod
//! would fail at start with a missing shared library that no test here could otherwise show.

mod common;

use std::process::Command;

/// Shared libraries distroless/cc-debian12 provides (by soname prefix).
const IN_IMAGE: &[&str] = &[
    "linux-vdso.so",
    "ld-linux-x86-64.so",
    "libc.so",
    "libm.so",
    "libgcc_s.so",
    "libstdc++.so",
    "libgomp.so",
    "libssl.so.3",
    "libcrypto.so.3",
    "libpthread.so",
    "libdl.so",
    "librt.so",
];

#[test]
fn the_binary_links_only_what_the_runtime_image_carries() {
    let out = Command::new("ldd").arg(common::bin()).output().expect("ldd (Debian's libc-bin)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let libs: Vec<&str> = text.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert!(libs.iter().any(|l| l.starts_with("libssl.so.3")), "TLS is linked: {text}");
    let foreign: Vec<&&str> =
        libs.iter().filter(|l| !IN_IMAGE.iter().any(|p| l.starts_with(p) || l.contains("/ld-linux"))).collect();
    assert!(foreign.is_empty(), "not in distroless/cc-debian12: {foreign:?}\n{text}");
}
