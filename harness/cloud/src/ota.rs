//! OTA updates: a signed image made into a stream, and a job whose document tells the devices
//! how to fetch it and what to check it with (the contract's `afr_ota`), for things, groups or
//! the fleet — continuous, it also reaches things that join a target group later.

use crate::jobs::{JobsError, NewJob};
use crate::service::Cloud;
use crate::shadow::Message;
use crate::store::StoreError;
use base64::Engine as _;
use serde_json::json;

/// An update to create.
#[derive(Clone, Debug)]
pub struct NewUpdate<'a> {
    /// The update's id: its job is `ota-<id>`, its stream `ota-<id>` too.
    pub id: &'a str,
    /// The signed image (`fqp ota sign`).
    pub image: &'a [u8],
    /// The file's signature (DER) from the same signing; empty for an unsigned file (the
    /// job's document then has none).
    pub signature: &'a [u8],
    /// The name the devices hold the signer's certificate under.
    pub certfile: &'a str,
    pub things: Vec<&'a str>,
    pub groups: Vec<&'a str>,
    pub fleet: bool,
    pub continuous: bool,
    /// A device still in progress after this long is timed out.
    pub in_progress_timeout_s: Option<u64>,
    /// The file over HTTPS too (`protocols` MQTT and HTTP, a presigned URL in the job): the
    /// cloud must run the data plane ([`crate::ota_http::DataPlane`]).
    pub http: bool,
}

impl<'a> NewUpdate<'a> {
    /// Update `id` of `things` to `image` (with its file signature), the signer's certificate
    /// held as `code-signing`, not continuous, no timeout.
    pub fn to_things(
        id: &'a str,
        image: &'a [u8],
        signature: &'a [u8],
        things: Vec<&'a str>,
    ) -> Self {
        NewUpdate {
            id,
            image,
            signature,
            certfile: "code-signing",
            things,
            groups: vec![],
            fleet: false,
            continuous: false,
            in_progress_timeout_s: None,
            http: false,
        }
    }
}

/// Why an update was not created.
#[derive(Debug, thiserror::Error)]
pub enum OtaError {
    #[error("the file is not a signed image: {0}\n  fix: sign the firmware with `fqp ota sign`")]
    NotAnImage(&'static str),
    #[error("the file is {len} bytes and its header says {header}\n  fix: sign the firmware again; the file was cut short or added to")]
    Length { len: usize, header: usize },
    #[error("the update is to be offered over HTTP, and this cloud runs no HTTP data plane\n  fix: create it against a served cloud (`fqp cloud serve`, or a run's lab), or without HTTP")]
    NoDataPlane,
    #[error(transparent)]
    Jobs(#[from] JobsError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The job (and stream) of update `id`.
pub fn job_id(id: &str) -> String {
    format!("ota-{id}")
}

impl Cloud {
    /// Creates update `u`: its stream, then its job (the messages to publish: the devices'
    /// notifications).
    pub fn create_update(&self, u: &NewUpdate<'_>, now: u64) -> Result<Vec<Message>, OtaError> {
        let header =
            fqp_image::Header::parse(u.image).map_err(|e| OtaError::NotAnImage(e.reason()))?;
        if header.image_len() != u.image.len() {
            return Err(OtaError::Length {
                len: u.image.len(),
                header: header.image_len(),
            });
        }
        let id = job_id(u.id);
        let data_plane = match u.http {
            true => Some(self.data_plane().ok_or(OtaError::NoDataPlane)?),
            false => None,
        };
        if self.jobs().job(&id)?.is_some() {
            return Err(JobsError::Exists(id).into());
        }
        self.streams().create(&id, &[(0, u.image)])?;
        let mut document = json!({"afr_ota": {
            "protocols": ["MQTT"],
            "streamname": id,
            "files": [{
                "filepath": "firmware.fqpimg",
                "filesize": u.image.len(),
                "fileid": 0,
                "certfile": u.certfile,
                "sig-sha256-ecdsa": base64::engine::general_purpose::STANDARD.encode(u.signature),
                "fileType": 0,
                "attr": {
                    "version": header.version.to_string(),
                    "board": header.board_name().unwrap_or_default(),
                },
            }],
        }});
        if let Some(p) = data_plane {
            // The file over HTTPS too, from a presigned URL.
            document["afr_ota"]["protocols"] = json!(["MQTT", "HTTP"]);
            if let Some(f) = document["afr_ota"]["files"][0].as_object_mut() {
                let expires = now + crate::ota_http::URL_LIFETIME_S;
                f.insert("update_data_url".into(), json!(p.url(&id, 0, expires)));
                f.insert("auth_scheme".into(), json!("aws.s3.presigned"));
            }
        }
        if u.signature.is_empty() {
            // An unsigned image: the document says nothing of a signature.
            if let Some(f) = document["afr_ota"]["files"][0].as_object_mut() {
                f.remove("sig-sha256-ecdsa");
            }
        }
        let job = NewJob {
            id: &id,
            document,
            things: u.things.clone(),
            groups: u.groups.clone(),
            fleet: u.fleet,
            continuous: u.continuous,
            in_progress_timeout_s: u.in_progress_timeout_s,
        };
        Ok(self.jobs().create(&job, now)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> Vec<u8> {
        let mut h = fqp_image::Header::new(
            fqp_image::Version::new(1, 2, 3),
            0,
            "mps2-an385",
            0x1_0000,
            b"payload",
        )
        .unwrap();
        h.signer = [1; 32];
        let mut out = h.to_bytes().to_vec();
        out.extend_from_slice(b"payload");
        out
    }

    #[test]
    fn an_update_is_a_stream_and_a_job_that_names_it() {
        let path = std::env::temp_dir().join(format!("fqp-ota-{}.redb", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let cloud = Cloud::open(&path).unwrap();
        cloud.registry().put_thing("lamp", None).unwrap();
        let img = image();
        let u = NewUpdate::to_things("1", &img, b"\x30\x02sig", vec!["lamp"]);
        let notes = cloud.create_update(&u, 100).unwrap();
        assert!(notes
            .iter()
            .any(|m| m.topic == "$aws/things/lamp/jobs/notify-next"));
        let job = cloud.jobs().job("ota-1").unwrap().unwrap();
        let file = &job["document"]["afr_ota"]["files"][0];
        assert_eq!(job["document"]["afr_ota"]["streamname"], "ota-1");
        assert_eq!(file["filesize"], img.len());
        assert_eq!(file["certfile"], "code-signing");
        assert_eq!(file["attr"]["version"], "1.2.3");
        assert_eq!(file["sig-sha256-ecdsa"], "MAJzaWc=");
        assert_eq!(
            cloud.streams().files("ota-1").unwrap(),
            vec![(0, img.len())]
        );
        // The same id again, a file that is not an image, one cut short: refused.
        assert!(matches!(
            cloud.create_update(&u, 101),
            Err(OtaError::Jobs(_))
        ));
        let junk = NewUpdate {
            id: "2",
            image: b"junk",
            ..u.clone()
        };
        assert!(matches!(
            cloud.create_update(&junk, 102),
            Err(OtaError::NotAnImage(_))
        ));
        let cut = NewUpdate {
            id: "3",
            image: &img[..img.len() - 1],
            ..u
        };
        assert!(matches!(
            cloud.create_update(&cut, 103),
            Err(OtaError::Length { .. })
        ));
        std::fs::remove_file(&path).unwrap();
    }
}
