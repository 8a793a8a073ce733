//! Signing results with the lab's key, and `fqp verify`: is this result file the one a
//! harness wrote (signature), about this image (hash), and does its verdict follow from its
//! tests (recomputed)? A certification body runs it on what a vendor hands in.

use fqp_reports::sign::{self, LabKey};
use fqp_reports::Run;
use std::path::{Path, PathBuf};

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
pub fn sign_results(results: &Path, lab: &Path) -> Result<(), String> {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "this machine".into());
    let (key, made) = LabKey::load_or_create(lab, &format!("fqp lab on {host}"))
        .map_err(|e| format!("cannot sign the results: {e}"))?;
    if made {
        tracing::info!(
            "made a self-signed lab key in {} (replace lab-key.pem and lab-cert.pem with your lab's own to sign as the lab)",
            lab.display()
        );
    }
    let sig = key
        .sign_file(results)
        .map_err(|e| format!("cannot sign the results: {e}"))?;
    tracing::debug!(sig = %sig.display(), "results signed");
    Ok(())
}

/// What `fqp verify` found: one line per check, and whether all passed.
pub struct Verification {
    pub lines: Vec<String>,
    pub ok: bool,
}

/// What a signer is checked against: a certificate (PEM), and what it is, for messages.
pub struct Trusted {
    pub pem: String,
    pub what: String,
}

/// The certificate signers are checked against: `trust` when given, else the lab's own
/// (`lab-cert.pem` in `lab`). No certificate, no trust: an error naming both ways to give one.
pub fn trusted_pem(trust: Option<&Path>, lab: &Path) -> Result<Trusted, String> {
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
        Err(e) if trust.is_none() && e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "no trusted signer: this machine has no lab certificate ({})\n  fix: pass --trust with the certificate (or CA) of the lab whose results these are, or --lab with its lab directory",
            path.display()
        )),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Checks the signature (against `trusted`, else the lab's certificate in `lab`), the image
/// hash, the suite descriptions and the verdict of the result file at `path`.
pub fn verify(
    path: &Path,
    trusted: Option<&Path>,
    lab: &Path,
    image: Option<&Path>,
) -> Verification {
    let mut v = Verification {
        lines: Vec::new(),
        ok: true,
    };
    let mut check = |what: &str, r: Result<String, String>| match r {
        Ok(s) => v.lines.push(format!("ok    {what}: {s}")),
        Err(e) => {
            v.lines.push(format!("FAIL  {what}: {e}"));
            v.ok = false;
        }
    };
    match trusted_pem(trusted, lab) {
        Ok(t) => check(
            "signature",
            sign::verify_file(path, &t.pem).map(|s| {
                format!(
                    "signed by {} (certificate sha256 {}), trusted as {}",
                    s.subject, s.fingerprint, t.what
                )
            }),
        ),
        Err(e) => check("signature", Err(e)),
    }
    let run = match fqp_reports::read_json(path) {
        Ok(r) => r,
        Err(e) => {
            check("results", Err(e));
            return v;
        }
    };
    check("image", image_matches(&run, image));
    check("suites", suites_match(&run));
    check("verdict", verdict_follows(&run));
    v
}

/// The results were judged by this harness's suite descriptions.
fn suites_match(run: &Run) -> Result<String, String> {
    let ours = fqp_suites::Suites::builtin().reference();
    match &run.suites {
        Some(r) if *r == ours => Ok(format!("version {} (sha256 {})", r.version, r.sha256)),
        Some(r) => Err(format!(
            "judged by suite descriptions version {} (sha256 {}); this fqp has version {} (sha256 {}): verify with the harness version that ran it ({})",
            r.version, r.sha256, ours.version, ours.sha256, run.harness
        )),
        None => Err("the results name no suite descriptions".into()),
    }
}

fn image_matches(run: &Run, image: Option<&Path>) -> Result<String, String> {
    let Some(fw) = &run.firmware else {
        return Ok("none recorded (the run ended before an image was built)".into());
    };
    let path = image.map_or_else(|| PathBuf::from(&fw.image), Path::to_path_buf);
    let actual = crate::firmware::file_sha256(&path)
        .map_err(|e| format!("{e} (pass --image with the image that was qualified)"))?;
    if actual == fw.sha256 {
        Ok(format!("{} has sha256 {actual}", path.display()))
    } else {
        Err(format!(
            "{} has sha256 {actual}, the results are about {}",
            path.display(),
            fw.sha256
        ))
    }
}

fn verdict_follows(run: &Run) -> Result<String, String> {
    let verdict = run.decide();
    if verdict != run.verdict {
        return Err(format!(
            "the file says {}, its tests say {}",
            run.verdict.as_str(),
            verdict.as_str()
        ));
    }
    if run.findings != run.classify() {
        return Err("the findings do not follow from the tests and problems in the file".into());
    }
    let q = fqp_suites::Suites::builtin().qualification(run);
    if run.qualification.as_ref() != Some(&q) {
        return Err(format!(
            "the qualification statement does not follow from the tests: recomputed {} ({})",
            if q.qualified {
                "QUALIFIED"
            } else {
                "NOT QUALIFIED"
            },
            q.reasons.join("; ")
        ));
    }
    Ok(format!("{}, {}", verdict.as_str(), run.headline()))
}
