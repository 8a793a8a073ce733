//! Signing results with the lab's key (kept in the lab directory, made on first use), and the
//! certificate results are checked against.

use fqp_reports::sign::LabKey;
use std::path::{Path, PathBuf};

/// Results could not be signed, or no signer can be trusted.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("cannot sign the results: {0}")]
    Sign(#[from] fqp_reports::sign::KeyError),
    #[error(
        "no trusted signer: this machine has no lab certificate ({})\n  fix: pass --trust with \
         the certificate (or CA) of the lab whose results these are, or --lab with its lab \
         directory",
        .0.display()
    )]
    NoTrust(PathBuf),
    #[error("{}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The lab directory: `--lab`, else `$FQP_LAB`, else `$XDG_CONFIG_HOME/fqp/lab`, else
/// `~/.config/fqp/lab`.
pub fn lab_dir(given: Option<&Path>) -> PathBuf {
    if let Some(d) = given {
        return d.to_path_buf();
    }
    if let Some(d) = std::env::var_os("FQP_LAB") {
        return d.into();
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    config.join("fqp").join("lab")
}

/// Signs `results` (writing `<results>.sig`) with the key in `lab`, made on first use.
pub fn sign_results(results: &Path, lab: &Path) -> Result<(), SignError> {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "this machine".into());
    let (key, made) =
        LabKey::load_or_create(lab, &format!("fqp lab on {host}")).map_err(SignError::Sign)?;
    if made {
        tracing::info!(
            "made a self-signed lab key in {} (replace lab-key.pem and lab-cert.pem with your lab's own to sign as the lab)",
            lab.display()
        );
    }
    let sig = key.sign_file(results).map_err(SignError::Sign)?;
    tracing::debug!(sig = %sig.display(), "results signed");
    Ok(())
}

/// What a signer is checked against: a certificate (PEM), and what it is, for messages.
pub struct Trusted {
    pub pem: String,
    pub what: String,
}

/// The certificate signers are checked against: `trust` when given, else the lab's own
/// (`lab-cert.pem` in `lab`). No certificate, no trust: an error naming both ways to give one.
pub fn trusted_pem(trust: Option<&Path>, lab: &Path) -> Result<Trusted, SignError> {
    let path = match trust {
        Some(p) => p.to_path_buf(),
        None => lab.join("lab-cert.pem"),
    };
    match std::fs::read_to_string(&path) {
        Ok(pem) => Ok(Trusted {
            pem,
            what: match trust {
                Some(_) => format!("the --trust certificate {}", path.display()),
                None => format!("this lab's certificate {}", path.display()),
            },
        }),
        Err(e) if trust.is_none() && e.kind() == std::io::ErrorKind::NotFound => {
            Err(SignError::NoTrust(path))
        }
        Err(source) => Err(SignError::Read { path, source }),
    }
}
