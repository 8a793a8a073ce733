//! Real boards through a debug probe, with probe-rs used as a library: the chip name checked
//! against probe-rs's target database (with "did you mean" on a typo), the probe chosen by
//! VID:PID[:serial], the image written with a progress bar and read back, the core reset and
//! run.
//!
//! Nothing on the machines that build this project has a probe attached, so what is tested
//! here is everything around the hardware: chip lookup, selectors, and what the user is told
//! when no probe (or more than one) is found.

use probe_rs::config::Registry;
use probe_rs::flashing::{DownloadOptions, ElfLoader, FlashProgress, ProgressEvent};
use probe_rs::probe::list::Lister;
use probe_rs::probe::{DebugProbeSelector, WireProtocol};
use probe_rs::Permissions;
use std::path::Path;

/// A probe as the user writes it: `VID:PID` or `VID:PID:SERIAL`, hex ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    pub vid: u16,
    pub pid: u16,
    pub serial: Option<String>,
}

pub fn parse_selector(s: &str) -> Result<Selector, ProbeError> {
    let mut parts = s.splitn(3, ':');
    let mut id = |what: &str| {
        let p = parts.next().unwrap_or("");
        u16::from_str_radix(p, 16).map_err(|_| ProbeError::Selector {
            what: what.to_string(),
            part: p.to_string(),
            selector: s.to_string(),
        })
    };
    let vid = id("vendor id")?;
    let pid = id("product id")?;
    let serial = parts.next().filter(|x| !x.is_empty()).map(str::to_string);
    Ok(Selector { vid, pid, serial })
}

/// A board could not be reached or written through its debug probe.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{what} {part:?} in {selector:?} is not a hex USB id")]
    Selector {
        what: String,
        part: String,
        selector: String,
    },
    #[error(
        "chip {chip:?} is not in probe-rs's target database ({why}); did you mean {near}?\n  \
         fix: set flash.probe-rs.chip to one of those (`fqp devices --chips {prefix}` searches \
         the database)"
    )]
    UnknownChip {
        chip: String,
        why: String,
        near: String,
        prefix: String,
    },
    #[error(
        "no debug probe found (attached probes: {attached})\n  fix: connect the board's probe; \
         on Linux, install probe-rs's udev rules so that your user can open it; `fqp devices` \
         lists what is visible"
    )]
    NoProbe { attached: String },
    #[error(
        "no debug probe matches {wanted} (attached probes: {attached})\n  fix: check \
         flash.probe-rs.probe (or devices[].probe); `fqp devices` lists what is visible"
    )]
    NoMatch { wanted: Selector, attached: String },
    #[error(
        "{count} debug probes match, which one is the board's is ambiguous: {attached}\n  fix: \
         set flash.probe-rs.probe (or devices[].probe) to VID:PID:SERIAL"
    )]
    Ambiguous { count: usize, attached: String },
    #[error("cannot open probe {selector}: {why}\n  fix: check that no other program (a debugger, probe-rs) holds the probe, its cable and power; `fqp devices` lists what is visible")]
    Open { selector: Selector, why: String },
    #[error("probe {selector} cannot use {wire}: {why}\n  fix: set flash.probe-rs.protocol to what the probe and board support, or leave it out")]
    Wire {
        selector: Selector,
        wire: String,
        why: String,
    },
    #[error("probe {selector} cannot run at {khz} kHz: {why}\n  fix: lower flash.probe-rs.speed_khz, or leave it out")]
    Speed {
        selector: Selector,
        khz: u32,
        why: String,
    },
    #[error(
        "cannot attach to {chip} through probe {selector}: {why}\n  fix: check the wiring and \
         power; try connect_under_reset = true"
    )]
    Attach {
        chip: String,
        selector: Selector,
        why: String,
    },
    #[error(
        "flashing {} failed: {why}\n  fix: check flash.probe-rs.chip and the wiring; try \
         connect_under_reset = true",
        .image.display()
    )]
    Flash {
        image: std::path::PathBuf,
        why: String,
    },
    #[error("cannot reset the core: {0}\n  fix: check the wiring and power; try connect_under_reset = true")]
    Reset(String),
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04x}:{:04x}", self.vid, self.pid)?;
        if let Some(s) = &self.serial {
            write!(f, ":{s}")?;
        }
        Ok(())
    }
}

/// Chip names in probe-rs's database, at most `n`, closest to `name` first.
fn closest_chips(registry: &Registry, name: &str, n: usize) -> Vec<String> {
    let wanted = name.to_ascii_lowercase();
    let mut scored: Vec<(f64, String)> = registry
        .families()
        .iter()
        .flat_map(|f| f.variants.iter().map(|v| v.name.clone()))
        .map(|chip| {
            let score = strsim::jaro_winkler(&wanted, &chip.to_ascii_lowercase());
            (score, chip)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(n).map(|(_, c)| c).collect()
}

/// Checks that `chip` is in probe-rs's target database; returns its canonical name.
pub fn check_chip(chip: &str) -> Result<String, ProbeError> {
    let registry = Registry::from_builtin_families();
    match registry.get_target_by_name(chip) {
        Ok(t) => Ok(t.name),
        Err(e) => {
            let starting: Vec<String> = registry.search_chips(chip).into_iter().take(8).collect();
            let near = if starting.is_empty() {
                closest_chips(&registry, chip, 5)
            } else {
                starting
            };
            Err(ProbeError::UnknownChip {
                chip: chip.to_string(),
                why: e.to_string(),
                near: near.join(", "),
                prefix: chip.get(..chip.len().min(6)).unwrap_or(chip).to_string(),
            })
        }
    }
}

/// Chips whose name starts with `prefix` (case-insensitive, `x` matching any character).
pub fn search_chips(prefix: &str) -> Vec<String> {
    Registry::from_builtin_families().search_chips(prefix)
}

/// A probe attached to this machine.
pub struct ProbeInfo {
    pub name: String,
    pub selector: Selector,
}

pub fn list_probes() -> Vec<ProbeInfo> {
    Lister::new()
        .list_all()
        .into_iter()
        .map(|p| ProbeInfo {
            name: p.identifier.clone(),
            selector: Selector {
                vid: p.vendor_id,
                pid: p.product_id,
                serial: p.serial_number.clone(),
            },
        })
        .collect()
}

/// Which attached probe to use: the one `wanted` names, or the only one attached.
pub fn choose(wanted: Option<&Selector>, attached: &[ProbeInfo]) -> Result<Selector, ProbeError> {
    let listing = || {
        if attached.is_empty() {
            "none".to_string()
        } else {
            attached
                .iter()
                .map(|p| format!("{} ({})", p.selector, p.name))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let matching: Vec<&ProbeInfo> = attached
        .iter()
        .filter(|p| {
            wanted.is_none_or(|w| {
                w.vid == p.selector.vid
                    && w.pid == p.selector.pid
                    && w.serial
                        .as_ref()
                        .is_none_or(|s| Some(s) == p.selector.serial.as_ref())
            })
        })
        .collect();
    match (matching.as_slice(), wanted) {
        ([one], _) => Ok(one.selector.clone()),
        ([], None) => Err(ProbeError::NoProbe {
            attached: listing(),
        }),
        ([], Some(w)) => Err(ProbeError::NoMatch {
            wanted: w.clone(),
            attached: listing(),
        }),
        (_, _) => Err(ProbeError::Ambiguous {
            count: matching.len(),
            attached: listing(),
        }),
    }
}

/// What to do with a board through its probe.
pub struct Job<'a> {
    pub chip: &'a str,
    pub probe: Option<&'a Selector>,
    pub protocol: Option<crate::manifest::WireProtocol>,
    pub speed_khz: Option<u32>,
    pub connect_under_reset: bool,
}

fn open(job: &Job<'_>) -> Result<probe_rs::Session, ProbeError> {
    let chip = check_chip(job.chip)?;
    let selector = choose(job.probe, &list_probes())?;
    let mut probe = Lister::new()
        .open(DebugProbeSelector {
            vendor_id: selector.vid,
            product_id: selector.pid,
            interface: None,
            serial_number: selector.serial.clone(),
        })
        .map_err(|e| ProbeError::Open {
            selector: selector.clone(),
            why: e.to_string(),
        })?;
    if let Some(p) = job.protocol {
        let wire = match p {
            crate::manifest::WireProtocol::Jtag => WireProtocol::Jtag,
            crate::manifest::WireProtocol::Swd => WireProtocol::Swd,
        };
        probe.select_protocol(wire).map_err(|e| ProbeError::Wire {
            selector: selector.clone(),
            wire: wire.to_string(),
            why: e.to_string(),
        })?;
    }
    if let Some(khz) = job.speed_khz {
        probe.set_speed(khz).map_err(|e| ProbeError::Speed {
            selector: selector.clone(),
            khz,
            why: e.to_string(),
        })?;
    }
    let attached = if job.connect_under_reset {
        probe.attach_under_reset(chip.as_str(), Permissions::default())
    } else {
        probe.attach(chip.as_str(), Permissions::default())
    };
    attached.map_err(|e| ProbeError::Attach {
        chip,
        selector,
        why: e.to_string(),
    })
}

/// Writes `image` (ELF), reads it back when `verify`, then resets the core and lets it run.
pub fn flash(job: &Job<'_>, image: &Path, verify: bool, progress: bool) -> Result<(), ProbeError> {
    let mut session = open(job)?;
    let bar = progress.then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg:>9} [{bar:40}] {bytes}/{total_bytes} ({eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let mut options = DownloadOptions::default();
    options.verify = verify;
    options.progress = FlashProgress::new(|event| {
        let Some(b) = &bar else { return };
        match event {
            ProgressEvent::AddProgressBar { operation, total } => {
                b.set_message(format!("{operation:?}"));
                b.set_length(total.unwrap_or(0));
                b.set_position(0);
            }
            ProgressEvent::Started(op) => b.set_message(format!("{op:?}")),
            ProgressEvent::Progress { size, .. } => b.inc(size),
            ProgressEvent::Finished(_) | ProgressEvent::Failed(_) => {}
            _ => {}
        }
    });
    probe_rs::flashing::download_file_with_options(
        &mut session,
        image,
        ElfLoader(Default::default()),
        options,
    )
    .map_err(|e| ProbeError::Flash {
        image: image.to_path_buf(),
        why: e.to_string(),
    })?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    reset_session(&mut session)
}

/// Resets the core and lets it run, without writing the flash.
pub fn reset(job: &Job<'_>) -> Result<(), ProbeError> {
    reset_session(&mut open(job)?)
}

fn reset_session(session: &mut probe_rs::Session) -> Result<(), ProbeError> {
    session
        .core(0)
        .and_then(|mut c| c.reset())
        .map_err(|e| ProbeError::Reset(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse_and_print() {
        let s = parse_selector("0483:374b:066DFF49").unwrap();
        assert_eq!((s.vid, s.pid), (0x0483, 0x374b));
        assert_eq!(s.serial.as_deref(), Some("066DFF49"));
        assert_eq!(s.to_string(), "0483:374b:066DFF49");
        assert_eq!(parse_selector("1366:0105").unwrap().serial, None);
        assert!(parse_selector("stlink")
            .unwrap_err()
            .to_string()
            .contains("not a hex USB id"));
        assert!(parse_selector("0483").is_err());
    }

    #[test]
    fn known_chips_are_found_and_typos_get_suggestions() {
        assert_eq!(check_chip("STM32F411RETx").unwrap(), "STM32F411RETx");
        assert_eq!(check_chip("nRF52840_xxAA").unwrap(), "nRF52840_xxAA");
        // A typo in the family: nothing starts with it, the closest names are offered.
        let e = check_chip("STM32F411RTEx").unwrap_err().to_string();
        assert!(e.contains("did you mean STM32F411RE,"), "{e}");
        // …and what is suggested is accepted.
        assert!(check_chip("STM32F411RE").is_ok());
        let e = check_chip("nrf52480").unwrap_err().to_string();
        assert!(e.contains("nRF52840_xxAA"), "{e}");
        assert!(!search_chips("STM32F411").is_empty());
    }

    fn info(sel: &str, name: &str) -> ProbeInfo {
        ProbeInfo {
            name: name.into(),
            selector: parse_selector(sel).unwrap(),
        }
    }

    #[test]
    fn the_probe_is_chosen_or_the_user_is_told_why_not() {
        // Nothing attached: that is what this machine has, checked for real too.
        let e = choose(None, &list_probes()).unwrap_err().to_string();
        assert!(
            e.contains("no debug probe found") && e.contains("udev"),
            "{e}"
        );
        let two = [
            info("0483:374b:A1", "ST-Link V2-1"),
            info("0483:374b:B2", "ST-Link V2-1"),
        ];
        let e = choose(None, &two).unwrap_err().to_string();
        assert!(
            e.contains("2 debug probes match") && e.contains("VID:PID:SERIAL"),
            "{e}"
        );
        let want = parse_selector("0483:374b:B2").unwrap();
        assert_eq!(
            choose(Some(&want), &two).unwrap().serial.as_deref(),
            Some("B2")
        );
        let want = parse_selector("1366:0105").unwrap();
        let e = choose(Some(&want), &two).unwrap_err().to_string();
        assert!(
            e.contains("no debug probe matches 1366:0105") && e.contains("0483:374b:A1"),
            "{e}"
        );
    }

    #[test]
    fn flashing_without_a_probe_fails_with_the_fix() {
        let job = Job {
            chip: "STM32F411RETx",
            probe: None,
            protocol: None,
            speed_khz: None,
            connect_under_reset: false,
        };
        let e = flash(&job, Path::new("/nonexistent.elf"), true, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no debug probe found"), "{e}");
        let job = Job {
            chip: "STM32F999",
            ..job
        };
        let e = reset(&job).unwrap_err().to_string();
        assert!(e.contains("did you mean"), "{e}");
    }
}
