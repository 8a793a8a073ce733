//! The cloud's policy for mosquitto: a lab that fronts its devices with mosquitto rather than
//! the cloud's own endpoint gets the same rule enforced there, from the registry — an ACL
//! file (every thing only under its own `$aws/things/<thing>/`, plus its policies' grants; a
//! service account for the cloud's side on every thing's topics) and the password lines
//! (user name = thing, password = its token; none for a quarantined thing), with mosquitto's
//! `use_username_as_clientid`, so that no connection can take another thing's client id.

use crate::registry::{Registry, RegistryError, THING_VARIABLE};
use crate::service::Cloud;

/// The account the cloud's side connects to mosquitto with.
pub const SERVICE_USER: &str = "fqp-cloud";

/// The ACL file for `cloud`'s registry.
pub fn acl(cloud: &Cloud) -> Result<String, RegistryError> {
    let registry: Registry<'_> = cloud.registry();
    let mut out = String::from(
        "# Written by fqp from the cloud's registry (fqp cloud mosquitto-config).\n\
         # The contract's rule: a thing (its user name) only under its own topics.\n\
         pattern readwrite $aws/things/%u/#\n\n\
         # The cloud's side: every thing's topics.\n",
    );
    out.push_str(&format!(
        "user {SERVICE_USER}\ntopic readwrite $aws/things/#\n"
    ));
    for p in registry.policies()? {
        for thing in &p.things {
            out.push_str(&format!("\n# policy {}\nuser {thing}\n", p.name));
            for s in &p.statements {
                let publish = s.actions.iter().any(|a| a == "publish" || a == "*");
                let subscribe = s.actions.iter().any(|a| a == "subscribe" || a == "*");
                let access = match (publish, subscribe) {
                    (true, true) => "readwrite",
                    (true, false) => "write",
                    (false, true) => "read",
                    (false, false) => continue,
                };
                for r in &s.resources {
                    out.push_str(&format!(
                        "topic {access} {}\n",
                        r.replace(THING_VARIABLE, thing)
                    ));
                }
            }
        }
    }
    Ok(out)
}

/// The password file's lines in clear (`mosquitto_passwd -U` hashes them): every thing not
/// in quarantine with its token from `token`, and the service account with `service`.
pub fn passwords(
    cloud: &Cloud,
    token: impl Fn(&str) -> String,
    service: &str,
) -> Result<String, RegistryError> {
    let mut out = format!("{SERVICE_USER}:{service}\n");
    for t in cloud.registry().things()? {
        if !cloud.defender().quarantined(&t.name)? {
            out.push_str(&format!("{}:{}\n", t.name, token(&t.name)));
        }
    }
    Ok(out)
}

/// A mosquitto configuration using `acl` and `passwd` (paths), listening on `port` at `bind`;
/// `as_root`: mosquitto started by root stays root (else it becomes user `mosquitto`, who
/// cannot read the files, private to their owner).
pub fn config(bind: &str, port: u16, passwd: &str, acl: &str, as_root: bool) -> String {
    let user = if as_root { "user root\n" } else { "" };
    format!(
        "# Written by fqp (fqp cloud mosquitto-config): the cloud's policy at mosquitto.\n\
         {user}listener {port} {bind}\n\
         allow_anonymous false\n\
         password_file {passwd}\n\
         acl_file {acl}\n\
         # The client id is the user name (the thing): no connection takes another's.\n\
         use_username_as_clientid true\n\
         persistence false\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Policy, Statement};

    #[test]
    fn the_rule_the_grants_and_the_accounts_are_written_for_mosquitto() {
        let path = std::env::temp_dir().join(format!("fqp-mosquitto-{}.redb", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let cloud = Cloud::open(&path).unwrap();
        for t in ["lamp", "meter"] {
            cloud.registry().put_thing(t, None).unwrap();
        }
        cloud
            .registry()
            .put_policy(&Policy {
                name: "broadcast".into(),
                statements: vec![Statement {
                    actions: vec!["subscribe".into()],
                    resources: vec![format!("lab/{THING_VARIABLE}/in")],
                }],
                things: vec!["lamp".into()],
            })
            .unwrap();
        cloud.defender().quarantine("meter").unwrap();
        let acl = acl(&cloud).unwrap();
        assert!(
            acl.contains("pattern readwrite $aws/things/%u/#\n"),
            "{acl}"
        );
        assert!(
            acl.contains("user fqp-cloud\ntopic readwrite $aws/things/#\n"),
            "{acl}"
        );
        assert!(acl.contains("user lamp\ntopic read lab/lamp/in\n"), "{acl}");
        let pw = passwords(&cloud, |t| format!("token-{t}"), "s3cret").unwrap();
        assert_eq!(
            pw, "fqp-cloud:s3cret\nlamp:token-lamp\n",
            "the quarantined meter has none"
        );
        let conf = config("127.0.0.1", 1883, "/p", "/a", false);
        assert!(conf.contains("use_username_as_clientid true") && conf.contains("acl_file /a"));
        drop(cloud);
        let _ = std::fs::remove_file(&path);
    }
}
