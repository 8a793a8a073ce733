//! `fqp verify`: is this result file the one a harness wrote (signature), about this image
//! (hash), and does its verdict follow from its tests (recomputed)? A certification body runs
//! it on what a vendor hands in.

use crate::sign::trusted_pem;
use fqp_reports::sign;
use fqp_reports::Run;
use std::path::{Path, PathBuf};

/// What one check found: it holds (and what was seen), or it fails (and why).
enum Check {
    Holds(String),
    Fails(String),
}

impl<E: std::fmt::Display> From<Result<String, E>> for Check {
    fn from(r: Result<String, E>) -> Check {
        match r {
            Ok(s) => Check::Holds(s),
            Err(e) => Check::Fails(e.to_string()),
        }
    }
}

/// What `fqp verify` found: one line per check, and whether all passed.
pub struct Verification {
    pub lines: Vec<String>,
    pub ok: bool,
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
    let mut check = |what: &str, c: Check| match c {
        Check::Holds(s) => v.lines.push(format!("ok    {what}: {s}")),
        Check::Fails(e) => {
            v.lines.push(format!("FAIL  {what}: {e}"));
            v.ok = false;
        }
    };
    match trusted_pem(trusted, lab) {
        Ok(t) => check(
            "signature",
            sign::verify_file(path, &t.pem)
                .map(|s| {
                    format!(
                        "signed by {} (certificate sha256 {}), trusted as {}",
                        s.subject, s.fingerprint, t.what
                    )
                })
                .into(),
        ),
        Err(e) => check("signature", Check::Fails(e.to_string())),
    }
    let run = match fqp_reports::read_json(path) {
        Ok(r) => r,
        Err(e) => {
            check("results", Check::Fails(e.to_string()));
            return v;
        }
    };
    check("image", image_matches(&run, image));
    check("suites", suites_match(&run));
    check("verdict", verdict_follows(&run));
    v
}

/// The results were judged by this harness's suite descriptions.
fn suites_match(run: &Run) -> Check {
    let ours = fqp_qualification::Suites::builtin().reference();
    match &run.suites {
        Some(r) if *r == ours => {
            Check::Holds(format!("version {} (sha256 {})", r.version, r.sha256))
        }
        Some(r) => Check::Fails(format!(
            "judged by suite descriptions version {} (sha256 {}); this fqp has version {} (sha256 {}): verify with the harness version that ran it ({})",
            r.version, r.sha256, ours.version, ours.sha256, run.harness
        )),
        None => Check::Fails("the results name no suite descriptions".into()),
    }
}

fn image_matches(run: &Run, image: Option<&Path>) -> Check {
    let Some(fw) = &run.firmware else {
        return Check::Holds("none recorded (the run ended before an image was built)".into());
    };
    let path = image.map_or_else(|| PathBuf::from(&fw.image), Path::to_path_buf);
    let actual = match crate::firmware::file_sha256(&path) {
        Ok(a) => a,
        Err(e) => {
            return Check::Fails(format!(
                "{e} (pass --image with the image that was qualified)"
            ))
        }
    };
    if actual == fw.sha256 {
        Check::Holds(format!("{} has sha256 {actual}", path.display()))
    } else {
        Check::Fails(format!(
            "{} has sha256 {actual}, the results are about {}",
            path.display(),
            fw.sha256
        ))
    }
}

fn verdict_follows(run: &Run) -> Check {
    let verdict = run.decide();
    if verdict != run.verdict {
        return Check::Fails(format!(
            "the file says {}, its tests say {}",
            run.verdict.as_str(),
            verdict.as_str()
        ));
    }
    if run.findings != run.classify() {
        return Check::Fails(
            "the findings do not follow from the tests and problems in the file".into(),
        );
    }
    let q = fqp_qualification::Suites::builtin().qualification(run);
    if run.qualification.as_ref() != Some(&q) {
        return Check::Fails(format!(
            "the qualification statement does not follow from the tests: recomputed {} ({})",
            if q.qualified {
                "QUALIFIED"
            } else {
                "NOT QUALIFIED"
            },
            q.reasons.join("; ")
        ));
    }
    Check::Holds(format!("{}, {}", verdict.as_str(), run.headline()))
}
