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
    /// A device failed to come up several times in a row; the last attempt's error.
    #[error("{last} (the device failed to start {attempts} times in a row)")]
    Retried { last: Box<Error>, attempts: u32 },
}
