//! `fqp doctor` and `fqp devices`: what this machine can do, before a run finds out the slow
//! way. The doctor checks each thing a qualification needs (for a port, the things *its*
//! manifest needs) and says how to fix what is missing; `devices` lists the debug probes and
//! serial ports in view, and searches probe-rs's chip database.

use fqp_runner::manifest::{self, CommandSection, Flash, Manifest, ProbeRsSection};
use std::path::Path;
use std::process::Command;

/// One finding.
pub struct Finding {
    pub ok: bool,
    pub what: String,
    pub detail: String,
}

fn found(ok: bool, what: &str, detail: impl std::fmt::Display) -> Finding {
    Finding {
        ok,
        what: what.into(),
        detail: detail.to_string(),
    }
}

/// Whether `program` runs (`--version`); its first line of output when it does.
fn version(program: &str) -> std::io::Result<String> {
    let o = Command::new(program).arg("--version").output()?;
    let text = String::from_utf8_lossy(&o.stdout);
    Ok(text.lines().next().unwrap_or("").trim().to_string())
}

/// Runs every check that applies to the port at `port` (or to the reference setup without
/// one).
pub fn doctor(port: Option<&Path>, lab: Option<&Path>) -> Vec<Finding> {
    let mut f = Vec::new();
    let m: Option<Manifest> = match port {
        Some(p) => match manifest::load(p) {
            Ok(m) => {
                f.push(found(true, "manifest", m.path.display().to_string()));
                Some(m)
            }
            Err(e) => {
                f.push(found(false, "manifest", e.to_string()));
                None
            }
        },
        None => None,
    };
    let target = m
        .as_ref()
        .map_or("thumbv7m-none-eabi", |m| m.build.target.as_str());
    f.push(match fqp_runner::firmware::detect(target) {
        Ok(tc) => found(true, "toolchain", format!("{target}: {}", tc.describe())),
        Err(e) => found(false, "toolchain", e),
    });
    f.push(target_finding(target));
    match m.as_ref().map(|m| &m.flash) {
        None => f.push(emulator("qemu-system-arm")),
        Some(Flash::Qemu(q)) => {
            f.push(emulator(&q.binary));
            f.push(machine(&q.binary, &q.machine));
        }
        Some(Flash::ProbeRs(p)) => f.extend(probe(p)),
        Some(Flash::Command(c)) => f.push(flash_tool(c)),
    }
    if let Some(m) = m.as_ref().filter(|m| !m.flash.is_emulated()) {
        f.push(console_finding(m));
    }
    let dir = fqp_runner::sign::lab_dir(lab);
    let none_yet = ["lab-key.pem", "lab-cert.pem"]
        .iter()
        .all(|f| !dir.join(f).exists());
    f.push(if none_yet {
        found(
            true,
            "signing key",
            format!(
                "none in {} yet: a self-signed one is made on the first run",
                dir.display()
            ),
        )
    } else {
        match fqp_reports::sign::LabKey::load_or_create(&dir, "unused") {
            Ok(_) => found(true, "signing key", dir.display().to_string()),
            Err(e) => found(false, "signing key", e),
        }
    });
    f
}

fn console_finding(m: &Manifest) -> Finding {
    if let Some(addr) = &m.serial.tcp {
        use std::net::ToSocketAddrs;
        return match addr.to_socket_addrs() {
            Ok(_) => found(true, "console", format!("TCP {addr}")),
            Err(e) => found(
                false,
                "console",
                format!("TCP {addr}: {e}\n  fix: check serial.tcp"),
            ),
        };
    }
    if let Some(usb) = &m.serial.usb {
        return match fqp_runner::serial::find_usb_port(usb, None, &fqp_runner::serial::list_ports())
        {
            Ok(p) => found(true, "console", p),
            Err(e) => found(false, "console", e),
        };
    }
    match &m.serial.path {
        Some(p) if m.relative(p).exists() => found(true, "console", p.clone()),
        Some(p) => found(
            false,
            "console",
            format!("{p} does not exist\n  fix: plug the board in, or correct serial.path (`fqp devices` lists the ports)"),
        ),
        None => found(true, "console", "per device ([[devices]])"),
    }
}

/// `fqp devices`: the probes and serial ports in view.
pub fn devices() -> Vec<String> {
    let mut out = Vec::new();
    let probes = fqp_runner::probe::list_probes();
    out.push(format!("debug probes ({}):", probes.len()));
    #[cfg(target_os = "linux")]
    if !Path::new("/sys/bus/usb/devices").exists() {
        out.push(
            "  (no USB bus is visible on this machine: a container or VM without USB passthrough)"
                .into(),
        );
    }
    for p in &probes {
        out.push(format!("  {}  {}", p.selector, p.name));
    }
    let ports = fqp_runner::serial::list_ports();
    out.push(format!("serial ports ({}):", ports.len()));
    for p in &ports {
        out.push(format!("  {p}"));
    }
    out
}

/// Whether the emulator `bin` runs.
fn emulator(bin: &str) -> Finding {
    match version(bin) {
        Ok(v) => found(true, "emulator", v),
        Err(e) => found(
            false,
            "emulator",
            format!("{bin}: {e}\n  fix: run scripts/setup.sh, or apt-get install qemu-system-arm"),
        ),
    }
}

/// Whether the kernel has a CPU port for `target`.
fn target_finding(target: &str) -> Finding {
    let supported = fqp_runner::firmware::SUPPORTED_TARGETS;
    match supported.iter().find(|(t, _)| *t == target) {
        Some((t, core)) => found(true, "target", format!("{t} ({core})")),
        None => found(
            false,
            "target",
            format!(
                "{target} has no CPU port in the kernel\n  fix: use one of {} (build.target), or \
                 write the port for this core (port-template/PORTING.md, \"A new CPU \
                 architecture\")",
                supported
                    .iter()
                    .map(|(t, core)| format!("{t} ({core})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
    }
}

/// Whether the installed emulator `bin` offers `machine`.
fn machine(bin: &str, machine: &str) -> Finding {
    let Ok(o) = Command::new(bin).args(["-machine", "help"]).output() else {
        return found(false, "machine", format!("{bin} does not run"));
    };
    let text = String::from_utf8_lossy(&o.stdout);
    match machine_offered(&text, machine) {
        Ok(about) => found(true, "machine", format!("{machine}: {about}")),
        Err(cortex_m) => found(
            false,
            "machine",
            format!(
                "{bin} has no machine {machine:?}\n  fix: set flash.qemu.machine to one it offers; \
                 its Cortex-M machines: {}",
                cortex_m.join(", ")
            ),
        ),
    }
}

/// The description of `machine` in a `-machine help` listing, or the listing's Cortex-M
/// machines.
fn machine_offered(listing: &str, machine: &str) -> Result<String, Vec<String>> {
    let rows: Vec<(&str, &str)> = listing
        .lines()
        .filter_map(|l| l.split_once(char::is_whitespace))
        .map(|(name, about)| (name, about.trim()))
        .collect();
    match rows.iter().find(|(name, _)| *name == machine) {
        Some((_, about)) => Ok(about.to_string()),
        None => Err(rows
            .iter()
            .filter(|(_, about)| about.contains("Cortex-M"))
            .map(|(name, _)| name.to_string())
            .collect()),
    }
}

/// Whether probe-rs knows the chip, and the probe is attached.
fn probe(p: &ProbeRsSection) -> [Finding; 2] {
    let chip = match fqp_runner::probe::check_chip(&p.chip) {
        Ok(name) => found(true, "chip", format!("{name} is in probe-rs's database")),
        Err(e) => found(false, "chip", e),
    };
    let wanted = p
        .probe
        .as_deref()
        .and_then(|s| fqp_runner::probe::parse_selector(s).ok());
    let probe = match fqp_runner::probe::choose(wanted.as_ref(), &fqp_runner::probe::list_probes())
    {
        Ok(sel) => found(true, "probe", sel.to_string()),
        Err(e) => found(false, "probe", e),
    };
    [chip, probe]
}

/// Whether the vendor's flash tool is on PATH.
fn flash_tool(c: &CommandSection) -> Finding {
    let tool = &c.flash[0];
    let on_path = Command::new("sh")
        .args(["-c", "command -v \"$1\"", "sh", tool])
        .output()
        .is_ok_and(|o| o.status.success());
    if on_path {
        found(true, "flash tool", tool.clone())
    } else {
        found(
            false,
            "flash tool",
            format!("{tool} is not installed or not on PATH\n  fix: install the vendor's flash tool, or correct flash.command.flash"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_machine_is_found_in_the_emulators_listing_or_the_cortex_m_ones_are_offered() {
        let listing = "Supported machines are:\nmps2-an385           ARM MPS2 with AN385 FPGA image for Cortex-M3\nmps2-an386           ARM MPS2 with AN386 FPGA image for Cortex-M4\nvirt                 QEMU 7.2 ARM Virtual Machine (alias of virt-7.2)\n";
        assert_eq!(
            machine_offered(listing, "mps2-an386").unwrap(),
            "ARM MPS2 with AN386 FPGA image for Cortex-M4"
        );
        assert_eq!(
            machine_offered(listing, "mps2-an999").unwrap_err(),
            ["mps2-an385", "mps2-an386"]
        );
    }

    #[test]
    fn only_targets_with_a_cpu_port_pass() {
        assert!(target_finding("thumbv7em-none-eabihf").ok);
        assert!(target_finding("thumbv6m-none-eabi").ok);
        let f = target_finding("thumbv8m.base-none-eabi");
        assert!(
            !f.ok && f.detail.contains("thumbv7m-none-eabi (Cortex-M3)"),
            "{}",
            f.detail
        );
    }
}
