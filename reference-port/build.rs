//! Puts memory.x and device.x where cortex-m-rt's link.x looks for them: the AN505's memory
//! map (m33/) for that board, else the one the AN385 and AN386 share (an385/). Neither is at
//! the crate's root, where the linker would find it first whatever the board.
fn main() {
    let board = if std::env::var_os("CARGO_FEATURE_MPS2_AN505").is_some() {
        "m33"
    } else {
        "an385"
    };
    fqp_port_build::link_scripts_from(board);
}
