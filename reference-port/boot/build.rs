//! The boot loader's memory map (memory.x, here): the first 64 KiB of code memory.
fn main() {
    fqp_port_build::link_scripts();
}
