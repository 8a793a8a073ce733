//! Puts memory.x and device.x where cortex-m-rt's link.x looks for them: the AN505's memory
//! map (m33/) for that board; the AN385's under its boot loader (an385-ota/, feature `ota`);
//! else the one the AN385 and AN386 share (an385/). None is at the crate's root, where the
//! linker would find it first whatever the board.
fn main() {
    let feature = |f: &str| std::env::var_os(format!("CARGO_FEATURE_{f}")).is_some();
    let board = if feature("MPS2_AN505") {
        "m33"
    } else if feature("OTA") {
        "an385-ota"
    } else {
        "an385"
    };
    fqp_port_build::link_scripts_from(board);
}
