//! Greengrass discovery: Greengrass groups (their cores, each core's connectivity entries in
//! the order a device should try them, the group's CAs, and the things that are members), and
//! the answer to `GET /greengrass/discover/thing/<thing>` — the groups the thing is in, 404
//! when it is in none — served over mutual TLS by [`server::Discovery`], which answers 403
//! when the client's certificate is not the thing's.

pub mod server;
#[cfg(test)]
mod tests;

use crate::store::{Store, StoreError, Table};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A core's way in: an address and port, tried in the order listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connectivity {
    pub id: String,
    pub host: String,
    pub port: u16,
    #[serde(default)]
    pub metadata: String,
}

/// A Greengrass core.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Core {
    pub thing_arn: String,
    pub connectivity: Vec<Connectivity>,
}

/// A Greengrass group: its cores, its CAs (PEM) and its member things.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub id: String,
    pub cores: Vec<Core>,
    pub cas: Vec<String>,
    pub members: Vec<String>,
}

/// The discovery service over the cloud's store.
#[derive(Debug)]
pub struct Greengrass<'a> {
    store: &'a Store,
}

/// Discovery found no group for the thing (HTTP 404): the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotFound(pub String);

impl<'a> Greengrass<'a> {
    pub fn new(store: &'a Store) -> Greengrass<'a> {
        Greengrass { store }
    }

    /// Creates or replaces a group.
    pub fn put_group(&self, g: &Group) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(g).unwrap_or_default();
        self.store
            .apply(&[(Table::Greengrass, &g.id, Some(&bytes))])
    }

    pub fn groups(&self) -> Result<Vec<Group>, StoreError> {
        Ok(self
            .store
            .scan(Table::Greengrass, "")?
            .into_iter()
            .filter_map(|(_, b)| serde_json::from_slice(&b).ok())
            .collect())
    }

    /// Takes `thing` out of every group.
    pub fn leave_all(&self, thing: &str) -> Result<(), StoreError> {
        for mut g in self.groups()? {
            if g.members.iter().any(|m| m == thing) {
                g.members.retain(|m| m != thing);
                self.put_group(&g)?;
            }
        }
        Ok(())
    }

    /// The discovery answer for `thing`: its groups (at most 10, as the contract allows),
    /// each with its cores and CAs; [`NotFound`] when it is in none.
    pub fn discover(&self, thing: &str) -> Result<Result<Value, NotFound>, StoreError> {
        let groups: Vec<Value> = self
            .groups()?
            .into_iter()
            .filter(|g| g.members.iter().any(|m| m == thing))
            .take(10)
            .map(|g| {
                let cores: Vec<Value> = g
                    .cores
                    .iter()
                    .map(|c| {
                        let entries: Vec<Value> = c
                            .connectivity
                            .iter()
                            .map(|e| {
                                json!({"Id": e.id, "HostAddress": e.host,
                                       "PortNumber": e.port, "Metadata": e.metadata})
                            })
                            .collect();
                        json!({"thingArn": c.thing_arn, "Connectivity": entries})
                    })
                    .collect();
                json!({"GGGroupId": g.id, "Cores": cores, "CAs": g.cas})
            })
            .collect();
        Ok(match groups.is_empty() {
            true => Err(NotFound(format!("thing {thing} is in no Greengrass group"))),
            false => Ok(json!({ "GGGroups": groups })),
        })
    }
}
