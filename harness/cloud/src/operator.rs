//! The operator's side of the cloud: every change and question a console or a script has
//! (`fqp cloud …`), as one request type carried out in one place — directly on the database
//! when no cloud is serving it, or by the serving cloud through its control socket (the
//! database is one process's at a time), which also tells connected devices what a change
//! causes (a shadow's delta, a job's notify-next).

use crate::defender::Profile;
use crate::endpoint::{now, Endpoint};
use crate::jobs::NewJob;
use crate::service::Cloud;
use crate::shadow::Message;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What an operator asks of the cloud.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    Things,
    ThingAdd {
        name: String,
        certificate_sha256: Option<String>,
    },
    ThingRemove {
        name: String,
    },
    /// The thing's password on the plain listener (a serving cloud's secret only).
    Token {
        thing: String,
    },
    Groups,
    GroupAdd {
        name: String,
        parent: Option<String>,
    },
    GroupJoin {
        group: String,
        thing: String,
    },
    GroupLeave {
        group: String,
        thing: String,
    },
    ShadowGet {
        thing: String,
        name: Option<String>,
    },
    ShadowUpdate {
        thing: String,
        name: Option<String>,
        body: Value,
    },
    ShadowDelete {
        thing: String,
        name: Option<String>,
    },
    Jobs,
    JobCreate {
        id: String,
        document: Value,
        things: Vec<String>,
        groups: Vec<String>,
        #[serde(default)]
        fleet: bool,
        continuous: bool,
        timeout_s: Option<u64>,
    },
    JobCancel {
        id: String,
    },
    Execution {
        id: String,
        thing: String,
    },
    Profiles,
    ProfilePut {
        profile: Profile,
    },
    Alarms {
        thing: Option<String>,
    },
    Release {
        thing: String,
    },
    Audit,
    /// Creates an OTA update from a signed image file (and its file signature, base64 DER).
    OtaCreate {
        id: String,
        image: std::path::PathBuf,
        signature: String,
        certfile: String,
        things: Vec<String>,
        groups: Vec<String>,
        #[serde(default)]
        fleet: bool,
        continuous: bool,
        timeout_s: Option<u64>,
        /// The file over HTTPS too (the served cloud's data plane).
        #[serde(default)]
        http: bool,
    },
    /// Every device's execution of update `id`.
    OtaStatus {
        id: String,
    },
    /// Registers a certificate (a device's or a CA's) for the audit.
    CertificateAdd {
        info: crate::audit::CertificateInfo,
    },
    /// The ACL file and the password lines (in clear) that enforce the cloud's policy at
    /// mosquitto; the tokens from the cloud's secret (`secret`, hex; a serving cloud's own
    /// when absent), the service account's password `service`.
    MosquittoFiles {
        secret: Option<String>,
        service: String,
    },
}

/// Why a request was not carried out.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OperatorError(pub String);

fn fail(e: impl std::fmt::Display) -> OperatorError {
    OperatorError(e.to_string())
}

fn shadow_topic(thing: &str, name: Option<&str>, op: &str) -> String {
    match name {
        Some(n) => format!("$aws/things/{thing}/shadow/name/{n}/{op}"),
        None => format!("$aws/things/{thing}/shadow/{op}"),
    }
}

/// The answer of a shadow request made as the operator: the document, or the refusal.
fn shadow_answer(messages: &[Message]) -> Result<Value, OperatorError> {
    match messages.first() {
        Some(m) if m.topic.ends_with("/accepted") => Ok(m.payload.clone()),
        Some(m) => Err(fail(format!(
            "refused {}: {}",
            m.payload["code"], m.payload["message"]
        ))),
        None => Err(fail("no answer")),
    }
}

/// Carries out `r` on `cloud`; with `endpoint` (a serving cloud), what it causes reaches
/// the devices connected.
pub fn execute(
    cloud: &Cloud,
    endpoint: Option<&Endpoint>,
    r: &Request,
) -> Result<Value, OperatorError> {
    let publish = |m: &[Message]| {
        if let Some(e) = endpoint {
            e.publish(m);
        }
    };
    let registry = cloud.registry();
    let done = |r: Result<(), crate::registry::RegistryError>| {
        r.map(|()| json!({"ok": true})).map_err(fail)
    };
    match r {
        Request::Things => {
            let things = registry.things().map_err(fail)?;
            Ok(json!(things
                .iter()
                .map(|t| json!({"thing": t.name, "certificate": t.certificate,
                    "groups": registry.groups_of(&t.name).unwrap_or_default()}))
                .collect::<Vec<_>>()))
        }
        Request::ThingAdd {
            name,
            certificate_sha256,
        } => {
            registry
                .put_thing(name, certificate_sha256.as_deref())
                .map_err(fail)?;
            // The fleet's continuous jobs reach a thing added.
            let m = cloud.jobs().thing_added(name, now()).map_err(fail)?;
            publish(&m);
            Ok(json!({"ok": true}))
        }
        Request::ThingRemove { name } => done(registry.delete_thing(name)),
        Request::Token { thing } => match endpoint {
            Some(e) => Ok(json!({"thing": thing, "token": e.token(thing)})),
            None => Err(fail(
                "tokens come from a serving cloud's secret: run `fqp cloud serve` first",
            )),
        },
        Request::Groups => {
            let groups = registry.groups().map_err(fail)?;
            Ok(json!(groups
                .iter()
                .map(|(g, p)| json!({"group": g, "parent": p,
                    "things": registry.things_in(g).unwrap_or_default()}))
                .collect::<Vec<_>>()))
        }
        Request::GroupAdd { name, parent } => done(registry.create_group(name, parent.as_deref())),
        Request::GroupJoin { group, thing } => {
            let m = cloud.jobs().join_group(group, thing, now()).map_err(fail)?;
            publish(&m);
            Ok(json!({"ok": true}))
        }
        Request::GroupLeave { group, thing } => done(registry.remove_from_group(group, thing)),
        Request::ShadowGet { thing, name } => {
            let m = cloud
                .request(&shadow_topic(thing, name.as_deref(), "get"), b"{}", now())
                .map_err(fail)?;
            shadow_answer(&m)
        }
        Request::ShadowUpdate { thing, name, body } => {
            let topic = shadow_topic(thing, name.as_deref(), "update");
            let m = cloud
                .request(&topic, body.to_string().as_bytes(), now())
                .map_err(fail)?;
            publish(&m);
            shadow_answer(&m)
        }
        Request::ShadowDelete { thing, name } => {
            let m = cloud
                .request(
                    &shadow_topic(thing, name.as_deref(), "delete"),
                    b"{}",
                    now(),
                )
                .map_err(fail)?;
            publish(&m);
            shadow_answer(&m)
        }
        Request::Jobs => cloud.jobs().all().map(Value::from).map_err(fail),
        Request::JobCreate {
            id,
            document,
            things,
            groups,
            fleet,
            continuous,
            timeout_s,
        } => {
            let job = NewJob {
                id,
                document: document.clone(),
                things: things.iter().map(String::as_str).collect(),
                groups: groups.iter().map(String::as_str).collect(),
                fleet: *fleet,
                continuous: *continuous,
                in_progress_timeout_s: *timeout_s,
            };
            let m = cloud.jobs().create(&job, now()).map_err(fail)?;
            publish(&m);
            Ok(json!({"ok": true}))
        }
        Request::OtaCreate {
            id,
            image,
            signature,
            certfile,
            things,
            groups,
            fleet,
            continuous,
            timeout_s,
            http,
        } => {
            use base64::Engine as _;
            let bytes =
                std::fs::read(image).map_err(|e| fail(format!("{}: {e}", image.display())))?;
            let signature = base64::engine::general_purpose::STANDARD
                .decode(signature.trim())
                .map_err(|e| fail(format!("the file signature is not base64: {e}")))?;
            let update = crate::ota::NewUpdate {
                id,
                image: &bytes,
                signature: &signature,
                certfile,
                things: things.iter().map(String::as_str).collect(),
                groups: groups.iter().map(String::as_str).collect(),
                fleet: *fleet,
                continuous: *continuous,
                in_progress_timeout_s: *timeout_s,
                http: *http,
            };
            let m = cloud.create_update(&update, now()).map_err(fail)?;
            publish(&m);
            Ok(json!({"ok": true, "job": crate::ota::job_id(id), "bytes": bytes.len()}))
        }
        Request::OtaStatus { id } => {
            let job = crate::ota::job_id(id);
            if cloud.jobs().job(&job).map_err(fail)?.is_none() {
                return Err(fail(format!(
                    "there is no update {id:?}\n  fix: fqp cloud jobs lists the updates (jobs ota-<id>)"
                )));
            }
            Ok(Value::Array(
                cloud.jobs().executions_of(&job).map_err(fail)?,
            ))
        }
        Request::JobCancel { id } => {
            let m = cloud.jobs().cancel(id, now()).map_err(fail)?;
            publish(&m);
            Ok(json!({"ok": true}))
        }
        Request::Execution { id, thing } => cloud
            .jobs()
            .execution(thing, id)
            .map_err(fail)?
            .ok_or_else(|| fail(format!("no execution of job {id} on {thing}"))),
        Request::Profiles => cloud.defender().profiles().map(|p| json!(p)).map_err(fail),
        Request::ProfilePut { profile } => cloud
            .defender()
            .put_profile(profile)
            .map(|()| json!({"ok": true}))
            .map_err(fail),
        Request::Alarms { thing } => cloud
            .defender()
            .alarms(thing.as_deref())
            .map(|a| json!(a))
            .map_err(fail),
        Request::Release { thing } => done(cloud.defender().release(thing)),
        Request::Audit => crate::audit::run(cloud, now())
            .map(|f| json!(f))
            .map_err(fail),
        Request::CertificateAdd { info } => done(registry.put_certificate(info)),
        Request::MosquittoFiles { secret, service } => {
            let secret = match (secret, endpoint) {
                (Some(s), _) => hex::decode(s).map_err(|_| fail("the secret is not hex"))?,
                (None, Some(e)) => e.secret().to_vec(),
                (None, None) => return Err(fail("the cloud's secret is needed for the tokens")),
            };
            let token = |t: &str| crate::endpoint::token(&secret, t);
            let acl = crate::mosquitto::acl(cloud).map_err(fail)?;
            let passwords = crate::mosquitto::passwords(cloud, token, service).map_err(fail)?;
            Ok(json!({"acl": acl, "passwords": passwords}))
        }
    }
}

/// The control socket of a serving cloud: `<dir>/control.sock`.
pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join("control.sock")
}

/// Serves operator requests on a Unix socket (one JSON request per line, one JSON answer
/// per line: `{"ok": <value>}` or `{"error": "…"}`) until the process ends.
pub fn serve_control(
    path: &Path,
    cloud: Arc<Cloud>,
    endpoint: Arc<Endpoint>,
) -> Result<(), OperatorError> {
    let _ = std::fs::remove_file(path);
    let listener =
        UnixListener::bind(path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let (cloud, endpoint) = (cloud.clone(), endpoint.clone());
            std::thread::spawn(move || answer(conn, &cloud, &endpoint));
        }
    });
    Ok(())
}

fn answer(conn: UnixStream, cloud: &Cloud, endpoint: &Endpoint) {
    let mut writer = match conn.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    for line in BufReader::new(conn).lines().map_while(Result::ok) {
        let reply = match serde_json::from_str::<Request>(&line) {
            Ok(r) => match execute(cloud, Some(endpoint), &r) {
                Ok(v) => json!({ "ok": v }),
                Err(e) => json!({ "error": e.0 }),
            },
            Err(e) => json!({ "error": format!("not a request: {e}") }),
        };
        if writeln!(writer, "{reply}").is_err() {
            return;
        }
    }
}

/// Sends `r` to the cloud serving at `path`; `None` when nothing answers there.
pub fn call(path: &Path, r: &Request) -> Option<Result<Value, OperatorError>> {
    let mut conn = UnixStream::connect(path).ok()?;
    let line = serde_json::to_string(r).ok()?;
    writeln!(conn, "{line}").ok()?;
    let mut reply = String::new();
    BufReader::new(conn).read_line(&mut reply).ok()?;
    let v: Value = serde_json::from_str(&reply).ok()?;
    Some(match v.get("error") {
        Some(e) => Err(OperatorError(e.as_str().unwrap_or("").to_string())),
        None => Ok(v["ok"].clone()),
    })
}
