//! What can go wrong in the lab. Each kind says where the fault is: this machine (a socket, a
//! file, a missing broker), the options the user gave, or a request a test made.

use std::path::PathBuf;

/// A lab service, the lab's PKI or a test's request could not do its part.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A service could not open its socket on this machine.
    #[error("cannot start {service}: {source}\n  fix: check that fqp may listen on this machine's address for the device (network.host)")]
    Start {
        service: String,
        #[source]
        source: std::io::Error,
    },
    /// A file of the lab (its directory, a certificate, a broker's configuration or log).
    #[error("{}: {source}\n  fix: check that the directory is there and that this user may read and write it (--out, the lab directory)", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// rustls refused the certificates a lab TLS server was given.
    #[error("lab TLS server: {0}\n  fix: these are the lab PKI's own certificates, made by fqp: report it")]
    Tls(String),
    /// The lab's PKI could not make, read, write or issue a certificate or key.
    #[error("lab PKI: {0}\n  fix: check that this user may write the lab directory (--lab, $FQP_LAB, ~/.config/fqp/lab); anything else is fqp's fault: report it")]
    Pki(String),
    /// The root CA kept in the lab directory is damaged.
    #[error("the lab root CA in {}: {problem}\n  fix: delete pki-root.crt and pki-root.key there to make a new one (brokers set up with the old one must then be given the new pki-root.crt)", dir.display())]
    RootCa { dir: PathBuf, problem: String },
    /// A broker did not come up, or stopped.
    #[error("{problem}\n  fix: {fix}")]
    Broker { problem: String, fix: String },
    /// An option the user gave (`--broker`, `--broker-ca`) is not usable.
    #[error("{problem}\n  fix: {fix}")]
    Option { problem: String, fix: String },
    /// A test asked for a service's action, and this run has no lab services.
    #[error("no lab services for {0}\n  fix: set network.host in port.toml")]
    NoServices(String),
    /// A test asked for an action the lab does not know.
    #[error("unknown lab action {0:?}\n  fix: the firmware's test kit asks for what this fqp does not offer: build the firmware from the same fqp tree as the harness")]
    UnknownAction(String),
    /// A test's request lacks a field, or has one the lab cannot read.
    #[error("the test's request, field {field}: {problem}\n  fix: the request comes from the test on the device: its test kit and this fqp must come from the same tree")]
    Field { field: String, problem: String },
    /// What the test asked the lab to confirm does not hold.
    #[error("{0}")]
    Refuted(String),
}

impl From<fqp_reports::files::FileError> for LabError {
    /// A private file or the lab's lock: the PKI's files.
    fn from(e: fqp_reports::files::FileError) -> LabError {
        LabError::pki(e)
    }
}

impl LabError {
    /// A service's socket error.
    pub(crate) fn start(service: impl Into<String>) -> impl FnOnce(std::io::Error) -> LabError {
        let service = service.into();
        move |source| LabError::Start { service, source }
    }

    /// A file's error.
    pub(crate) fn file(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LabError {
        let path = path.into();
        move |source| LabError::File { path, source }
    }

    /// A PKI error.
    pub(crate) fn pki(what: impl std::fmt::Display) -> LabError {
        LabError::Pki(what.to_string())
    }
}
