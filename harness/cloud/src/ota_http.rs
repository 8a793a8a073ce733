//! The OTA data plane over HTTPS, the contract's alternative to MQTT streams: an update's
//! file fetched by byte ranges from a presigned URL — the job document's `update_data_url`,
//! `auth_scheme` `aws.s3.presigned`, `protocols` `["MQTT", "HTTP"]` — as a device whose agent
//! speaks HTTP fetches from S3. The URL carries its expiry and an HMAC-SHA256, under the data
//! plane's own secret, of the file it names and that expiry: whoever holds it may read that
//! file until then, and no other URL can be made from it. Ranges are answered `206` with
//! `Content-Range`, a whole file `200`; a range past the end `416`; a wrong or expired
//! signature `403`; an unknown file `404`.

use crate::endpoint::{EndpointError, Tls};
use crate::https::{Request, Response, Server};
use crate::service::Cloud;
use std::net::SocketAddr;
use std::sync::Arc;

/// How long a presigned URL is good for.
pub const URL_LIFETIME_S: u64 = 24 * 3600;

/// What makes and checks the data plane's URLs.
#[derive(Clone)]
pub struct Presigner {
    /// `https://host:port`.
    base: String,
    key: ring::hmac::Key,
}

impl std::fmt::Debug for Presigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presigner")
            .field("base", &self.base)
            .finish()
    }
}

/// What a URL's signature covers: the file and the expiry.
fn signed_text(stream: &str, file: u32, expires: u64) -> String {
    format!("{stream}/{file}/{expires}")
}

impl Presigner {
    fn signature(&self, stream: &str, file: u32, expires: u64) -> String {
        let tag = ring::hmac::sign(&self.key, signed_text(stream, file, expires).as_bytes());
        hex::encode(tag.as_ref())
    }

    /// The URL of file `file` of `stream`, good until `expires` (Unix seconds).
    pub fn url(&self, stream: &str, file: u32, expires: u64) -> String {
        format!(
            "{}/ota/{stream}/{file}?expires={expires}&signature={}",
            self.base,
            self.signature(stream, file, expires)
        )
    }

    /// Whether `signature` is this data plane's for the file and expiry.
    fn verify(&self, stream: &str, file: u32, expires: u64, signature: &str) -> bool {
        let Ok(tag) = hex::decode(signature) else {
            return false;
        };
        let text = signed_text(stream, file, expires);
        ring::hmac::verify(&self.key, text.as_bytes(), &tag).is_ok()
    }
}

/// A running data plane; dropping it stops it (the URLs it made then lead nowhere).
pub struct DataPlane {
    pub addr: SocketAddr,
    _server: Server,
}

impl DataPlane {
    /// Listens on `bind` (port 0: any free port) with `tls` (no client certificate asked:
    /// the URL is the credential), reached by devices as `host`; from now on the updates the
    /// cloud makes offer their file over it too.
    pub fn start(
        cloud: Arc<Cloud>,
        bind: SocketAddr,
        host: &str,
        tls: &Tls,
    ) -> Result<DataPlane, EndpointError> {
        let mut secret = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
            .map_err(|_| EndpointError::Runtime("no random numbers for the URLs' key".into()))?;
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
        let serving = cloud.clone();
        // The URLs are checked with the presigner the cloud holds (set below, once the port
        // is known: before that no URL of this data plane exists).
        let server = crate::https::start(
            "fqp-ota-http",
            bind,
            tls,
            Arc::new(move |r: &Request<'_>| match serving.data_plane() {
                Some(p) => answer(&serving, &p, r, crate::endpoint::now()),
                None => Response::message(500, "the data plane is starting: ask again"),
            }),
        )?;
        cloud.set_data_plane(Presigner {
            base: format!("https://{host}:{}", server.addr.port()),
            key,
        });
        Ok(DataPlane {
            addr: server.addr,
            _server: server,
        })
    }
}

/// The answer to request `r` at time `now` (Unix seconds).
fn answer(cloud: &Cloud, p: &Presigner, r: &Request<'_>, now: u64) -> Response {
    let (path, query) = r.target.split_once('?').unwrap_or((r.target, ""));
    let Some((stream, file)) = path
        .strip_prefix("/ota/")
        .and_then(|rest| rest.split_once('/'))
    else {
        return Response::message(404, "no such resource");
    };
    if r.method != "GET" {
        return Response::message(405, "the data plane takes GET");
    }
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    };
    let (Ok(file), Some(Ok(expires)), Some(signature)) = (
        file.parse::<u32>(),
        param("expires").map(str::parse::<u64>),
        param("signature"),
    ) else {
        return Response::message(403, "not a presigned URL: it needs expires and signature");
    };
    if !p.verify(stream, file, expires, signature) {
        return Response::message(403, "the URL's signature does not match it");
    }
    if now > expires {
        return Response::message(403, "the URL has expired: ask the job for it again");
    }
    let bytes = match cloud.streams().file(stream, file) {
        Ok(Some(b)) => b,
        Ok(None) => return Response::message(404, "no such file"),
        Err(_) => return Response::message(500, "the cloud's store failed"),
    };
    let total = bytes.len() as u64;
    let range = match r.header("Range") {
        None => None,
        Some(h) => match byte_range(h, total) {
            Some(range) => Some(range),
            None => {
                let mut refused = Response::message(416, "the range is not within the file");
                refused
                    .headers
                    .push(("Content-Range", format!("bytes */{total}")));
                return refused;
            }
        },
    };
    let (status, body, mut headers) = match range {
        Some((first, last)) => (
            206,
            bytes[first as usize..=last as usize].to_vec(),
            vec![("Content-Range", format!("bytes {first}-{last}/{total}"))],
        ),
        None => (200, bytes, Vec::new()),
    };
    headers.push(("Accept-Ranges", "bytes".into()));
    Response {
        status,
        content_type: "application/octet-stream",
        headers,
        body,
    }
}

/// The first and last byte of a `Range` header's one range (`bytes=a-b`, `bytes=a-`,
/// `bytes=-n`) within `total` bytes; `None` when it is not one or lies past the end.
fn byte_range(header: &str, total: u64) -> Option<(u64, u64)> {
    let spec = header.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let (first, last) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (total.checked_sub(n.min(total))?, total.checked_sub(1)?)
        }
        (a, "") => (a.parse().ok()?, total.checked_sub(1)?),
        (a, b) => (
            a.parse().ok()?,
            b.parse::<u64>().ok()?.min(total.checked_sub(1)?),
        ),
    };
    (first <= last && first < total).then_some((first, last))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ota::NewUpdate;
    use std::io::{Read, Write};

    /// A signed-looking image of `len` payload bytes (the cloud checks its header's length).
    fn image(len: usize) -> Vec<u8> {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let h = fqp_image::Header::new(
            fqp_image::Version::new(1, 2, 3),
            0,
            "mps2-an385",
            0x1_0000,
            &payload,
        )
        .unwrap();
        let mut out = h.to_bytes().to_vec();
        out.extend_from_slice(&payload);
        out
    }

    /// One HTTPS GET of `target` from the data plane at `addr` (trusting `ca`), with a
    /// `Range` if given: status, head, body.
    fn get(
        addr: SocketAddr,
        ca: &[u8],
        target: &str,
        range: Option<&str>,
    ) -> (u16, String, Vec<u8>) {
        use rustls::pki_types::{CertificateDer, ServerName};
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(ca.to_vec())).unwrap();
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from("localhost").unwrap().to_owned();
        let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let tcp = std::net::TcpStream::connect(addr).unwrap();
        let mut s = rustls::StreamOwned::new(conn, tcp);
        let range = range.map_or(String::new(), |r| format!("Range: {r}\r\n"));
        let request = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n{range}\r\n");
        s.write_all(request.as_bytes()).unwrap();
        let mut all = Vec::new();
        let _ = s.read_to_end(&mut all);
        let end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8(all[..end].to_vec()).unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, head, all[end + 4..].to_vec())
    }

    /// A device reads its update from the URL its job gives, by ranges, as it would from
    /// S3; what is not that URL, or past its time, or outside the file, is refused.
    #[test]
    fn the_jobs_url_serves_the_update_by_ranges_and_nothing_else() {
        let path = std::env::temp_dir().join(format!("fqp-ota-http-{}.redb", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let cloud = Arc::new(Cloud::open(&path).unwrap());
        cloud.registry().put_thing("lamp", None).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let tls = Tls {
            chain: vec![cert.der().to_vec()],
            key: key.serialize_der(),
            client_cas: Vec::new(),
        };
        let plane = DataPlane::start(
            cloud.clone(),
            "127.0.0.1:0".parse().unwrap(),
            "localhost",
            &tls,
        )
        .unwrap();
        let img = image(5000);
        let now = crate::endpoint::now();
        let mqtt_only = NewUpdate::to_things("0", &img, b"\x30\x02sig", vec!["lamp"]);
        cloud.create_update(&mqtt_only, now).unwrap();
        let job = cloud.jobs().job("ota-0").unwrap().unwrap();
        let ota = &job["document"]["afr_ota"];
        assert_eq!(
            ota["protocols"],
            serde_json::json!(["MQTT"]),
            "unless asked"
        );
        assert!(ota["files"][0].get("update_data_url").is_none());
        let u = NewUpdate {
            id: "1",
            http: true,
            ..mqtt_only
        };
        cloud.create_update(&u, now).unwrap();
        let job = cloud.jobs().job("ota-1").unwrap().unwrap();
        let ota = &job["document"]["afr_ota"];
        assert_eq!(ota["protocols"], serde_json::json!(["MQTT", "HTTP"]));
        assert_eq!(ota["files"][0]["auth_scheme"], "aws.s3.presigned");
        let url = ota["files"][0]["update_data_url"].as_str().unwrap();
        let base = format!("https://localhost:{}", plane.addr.port());
        let target = url.strip_prefix(&base).unwrap();
        let ca = cert.der().to_vec();
        let fetch = |target: &str, range| get(plane.addr, &ca, target, range);

        let (status, head, body) = fetch(target, Some("bytes=0-99"));
        assert_eq!((status, &body[..]), (206, &img[..100]));
        assert!(
            head.contains(&format!("Content-Range: bytes 0-99/{}", img.len())),
            "{head}"
        );
        let (status, _, body) = fetch(target, Some("bytes=-10"));
        assert_eq!((status, &body[..]), (206, &img[img.len() - 10..]));
        let (status, head, body) = fetch(target, None);
        assert_eq!((status, body), (200, img.clone()));
        assert!(head.contains("Accept-Ranges: bytes"), "{head}");
        let past = format!("bytes={}-", img.len());
        let (status, head, _) = fetch(target, Some(&past));
        assert_eq!(status, 416);
        assert!(
            head.contains(&format!("Content-Range: bytes */{}", img.len())),
            "{head}"
        );

        // Another file, another signature, no signature: refused.
        let (status, _, _) = fetch(&target.replacen("/0?", "/1?", 1), None);
        assert_eq!(status, 403);
        let forged = format!(
            "{}0",
            target.trim_end_matches(|c: char| c.is_ascii_hexdigit())
        );
        assert_eq!(fetch(&forged, None).0, 403);
        assert_eq!(fetch("/ota/ota-1/0", None).0, 403);
        assert_eq!(fetch("/elsewhere", None).0, 404);
        // An update made a day and more ago: its URL has expired.
        let old = NewUpdate { id: "2", ..u };
        cloud.create_update(&old, now - URL_LIFETIME_S - 1).unwrap();
        let job = cloud.jobs().job("ota-2").unwrap().unwrap();
        let url = job["document"]["afr_ota"]["files"][0]["update_data_url"]
            .as_str()
            .unwrap();
        assert_eq!(fetch(url.strip_prefix(&base).unwrap(), None).0, 403);
        drop(plane);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn an_update_over_http_needs_a_data_plane() {
        let path = std::env::temp_dir().join(format!("fqp-ota-nohttp-{}.redb", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let cloud = Cloud::open(&path).unwrap();
        let img = image(10);
        let u = NewUpdate {
            http: true,
            ..NewUpdate::to_things("1", &img, b"\x30\x02sig", vec![])
        };
        let e = cloud.create_update(&u, 0).unwrap_err();
        assert!(matches!(e, crate::ota::OtaError::NoDataPlane), "{e}");
        assert!(e.to_string().contains("fqp cloud serve"), "{e}");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn ranges_are_read_as_http_says() {
        assert_eq!(byte_range("bytes=0-99", 1000), Some((0, 99)));
        assert_eq!(byte_range("bytes=900-", 1000), Some((900, 999)));
        assert_eq!(byte_range("bytes=-100", 1000), Some((900, 999)));
        // A last byte past the end is the end; a first one past it is unsatisfiable.
        assert_eq!(byte_range("bytes=990-2000", 1000), Some((990, 999)));
        assert_eq!(byte_range("bytes=1000-1001", 1000), None);
        assert_eq!(byte_range("bytes=5-4", 1000), None);
        assert_eq!(byte_range("bytes=-0", 1000), None);
        assert_eq!(byte_range("items=0-1", 1000), None);
        assert_eq!(byte_range("bytes=0-1", 0), None);
    }

    #[test]
    fn a_url_is_good_for_its_file_and_time_only() {
        let p = Presigner {
            base: "https://h:1".into(),
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"secret"),
        };
        let url = p.url("ota-7", 0, 1000);
        let signature = url.rsplit_once("signature=").unwrap().1;
        assert!(url.starts_with("https://h:1/ota/ota-7/0?expires=1000&signature="));
        assert!(p.verify("ota-7", 0, 1000, signature));
        assert!(!p.verify("ota-8", 0, 1000, signature));
        assert!(!p.verify("ota-7", 1, 1000, signature));
        assert!(!p.verify("ota-7", 0, 1001, signature));
        assert!(!p.verify("ota-7", 0, 1000, "zz"));
    }
}
