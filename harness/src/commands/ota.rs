//! `fqp ota`: over-the-air updates — firmware images signed for the boot loader and the OTA
//! agent, and read back.

use super::cloud::operate;
use super::fail;
use crate::progress::out_line;
use fqp_cloud::operator::Request;
use fqp_runner::sign as lab;
use fqp_signing::{KeyFileSigner, Meta, Signer, TrustedKey, Version};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// Sign a firmware image: writes the image (header + payload) and, next to it, <OUT>.sig:
    /// the file's signature (DER, base64) as an OTA job document carries it.
    ///
    /// The firmware is an ELF (its loadable bytes from the lowest address, which becomes the
    /// load address) or a raw binary (with --load-address). The key is the lab's code-signing
    /// key (made on first use in the lab directory, its certificate from the lab root)
    /// unless --key is given.
    Sign(SignArgs),
    /// Read an image back: its header, whether its payload is intact, and whether it is
    /// signed by the certificate's key (the lab's code-signing certificate unless --cert);
    /// with <IMAGE>.sig present (or --sig), the file signature too. Exit status 0 when every
    /// check passes, 1 when one fails.
    Inspect(InspectArgs),
    /// Deploy a signed image from the lab's cloud (served, or its database): a stream of the
    /// image and a job `ota-<ID>` for the things, groups or fleet named; continuous, it also
    /// reaches things that join a target group later.
    Create(CreateArgs),
    /// Each device's state in update <ID>: the job's status, the self test, blocks received,
    /// the version it updated to, and why it failed. With --follow, again whenever it changes,
    /// until every device is done.
    Status(StatusArgs),
    /// Cut an emulated board's power at random moments of an update (download, swap, first
    /// boot), each cut in a run of its own, and check that the board always boots a valid
    /// image and completes the update (MCUboot's simulator method, on the real boot loader
    /// and flash file). Writes powercut.json; exit status 0 when no board was bricked and
    /// every update completed.
    Powercut(super::powercut::PowercutArgs),
    /// Cancel update <ID>: devices that have not finished it stop.
    Cancel {
        id: String,
        #[arg(long, value_name = "DIR")]
        lab: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct CreateArgs {
    /// The signed image (`fqp ota sign`); its file signature is <IMAGE>.sig.
    #[arg(value_name = "IMAGE")]
    image: PathBuf,
    /// The update's id (its job is ota-<ID>).
    #[arg(long)]
    id: String,
    /// A thing to update (repeatable).
    #[arg(long = "thing", value_name = "NAME")]
    things: Vec<String>,
    /// A thing group to update (repeatable).
    #[arg(long = "group", value_name = "NAME")]
    groups: Vec<String>,
    /// Every thing of the registry.
    #[arg(long)]
    fleet: bool,
    /// Also things that join a target group (or the fleet) later.
    #[arg(long)]
    continuous: bool,
    /// A device still updating after this many seconds is timed out.
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<u64>,
    /// Offer the file over HTTPS too (a presigned URL in the job; the served cloud's data
    /// plane), as well as the MQTT stream.
    #[arg(long)]
    http: bool,
    /// The name the devices hold the signer's certificate under.
    #[arg(long, default_value = "code-signing")]
    certfile: String,
    #[arg(long, value_name = "DIR")]
    lab: Option<PathBuf>,
}

#[derive(clap::Args)]
struct StatusArgs {
    id: String,
    /// Print again whenever a device's state changes, until every device is done.
    #[arg(long)]
    follow: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[arg(long, value_name = "DIR")]
    lab: Option<PathBuf>,
}

#[derive(clap::Args)]
struct SignArgs {
    /// The firmware: an ELF file or a raw binary.
    #[arg(value_name = "FIRMWARE")]
    firmware: PathBuf,
    /// Where to write the signed image.
    #[arg(short, long, value_name = "OUT")]
    out: PathBuf,
    /// The board the image is for (the port manifest's [port] name); a boot loader refuses an
    /// image for another.
    #[arg(long)]
    board: String,
    /// The image's version, major.minor.patch; a boot loader refuses one not newer than the
    /// running image.
    #[arg(long, value_parser = parse_version)]
    version: Version,
    /// The security counter: a boot loader refuses an image below the highest it confirmed.
    #[arg(long, default_value_t = 0)]
    security_counter: u32,
    /// Where a raw binary runs (an ELF says it itself), e.g. 0x10000.
    #[arg(long, value_parser = parse_address)]
    load_address: Option<u32>,
    /// The signing key (P-256, PKCS#8 PEM) in place of the lab's code-signing key.
    #[arg(long, value_name = "PEM")]
    key: Option<PathBuf>,
    /// The key's certificate, checked to be the key's.
    #[arg(long, value_name = "PEM", requires = "key")]
    cert: Option<PathBuf>,
    /// Lab directory (as for qualify) whose code-signing key signs.
    #[arg(long, value_name = "DIR")]
    lab: Option<PathBuf>,
}

#[derive(clap::Args)]
struct InspectArgs {
    #[arg(value_name = "IMAGE")]
    image: PathBuf,
    /// The signer's certificate (PEM) the signatures must verify with.
    #[arg(long, value_name = "PEM")]
    cert: Option<PathBuf>,
    /// The file signature (base64 DER), when not at <IMAGE>.sig.
    #[arg(long, value_name = "FILE")]
    sig: Option<PathBuf>,
    /// Lab directory whose code-signing certificate is used without --cert.
    #[arg(long, value_name = "DIR")]
    lab: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_version(s: &str) -> Result<Version, String> {
    Version::parse(s).ok_or_else(|| {
        format!("{s:?} is not major.minor.patch (major and minor 0-255, patch 0-65535)")
    })
}

fn parse_address(s: &str) -> Result<u32, String> {
    let n = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse(),
    };
    n.map_err(|_| format!("{s:?} is not an address (decimal or 0x-hex, below 4 GiB)"))
}

impl Args {
    pub fn run(self) -> ExitCode {
        match self.cmd {
            Cmd::Sign(a) => a.run(),
            Cmd::Inspect(a) => a.run(),
            Cmd::Create(a) => a.run(),
            Cmd::Status(a) => a.run(),
            Cmd::Powercut(a) => a.run(),
            Cmd::Cancel { id, lab } => {
                let r = Request::JobCancel {
                    id: fqp_cloud::ota::job_id(&id),
                };
                match operate(&lab::lab_dir(lab.as_deref()), &r) {
                    Ok(_) => {
                        out_line(&format!("update {id} cancelled"));
                        ExitCode::SUCCESS
                    }
                    Err(e) => fail(e),
                }
            }
        }
    }
}

/// The lab's code-signing key and certificate files, made on first use.
fn lab_identity(dir: Option<&Path>) -> Result<(PathBuf, PathBuf), fqp_lab::LabError> {
    let dir = lab::lab_dir(dir);
    fqp_lab::code_signing(&dir)?;
    Ok((dir.join("code-signing.key"), dir.join("code-signing.crt")))
}

fn sig_path(image: &Path) -> PathBuf {
    let mut s = image.as_os_str().to_owned();
    s.push(".sig");
    PathBuf::from(s)
}

impl SignArgs {
    fn run(self) -> ExitCode {
        let (key, cert) = match self.key {
            Some(k) => (k, self.cert),
            None => match lab_identity(self.lab.as_deref()) {
                Ok((k, c)) => (k, Some(c)),
                Err(e) => return fail(e),
            },
        };
        let signer = match KeyFileSigner::open(&key, cert.as_deref()) {
            Ok(s) => s,
            Err(e) => return fail(e),
        };
        let bytes = match std::fs::read(&self.firmware) {
            Ok(b) => b,
            Err(e) => return fail(format!("{}: {e}", self.firmware.display())),
        };
        let (load_address, payload) = if bytes.starts_with(b"\x7fELF") {
            match fqp_signing::payload_from_elf(&bytes) {
                Ok(p) => p,
                Err(e) => return fail(e),
            }
        } else {
            let Some(at) = self.load_address else {
                return fail(format!(
                    "{} is not an ELF file: give the address a raw binary runs at with \
                     --load-address",
                    self.firmware.display()
                ));
            };
            (at, bytes)
        };
        let meta = Meta {
            version: self.version,
            security_counter: self.security_counter,
            board: self.board,
            load_address,
        };
        let signed = match fqp_signing::sign(&payload, &meta, &signer) {
            Ok(s) => s,
            Err(e) => return fail(e),
        };
        let sig = sig_path(&self.out);
        let sig_text = signed.file_signature_base64() + "\n";
        if let Err(e) = std::fs::write(&self.out, &signed.image) {
            return fail(format!("{}: {e}", self.out.display()));
        }
        if let Err(e) = fqp_reports::files::write_whole(&sig, &sig_text) {
            return fail(e);
        }
        out_line(&format!(
            "{}: image {} for {}, {} bytes at {:#x}, security counter {}, signed by {} (key {})",
            self.out.display(),
            meta.version,
            meta.board,
            payload.len(),
            load_address,
            meta.security_counter,
            key.display(),
            short_id(&TrustedKey::new(signer.public_key()).id()),
        ));
        out_line(&format!("{}: the file signature", sig.display()));
        ExitCode::SUCCESS
    }
}

/// A key's id as a header holds it, shortened for people.
fn short_id(id: &[u8; 32]) -> String {
    hex::encode(&id[..8])
}

impl InspectArgs {
    fn run(self) -> ExitCode {
        let cert = match self.cert {
            Some(c) => c,
            None => match lab_identity(self.lab.as_deref()) {
                Ok((_, c)) => c,
                Err(e) => return fail(e),
            },
        };
        let key = match std::fs::read_to_string(&cert)
            .map_err(|e| format!("{}: {e}", cert.display()))
            .and_then(|pem| fqp_signing::certificate_key(&pem, &cert).map_err(|e| e.to_string()))
        {
            Ok(k) => k,
            Err(e) => return fail(e),
        };
        let image = match std::fs::read(&self.image) {
            Ok(b) => b,
            Err(e) => return fail(format!("{}: {e}", self.image.display())),
        };
        let sig_file = self.sig.unwrap_or_else(|| sig_path(&self.image));
        let file_sig = match std::fs::read_to_string(&sig_file) {
            Ok(text) => {
                use base64::Engine as _;
                match base64::engine::general_purpose::STANDARD.decode(text.trim()) {
                    Ok(der) => Some(der),
                    Err(e) => return fail(format!("{}: not base64: {e}", sig_file.display())),
                }
            }
            Err(_) => None,
        };
        let seen = match fqp_signing::inspect(&image, Some(&key), file_sig.as_deref()) {
            Ok(s) => s,
            Err(e) => return fail(format!("{}: {e}", self.image.display())),
        };
        let h = &seen.header;
        let signature = seen.signature.unwrap_or(Ok(()));
        let ok = seen.payload_intact && signature.is_ok() && seen.file_signature != Some(false);
        if self.json {
            let v = serde_json::json!({
                "version": h.version.to_string(),
                "security_counter": h.security_counter,
                "board": h.board_name().unwrap_or_default(),
                "load_address": h.load_address,
                "payload_len": h.payload_len,
                "payload_sha256": hex::encode(h.payload_sha256),
                "signer": hex::encode(h.signer),
                "payload_intact": seen.payload_intact,
                "signature": signature.map(|()| "valid").unwrap_or_else(|e| e.reason()),
                "file_signature": seen.file_signature,
                "ok": ok,
            });
            out_line(&v.to_string());
        } else {
            out_line(&format!(
                "{}: version {}, board {}, {} bytes at {:#x}, security counter {}",
                self.image.display(),
                h.version,
                h.board_name().unwrap_or("?"),
                h.payload_len,
                h.load_address,
                h.security_counter
            ));
            out_line(&format!(
                "payload: {}",
                if seen.payload_intact {
                    "intact (its SHA-256 is the header's)"
                } else {
                    "ALTERED or cut short (its SHA-256 is not the header's)"
                }
            ));
            out_line(&format!(
                "signature: {} (signer {}, checked with {})",
                match signature {
                    Ok(()) => "valid".to_string(),
                    Err(e) => format!("REFUSED: {}", e.reason()),
                },
                short_id(&h.signer),
                cert.display()
            ));
            out_line(&format!(
                "file signature: {}",
                match seen.file_signature {
                    Some(true) => format!("valid ({})", sig_file.display()),
                    Some(false) => format!("REFUSED ({})", sig_file.display()),
                    None => format!("none ({} not found)", sig_file.display()),
                }
            ));
        }
        if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(fqp_reports::EXIT_PRODUCT)
        }
    }
}

impl CreateArgs {
    fn run(self) -> ExitCode {
        let sig = sig_path(&self.image);
        let signature = match std::fs::read_to_string(&sig) {
            Ok(s) => s,
            Err(e) => {
                return fail(format!(
                    "{}: {e}\n  fix: the file signature `fqp ota sign` wrote beside the image",
                    sig.display()
                ))
            }
        };
        let image = std::path::absolute(&self.image).unwrap_or(self.image.clone());
        let r = Request::OtaCreate {
            id: self.id.clone(),
            image,
            signature,
            certfile: self.certfile,
            things: self.things,
            groups: self.groups,
            fleet: self.fleet,
            continuous: self.continuous,
            timeout_s: self.timeout,
            http: self.http,
        };
        match operate(&lab::lab_dir(self.lab.as_deref()), &r) {
            Ok(v) => {
                out_line(&format!(
                    "update {} created: job and stream {} ({} bytes)",
                    self.id,
                    v["job"].as_str().unwrap_or("?"),
                    v["bytes"]
                ));
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        }
    }
}

/// One device's line of an update's status; for a device whose update ended otherwise than
/// it should, what the device said of it: its status details in full, and its last doings
/// (the agent's `log`).
fn status_line(e: &serde_json::Value) -> String {
    let d = &e["statusDetails"];
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
    let version = d["updatedBy"]
        .as_str()
        .and_then(|h| u32::from_str_radix(h.trim_start_matches("0x"), 16).ok())
        .map(|v| Version::from_u32(v).to_string())
        .unwrap_or_else(|| "-".into());
    let mut line = format!(
        "{:<24} {:<12} {:<10} {:<12} {:<8} {:<10} {}",
        text(&e["thingName"]),
        text(&e["status"]),
        text(&d["self_test"]),
        text(&d["progress"]),
        text(&d["retries"]),
        version,
        text(&d["reason"]),
    );
    let ended_badly = matches!(
        e["status"].as_str(),
        Some("FAILED" | "REJECTED" | "TIMED_OUT" | "REMOVED")
    );
    if let (true, Some(details)) = (ended_badly, d.as_object()) {
        let all: Vec<String> = details
            .iter()
            .filter(|(k, _)| k.as_str() != "log")
            .map(|(k, v)| format!("{k}={}", text(v)))
            .collect();
        line.push_str(&format!("\n    status details: {}", all.join(", ")));
        if let Some(log) = d["log"].as_str() {
            line.push_str(&format!("\n    device's log: {log}"));
        }
    }
    line
}

impl StatusArgs {
    fn run(self) -> ExitCode {
        let lab = lab::lab_dir(self.lab.as_deref());
        let r = Request::OtaStatus {
            id: self.id.clone(),
        };
        let mut last = String::new();
        loop {
            let all = match operate(&lab, &r) {
                Ok(v) => v,
                Err(e) => return fail(e),
            };
            let rows: Vec<serde_json::Value> = all.as_array().cloned().unwrap_or_default();
            let text = if self.json {
                serde_json::to_string(&all).unwrap_or_default()
            } else {
                let mut t = format!(
                    "{:<24} {:<12} {:<10} {:<12} {:<8} {:<10} {}",
                    "thing", "status", "self test", "blocks", "retries", "version", "reason"
                );
                for e in &rows {
                    t.push('\n');
                    t.push_str(&status_line(e));
                }
                t
            };
            if text != last {
                out_line(&text);
                last = text;
            }
            let done = rows
                .iter()
                .all(|e| !matches!(e["status"].as_str(), Some("QUEUED") | Some("IN_PROGRESS")));
            if !self.follow || done {
                return ExitCode::SUCCESS;
            }
            if let Some(signal) = fqp_process::signal() {
                return fail(format!("stopped by {signal}"));
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::status_line;
    use serde_json::json;

    #[test]
    fn a_device_under_way_is_one_line() {
        let e = json!({
            "thingName": "lamp", "status": "IN_PROGRESS",
            "statusDetails": {"progress": "64/133", "retries": "2", "written": "64 blocks of 4096"}
        });
        let line = status_line(&e);
        assert!(!line.contains('\n'), "{line}");
        assert!(
            line.starts_with("lamp") && line.contains("64/133"),
            "{line}"
        );
        assert!(line.contains(" 2 "), "the retries: {line}");
    }

    #[test]
    fn a_failed_device_shows_its_details_and_its_log() {
        let e = json!({
            "thingName": "lamp", "status": "FAILED",
            "statusDetails": {
                "reason": "download timed out", "retries": "5",
                "log": "took ota-7: file 1 of 19256 B; no block of 4 asked from 12 in 2000 ms"
            }
        });
        let line = status_line(&e);
        let lines: Vec<&str> = line.lines().collect();
        assert_eq!(lines.len(), 3, "{line}");
        assert!(lines[0].ends_with("download timed out"), "{line}");
        assert_eq!(
            lines[1].trim(),
            "status details: reason=download timed out, retries=5"
        );
        assert!(
            lines[2].trim().starts_with("device's log: took ota-7"),
            "{line}"
        );
    }
}
