//! The lab a run gives its devices: the PKI (a root, device certificates), the network
//! services and broker, the settings every device is provisioned with after boot, and the
//! actions tests may ask of the host.

use super::*;

/// The lab of a run: its private directory (keys; removed when dropped), its PKI (also
/// written to `<out>/pki`: certificates only), and its services, unless the run is a
/// benchmark or the port names no address for this machine. The lab lives until the run ends
/// (a broker process with it).
pub(super) fn start_lab(
    m: &Manifest,
    image: &Image,
    out: &Path,
    opts: &Options,
    ids: &[String],
) -> Result<RunLab, Problem> {
    let lab_problem = |e: String| Problem::new(Stage::Lab, e);
    let lab_dir = crate::sign::lab_dir(opts.lab.as_deref());
    let private = fqp_lab::PrivateRunDir::new(&lab_dir)
        .map_err(|e| lab_problem(format!("the lab directory: {e}")))?;
    let pki_dir = private.path();
    let pki = fqp_lab::Pki::make(
        &m.lab_host().unwrap_or_else(|| "10.0.2.2".into()),
        ids,
        Some(&lab_dir),
    )
    .and_then(|p| p.write_with_keys(pki_dir).map(|_| p))
    .and_then(|p| p.write_certificates(&out.join("pki")).map(|_| p))
    .map_err(|e| lab_problem(e.to_string()))?;
    // Updates of the signed image are signed as it was: with the lab's code-signing key.
    let signer = match &image.boot {
        Some(_) if !opts.bench => Some(
            fqp_lab::code_signing(&lab_dir)
                .map_err(|e| lab_problem(format!("the lab's code-signing key: {e}")))?,
        ),
        _ => None,
    };
    let ota = image
        .boot
        .as_ref()
        .zip(signer.as_ref())
        .map(|(b, signer)| fqp_lab::Ota {
            image: &b.signed,
            signer,
        });
    let lab = match m.lab_host().filter(|_| !opts.bench) {
        Some(host) => Some(Arc::new(
            Lab::start(&fqp_lab::Setup {
                host: &host,
                emulated: m.flash.is_emulated(),
                broker: &opts.broker,
                broker_ca: opts.broker_ca.as_deref(),
                dir: out,
                pki: &pki,
                pki_dir,
                ids,
                ota,
            })
            .map_err(|e| lab_problem(e.to_string()))?,
        )),
        None => None,
    };
    Ok(RunLab {
        _private: private,
        pki: Arc::new(pki),
        lab,
    })
}

/// What [`start_lab`] started, kept for the run.
pub(super) struct RunLab {
    /// Removed (with the keys in it) when the run ends.
    _private: fqp_lab::PrivateRunDir,
    pub(super) pki: Arc<fqp_lab::Pki>,
    pub(super) lab: Option<Arc<Lab>>,
}

/// What every device is given after boot: the lab's settings, entropy (made anew for each
/// boot by `Session::provision`: a board may
/// have no entropy source of its own; an emulated one certainly has none), the time (for
/// certificate validity) and the root CA.
pub(super) fn device_settings(
    lab: Option<&Lab>,
    pki: &fqp_lab::Pki,
    bench: bool,
) -> Vec<(String, String)> {
    use sha2::Digest;
    let mut settings: Vec<(String, String)> = lab.map_or_else(Vec::new, |l| l.settings.clone());
    settings.push(("entropy".into(), fqp_lab::entropy_hex()));
    if !bench {
        // The performance group's reporting period: Thread-Metric's second is for `fqp bench`
        // (the baseline's conditions); thresholds are per second of the port's own figures,
        // which a quarter of a second measures as well.
        settings.push(("perf_period_ms".into(), QUALIFY_PERF_PERIOD_MS.to_string()));
    }
    settings.push((
        "time".into(),
        time::OffsetDateTime::now_utc().unix_timestamp().to_string(),
    ));
    settings.push(("root_ca".into(), hex::encode(&pki.root_der)));
    settings.push((
        "root_ca_sha256".into(),
        hex::encode(sha2::Sha256::digest(&pki.root_der)),
    ));
    settings
}

/// What the tests may ask of the host (`ASK action=…`): signatures checked, certificates
/// issued for keys made on the device, and the lab services' own actions.
pub(super) fn lab_actions(
    lab: Option<Arc<Lab>>,
    pki: Arc<fqp_lab::Pki>,
) -> crate::session::Actions {
    Arc::new(
        move |action: &str, fields: &[(String, String)]| match action {
            "verify-signature" => fqp_lab::verify_signature(fields).map(|()| vec![]),
            "issue-certificate" => fqp_lab::issue_certificate(&pki, fields),
            other => match &lab {
                Some(l) => l.act(other, fields),
                None => Err(fqp_lab::LabError::NoServices(other.to_string())),
            },
        },
    )
}

/// The performance group's reporting period in a qualification (see `fqp_suite_perf`).
pub(super) const QUALIFY_PERF_PERIOD_MS: u32 = 250;
