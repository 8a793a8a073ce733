//! Chooses the kernel's CPU port from the target (`cfg(fqp_cpu = "…")`). The target's `cfg`
//! values cannot tell Armv7-M from Armv8-M Mainline, nor Armv8-M Baseline (which has no
//! BASEPRI) from either: the target's name does.
fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    let bare = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none");
    let cpu = if !bare {
        "host"
    } else if target.starts_with("thumbv6m") {
        "armv6m"
    } else if target.starts_with("thumbv7m") || target.starts_with("thumbv7em") {
        "armv7m"
    } else if target.starts_with("thumbv8m.main") {
        "armv8m_main"
    } else {
        "none"
    };
    println!(
        "cargo::rustc-check-cfg=cfg(fqp_cpu, values(\"host\", \"armv6m\", \"armv7m\", \
         \"armv8m_main\", \"none\"))"
    );
    println!("cargo:rustc-cfg=fqp_cpu=\"{cpu}\"");
    println!("cargo:rerun-if-changed=build.rs");
}
