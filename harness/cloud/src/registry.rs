//! The registry: things (each with the fingerprint of its certificate from the lab PKI),
//! thing groups (static membership, nested: a thing in a group is in that group's ancestors
//! too), and the contract's policy rule — a connection may use only its own client id, and
//! only its own `$aws/things/<t>/…` topics.

use crate::store::{Store, StoreError, Table};
use serde_json::{json, Value};

/// A registry request could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(
        "{name:?} is not a valid {what} name\n  fix: use 1 to 128 letters, digits, '-', '_' or ':'"
    )]
    Name { name: String, what: &'static str },
    #[error("there is no thing {0:?}\n  fix: create the thing first")]
    NoThing(String),
    #[error("there is no thing group {0:?}\n  fix: create the group first (its parent before it)")]
    NoGroup(String),
    #[error("thing group {0:?} exists already\n  fix: choose another name, or delete it first")]
    GroupExists(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The SHA-256 of a certificate (DER), hex: how the registry knows a certificate.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, der))
}

/// A thing as registered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Thing {
    pub name: String,
    /// SHA-256 (hex) of the thing's certificate, when it has one.
    pub certificate: Option<String>,
}

/// The registry, over the cloud's store.
#[derive(Debug)]
pub struct Registry<'a> {
    store: &'a Store,
}

fn check_name(name: &str, what: &'static str) -> Result<(), RegistryError> {
    let ok = (1..=128).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':'));
    if ok {
        Ok(())
    } else {
        Err(RegistryError::Name {
            name: name.to_string(),
            what,
        })
    }
}

fn member_key(group: &str, thing: &str) -> String {
    format!("{group}\0{thing}")
}

impl<'a> Registry<'a> {
    pub fn new(store: &'a Store) -> Registry<'a> {
        Registry { store }
    }

    /// Creates thing `name` or, if it exists, sets its certificate.
    pub fn put_thing(&self, name: &str, certificate: Option<&str>) -> Result<(), RegistryError> {
        check_name(name, "thing")?;
        let record = json!({ "certificate": certificate }).to_string();
        self.store
            .apply(&[(Table::Things, name, Some(record.as_bytes()))])?;
        Ok(())
    }

    /// Thing `name`, if registered.
    pub fn thing(&self, name: &str) -> Result<Option<Thing>, RegistryError> {
        let Some(bytes) = self.store.get(Table::Things, name)? else {
            return Ok(None);
        };
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Some(Thing {
            name: name.to_string(),
            certificate: v["certificate"].as_str().map(str::to_string),
        }))
    }

    /// The things whose certificate has fingerprint `sha256`, by name (more than one is an
    /// audit finding: one certificate on several things).
    pub fn things_with_certificate(&self, sha256: &str) -> Result<Vec<String>, RegistryError> {
        let mut found = Vec::new();
        for (name, bytes) in self.store.scan(Table::Things, "")? {
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if v["certificate"].as_str() == Some(sha256) {
                found.push(name);
            }
        }
        Ok(found)
    }

    /// Removes thing `name` and its memberships.
    pub fn delete_thing(&self, name: &str) -> Result<(), RegistryError> {
        if self.thing(name)?.is_none() {
            return Err(RegistryError::NoThing(name.to_string()));
        }
        let groups: Vec<String> = self
            .store
            .scan(Table::Groups, "")?
            .into_iter()
            .map(|(g, _)| member_key(&g, name))
            .collect();
        let mut changes: Vec<(Table, &str, Option<&[u8]>)> = vec![(Table::Things, name, None)];
        changes.extend(groups.iter().map(|k| (Table::Members, k.as_str(), None)));
        self.store.apply(&changes)?;
        Ok(())
    }

    /// Creates group `name`, under `parent` if given (which must exist).
    pub fn create_group(&self, name: &str, parent: Option<&str>) -> Result<(), RegistryError> {
        check_name(name, "thing group")?;
        if self.store.get(Table::Groups, name)?.is_some() {
            return Err(RegistryError::GroupExists(name.to_string()));
        }
        if let Some(p) = parent {
            self.parent_of(p)?;
        }
        let record = json!({ "parent": parent }).to_string();
        self.store
            .apply(&[(Table::Groups, name, Some(record.as_bytes()))])?;
        Ok(())
    }

    /// The parent of group `name` (an error if there is no such group).
    fn parent_of(&self, name: &str) -> Result<Option<String>, RegistryError> {
        let bytes = self
            .store
            .get(Table::Groups, name)?
            .ok_or_else(|| RegistryError::NoGroup(name.to_string()))?;
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(v["parent"].as_str().map(str::to_string))
    }

    /// Every thing, by name.
    pub fn things(&self) -> Result<Vec<Thing>, RegistryError> {
        let mut out = Vec::new();
        for (name, _) in self.store.scan(Table::Things, "")? {
            if let Some(t) = self.thing(&name)? {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// Every thing group, by name, with its parent.
    pub fn groups(&self) -> Result<Vec<(String, Option<String>)>, RegistryError> {
        let mut out = Vec::new();
        for (name, _) in self.store.scan(Table::Groups, "")? {
            let parent = self.parent_of(&name)?;
            out.push((name, parent));
        }
        Ok(out)
    }

    /// Puts `thing` in `group` (both must exist; already in it is fine).
    pub fn add_to_group(&self, group: &str, thing: &str) -> Result<(), RegistryError> {
        self.parent_of(group)?;
        if self.thing(thing)?.is_none() {
            return Err(RegistryError::NoThing(thing.to_string()));
        }
        let key = member_key(group, thing);
        self.store
            .apply(&[(Table::Members, key.as_str(), Some(&[][..]))])?;
        Ok(())
    }

    /// Takes `thing` out of `group`.
    pub fn remove_from_group(&self, group: &str, thing: &str) -> Result<(), RegistryError> {
        self.parent_of(group)?;
        let key = member_key(group, thing);
        self.store.apply(&[(Table::Members, key.as_str(), None)])?;
        Ok(())
    }

    /// Every group `thing` is in: those it was put in and their ancestors, sorted.
    pub fn groups_of(&self, thing: &str) -> Result<Vec<String>, RegistryError> {
        let mut found = Vec::new();
        for (key, _) in self.store.scan(Table::Members, "")? {
            let Some((group, member)) = key.split_once('\0') else {
                continue;
            };
            if member != thing {
                continue;
            }
            let mut at = Some(group.to_string());
            while let Some(g) = at {
                if found.contains(&g) {
                    break;
                }
                at = self.parent_of(&g)?;
                found.push(g);
            }
        }
        found.sort();
        Ok(found)
    }

    /// Every thing in `group` or in a group below it, sorted.
    pub fn things_in(&self, group: &str) -> Result<Vec<String>, RegistryError> {
        self.parent_of(group)?;
        let mut things = Vec::new();
        for (key, _) in self.store.scan(Table::Members, "")? {
            if let Some((_, thing)) = key.split_once('\0') {
                if !things.iter().any(|t| t == thing)
                    && self.groups_of(thing)?.iter().any(|g| g == group)
                {
                    things.push(thing.to_string());
                }
            }
        }
        things.sort();
        Ok(things)
    }
}

impl Registry<'_> {
    /// Registers what the audit needs of a certificate (a device's, or a CA's).
    pub fn put_certificate(&self, c: &crate::audit::CertificateInfo) -> Result<(), RegistryError> {
        let bytes = serde_json::to_vec(c).unwrap_or_default();
        self.store
            .apply(&[(Table::Certificates, &c.sha256, Some(&bytes))])?;
        Ok(())
    }

    pub fn certificates(&self) -> Result<Vec<crate::audit::CertificateInfo>, RegistryError> {
        Ok(self
            .store
            .scan(Table::Certificates, "")?
            .into_iter()
            .filter_map(|(_, b)| serde_json::from_slice(&b).ok())
            .collect())
    }

    /// Creates or replaces a policy (its things must exist).
    pub fn put_policy(&self, p: &Policy) -> Result<(), RegistryError> {
        check_name(&p.name, "policy")?;
        for t in &p.things {
            if self.thing(t)?.is_none() {
                return Err(RegistryError::NoThing(t.clone()));
            }
        }
        let bytes = serde_json::to_vec(p).unwrap_or_default();
        self.store
            .apply(&[(Table::Policies, &p.name, Some(&bytes))])?;
        Ok(())
    }

    pub fn policies(&self) -> Result<Vec<Policy>, RegistryError> {
        Ok(self
            .store
            .scan(Table::Policies, "")?
            .into_iter()
            .filter_map(|(_, b)| serde_json::from_slice(&b).ok())
            .collect())
    }

    /// The policies attached to `thing`.
    pub fn policies_of(&self, thing: &str) -> Result<Vec<Policy>, RegistryError> {
        Ok(self
            .policies()?
            .into_iter()
            .filter(|p| p.things.iter().any(|t| t == thing))
            .collect())
    }
}

/// A policy: grants on top of the contract's rule, for the things it is attached to.
/// Resources are topic filters; `${iot:Connection.Thing.ThingName}` stands for the
/// connection's thing.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Policy {
    pub name: String,
    pub statements: Vec<Statement>,
    #[serde(default)]
    pub things: Vec<String>,
}

/// One grant: actions (`publish`, `subscribe`, or `*`) on resources.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Statement {
    pub actions: Vec<String>,
    pub resources: Vec<String>,
}

/// The policy variable for the connection's thing.
pub const THING_VARIABLE: &str = "${iot:Connection.Thing.ThingName}";

/// Whether every topic `filter` matches is matched by `grant` too.
fn covers(grant: &str, filter: &str) -> bool {
    let mut f = filter.split('/');
    for g in grant.split('/') {
        match (g, f.next()) {
            ("#", _) => return true,
            (_, Some("#")) | (_, None) => return false,
            ("+", Some(_)) => {}
            (_, Some("+")) => return false,
            (g, Some(level)) if g == level => {}
            _ => return false,
        }
    }
    f.next().is_none()
}

impl Policy {
    /// Whether this policy lets `thing` do `access` on `topic` (a topic name to publish, a
    /// filter to subscribe).
    pub fn allows(&self, thing: &str, topic: &str, access: Access) -> bool {
        let word = match access {
            Access::Publish => "publish",
            Access::Subscribe => "subscribe",
        };
        self.statements.iter().any(|s| {
            s.actions.iter().any(|a| a == word || a == "*")
                && s.resources.iter().any(|r| {
                    let r = r.replace(THING_VARIABLE, thing);
                    match access {
                        Access::Publish => crate::endpoint::matches(&r, topic),
                        Access::Subscribe => covers(&r, topic),
                    }
                })
        })
    }

    /// Why this policy grants more than a thing's own topics, if it does.
    pub fn too_permissive(&self) -> Option<String> {
        let own = format!("$aws/things/{THING_VARIABLE}/");
        for s in &self.statements {
            if s.actions.iter().any(|a| a == "*") {
                return Some("it allows every action (\"*\")".into());
            }
            if let Some(r) = s.resources.iter().find(|r| !r.starts_with(&own)) {
                return Some(format!(
                    "resource {r:?} reaches beyond the thing's own topics"
                ));
            }
        }
        None
    }
}

/// What a connection wants to do with a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Publish,
    Subscribe,
}

/// The contract's policy for a connection of `thing` (its certificate's identity) that
/// connected as `client_id`: only its own client id, and only topics or topic filters every
/// match of which is under its own `$aws/things/<thing>/`.
pub fn allowed(thing: &str, client_id: &str, topic: &str, access: Access) -> bool {
    if client_id != thing {
        return false;
    }
    let Some(rest) = topic.strip_prefix(&format!("$aws/things/{thing}/")) else {
        return false;
    };
    // A publish names one topic: no wildcards. A filter may use them below the prefix.
    rest.split('/').all(|level| match access {
        Access::Publish => !level.contains(['+', '#']),
        Access::Subscribe => true,
    }) && !rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::Scratch;

    #[test]
    fn nested_groups_hold_their_childrens_things() {
        let s = Scratch::new("registry-groups");
        let r = Registry::new(&s);
        for t in ["lamp-1", "lamp-2", "meter"] {
            r.put_thing(t, Some(&format!("sha-{t}"))).unwrap();
        }
        r.create_group("building", None).unwrap();
        r.create_group("floor-1", Some("building")).unwrap();
        r.create_group("lamps", Some("floor-1")).unwrap();
        r.add_to_group("lamps", "lamp-1").unwrap();
        r.add_to_group("lamps", "lamp-2").unwrap();
        r.add_to_group("floor-1", "meter").unwrap();
        assert_eq!(
            r.groups_of("lamp-1").unwrap(),
            ["building", "floor-1", "lamps"]
        );
        assert_eq!(
            r.things_in("building").unwrap(),
            ["lamp-1", "lamp-2", "meter"]
        );
        assert_eq!(r.things_in("lamps").unwrap(), ["lamp-1", "lamp-2"]);
        r.remove_from_group("lamps", "lamp-2").unwrap();
        assert_eq!(r.things_in("floor-1").unwrap(), ["lamp-1", "meter"]);
        r.delete_thing("lamp-1").unwrap();
        assert_eq!(r.things_in("building").unwrap(), ["meter"]);
        assert_eq!(r.thing("lamp-1").unwrap(), None);
        assert_eq!(
            r.thing("meter").unwrap().unwrap().certificate.as_deref(),
            Some("sha-meter")
        );
        r.put_thing("copy", Some("sha-meter")).unwrap();
        assert_eq!(
            r.things_with_certificate("sha-meter").unwrap(),
            ["copy", "meter"]
        );
    }

    #[test]
    fn bad_names_missing_things_and_groups_are_refused_with_the_fix() {
        let s = Scratch::new("registry-refusals");
        let r = Registry::new(&s);
        let e = r.put_thing("my lamp", None).unwrap_err().to_string();
        assert!(
            e.contains("not a valid thing name") && e.contains("fix:"),
            "{e}"
        );
        assert!(r.put_thing(&"x".repeat(129), None).is_err());
        let e = r
            .create_group("kids", Some("parents"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no thing group \"parents\""), "{e}");
        r.create_group("g", None).unwrap();
        assert!(matches!(
            r.create_group("g", None),
            Err(RegistryError::GroupExists(_))
        ));
        assert!(matches!(
            r.add_to_group("g", "ghost"),
            Err(RegistryError::NoThing(_))
        ));
        assert!(matches!(
            r.delete_thing("ghost"),
            Err(RegistryError::NoThing(_))
        ));
    }

    #[test]
    fn a_connection_uses_only_its_own_client_id_and_topics() {
        use Access::*;
        assert!(allowed(
            "lamp",
            "lamp",
            "$aws/things/lamp/shadow/update",
            Publish
        ));
        assert!(allowed(
            "lamp",
            "lamp",
            "$aws/things/lamp/shadow/#",
            Subscribe
        ));
        assert!(allowed(
            "lamp",
            "lamp",
            "$aws/things/lamp/jobs/+/get",
            Subscribe
        ));
        assert!(
            !allowed("lamp", "meter", "$aws/things/lamp/shadow/update", Publish),
            "another client id"
        );
        assert!(
            !allowed("lamp", "lamp", "$aws/things/meter/shadow/get", Publish),
            "another thing"
        );
        assert!(
            !allowed("lamp", "lamp", "$aws/things/lamp-2/shadow/get", Publish),
            "a longer name"
        );
        assert!(
            !allowed("lamp", "lamp", "$aws/things/+/shadow/get", Subscribe),
            "every thing"
        );
        assert!(!allowed("lamp", "lamp", "$aws/things/#", Subscribe));
        assert!(!allowed("lamp", "lamp", "#", Subscribe));
        assert!(
            !allowed("lamp", "lamp", "$aws/things/lamp/shadow/+", Publish),
            "a wildcard in a publish"
        );
        assert!(!allowed("lamp", "lamp", "$aws/things/lamp/", Publish));
        assert!(
            !allowed("lamp", "lamp", "lab/echo", Publish),
            "outside the thing's topics"
        );
    }
}
