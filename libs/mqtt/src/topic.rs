//! Topic names and filters: `+` matches one level, `#` the rest (and the parent level).

/// Whether `f` is a valid subscription filter: `#` only as the whole last level, `+` only as
/// a whole level.
pub fn valid_filter(f: &str) -> bool {
    if f.is_empty() {
        return false;
    }
    let count = f.split('/').count();
    f.split('/').enumerate().all(|(i, level)| match level {
        "#" => i + 1 == count,
        "+" => true,
        l => !l.contains(['+', '#']),
    })
}

/// Whether topic name `topic` matches filter `filter`. Topics starting with `$` are not
/// matched by a leading wildcard (MQTT 3.1.1, 4.7.2).
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_as_the_spec_says() {
        assert!(matches("sport/tennis/player1/#", "sport/tennis/player1"));
        assert!(matches(
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking"
        ));
        assert!(matches("sport/#", "sport"));
        assert!(matches("#", "a/b/c"));
        assert!(matches("sport/tennis/+", "sport/tennis/player1"));
        assert!(!matches("sport/tennis/+", "sport/tennis/player1/ranking"));
        assert!(matches("+/+", "/finance"));
        assert!(matches("/+", "/finance"));
        assert!(!matches("+", "/finance"));
        assert!(!matches("#", "$SYS/uptime"));
        assert!(matches("$SYS/#", "$SYS/uptime"));
        assert!(!matches("a/b", "a/b/c"));
    }

    #[test]
    fn filters_are_checked() {
        for ok in ["a/b", "#", "+", "a/+/c", "a/#", "+/#", "/"] {
            assert!(valid_filter(ok), "{ok}");
        }
        for bad in ["", "a/#/c", "a#", "a/b+", "#/a"] {
            assert!(!valid_filter(bad), "{bad}");
        }
    }
}
