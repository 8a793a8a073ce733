//! What can stop a step of a run, each kind from the module that knows it. The run records
//! it as a problem at the stage where it happened; the command line prints it as it is.

use std::path::PathBuf;

/// A step of a run (load, build, start a device, talk to it, choose its tests) failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
    #[error(transparent)]
    Devices(#[from] crate::device::DevicesError),
    #[error(transparent)]
    Toolchain(#[from] crate::firmware::ToolchainError),
    #[error(transparent)]
    Build(#[from] crate::firmware::BuildError),
    #[error(transparent)]
    Start(#[from] crate::device::StartError),
    #[error(transparent)]
    Session(#[from] crate::session::SessionError),
    #[error(transparent)]
    Selection(#[from] crate::qualify::SelectionError),
    #[error("{}: {source}", .path.display())]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the run was interrupted ({0})")]
    Interrupted(&'static str),
    /// An emulated device did not sync, and the emulator said why (a CPU lockup, code run
    /// outside the memory map): its own lines, from its log.
    #[error("{cause}\n  the emulator said ({}):\n{said}", .log.display())]
    EmulatorSaid {
        cause: crate::session::SessionError,
        said: String,
        log: PathBuf,
    },
    /// A device failed to come up several times in a row; the last attempt's error.
    #[error("{last} (the device failed to start {attempts} times in a row)")]
    Retried { last: Box<Error>, attempts: u32 },
}

/// Lines an emulator writes when the program it runs goes wrong (QEMU's own messages), at most
/// this many quoted.
const EMULATOR_LINES: usize = 6;

impl Error {
    /// The start-up of the port's own code failed (a fault or panic before the test runner
    /// answered, or its boot loader refused the image): the product's fault, and one that
    /// starting again will not cure.
    fn at_start(&self) -> bool {
        match self {
            Error::Session(crate::session::SessionError::AtStart { .. })
            | Error::Session(crate::session::SessionError::BootLoader { .. }) => true,
            Error::Retried { last, .. } => last.at_start(),
            _ => false,
        }
    }

    /// The stage of a device that did not come up: the port's start-up, or the boot.
    pub fn boot_stage(&self) -> fqp_reports::Stage {
        if self.at_start() {
            fqp_reports::Stage::Port
        } else {
            fqp_reports::Stage::Boot
        }
    }

    /// Whether starting the device again may help.
    pub fn worth_retrying(&self) -> bool {
        !self.at_start()
    }

    /// `cause`, with what the emulator logged to `log` of the program going wrong, if it did.
    pub(crate) fn said_by_emulator(
        cause: crate::session::SessionError,
        log: &std::path::Path,
    ) -> Error {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let said = emulator_complaints(&text);
        if said.is_empty() {
            return cause.into();
        }
        Error::EmulatorSaid {
            cause,
            said,
            log: log.to_path_buf(),
        }
    }
}

/// QEMU's own complaints in its log: its prefixed messages (a CPU lockup) and its report of
/// code run outside the memory map.
fn emulator_complaints(log: &str) -> String {
    log.lines()
        .filter(|l| {
            l.starts_with("qemu-system-")
                || l.contains("Lockup")
                || l.starts_with("Trying to execute code outside RAM or ROM")
        })
        .take(EMULATOR_LINES)
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_emulators_complaints_are_quoted_and_its_chatter_is_not() {
        let log = "VNC server running on ::1:5900\nchar device redirected to /dev/pts/3 (label serial0)\nqemu-system-arm: Lockup: can't escalate 3 to HardFault (current priority -1)\n";
        assert_eq!(
            emulator_complaints(log),
            "    qemu-system-arm: Lockup: can't escalate 3 to HardFault (current priority -1)"
        );
        assert_eq!(
            emulator_complaints("char device redirected to /dev/pts/3\n"),
            ""
        );
    }
}
