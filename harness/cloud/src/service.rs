//! The cloud as one object: its store and the services over it, and what a device's message
//! on a request topic gets in answer. The endpoint (the MQTT side) and the operator commands
//! both go through it.

use crate::defender::{Defender, DefenderError};
use crate::jobs::{self, Jobs};
use crate::registry::Registry;
use crate::route::{route, Route};
use crate::shadow::{self, Message};
use crate::store::{Store, StoreError};
use crate::streams::Streams;
use std::path::Path;

/// The local cloud's services over one store.
#[derive(Debug)]
pub struct Cloud {
    store: Store,
    /// The OTA data plane over HTTPS, when one runs: updates then offer their file there too.
    data_plane: std::sync::RwLock<Option<crate::ota_http::Presigner>>,
}

impl Cloud {
    /// The cloud whose state is the database at `path` (created if new).
    pub fn open(path: &Path) -> Result<Cloud, StoreError> {
        Ok(Cloud {
            store: Store::open(path)?,
            data_plane: std::sync::RwLock::new(None),
        })
    }

    /// The updates made from now on offer their file over this data plane too.
    pub fn set_data_plane(&self, p: crate::ota_http::Presigner) {
        *self.data_plane.write().unwrap_or_else(|e| e.into_inner()) = Some(p);
    }

    /// The OTA data plane over HTTPS, if one runs.
    pub fn data_plane(&self) -> Option<crate::ota_http::Presigner> {
        self.data_plane
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn registry(&self) -> Registry<'_> {
        Registry::new(&self.store)
    }

    pub fn jobs(&self) -> Jobs<'_> {
        Jobs::new(&self.store)
    }

    pub fn streams(&self) -> Streams<'_> {
        Streams::new(&self.store)
    }

    /// Whether `topic` is a request to one of the services.
    pub fn is_request(topic: &str) -> bool {
        route(topic).is_some()
    }

    /// Handles a device's message on `topic` at `now` (seconds since the epoch): the messages
    /// to publish, the answer first; nothing for a topic no service answers.
    pub fn request(
        &self,
        topic: &str,
        payload: &[u8],
        now: u64,
    ) -> Result<Vec<Message>, StoreError> {
        match route(topic) {
            Some(Route::Shadow(id, op)) => shadow::handle(&self.store, id, op, payload, now),
            Some(Route::Jobs(thing, request)) => self.jobs().handle(thing, request, payload, now),
            Some(Route::Stream(thing, stream)) => self.streams().handle(thing, stream, payload),
            Some(Route::Defender(thing, format)) => {
                match self.defender().handle(thing, format, payload, now) {
                    Ok(m) => Ok(m),
                    Err(DefenderError::Store(e))
                    | Err(DefenderError::Registry(crate::registry::RegistryError::Store(e))) => {
                        Err(e)
                    }
                    // The registry refused the quarantine (the thing is gone meanwhile).
                    Err(_) => Ok(Self::failed(topic, now).into_iter().collect()),
                }
            }
            None => Ok(Vec::new()),
        }
    }

    pub fn greengrass(&self) -> crate::greengrass::Greengrass<'_> {
        crate::greengrass::Greengrass::new(&self.store)
    }

    pub fn defender(&self) -> Defender<'_> {
        Defender::new(&self.store)
    }

    /// The refusal of a request on `topic` that arrived while its connection already had
    /// the most requests in flight the contract allows.
    pub fn throttled(topic: &str, payload: &[u8], now: u64) -> Option<Message> {
        match route(topic)? {
            Route::Shadow(id, op) => Some(shadow::refusal(id, op, payload, 429, now)),
            Route::Jobs(thing, request) => Some(jobs::refusal(
                thing,
                request,
                payload,
                "RequestThrottled",
                now,
            )),
            Route::Defender(..) => Some(defender_refusal(topic, "Throttled")),
            Route::Stream(thing, stream) => Some(crate::streams::refusal(
                thing,
                stream,
                "Throttled",
                "more requests in flight than the connection may have",
            )),
        }
    }

    /// The refusal of a request on `topic` that the services failed to handle (the store
    /// failed): the device hears so rather than nothing.
    pub fn failed(topic: &str, now: u64) -> Option<Message> {
        match route(topic)? {
            Route::Shadow(id, op) => Some(shadow::refusal(id, op, b"", 500, now)),
            Route::Jobs(thing, request) => {
                Some(jobs::refusal(thing, request, b"", "InternalError", now))
            }
            Route::Defender(..) => Some(defender_refusal(topic, "InternalError")),
            Route::Stream(thing, stream) => Some(crate::streams::refusal(
                thing,
                stream,
                "InternalError",
                "the cloud's store failed",
            )),
        }
    }
}

/// A Defender refusal that is not about the report: `code` Throttled or InternalError.
fn defender_refusal(topic: &str, code: &str) -> Message {
    let thing = topic
        .strip_prefix("$aws/things/")
        .and_then(|r| r.split('/').next())
        .unwrap_or("");
    Message {
        topic: format!("{topic}/rejected"),
        payload: serde_json::json!({
            "thingName": thing, "status": "REJECTED",
            "statusDetails": {"ErrorCode": code, "ErrorMessage": "the report was not handled"},
        }),
    }
}
