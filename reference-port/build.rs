//! Puts memory.x and device.x where cortex-m-rt's link.x looks for them.
fn main() {
    fqp_port_build::link_scripts();
}
