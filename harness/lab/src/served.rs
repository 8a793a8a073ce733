//! The cloud served on its own (`fqp cloud serve`) rather than for one run: its state kept
//! in the lab directory, its secret too (so that tokens handed out stay valid), the operator
//! commands reaching it through its control socket.

use crate::cloud::cloud_error;
use crate::LabError;
use fqp_cloud::endpoint::{Settings, Tls};
use fqp_cloud::{Cloud, Endpoint};
use std::path::Path;
use std::sync::Arc;

/// A cloud served on its own (`fqp cloud serve`), for a lab with several devices and runs:
/// its state in `<lab>/cloud` (kept), the endpoint's listeners, the discovery endpoint and
/// the control socket the operator commands use while it runs.
pub struct Served {
    pub endpoint: Arc<Endpoint>,
    _discovery: fqp_cloud::greengrass::server::Discovery,
    pub discovery: std::net::SocketAddr,
    _data_plane: fqp_cloud::ota_http::DataPlane,
    /// The OTA data plane (updates' files over HTTPS, from presigned URLs in their jobs).
    pub data_plane: std::net::SocketAddr,
    /// The CA devices must trust for the TLS listeners: the lab root (PEM).
    pub root_ca: std::path::PathBuf,
    pub control: std::path::PathBuf,
}

/// Where a lab keeps its served cloud.
pub fn cloud_dir(lab: &Path) -> std::path::PathBuf {
    lab.join("cloud")
}

/// The served cloud's secret (the plain listener's tokens derive from it): made once, kept in
/// the lab, so that tokens handed out stay valid across restarts.
pub fn lasting_secret(dir: &Path) -> Result<Vec<u8>, LabError> {
    let path = dir.join("secret");
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Ok(bytes) = hex::decode(text.trim()) {
            return Ok(bytes);
        }
    }
    let mut secret = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
        .map_err(|_| cloud_error("no random numbers for the cloud's secret"))?;
    fqp_reports::files::write_private(&path, &hex::encode(secret)).map_err(LabError::pki)?;
    Ok(secret.to_vec())
}

/// Serves the cloud of the lab directory `lab`: devices reach it at `host` (a name or address
/// its certificate names), it listens on `bind`, the endpoint's plain and TLS listeners on
/// `port` and `tls_port` (0: any free port), discovery on `discovery_port`.
pub fn serve(
    lab: &Path,
    host: &str,
    bind: std::net::IpAddr,
    (port, tls_port, discovery_port): (u16, u16, u16),
) -> Result<Served, LabError> {
    let dir = cloud_dir(lab);
    fqp_reports::files::create_private_dir(&dir).map_err(LabError::pki)?;
    let pki = crate::Pki::make(host, &[], Some(lab))?;
    let cloud = Arc::new(Cloud::open(&dir.join("cloud.redb")).map_err(cloud_error)?);
    let tls = Tls {
        chain: vec![pki.server.der.clone()],
        key: pki.server.key_der.clone(),
        client_cas: vec![pki.root_der.clone()],
    };
    let endpoint = Arc::new(
        Endpoint::start(
            cloud.clone(),
            Settings {
                bind,
                port,
                tls: Some((tls.clone(), tls_port)),
                secret: lasting_secret(&dir)?,
                open_policy: false,
            },
        )
        .map_err(cloud_error)?,
    );
    let discovery = fqp_cloud::greengrass::server::Discovery::start(
        cloud.clone(),
        std::net::SocketAddr::new(bind, discovery_port),
        &tls,
    )
    .map_err(cloud_error)?;
    let data_plane = fqp_cloud::ota_http::DataPlane::start(
        cloud.clone(),
        std::net::SocketAddr::new(bind, 0),
        host,
        &Tls {
            client_cas: Vec::new(),
            ..tls.clone()
        },
    )
    .map_err(cloud_error)?;
    let control = fqp_cloud::operator::socket_path(&dir);
    fqp_cloud::operator::serve_control(&control, cloud, endpoint.clone()).map_err(cloud_error)?;
    Ok(Served {
        endpoint,
        discovery: discovery.addr,
        _discovery: discovery,
        data_plane: data_plane.addr,
        _data_plane: data_plane,
        root_ca: lab.join("pki-root.crt"),
        control,
    })
}
