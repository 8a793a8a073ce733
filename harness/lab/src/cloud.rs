//! The local IoT cloud a run's devices qualify against: `fqp-cloud`'s services and MQTT
//! endpoint, its state in the run's output directory (`cloud.redb`, fresh for each run), a
//! thing registered for each device (`fqp-device-<id>`) and one no device is
//! (`fqp-neighbour`, whose shadow the authorization tests must not reach). A device is
//! provisioned with the endpoint's addresses (`cloud`: plain, with a token per thing;
//! `cloud_tls`: mutual TLS, the server's certificate from the lab PKI) and, each its own,
//! `thing` and `cloud_token`. Tests ask the cloud's operator side for what a console would
//! do (`cloud-*` actions).

use crate::{field, hex_field, LabError};
use fqp_cloud::endpoint::{Settings, Tls};
use fqp_cloud::{Cloud, Endpoint};
use std::path::Path;
use std::sync::Arc;

/// The thing no device is: its shadow exists, for the authorization tests to be refused.
pub const NEIGHBOUR: &str = "fqp-neighbour";

/// The thing of device `id` (the characters a thing name may not hold become `-`).
pub fn thing_of(id: &str) -> String {
    let clean: String = id
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | ':' | '_' | '-' => c,
            _ => '-',
        })
        .collect();
    format!("fqp-device-{clean}")
}

/// The cloud of a run.
pub(crate) struct CloudLab {
    endpoint: Endpoint,
    greengrass: GreengrassLab,
    /// What `cloud-ota-offer` makes updates of (a port with a boot loader).
    offers: Option<crate::ota::Offers>,
    /// The OTA data plane: updates offer their file over HTTPS too.
    _data_plane: fqp_cloud::ota_http::DataPlane,
    /// The things of the run's devices: its pool.
    pool: Vec<String>,
    /// The job of the run's deployment to its pool (`cloud-ota-pool`), once made.
    pool_job: std::sync::Mutex<Option<String>>,
}

/// The thing group of the run's pool.
const POOL_GROUP: &str = "fqp-pool";

/// What Greengrass discovery points devices at: a core broker with a certificate from the
/// core's own CA, one whose certificate comes from another CA, a port where nothing listens,
/// and the discovery endpoint itself.
struct GreengrassLab {
    _discovery: fqp_cloud::greengrass::server::Discovery,
    core: Endpoint,
    wrong_core: Endpoint,
    dead_port: u16,
    host: String,
    core_ca_pem: String,
}

impl GreengrassLab {
    fn start(
        cloud: &Arc<Cloud>,
        host: &str,
        bind: std::net::IpAddr,
        pki: &crate::Pki,
        settings: &mut Vec<(String, String)>,
    ) -> Result<GreengrassLab, LabError> {
        let broker = |cert: &crate::Pair| {
            let tls = Tls {
                chain: vec![cert.der.clone()],
                key: cert.key_der.clone(),
                client_cas: vec![pki.root_der.clone()],
            };
            Endpoint::start(
                cloud.clone(),
                Settings {
                    bind,
                    port: 0,
                    tls: Some((tls, 0)),
                    secret: Vec::new(),
                    open_policy: false,
                },
            )
            .map_err(cloud_error)
        };
        let discovery_tls = Tls {
            chain: vec![pki.server.der.clone()],
            key: pki.server.key_der.clone(),
            client_cas: vec![pki.root_der.clone()],
        };
        let discovery = fqp_cloud::greengrass::server::Discovery::start(
            cloud.clone(),
            std::net::SocketAddr::new(bind, 0),
            &discovery_tls,
        )
        .map_err(cloud_error)?;
        let dead_port = std::net::TcpListener::bind((bind, 0))
            .and_then(|l| l.local_addr())
            .map_err(LabError::start("a closed port for Greengrass"))?
            .port();
        settings.push((
            "greengrass".into(),
            format!("{host}:{}", discovery.addr.port()),
        ));
        Ok(GreengrassLab {
            _discovery: discovery,
            core: broker(&pki.core_server)?,
            wrong_core: broker(&pki.untrusted_server)?,
            dead_port,
            host: host.to_string(),
            core_ca_pem: pki.core_ca.cert.clone(),
        })
    }

    /// `cloud-greengrass-setup` (`thing`, `mode`): the thing's Greengrass group as `mode`
    /// says — `good` (the core), `dead-first` (a port where nothing listens, then the core),
    /// `wrong-ca` (a core whose certificate is not from the group's CA), `none` (no group).
    fn setup(&self, cloud: &Cloud, fields: &[(String, String)]) -> Result<(), LabError> {
        use fqp_cloud::greengrass::{Connectivity, Core, Group};
        let thing = field(fields, "thing")?;
        let gg = cloud.greengrass();
        gg.leave_all(thing).map_err(cloud_error)?;
        let tls_port = |e: &Endpoint| e.tls.map_or(0, |a| a.port());
        let entry = |id: &str, port: u16| Connectivity {
            id: id.into(),
            host: self.host.clone(),
            port,
            metadata: String::new(),
        };
        let entries = match field(fields, "mode")? {
            "good" => vec![entry("core", tls_port(&self.core))],
            "dead-first" => vec![
                entry("dead", self.dead_port),
                entry("core", tls_port(&self.core)),
            ],
            "wrong-ca" => vec![entry("impostor", tls_port(&self.wrong_core))],
            "none" => return Ok(()),
            other => {
                return Err(LabError::Field {
                    field: "mode".into(),
                    problem: format!("{other:?}: write good, dead-first, wrong-ca or none"),
                })
            }
        };
        let group = Group {
            id: format!("gg-{thing}"),
            cores: vec![Core {
                thing_arn: "arn:aws:iot:local:000000000000:thing/fqp-core".into(),
                connectivity: entries,
            }],
            cas: vec![self.core_ca_pem.clone()],
            members: vec![thing.to_string()],
        };
        gg.put_group(&group).map_err(cloud_error)
    }
}

pub(crate) fn cloud_error(e: impl std::fmt::Display) -> LabError {
    LabError::Broker {
        problem: format!("the lab's cloud: {e}"),
        fix: "check the run's output directory (--out): the cloud keeps its state there".into(),
    }
}

impl CloudLab {
    /// Starts the cloud for devices `ids`, listening on `bind` (an address of this machine),
    /// reached by devices at `host`; adds its settings.
    pub(crate) fn start(
        host: &str,
        bind: &str,
        dir: &Path,
        pki: &crate::Pki,
        ids: &[String],
        settings: &mut Vec<(String, String)>,
    ) -> Result<CloudLab, LabError> {
        let db = dir.join("cloud.redb");
        match std::fs::remove_file(&db) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(LabError::file(&db)(e))
            }
            _ => {}
        }
        let cloud = Arc::new(Cloud::open(&db).map_err(cloud_error)?);
        // Each device's thing holds its own certificate from the lab PKI (a device that makes
        // its key on board attaches its own: cloud-attach-certificate).
        for id in ids {
            let certificate = pki.devices.iter().find(|(d, _)| d == id).map(|(_, pair)| {
                hex::encode(ring::digest::digest(&ring::digest::SHA256, &pair.der))
            });
            cloud
                .registry()
                .put_thing(&thing_of(id), certificate.as_deref())
                .map_err(cloud_error)?;
        }
        cloud
            .registry()
            .put_thing(NEIGHBOUR, None)
            .map_err(cloud_error)?;
        let neighbour = format!("$aws/things/{NEIGHBOUR}/shadow/update");
        cloud
            .request(&neighbour, br#"{"state":{"reported":{"secret":42}}}"#, 0)
            .map_err(cloud_error)?;
        let mut secret = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
            .map_err(|_| cloud_error("no random numbers for the cloud's secret"))?;
        let tls = Tls {
            chain: vec![pki.server.der.clone()],
            key: pki.server.key_der.clone(),
            client_cas: vec![pki.root_der.clone()],
        };
        let endpoint = Endpoint::start(
            cloud,
            Settings {
                bind: bind.parse().map_err(cloud_error)?,
                port: 0,
                tls: Some((tls, 0)),
                secret: secret.to_vec(),
                // fqp's own tests prove that the authorization group fails a cloud that does
                // not hold to the policy (harness/tests/cloud.rs).
                open_policy: std::env::var("FQP_CLOUD_FAULT").as_deref() == Ok("open-policy"),
            },
        )
        .map_err(cloud_error)?;
        settings.push(("cloud".into(), format!("{host}:{}", endpoint.plain.port())));
        if let Some(tls) = endpoint.tls {
            settings.push(("cloud_tls".into(), format!("{host}:{}", tls.port())));
        }
        let bind = bind.parse().map_err(cloud_error)?;
        let greengrass = GreengrassLab::start(endpoint.cloud(), host, bind, pki, settings)?;
        let data_plane = fqp_cloud::ota_http::DataPlane::start(
            endpoint.cloud().clone(),
            std::net::SocketAddr::new(bind, 0),
            host,
            &Tls {
                chain: vec![pki.server.der.clone()],
                key: pki.server.key_der.clone(),
                client_cas: Vec::new(),
            },
        )
        .map_err(cloud_error)?;
        Ok(CloudLab {
            endpoint,
            greengrass,
            _data_plane: data_plane,
            offers: None,
            pool: ids.iter().map(|id| thing_of(id)).collect(),
            pool_job: std::sync::Mutex::new(None),
        })
    }

    /// Lets tests ask for updates of the run's image (`cloud-ota-offer`).
    pub(crate) fn offer_updates(&mut self, offers: crate::ota::Offers) {
        self.offers = Some(offers);
    }

    /// What device `id` alone is given: its thing and that thing's token.
    pub(crate) fn device_settings(&self, id: &str) -> Vec<(String, String)> {
        let thing = thing_of(id);
        vec![
            ("cloud_token".into(), self.endpoint.token(&thing)),
            ("thing".into(), thing),
        ]
    }

    /// Carries out a `cloud-*` action; `None` for another action.
    pub(crate) fn act(
        &self,
        action: &str,
        fields: &[(String, String)],
    ) -> Option<Result<Vec<(String, String)>, LabError>> {
        let thing = || field(fields, "thing");
        let done = |r: Result<(), LabError>| r.map(|()| Vec::new());
        Some(match action {
            "cloud-hold" => done(thing().map(|t| self.endpoint.hold(t))),
            "cloud-release" => done(thing().map(|t| self.endpoint.release(t))),
            "cloud-cut" => done(self.cut(fields)),
            "cloud-shadow-update" => done(self.shadow_update(fields)),
            "cloud-shadow-get" => self.shadow_get(fields),
            "cloud-traffic" => thing().map(|t| self.traffic(t)),
            "cloud-attach-certificate" => done(self.attach(fields)),
            "cloud-job-create" => done(self.create_job(fields)),
            "cloud-job-cancel" => done(self.cancel_job(fields)),
            "cloud-jobs-clear" => done(thing().and_then(|t| self.clear_jobs(t))),
            "cloud-group-join" => done(self.join_group(fields)),
            "cloud-job-execution" => self.job_execution(fields),
            "cloud-ota-offer" => self.ota_offer(fields),
            "cloud-ota-update" => self.ota_update(fields),
            "cloud-ota-pool" => self.ota_pool(fields),
            "cloud-group-leave" => done(self.leave_group(fields)),
            "cloud-greengrass-setup" => done(self.greengrass.setup(self.endpoint.cloud(), fields)),
            "cloud-defender-profile" => done(self.put_profile(fields)),
            "cloud-defender-alarms" => thing().and_then(|t| self.alarms(t)),
            "cloud-defender-check" => done(thing().and_then(|t| self.check_report(t))),
            "cloud-quarantine-release" => done(thing().and_then(|t| {
                self.endpoint
                    .cloud()
                    .defender()
                    .release(t)
                    .map_err(cloud_error)
            })),
            _ => return None,
        })
    }

    /// Publishes what an operator's change to jobs caused (notify, notify-next).
    fn jobs_changed(
        &self,
        r: Result<Vec<fqp_cloud::shadow::Message>, fqp_cloud::jobs::JobsError>,
    ) -> Result<(), LabError> {
        let messages = r.map_err(|e| LabError::Refuted(format!("the cloud's jobs: {e}")))?;
        self.endpoint.publish(&messages);
        Ok(())
    }

    /// `cloud-job-create` (`job`: its id; `document`: JSON, `{}` if absent; `thing` and/or `group`:
    /// its target; `continuous=1`: also things joining the group later; `timeout`: seconds an
    /// execution may stay IN_PROGRESS).
    fn create_job(&self, fields: &[(String, String)]) -> Result<(), LabError> {
        let optional = |k: &str| field(fields, k).ok();
        let bad = |k: &str, why: String| LabError::Field {
            field: k.into(),
            problem: why,
        };
        let document = match optional("document") {
            Some(d) => serde_json::from_str(d).map_err(|e| bad("document", e.to_string()))?,
            None => serde_json::json!({}),
        };
        let timeout = optional("timeout")
            .map(|t| t.parse::<u64>().map_err(|e| bad("timeout", e.to_string())))
            .transpose()?;
        let job = fqp_cloud::jobs::NewJob {
            id: field(fields, "job")?,
            document,
            things: optional("thing").into_iter().collect(),
            groups: optional("group").into_iter().collect(),
            fleet: false,
            continuous: optional("continuous") == Some("1"),
            in_progress_timeout_s: timeout,
        };
        let cloud = self.endpoint.cloud();
        self.jobs_changed(cloud.jobs().create(&job, fqp_cloud::endpoint::now()))
    }

    /// `cloud-ota-offer` (`thing` and/or `group`, `continuous=1`, and what
    /// [`crate::ota::Offers::make`] reads): an update of the run's image created for the
    /// target, answered as the setting `job` (the update's job id).
    fn ota_offer(&self, fields: &[(String, String)]) -> Result<Vec<(String, String)>, LabError> {
        let offers = self.offers.as_ref().ok_or_else(|| LabError::Option {
            problem: "the test asks for an update, and the run has no signed image".into(),
            fix: "give the port a boot loader ([boot] in port.toml): fqp signs its image".into(),
        })?;
        let update = offers.make(fields)?;
        let optional = |k: &str| field(fields, k).ok();
        let new = fqp_cloud::ota::NewUpdate {
            id: &update.id,
            image: &update.image,
            signature: &update.signature,
            certfile: crate::ota::CERTIFICATE_NAME,
            things: optional("thing").into_iter().collect(),
            groups: optional("group").into_iter().collect(),
            fleet: false,
            continuous: optional("continuous") == Some("1"),
            in_progress_timeout_s: None,
            http: optional("http") == Some("1"),
        };
        let cloud = self.endpoint.cloud();
        let messages = cloud
            .create_update(&new, fqp_cloud::endpoint::now())
            .map_err(|e| LabError::Refuted(format!("the cloud's OTA service: {e}")))?;
        self.endpoint.publish(&messages);
        Ok(vec![("job".into(), fqp_cloud::ota::job_id(&update.id))])
    }

    /// `cloud-ota-pool` (what [`crate::ota::Offers::make`] reads): the run's deployment to
    /// its pool, the thing group of every device of the run (`fqp-pool`) — made by the first
    /// device to ask, which the others then find: whatever their executions pending were is
    /// canceled first, so that the deployment is each device's next job. Answered as
    /// settings: `job`, `pool` (the devices), `succeeded` (their executions SUCCEEDED so far).
    fn ota_pool(&self, fields: &[(String, String)]) -> Result<Vec<(String, String)>, LabError> {
        let mut made = self.pool_job.lock().unwrap_or_else(|p| p.into_inner());
        let job = match made.as_ref() {
            Some(job) => job.clone(),
            None => {
                let cloud = self.endpoint.cloud();
                match cloud.registry().create_group(POOL_GROUP, None) {
                    Ok(()) | Err(fqp_cloud::registry::RegistryError::GroupExists(_)) => {}
                    Err(e) => return Err(cloud_error(e)),
                }
                for thing in &self.pool {
                    cloud
                        .registry()
                        .add_to_group(POOL_GROUP, thing)
                        .map_err(cloud_error)?;
                    self.clear_jobs(thing)?;
                }
                let mut offer = fields.to_vec();
                offer.retain(|(k, _)| k != "thing" && k != "group");
                offer.push(("group".into(), POOL_GROUP.into()));
                let answer = self.ota_offer(&offer)?;
                let job = field(&answer, "job")?.to_string();
                *made = Some(job.clone());
                job
            }
        };
        let jobs = self.endpoint.cloud().jobs();
        let mut succeeded = 0;
        for thing in &self.pool {
            let e = jobs.execution(thing, &job).map_err(cloud_error)?;
            succeeded += usize::from(e.is_some_and(|e| e["status"] == "SUCCEEDED"));
        }
        Ok(vec![
            ("job".into(), job),
            ("pool".into(), self.pool.len().to_string()),
            ("succeeded".into(), succeeded.to_string()),
        ])
    }

    /// `cloud-cut` (`thing`, `blocks`): the thing's connection is dropped once it has
    /// carried that many more stream blocks.
    fn cut(&self, fields: &[(String, String)]) -> Result<(), LabError> {
        let blocks = field(fields, "blocks")?
            .parse()
            .map_err(|_| LabError::Field {
                field: "blocks".into(),
                problem: "a number of blocks".into(),
            })?;
        self.endpoint.cut_after(field(fields, "thing")?, blocks);
        Ok(())
    }

    /// `cloud-ota-update` (`thing`, `job`): the update as the cloud holds it for the thing,
    /// answered as settings: `ota_version` (the image's, from the job's document),
    /// `ota_status` (the execution's, `NONE` without one), and its status details
    /// `ota_self_test`, `ota_updated_by`, `ota_reason`, `ota_progress`, `ota_log` (`-` when
    /// absent).
    fn ota_update(&self, fields: &[(String, String)]) -> Result<Vec<(String, String)>, LabError> {
        let (thing, job) = (field(fields, "thing")?, field(fields, "job")?);
        let jobs = self.endpoint.cloud().jobs();
        let document = jobs
            .job(job)
            .map_err(cloud_error)?
            .ok_or_else(|| LabError::Refuted(format!("the cloud has no job {job}")))?;
        let version = &document["document"]["afr_ota"]["files"][0]["attr"]["version"];
        let execution = jobs.execution(thing, job).map_err(cloud_error)?;
        let text = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
        let e = execution.unwrap_or_else(|| serde_json::json!({"status": "NONE"}));
        let details = &e["statusDetails"];
        Ok(vec![
            ("ota_version".into(), text(version)),
            ("ota_status".into(), text(&e["status"])),
            ("ota_self_test".into(), text(&details["self_test"])),
            ("ota_updated_by".into(), text(&details["updatedBy"])),
            ("ota_reason".into(), text(&details["reason"])),
            ("ota_progress".into(), text(&details["progress"])),
            ("ota_log".into(), text(&details["log"])),
        ])
    }

    /// `cloud-job-cancel` (`job`): its pending executions become CANCELED.
    fn cancel_job(&self, fields: &[(String, String)]) -> Result<(), LabError> {
        let jobs = self.endpoint.cloud().jobs();
        self.jobs_changed(jobs.cancel(field(fields, "job")?, fqp_cloud::endpoint::now()))
    }

    /// `cloud-jobs-clear` (`thing`): the thing's pending executions are canceled, so that a
    /// test starts with an empty queue.
    fn clear_jobs(&self, thing: &str) -> Result<(), LabError> {
        let jobs = self.endpoint.cloud().jobs();
        self.jobs_changed(jobs.cancel_pending_of(thing, fqp_cloud::endpoint::now()))
    }

    /// `cloud-group-join` (`group`, made if new; `thing`): the thing joins the group, and
    /// the group's continuous jobs reach it.
    fn join_group(&self, fields: &[(String, String)]) -> Result<(), LabError> {
        let (group, thing) = (field(fields, "group")?, field(fields, "thing")?);
        let cloud = self.endpoint.cloud();
        match cloud.registry().create_group(group, None) {
            Ok(()) | Err(fqp_cloud::registry::RegistryError::GroupExists(_)) => {}
            Err(e) => return Err(cloud_error(e)),
        }
        self.jobs_changed(
            cloud
                .jobs()
                .join_group(group, thing, fqp_cloud::endpoint::now()),
        )
    }

    /// `cloud-group-leave` (`group`, `thing`).
    fn leave_group(&self, fields: &[(String, String)]) -> Result<(), LabError> {
        let (group, thing) = (field(fields, "group")?, field(fields, "thing")?);
        self.endpoint
            .cloud()
            .registry()
            .remove_from_group(group, thing)
            .map_err(cloud_error)
    }

    /// `cloud-defender-profile` (`body`: the security profile, JSON as `docs/cloud.md` shows).
    fn put_profile(&self, fields: &[(String, String)]) -> Result<(), LabError> {
        let profile: fqp_cloud::defender::Profile = serde_json::from_str(field(fields, "body")?)
            .map_err(|e| LabError::Field {
                field: "body".into(),
                problem: e.to_string(),
            })?;
        self.endpoint
            .cloud()
            .defender()
            .put_profile(&profile)
            .map_err(|e| LabError::Refuted(e.to_string()))
    }

    /// `cloud-defender-alarms` (`thing`): the thing's active alarms, answered as the setting
    /// `alarms` (a JSON list).
    fn alarms(&self, thing: &str) -> Result<Vec<(String, String)>, LabError> {
        let alarms = self
            .endpoint
            .cloud()
            .defender()
            .alarms(Some(thing))
            .map_err(cloud_error)?;
        let text = serde_json::to_string(&alarms).map_err(cloud_error)?;
        Ok(vec![("alarms".into(), text)])
    }

    /// `cloud-defender-check` (`thing`): the lab's cross-check of the thing's latest report
    /// against what the endpoint saw of the connection that sent it — the report may not
    /// claim fewer bytes out than the endpoint received, nor fewer in than it sent, and must
    /// list the connection to the cloud. Refuted, naming the figures, when it falls short.
    fn check_report(&self, thing: &str) -> Result<(), LabError> {
        let cloud = self.endpoint.cloud();
        let report = cloud
            .defender()
            .latest(thing)
            .map_err(cloud_error)?
            .ok_or_else(|| LabError::Refuted(format!("{thing} has sent no accepted report")))?;
        let seen = self
            .endpoint
            .before_report(thing)
            .ok_or_else(|| LabError::Refuted(format!("the cloud saw no report of {thing}")))?;
        let stats = report.stats.ok_or_else(|| {
            LabError::Refuted(format!("report {} has no network statistics", report.id))
        })?;
        let mut short = Vec::new();
        if stats.bytes_out < seen.bytes_in {
            short.push(format!(
                "bytes out {} < {} the cloud received on that connection",
                stats.bytes_out, seen.bytes_in
            ));
        }
        if stats.bytes_in < seen.bytes_out {
            short.push(format!(
                "bytes in {} < {} the cloud sent on that connection",
                stats.bytes_in, seen.bytes_out
            ));
        }
        let ports = [
            Some(self.endpoint.plain.port()),
            self.endpoint.tls.map(|a| a.port()),
        ];
        if !report
            .connections
            .iter()
            .any(|(remote, _)| ports.contains(&Some(remote.port())))
        {
            short.push("no connection to the cloud's endpoint among its connections".into());
        }
        match short.is_empty() {
            true => Ok(()),
            false => Err(LabError::Refuted(format!(
                "report {} under-reports: {}",
                report.id,
                short.join("; ")
            ))),
        }
    }

    /// `cloud-job-execution` (`job`, `thing`): the execution as the operator sees it, answered
    /// as the setting `execution` (JSON; `{}` if there is none).
    fn job_execution(
        &self,
        fields: &[(String, String)],
    ) -> Result<Vec<(String, String)>, LabError> {
        let jobs = self.endpoint.cloud().jobs();
        let e = jobs
            .execution(field(fields, "thing")?, field(fields, "job")?)
            .map_err(cloud_error)?;
        let text = e.map_or_else(|| "{}".to_string(), |v| v.to_string());
        Ok(vec![("execution".into(), text)])
    }

    /// `$aws/things/<thing>/shadow[/name/<name>]/<op>`.
    fn shadow_topic(fields: &[(String, String)], op: &str) -> Result<String, LabError> {
        let thing = field(fields, "thing")?;
        Ok(match field(fields, "name") {
            Ok(n) => format!("$aws/things/{thing}/shadow/name/{n}/{op}"),
            Err(_) => format!("$aws/things/{thing}/shadow/{op}"),
        })
    }

    /// `cloud-shadow-update` (`thing`, `name` for a named shadow, `body`: the update
    /// document): the operator changes a shadow, and the device hears what that causes.
    fn shadow_update(&self, fields: &[(String, String)]) -> Result<(), LabError> {
        let topic = Self::shadow_topic(fields, "update")?;
        let answer = self
            .endpoint
            .operate(&topic, field(fields, "body")?.as_bytes())
            .map_err(cloud_error)?;
        match answer.first() {
            Some(m) if m.topic.ends_with("/accepted") => Ok(()),
            Some(m) => Err(LabError::Refuted(format!(
                "the cloud refused the operator's update: {}",
                m.payload
            ))),
            None => Err(LabError::Refuted("the cloud did not answer".into())),
        }
    }

    /// `cloud-shadow-get` (`thing`, `name`): the shadow as the cloud holds it, answered as the
    /// setting `shadow_document` (`{}` when there is none).
    fn shadow_get(&self, fields: &[(String, String)]) -> Result<Vec<(String, String)>, LabError> {
        let topic = Self::shadow_topic(fields, "get")?;
        let answer = self
            .endpoint
            .cloud()
            .request(&topic, b"{}", 0)
            .map_err(cloud_error)?;
        let doc = answer
            .first()
            .filter(|m| m.topic.ends_with("/accepted"))
            .map_or_else(|| "{}".to_string(), |m| m.payload.to_string());
        Ok(vec![("shadow_document".into(), doc)])
    }

    /// `cloud-traffic` (`thing`): what the endpoint saw of the thing, answered as the setting
    /// `traffic` (JSON: `connections`, `refused`, `bytes_in`, `bytes_out`, `messages_in`,
    /// `messages_out`).
    fn traffic(&self, thing: &str) -> Vec<(String, String)> {
        let t = self.endpoint.traffic(thing);
        let text = serde_json::to_string(&t).unwrap_or_default();
        vec![("traffic".into(), text)]
    }

    /// `cloud-attach-certificate` (`thing`, `sha256`: the certificate's SHA-256, hex): the
    /// certificate becomes the thing's, so a mutual-TLS connection presenting it is that
    /// thing. (By fingerprint: a certificate is longer than a console line.)
    fn attach(&self, fields: &[(String, String)]) -> Result<(), LabError> {
        let fingerprint = hex_field(fields, "sha256")?;
        if fingerprint.len() != 32 {
            return Err(LabError::Field {
                field: "sha256".into(),
                problem: format!("{} bytes, not 32", fingerprint.len()),
            });
        }
        self.endpoint
            .cloud()
            .registry()
            .put_thing(field(fields, "thing")?, Some(&hex::encode(fingerprint)))
            .map_err(cloud_error)
    }
}
