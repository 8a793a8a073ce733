//! Discovery's answers, and the endpoint over real mutual TLS.

use super::*;
use crate::store::Scratch;

fn group(id: &str, members: &[&str]) -> Group {
    Group {
        id: id.into(),
        cores: vec![Core {
            thing_arn: "arn:aws:iot:local:000000000000:thing/core-1".into(),
            connectivity: vec![
                Connectivity {
                    id: "dead".into(),
                    host: "10.0.2.2".into(),
                    port: 1,
                    metadata: String::new(),
                },
                Connectivity {
                    id: "live".into(),
                    host: "10.0.2.2".into(),
                    port: 8883,
                    metadata: "lab".into(),
                },
            ],
        }],
        cas: vec!["-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into()],
        members: members.iter().map(|m| m.to_string()).collect(),
    }
}

#[test]
fn a_thing_discovers_its_groups_in_the_contracts_shape() {
    let s = Scratch::new("gg-discover");
    let gg = Greengrass::new(&s);
    gg.put_group(&group("g1", &["lamp"])).unwrap();
    gg.put_group(&group("g2", &["meter"])).unwrap();
    let doc = gg.discover("lamp").unwrap().unwrap();
    assert_eq!(doc["GGGroups"].as_array().unwrap().len(), 1);
    let g = &doc["GGGroups"][0];
    assert_eq!(g["GGGroupId"], "g1");
    let entries = &g["Cores"][0]["Connectivity"];
    assert_eq!(
        (entries[0]["Id"].as_str(), entries[1]["PortNumber"].as_u64()),
        (Some("dead"), Some(8883))
    );
    assert!(g["CAs"][0]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----\n"));
    gg.leave_all("lamp").unwrap();
    assert!(gg.discover("lamp").unwrap().is_err(), "in no group: 404");
}
