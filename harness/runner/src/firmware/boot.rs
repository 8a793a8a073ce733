//! A port with a boot loader (`[boot]`): the boot loader built beside the image, trusting the
//! lab's code-signing key; the image signed with that key (`firmware.fqpimg`, the file
//! signature in `firmware.fqpimg.sig`); and each device's flash as it leaves the factory —
//! erased, the signed image in the primary slot — which the emulator's boot loader reads.

use super::build::{build_crate, Crate};
use super::{BuildError, Toolchain};
use crate::manifest::{BootSection, Manifest};
use fqp_boot::{Area, Layout};
use fqp_signing::{KeyFileSigner, Meta, Signer, Version};
use std::path::{Path, PathBuf};

/// The write unit the harness assumes of an emulated board's flash (fqp-port-cortex-m's
/// `HostFlash`): the layout does not depend on it, only its validity.
pub const BOOT_FLASH_WRITE: u32 = 8;

/// The boot loader of a built image, and what goes in a device's flash.
#[derive(Debug, Clone)]
pub struct Boot {
    /// The boot loader: what the board starts.
    pub elf: PathBuf,
    /// The image signed with the lab's code-signing key.
    pub signed: PathBuf,
    pub version: Version,
    /// The flash: its size, and its layout (status, scratch, slots).
    pub flash_bytes: u32,
    pub layout: Layout,
}

fn fail(problem: impl Into<String>, fix: impl Into<String>) -> BuildError {
    BuildError::Boot {
        problem: problem.into(),
        fix: fix.into(),
    }
}

/// The image's version: `[boot] version`, else the firmware crate's.
fn version(m: &Manifest, b: &BootSection) -> Result<Version, BuildError> {
    if let Some(v) = &b.version {
        // Checked with the manifest.
        return Version::parse(v)
            .ok_or_else(|| fail(format!("version {v:?}"), "major.minor.patch"));
    }
    let toml_path = m.crate_dir().join("Cargo.toml");
    let text = std::fs::read_to_string(&toml_path).map_err(BuildError::file(&toml_path))?;
    let table: toml::Table = text.parse().map_err(|e| {
        fail(
            format!("{}: {e}", toml_path.display()),
            "fix the crate's Cargo.toml",
        )
    })?;
    let v = table
        .get("package")
        .and_then(|p| p.get("version"))
        .and_then(toml::Value::as_str);
    v.and_then(Version::parse).ok_or_else(|| {
        fail(
            format!(
                "{} gives no version of the form major.minor.patch ({v:?})",
                toml_path.display()
            ),
            "set [boot] version in port.toml",
        )
    })
}

/// Builds the boot loader into `out/boot.elf` (in the image's target directory) and signs the
/// image `elf` into `out/firmware.fqpimg`.
pub(super) fn prepare(
    m: &Manifest,
    b: &BootSection,
    tc: &Toolchain,
    target_dir: &Path,
    elf: &Path,
    out: &Path,
    lab: &Path,
) -> Result<Boot, BuildError> {
    let version = version(m, b)?;
    let lab_fix = "check that this user may write the lab directory (--lab, $FQP_LAB)";
    // Made in the lab directory on first use; its files are what signs.
    let pair = fqp_lab::code_signing(lab).map_err(|e| fail(e.to_string(), lab_fix))?;
    let signer =
        KeyFileSigner::from_pkcs8_der(&pair.key_der).map_err(|e| fail(e.to_string(), lab_fix))?;
    let key = hex::encode(signer.public_key());
    let dir = m.relative(&b.crate_dir.to_string_lossy());
    if !dir.join("Cargo.toml").is_file() {
        return Err(fail(
            format!("boot.crate {} has no Cargo.toml", dir.display()),
            "set [boot] crate to the boot loader's crate directory, relative to port.toml",
        ));
    }
    let boot_elf = out.join("boot.elf");
    let krate = Crate {
        dir: &dir,
        bin: None,
        features: &[],
        env: &[("FQP_BOOT_KEY", key)],
    };
    build_crate(m, tc, &krate, target_dir, &boot_elf, &out.join("build.log"))?;
    let bytes = std::fs::read(elf).map_err(BuildError::file(elf))?;
    let (load_address, payload) = fqp_signing::payload_from_elf(&bytes).map_err(|e| {
        fail(
            format!("{}: {e}", elf.display()),
            "the image the boot loader starts is the ELF's loadable bytes in one memory: \
                 link its code and data's load image into memory.x's FLASH",
        )
    })?;
    let meta = Meta {
        version,
        security_counter: 0,
        board: m.port.name.clone(),
        load_address,
    };
    let signed = fqp_signing::sign(&payload, &meta, &signer)
        .map_err(|e| fail(e.to_string(), "check the port's name (at most 32 bytes)"))?;
    let layout = Layout::of(
        b.flash_bytes,
        b.sector_bytes,
        BOOT_FLASH_WRITE,
        Area {
            offset: 0,
            len: b.flash_bytes,
        },
    )
    .ok_or_else(|| {
        fail(
            format!(
                "{} bytes of flash in sectors of {} leave no room for two slots",
                b.flash_bytes, b.sector_bytes
            ),
            "set [boot] flash_bytes to a whole number of sectors, at least 5, enough for two \
             images",
        )
    })?;
    if signed.image.len() > layout.slot_len() as usize {
        return Err(fail(
            format!(
                "the signed image is {} bytes, and a slot of the boot loader's {} bytes of \
                 flash holds {}",
                signed.image.len(),
                b.flash_bytes,
                layout.slot_len()
            ),
            "raise [boot] flash_bytes (two slots, three sectors more), or make the image smaller",
        ));
    }
    let path = out.join("firmware.fqpimg");
    std::fs::write(&path, &signed.image).map_err(BuildError::file(&path))?;
    let sig = out.join("firmware.fqpimg.sig");
    std::fs::write(&sig, signed.file_signature_base64() + "\n").map_err(BuildError::file(&sig))?;
    Ok(Boot {
        elf: boot_elf,
        signed: path,
        version,
        flash_bytes: b.flash_bytes,
        layout,
    })
}

impl Boot {
    /// Writes a device's flash as it leaves the factory: erased (0xFF), the signed image at
    /// the start of the primary slot, no status (a fresh board: its image confirmed). With
    /// `corrupt`, a byte of the image's payload altered (the harness's own test). Its
    /// operation counter (`<path>.ops`) starts at none.
    pub fn write_factory_flash(&self, path: &Path, corrupt: bool) -> std::io::Result<()> {
        let image = std::fs::read(&self.signed)?;
        let mut flash = vec![0xffu8; self.flash_bytes as usize];
        let at = self.layout.primary.offset as usize;
        flash[at..at + image.len()].copy_from_slice(&image);
        if corrupt && image.len() > fqp_signing::HEADER_LEN {
            flash[at + image.len() - 1] ^= 0x01;
        }
        std::fs::write(path, flash)?;
        std::fs::write(crate::qemu::flash_ops_path(path), "")
    }
}
