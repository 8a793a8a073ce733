//! MQTT 3.1.1 topic filters (§4.7): which are valid, and which topics they match — with the
//! rule that a filter starting with a wildcard does not match a topic starting with `$`, so
//! `#` never hears `$aws/…`.

/// Whether `filter` is a valid filter: not empty, `#` only as the whole last level, `+` only
/// as a whole level.
pub fn valid(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(i, level)| match *level {
        "#" => i == levels.len() - 1,
        "+" => true,
        l => !l.contains(['#', '+']),
    })
}

/// Whether `topic` (a valid topic name) matches `filter` (a valid filter).
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut t = topic.split('/');
    for f in filter.split('/') {
        match (f, t.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (f, Some(level)) if f == level => {}
            _ => return false,
        }
    }
    t.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_as_mqtt_says() {
        let shadow = "$aws/things/lamp/shadow/update/accepted";
        assert!(matches("$aws/things/lamp/shadow/#", shadow));
        assert!(matches("$aws/things/+/shadow/update/+", shadow));
        assert!(matches(shadow, shadow));
        assert!(!matches("#", shadow), "a leading wildcard skips $ topics");
        assert!(!matches("+/things/lamp/shadow/update/accepted", shadow));
        assert!(!matches("$aws/things/lamp/shadow/update", shadow));
        assert!(!matches("$aws/things/lamp/shadow/+", shadow));
        assert!(
            matches("sport/#", "sport"),
            "# also matches the parent level"
        );
        assert!(matches("sport/+", "sport/"));
        assert!(!matches("sport/+", "sport"));
        assert!(matches("#", "a/b"));
    }

    #[test]
    fn only_valid_filters_are_taken() {
        for good in ["#", "+", "a/+/b", "a/#", "$aws/things/t/shadow/#", "/"] {
            assert!(valid(good), "{good}");
        }
        for bad in ["", "a/#/b", "a#", "a/b+", "#/a", "a\0b"] {
            assert!(!valid(bad), "{bad:?}");
        }
    }
}
