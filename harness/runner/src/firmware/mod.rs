//! A port's firmware: the toolchain that builds it ([`toolchain`]), the build ([`build`](fn@build)),
//! what the image holds of the kernel ([`size`]), and where an address of it is in the
//! source ([`locate`](fn@locate)).

mod boot;
mod build;
mod image;
mod locate;
mod size;
mod toolchain;

pub use boot::{Boot, BOOT_FLASH_WRITE};
pub use build::{build, file_sha256, BuildError};
pub use image::write_raw_binary;
pub use locate::{locate, Located};
pub use size::{kernel_size, KernelSize};
pub use toolchain::{detect, Toolchain, ToolchainError};

use std::path::PathBuf;

/// The targets the kernel has a CPU port for, with the cores they are: what `fqp doctor`
/// checks a port's `build.target` against (the kernel refuses others with `compile_error!`).
pub const SUPPORTED_TARGETS: [(&str, &str); 5] = [
    ("thumbv6m-none-eabi", "Cortex-M0/M0+"),
    ("thumbv7m-none-eabi", "Cortex-M3"),
    ("thumbv7em-none-eabi", "Cortex-M4/M7, soft-float"),
    (
        "thumbv7em-none-eabihf",
        "Cortex-M4F/M7 with the FPU (declare capability fpu)",
    ),
    (
        "thumbv8m.main-none-eabi",
        "Cortex-M33/M35P/M55, the kernel on the non-secure side",
    ),
];

/// A built firmware image.
#[derive(Debug, Clone)]
pub struct Image {
    pub elf: PathBuf,
    pub sha256: String,
    pub size_bytes: u64,
    pub toolchain: String,
    /// The source directory of the kernel crate the image was built with (from cargo's
    /// build messages), to tell the kernel's code from the rest.
    pub kernel_src: Option<PathBuf>,
    /// The boot loader that starts it, and the image signed for it (`[boot]`).
    pub boot: Option<Boot>,
}
