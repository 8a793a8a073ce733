//! # fqp-cloud: the local IoT cloud
//!
//! What a device qualifies against offline, with no account anywhere: the public AWS IoT
//! contract (`shared/reference/cloud-contract.md`: topics, documents, error codes), so that
//! the same firmware also works against a real endpoint. This crate holds the services'
//! logic, each a function of (request, stored state, time) → (responses, new state), and
//! their state; the MQTT side (the broker's topics to and from these functions) sits above.
//!
//! - [`store`]: the state, in redb, an embedded transactional database (copy-on-write
//!   B-trees, each commit durable before it is acknowledged): a cloud stopped or killed
//!   loses nothing it answered. redb rather than SQLite: pure Rust (no C compiler, a build of
//!   seconds on two cores), and the state is a few keyed documents, not relational data.
//! - [`audit`]: Device Defender's audit: findings over the registry (shared, expiring,
//!   revoked-CA certificates; over-permissive policies).
//! - [`mosquitto`]: the same policy written for mosquitto (ACL and password files).
//! - [`operator`]: the operator's requests (`fqp cloud …`), carried out on the database or
//!   by a serving cloud through its control socket.
//! - [`defender`]: Device Defender: metrics reports checked and kept, security profiles
//!   raising alarms, quarantine.
//! - [`greengrass`]: Greengrass discovery: groups, cores and their connectivity, and the
//!   mutual-TLS HTTPS endpoint that answers `GET /greengrass/discover/thing/<thing>`.
//! - [`registry`]: things (with their certificates' fingerprints), nested thing groups, and
//!   the policy rule: a connection uses only its own client id and `$aws/things/<t>/` topics.
//! - [`jobs`]: Jobs: jobs on things and (nested) groups, continuous jobs, executions a device
//!   drives (`get`, `start-next`, `$next/get`, `<id>/get`, `<id>/update`), notify and
//!   notify-next, versions, cancel, in-progress timeouts.
//! - [`route`]: which service a message on the broker is for (requests, not the cloud's own
//!   answers on neighbouring topics).
//! - [`shadow`]: Device Shadow, classic and named: get, update, delete, with their accepted
//!   and rejected answers, the delta and documents messages, versions and optimistic locking.

pub mod audit;
pub mod defender;
pub mod endpoint;
pub mod greengrass;
mod https;
pub mod jobs;
pub mod mosquitto;
pub mod operator;
pub mod ota;
pub mod ota_http;
pub mod registry;
pub mod route;
pub mod service;
pub mod shadow;
pub mod store;
pub mod streams;

pub use endpoint::{Endpoint, Traffic};
pub use service::Cloud;
