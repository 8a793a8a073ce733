//! The discovery endpoint: HTTPS with client certificates required (from the CAs given),
//! one request per connection, `GET /greengrass/discover/thing/<thing>` answered with the
//! thing's groups (200), 404 when it is in none, 403 when the client's certificate is not the
//! thing's; anything else 404 or 405.

use super::Greengrass;
use crate::endpoint::{EndpointError, Tls};
use crate::https::{Request, Response, Server};
use crate::service::Cloud;
use std::net::SocketAddr;
use std::sync::Arc;

/// A running discovery endpoint; dropping it stops it.
pub struct Discovery {
    pub addr: SocketAddr,
    _server: Server,
}

impl Discovery {
    /// Listens on `bind` (port 0: any free port).
    pub fn start(
        cloud: Arc<Cloud>,
        bind: SocketAddr,
        tls: &Tls,
    ) -> Result<Discovery, EndpointError> {
        let server = crate::https::start(
            "fqp-discovery",
            bind,
            tls,
            Arc::new(move |r: &Request<'_>| {
                let (status, body) = answer(&cloud, r.method, r.target, r.fingerprint.as_deref());
                Response::json(status, body)
            }),
        )?;
        Ok(Discovery {
            addr: server.addr,
            _server: server,
        })
    }
}

/// The status and JSON body for `method` on `path` from the holder of the certificate whose
/// SHA-256 is `fingerprint`.
fn answer(cloud: &Cloud, method: &str, path: &str, fingerprint: Option<&str>) -> (u16, String) {
    let error =
        |status: u16, message: &str| (status, serde_json::json!({"message": message}).to_string());
    let Some(thing) = path.strip_prefix("/greengrass/discover/thing/") else {
        return error(404, "no such resource");
    };
    if method != "GET" {
        return error(405, "discovery takes GET");
    }
    let allowed = fingerprint.is_some_and(|f| {
        cloud
            .registry()
            .things_with_certificate(f)
            .is_ok_and(|things| things.iter().any(|t| t == thing))
    });
    if !allowed {
        return error(403, "the client certificate is not this thing's");
    }
    match Greengrass::new(cloud.store()).discover(thing) {
        Ok(Ok(doc)) => (200, doc.to_string()),
        Ok(Err(super::NotFound(why))) => error(404, &why),
        Err(_) => error(500, "the discovery service failed"),
    }
}
