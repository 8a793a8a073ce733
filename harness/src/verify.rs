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

/// Checks the signature, the image hash and the verdict of the result file at `path`.
pub fn verify(path: &Path, trusted: Option<&Path>, image: Option<&Path>) -> Verification {
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
    let trusted_pem = match trusted
        .map(|p| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display())))
    {
        Some(Err(e)) => {
            check("trusted certificate", Err(e));
            return v;
        }
        Some(Ok(pem)) => Some(pem),
        None => None,
    };
    check(
        "signature",
        sign::verify_file(path, trusted_pem.as_deref()).map(|s| {
            let trust = if s.trusted {
                "trusted"
            } else {
                "not checked against a trusted certificate (--trust)"
            };
            format!(
                "signed by {} (certificate sha256 {}), {trust}",
                s.subject, s.fingerprint
            )
        }),
    );
    let run = match fqp_reports::read_json(path) {
        Ok(r) => r,
        Err(e) => {
            check("results", Err(e));
            return v;
        }
    };
    check("image", image_matches(&run, image));
    check("verdict", verdict_follows(&run));
    v
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
