//! `fqp cloud`: the local IoT cloud for a lab — served on its own (`serve`), and inspected
//! and changed by its operator (things, groups, shadows, jobs, Defender's profiles, alarms
//! and audit). Each operator command goes to the serving cloud through its control socket
//! when one is serving the lab, else straight to the lab's database. Tables for people,
//! `--json` for scripts.

use super::fail;
use crate::progress::out_line;
use fqp_cloud::operator::{self, Request};
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Lab directory whose cloud this is (as for qualify: --lab, $FQP_LAB, ~/.config/fqp/lab).
    #[arg(long, value_name = "DIR", global = true)]
    pub lab: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Serve the cloud until interrupted: the MQTT endpoint (plain with a token per thing,
    /// and mutual TLS), Greengrass discovery, and the control socket for these commands.
    Serve {
        /// The name or address devices reach this machine by (the TLS certificate's name).
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// The address to listen on (0.0.0.0 for boards on the network).
        #[arg(long, default_value = "127.0.0.1")]
        bind: std::net::IpAddr,
        /// The plain listener's port (0: any free port).
        #[arg(long, default_value_t = 1883)]
        port: u16,
        /// The mutual-TLS listener's port.
        #[arg(long, default_value_t = 8883)]
        tls_port: u16,
        /// Greengrass discovery's port.
        #[arg(long, default_value_t = 8443)]
        discovery_port: u16,
    },
    /// List the things.
    Things,
    /// Register a thing (with the certificate it will connect with, PEM).
    ThingAdd {
        name: String,
        #[arg(long, value_name = "PEM")]
        certificate: Option<PathBuf>,
    },
    ThingRemove {
        name: String,
    },
    /// The thing's password on the plain listener (from a serving cloud).
    Token {
        thing: String,
    },
    /// List the thing groups and their things.
    Groups,
    GroupAdd {
        name: String,
        #[arg(long)]
        parent: Option<String>,
    },
    /// Put a thing in a group (its continuous jobs reach it).
    GroupJoin {
        group: String,
        thing: String,
    },
    GroupLeave {
        group: String,
        thing: String,
    },
    /// A shadow's document.
    ShadowGet {
        thing: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// Update a shadow as the operator (`--body '{"state":{"desired":{…}}}'`).
    ShadowUpdate {
        thing: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        body: String,
    },
    ShadowDelete {
        thing: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// List the jobs and how their executions stand.
    Jobs,
    /// Create a job for things and/or groups.
    JobCreate {
        id: String,
        /// The job document (JSON).
        #[arg(long, default_value = "{}")]
        document: String,
        #[arg(long = "thing")]
        things: Vec<String>,
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Every thing of the registry.
        #[arg(long)]
        fleet: bool,
        /// Also reach things that join the groups (or, with --fleet, are added) later.
        #[arg(long)]
        continuous: bool,
        /// Seconds an execution may stay IN_PROGRESS.
        #[arg(long)]
        timeout: Option<u64>,
    },
    JobCancel {
        id: String,
    },
    /// A job's execution on a thing.
    Execution {
        id: String,
        thing: String,
    },
    /// Device Defender's security profiles.
    Profiles,
    /// Create or replace a security profile (JSON file, as docs/cloud.md shows).
    ProfilePut {
        file: PathBuf,
    },
    /// Active Defender alarms (of one thing, or all).
    Alarms {
        thing: Option<String>,
    },
    /// Take a thing out of quarantine.
    Release {
        thing: String,
    },
    /// Register a certificate (a device's or a CA's, PEM) for the audit.
    CertificateAdd {
        file: PathBuf,
        /// The CA is revoked: certificates it issued must not be in use.
        #[arg(long)]
        revoked: bool,
    },
    /// Run Device Defender's audit over the registry.
    Audit,
    /// Write a mosquitto configuration that enforces the cloud's policy (an ACL file and a
    /// password file from the registry, client id = user name = thing; a service account
    /// for the cloud's side, its password in `service-password`).
    MosquittoConfig {
        /// Directory for mosquitto.conf, acl, passwd and service-password.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[arg(long, default_value = "127.0.0.1")]
        bind: String,
        #[arg(long, default_value_t = 1883)]
        port: u16,
    },
}

fn read(path: &PathBuf) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn parse_json(text: &str, what: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("{what} is not JSON: {e}"))
}

impl Cmd {
    /// The operator request this command is.
    fn request(self) -> Result<Request, String> {
        Ok(match self {
            Cmd::Serve { .. } | Cmd::MosquittoConfig { .. } => {
                return Err("not an operator request".into())
            }
            Cmd::Things => Request::Things,
            Cmd::ThingAdd { name, certificate } => {
                let sha = match certificate {
                    Some(p) => {
                        Some(fqp_cloud::audit::CertificateInfo::from_pem(&read(&p)?)?.sha256)
                    }
                    None => None,
                };
                Request::ThingAdd {
                    name,
                    certificate_sha256: sha,
                }
            }
            Cmd::ThingRemove { name } => Request::ThingRemove { name },
            Cmd::Token { thing } => Request::Token { thing },
            Cmd::Groups => Request::Groups,
            Cmd::GroupAdd { name, parent } => Request::GroupAdd { name, parent },
            Cmd::GroupJoin { group, thing } => Request::GroupJoin { group, thing },
            Cmd::GroupLeave { group, thing } => Request::GroupLeave { group, thing },
            Cmd::ShadowGet { thing, name } => Request::ShadowGet { thing, name },
            Cmd::ShadowUpdate { thing, name, body } => Request::ShadowUpdate {
                thing,
                name,
                body: parse_json(&body, "--body")?,
            },
            Cmd::ShadowDelete { thing, name } => Request::ShadowDelete { thing, name },
            Cmd::Jobs => Request::Jobs,
            Cmd::JobCreate {
                id,
                document,
                things,
                groups,
                fleet,
                continuous,
                timeout,
            } => Request::JobCreate {
                id,
                document: parse_json(&document, "--document")?,
                things,
                groups,
                fleet,
                continuous,
                timeout_s: timeout,
            },
            Cmd::JobCancel { id } => Request::JobCancel { id },
            Cmd::Execution { id, thing } => Request::Execution { id, thing },
            Cmd::Profiles => Request::Profiles,
            Cmd::ProfilePut { file } => Request::ProfilePut {
                profile: serde_json::from_str(&read(&file)?)
                    .map_err(|e| format!("{}: not a security profile: {e}", file.display()))?,
            },
            Cmd::Alarms { thing } => Request::Alarms { thing },
            Cmd::Release { thing } => Request::Release { thing },
            Cmd::CertificateAdd { file, revoked } => {
                let mut info = fqp_cloud::audit::CertificateInfo::from_pem(&read(&file)?)?;
                info.revoked = revoked;
                Request::CertificateAdd { info }
            }
            Cmd::Audit => Request::Audit,
        })
    }
}

impl Args {
    pub fn run(self) -> ExitCode {
        let lab = fqp_runner::sign::lab_dir(self.lab.as_deref());
        if let Cmd::Serve {
            host,
            bind,
            port,
            tls_port,
            discovery_port,
        } = self.cmd
        {
            return serve(&lab, &host, bind, (port, tls_port, discovery_port));
        }
        if let Cmd::MosquittoConfig { out, bind, port } = self.cmd {
            return match mosquitto_config(&lab, &out, &bind, port) {
                Ok(files) => {
                    files
                        .iter()
                        .for_each(|f| out_line(&f.display().to_string()));
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            };
        }
        let json = self.json;
        let request = match self.cmd.request() {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        match operate(&lab, &request) {
            Ok(v) if json => {
                out_line(&serde_json::to_string_pretty(&v).unwrap_or_default());
                ExitCode::SUCCESS
            }
            Ok(v) => {
                print_table(&v);
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        }
    }
}

/// Carries out `r` on the lab's cloud: through the serving cloud's control socket, else on
/// the database.
pub(crate) fn operate(
    lab: &std::path::Path,
    r: &Request,
) -> Result<Value, operator::OperatorError> {
    let dir = fqp_lab::cloud_dir(lab);
    match operator::call(&operator::socket_path(&dir), r) {
        Some(a) => a,
        None => fqp_reports::files::create_private_dir(&dir)
            .map_err(|e| operator::OperatorError(e.to_string()))
            .and_then(|()| {
                fqp_cloud::Cloud::open(&dir.join("cloud.redb"))
                    .map_err(|e| operator::OperatorError(e.to_string()))
            })
            .and_then(|c| operator::execute(&c, None, r)),
    }
}

/// Writes mosquitto.conf, acl, passwd (hashed by mosquitto_passwd) and service-password for
/// the lab's cloud into `out`; the files written.
fn mosquitto_config(
    lab: &std::path::Path,
    out: &std::path::Path,
    bind: &str,
    port: u16,
) -> Result<Vec<PathBuf>, String> {
    let dir = fqp_lab::cloud_dir(lab);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let secret = fqp_lab::lasting_secret(&dir).map_err(|e| e.to_string())?;
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let service: String = fqp_lab::entropy_hex().chars().take(32).collect();
    let r = Request::MosquittoFiles {
        secret: Some(hex),
        service: service.clone(),
    };
    let files = operate(lab, &r).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let path = |name: &str| out.join(name);
    let write = |name: &str, text: &str| {
        fqp_reports::files::write_private(&path(name), text).map_err(|e| e.to_string())
    };
    write("acl", files["acl"].as_str().unwrap_or(""))?;
    write("passwd", files["passwords"].as_str().unwrap_or(""))?;
    write("service-password", &format!("{service}\n"))?;
    let hashed = std::process::Command::new("mosquitto_passwd")
        .arg("-U")
        .arg(path("passwd"))
        .output()
        .map_err(|e| {
            format!("cannot run mosquitto_passwd: {e}\n  fix: apt-get install mosquitto")
        })?;
    if !hashed.status.success() {
        return Err(format!(
            "mosquitto_passwd -U failed: {}",
            String::from_utf8_lossy(&hashed.stderr)
        ));
    }
    let conf = fqp_cloud::mosquitto::config(
        bind,
        port,
        &path("passwd").display().to_string(),
        &path("acl").display().to_string(),
        fqp_lab::running_as_root(),
    );
    write("mosquitto.conf", &conf)?;
    Ok(["mosquitto.conf", "acl", "passwd", "service-password"]
        .iter()
        .map(|n| path(n))
        .collect())
}

/// Serves the lab's cloud until SIGINT, SIGTERM or SIGHUP.
fn serve(
    lab: &std::path::Path,
    host: &str,
    bind: std::net::IpAddr,
    ports: (u16, u16, u16),
) -> ExitCode {
    let served = match fqp_lab::serve_cloud(lab, host, bind, ports) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let e = &served.endpoint;
    out_line(&format!(
        "mqtt {host}:{} (user = client id = thing, password: fqp cloud token <thing>)",
        e.plain.port()
    ));
    if let Some(tls) = e.tls {
        out_line(&format!(
            "mqtts {host}:{} (client certificates from the lab root)",
            tls.port()
        ));
    }
    out_line(&format!(
        "discovery https://{host}:{}/greengrass/discover/thing/<thing>",
        served.discovery.port()
    ));
    out_line(&format!(
        "ota data plane https://{host}:{}/ota/<stream>/<file> (presigned URLs in the jobs)",
        served.data_plane.port()
    ));
    out_line(&format!("control {}", served.control.display()));
    out_line("serving; stop with Ctrl-C");
    while fqp_process::signal().is_none() {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = std::fs::remove_file(&served.control);
    out_line("stopped");
    ExitCode::SUCCESS
}

/// A value as people read it: a list of records as a table (one column per field of the
/// first), a record as `field: value` lines, anything else as JSON.
fn print_table(v: &Value) {
    let cell = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    match v {
        Value::Array(rows) if rows.iter().all(Value::is_object) && !rows.is_empty() => {
            // What a row is about first, then its other fields in order.
            let mut keys: Vec<&String> = rows[0]
                .as_object()
                .map(|m| m.keys().collect())
                .unwrap_or_default();
            let first = ["thing", "group", "jobId", "name", "check"];
            keys.sort_by_key(|k| first.iter().position(|f| f == k).unwrap_or(first.len()));
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| keys.iter().map(|k| cell(&r[k.as_str()])).collect())
                .collect();
            let widths: Vec<usize> = keys
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    table
                        .iter()
                        .map(|r| r[i].len())
                        .chain([k.len()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let line = |cells: Vec<String>| {
                let padded: Vec<String> = cells
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:w$}"))
                    .collect();
                out_line(padded.join("  ").trim_end());
            };
            line(keys.iter().map(|k| k.to_uppercase()).collect());
            for r in table {
                line(r);
            }
        }
        Value::Array(rows) if rows.is_empty() => out_line("(none)"),
        Value::Object(m) => {
            for (k, v) in m {
                out_line(&format!("{k}: {}", cell(v)));
            }
        }
        other => out_line(&other.to_string()),
    }
}
