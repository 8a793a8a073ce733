//! Device Defender: the device-side metrics reports (`$aws/things/<t>/defender/metrics/
//! {json,cbor}`), accepted or rejected with the reason (answered in the report's own
//! encoding); *detect*: security profiles whose behaviours each accepted report is held to,
//! raising an alarm for every behaviour it breaks (and clearing it when a later report keeps
//! it); *mitigate*: a profile may quarantine a thing that raised an alarm — it joins the
//! [`QUARANTINE`] group, whose things the endpoint refuses.
//!
//! Network statistics are taken as counters: a behaviour on bytes or packets out judges the
//! growth since the thing's previous report (all of it, when a counter went back: the device
//! restarted).

mod detect;
mod report;
#[cfg(test)]
mod tests;

pub use detect::{Alarm, Behavior, Criterion, Profile};
pub use report::{parse, Format, Refusal, Report, Stats, MAX_REPORT};

use crate::registry::{Registry, RegistryError};
use crate::shadow::Message;
use crate::store::{Store, StoreError, Table};
use serde_json::json;

/// The thing group whose things the endpoint refuses.
pub const QUARANTINE: &str = "quarantine";

/// The Defender service over the cloud's store.
#[derive(Debug)]
pub struct Defender<'a> {
    store: &'a Store,
}

/// An operator's request on Defender could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum DefenderError {
    #[error("security profile {0:?}: {1}\n  fix: give a name and at least one behaviour, each with its name")]
    BadProfile(String, String),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn report_key(thing: &str, id: u64) -> String {
    format!("{thing}\0{id:020}")
}

impl<'a> Defender<'a> {
    pub fn new(store: &'a Store) -> Defender<'a> {
        Defender { store }
    }

    /// Handles a report of `thing` in `format`: the answer, accepted or rejected.
    pub fn handle(
        &self,
        thing: &str,
        format: Format,
        payload: &[u8],
        now: u64,
    ) -> Result<Vec<Message>, DefenderError> {
        let word = match format {
            Format::Json => "json",
            Format::Cbor => "cbor",
        };
        let topic = format!("$aws/things/{thing}/defender/metrics/{word}");
        let report = match parse(payload, format) {
            Ok(r) => r,
            Err(r) => return Ok(vec![rejected(&topic, thing, r)]),
        };
        if self
            .store
            .get(Table::Reports, &report_key(thing, report.id))?
            .is_some()
        {
            let r = Refusal {
                code: "DuplicateReportId",
                message: format!("report {} of {thing} was accepted already", report.id),
                id: Some(report.id),
            };
            return Ok(vec![rejected(&topic, thing, r)]);
        }
        let previous = self.latest(thing)?;
        let encoded = serde_json::to_vec(&report).unwrap_or_default();
        self.store.apply(&[(
            Table::Reports,
            &report_key(thing, report.id),
            Some(&encoded),
        )])?;
        self.detect(thing, &report, previous.as_ref(), now)?;
        Ok(vec![Message {
            topic: format!("{topic}/accepted"),
            payload: json!({"thingName": thing, "reportId": report.id, "status": "ACCEPTED"}),
        }])
    }

    /// The thing's latest accepted report.
    pub fn latest(&self, thing: &str) -> Result<Option<Report>, StoreError> {
        Ok(self
            .store
            .scan(Table::Reports, &format!("{thing}\0"))?
            .last()
            .and_then(|(_, b)| serde_json::from_slice(b).ok()))
    }

    /// Creates or replaces a security profile.
    pub fn put_profile(&self, p: &Profile) -> Result<(), DefenderError> {
        if p.name.is_empty()
            || p.behaviors.is_empty()
            || p.behaviors.iter().any(|b| b.name.is_empty())
        {
            return Err(DefenderError::BadProfile(
                p.name.clone(),
                "incomplete".into(),
            ));
        }
        let registry = Registry::new(self.store);
        for g in &p.targets {
            if registry.things_in(g).is_err() {
                return Err(RegistryError::NoGroup(g.clone()).into());
            }
        }
        let bytes = serde_json::to_vec(p).unwrap_or_default();
        self.store
            .apply(&[(Table::Profiles, &p.name, Some(&bytes))])?;
        Ok(())
    }

    pub fn profiles(&self) -> Result<Vec<Profile>, StoreError> {
        Ok(self
            .store
            .scan(Table::Profiles, "")?
            .into_iter()
            .filter_map(|(_, b)| serde_json::from_slice(&b).ok())
            .collect())
    }

    /// The active alarms (of `thing`, or of every thing).
    pub fn alarms(&self, thing: Option<&str>) -> Result<Vec<Alarm>, StoreError> {
        let prefix = thing.map_or_else(String::new, |t| format!("{t}\0"));
        Ok(self
            .store
            .scan(Table::Alarms, &prefix)?
            .into_iter()
            .filter_map(|(_, b)| serde_json::from_slice(&b).ok())
            .collect())
    }

    /// Holds `report` to every profile that covers `thing`: raises and clears alarms, and
    /// quarantines the thing for a profile that says so.
    fn detect(
        &self,
        thing: &str,
        report: &Report,
        previous: Option<&Report>,
        now: u64,
    ) -> Result<(), DefenderError> {
        let registry = Registry::new(self.store);
        let groups = registry.groups_of(thing)?;
        let period = detect::growth(report.stats, previous.and_then(|p| p.stats));
        for p in self.profiles()? {
            if !p.targets.is_empty() && !p.targets.iter().any(|t| groups.contains(t)) {
                continue;
            }
            for b in &p.behaviors {
                let key = format!("{thing}\0{}\0{}", p.name, b.name);
                match b.criterion.broken_by(report, period) {
                    Some(observed) => {
                        let alarm = Alarm {
                            thing: thing.into(),
                            profile: p.name.clone(),
                            behavior: b.name.clone(),
                            observed,
                            report_id: report.id,
                            raised_at: now,
                        };
                        let bytes = serde_json::to_vec(&alarm).unwrap_or_default();
                        self.store.apply(&[(Table::Alarms, &key, Some(&bytes))])?;
                        if p.quarantine {
                            self.quarantine(thing)?;
                        }
                    }
                    None => self.store.apply(&[(Table::Alarms, &key, None)])?,
                }
            }
        }
        Ok(())
    }

    /// Puts `thing` in the quarantine group (made if new).
    pub fn quarantine(&self, thing: &str) -> Result<(), RegistryError> {
        let registry = Registry::new(self.store);
        match registry.create_group(QUARANTINE, None) {
            Ok(()) | Err(RegistryError::GroupExists(_)) => {}
            Err(e) => return Err(e),
        }
        registry.add_to_group(QUARANTINE, thing)
    }

    /// Takes `thing` out of quarantine (the operator's decision).
    pub fn release(&self, thing: &str) -> Result<(), RegistryError> {
        Registry::new(self.store).remove_from_group(QUARANTINE, thing)
    }

    /// Whether `thing` is in quarantine.
    pub fn quarantined(&self, thing: &str) -> Result<bool, RegistryError> {
        Ok(Registry::new(self.store)
            .groups_of(thing)?
            .iter()
            .any(|g| g == QUARANTINE))
    }
}

fn rejected(topic: &str, thing: &str, r: Refusal) -> Message {
    let mut payload = json!({
        "thingName": thing, "status": "REJECTED",
        "statusDetails": {"ErrorCode": r.code, "ErrorMessage": r.message},
    });
    if let Some(id) = r.id {
        payload["reportId"] = json!(id);
    }
    Message {
        topic: format!("{topic}/rejected"),
        payload,
    }
}
