//! The operator's topic rules: `[[acl]]` rights for named users and `[anonymous]` rights, and
//! the MQTT filter arithmetic they need.
//!
//! Invariant: no rule ever opens a chat topic (`u/`, `d/`, `p/`, `m/`, `r/`, `t/`, `q/`, `g/`).
//! The config refuses filters that name one as written; [`Rules`] checks again after `%u` is
//! replaced, at match time, because a user named `u` turns `%u/#` into `u/#`. A rule whose
//! first level is a wildcard (`#`, `+/…`) is granted, but only for what is not a chat topic: a
//! publish or a requested filter that names a chat namespace is never the rule's, and the
//! delivery guard (hooks.rs) never sends a chat topic through such a subscription.

use natter_config::Config;

/// One compiled `[[acl]]` rule.
#[derive(Debug, Clone)]
struct UserRule {
    user: String,
    publish: Vec<String>,
    subscribe: Vec<String>,
}

/// The operator's rules, compiled once at start.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    users: Vec<UserRule>,
    anon_publish: Vec<String>,
    anon_subscribe: Vec<String>,
}

/// `*` in a user pattern matches any run of characters.
fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            let Some(tail) = name.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len()).any(|i| tail.is_char_boundary(i) && name_matches(rest, &tail[i..]))
        }
    }
}

pub use natter_types::topic::{names_chat, reaches_chat};

/// Whether a concrete `topic` matches `filter` (MQTT rules; `$` topics only match filters that
/// name `$` explicitly).
pub fn topic_matches(filter: &str, topic: &str) -> bool {
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

/// Whether every topic `requested` could match is also matched by `allowed`, i.e. a
/// subscription to `requested` can deliver nothing that `allowed` does not permit.
pub fn filter_covers(allowed: &str, requested: &str) -> bool {
    // As in `topic_matches`: a wildcard first level never reaches `$` topics.
    if requested.starts_with('$') && (allowed.starts_with('+') || allowed.starts_with('#')) {
        return false;
    }
    let mut a = allowed.split('/');
    let mut r = requested.split('/');
    loop {
        match (a.next(), r.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(x)) if x != "#" => {}
            (Some(x), Some(y)) if x == y && x != "+" && x != "#" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

impl Rules {
    /// Compiles the `[[acl]]` and `[anonymous]` sections.
    pub fn from_config(c: &Config) -> Rules {
        Rules {
            users: c
                .acl
                .iter()
                .map(|r| UserRule {
                    user: r.user.clone(),
                    publish: r.publish.clone(),
                    subscribe: r.subscribe.clone(),
                })
                .collect(),
            anon_publish: c
                .anonymous
                .as_ref()
                .map(|a| a.publish.clone())
                .unwrap_or_default(),
            anon_subscribe: c
                .anonymous
                .as_ref()
                .map(|a| a.subscribe.clone())
                .unwrap_or_default(),
        }
    }

    fn user_filters<'a>(
        &'a self,
        user: &'a str,
        publish: bool,
    ) -> impl Iterator<Item = String> + 'a {
        self.users
            .iter()
            .filter(move |r| name_matches(&r.user, user))
            .flat_map(move |r| {
                if publish {
                    r.publish.iter()
                } else {
                    r.subscribe.iter()
                }
            })
            .map(move |f| f.replace("%u", user))
            // Checked after the substitution: the config could only check the rule as written.
            .filter(|f| !names_chat(f))
    }

    /// Whether a rule lets `user` publish to `topic`.
    pub fn user_may_publish(&self, user: &str, topic: &str) -> bool {
        !names_chat(topic)
            && self
                .user_filters(user, true)
                .any(|f| topic_matches(&f, topic))
    }

    /// Whether a rule lets `user` subscribe to `filter`.
    pub fn user_may_subscribe(&self, user: &str, filter: &str) -> bool {
        !names_chat(filter)
            && self
                .user_filters(user, false)
                .any(|f| filter_covers(&f, filter))
    }

    /// Whether an anonymous client may publish to `topic`.
    pub fn anonymous_may_publish(&self, topic: &str) -> bool {
        !names_chat(topic) && self.anon_publish.iter().any(|f| topic_matches(f, topic))
    }

    /// Whether an anonymous client may subscribe to `filter`.
    pub fn anonymous_may_subscribe(&self, filter: &str) -> bool {
        !names_chat(filter) && self.anon_subscribe.iter().any(|f| filter_covers(f, filter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_match_filters_by_mqtt_rules() {
        assert!(topic_matches("tele/#", "tele/a/b"));
        assert!(topic_matches("tele/#", "tele"));
        assert!(topic_matches("a/+/c", "a/b/c"));
        assert!(!topic_matches("a/+/c", "a/b/d"));
        assert!(!topic_matches("a/+", "a/b/c"));
        assert!(!topic_matches("#", "$SYS/x"));
    }

    #[test]
    fn a_filter_covers_only_narrower_filters() {
        assert!(filter_covers("tele/#", "tele/+/temp"));
        assert!(filter_covers("alerts/+", "alerts/x"));
        assert!(filter_covers("alerts/+", "alerts/+"));
        assert!(!filter_covers("alerts/+", "alerts/#"));
        assert!(!filter_covers("alerts/x", "alerts/+"));
        assert!(!filter_covers("tele/#", "#"));
        assert!(filter_covers("#", "+/temp"));
        assert!(!filter_covers("#", "$SYS/#"));
    }

    /// Rules of `[[acl]]` sections with random users and filters (as an operator might write
    /// them, including `%u` and wildcards), checked the way natter's config checks them.
    fn random_rules() -> impl proptest::strategy::Strategy<Value = Vec<(String, Vec<String>)>> {
        use proptest::prelude::*;
        let level = prop_oneof![
            Just("%u".to_owned()),
            Just("+".to_owned()),
            Just("#".to_owned()),
            "[a-z]{1,3}",
            prop_oneof![Just("u"), Just("d"), Just("p"), Just("m"), Just("q")]
                .prop_map(str::to_owned),
        ];
        let filter = proptest::collection::vec(level, 1..4).prop_map(|l| l.join("/"));
        let user = prop_oneof![Just("*".to_owned()), "[a-z]{1,2}\\*?"];
        proptest::collection::vec((user, proptest::collection::vec(filter, 1..4)), 1..4)
    }

    proptest::proptest! {
        /// Whatever the rules and whatever the user is called, no rule opens a chat topic:
        /// another user's messages, receipts, events, device answers or presence, or a chat
        /// namespace at all.
        #[test]
        fn no_rule_ever_opens_a_chat_topic(
            rules in random_rules(),
            me in "(u|d|p|m|q|r|t|g|[a-z0-9][a-z0-9_.-]{0,6})",
            other in "[a-z0-9][a-z0-9_.-]{0,6}",
            device in "[A-Za-z0-9_-]{1,8}",
        ) {
            let mut toml = String::new();
            for (user, filters) in &rules {
                let list: Vec<String> = filters.iter().map(|f| format!("{f:?}")).collect();
                toml.push_str(&format!(
                    "[[acl]]\nuser = {user:?}\npublish = [{0}]\nsubscribe = [{0}]\n",
                    list.join(", ")
                ));
            }
            // Rules the config refuses never reach the matcher.
            let Ok(c) = natter_config::Config::parse(&toml, "t") else { return Ok(()); };
            let r = Rules::from_config(&c);
            for u in [&me, &other] {
                for topic in [
                    format!("u/{u}/m"), format!("u/{u}/r"), format!("u/{u}/e"),
                    format!("d/{u}/{device}"), format!("p/{u}"), format!("m/u/{u}"),
                    "q/sync".to_owned(), format!("r/u/{u}"), format!("t/u/{u}"), format!("g/{u}"),
                ] {
                    proptest::prop_assert!(!r.user_may_publish(&me, &topic), "publish {topic} as {me}");
                    proptest::prop_assert!(!r.user_may_subscribe(&me, &topic), "subscribe {topic} as {me}");
                }
                // `#`, `+/#` may be granted: the delivery guard keeps chat topics out of them.
                for filter in ["u/#", "u/+/m", "d/#", "p/+", "q/+"] {
                    proptest::prop_assert!(!r.user_may_subscribe(&me, filter), "subscribe {filter} as {me}");
                }
            }
        }

        /// A filter covers a topic exactly when every topic it could deliver matches it.
        #[test]
        fn covering_filters_match_what_they_cover(
            allowed in "[ab+]{1}(/[ab+]){0,2}(/#)?",
            topic in "[ab]{1}(/[ab]){0,3}",
        ) {
            if filter_covers(&allowed, &topic) {
                proptest::prop_assert!(topic_matches(&allowed, &topic));
            }
        }
    }

    #[test]
    fn user_patterns_and_own_name_substitution() {
        let c = natter_config::Config::parse(
            "[[acl]]\nuser = \"sensor-*\"\npublish = [\"tele/%u/#\"]\nsubscribe = [\"cmd/%u\"]\n",
            "t",
        )
        .unwrap();
        let r = Rules::from_config(&c);
        assert!(r.user_may_publish("sensor-1", "tele/sensor-1/temp"));
        assert!(!r.user_may_publish("sensor-1", "tele/sensor-2/temp"));
        assert!(!r.user_may_publish("alice", "tele/alice/temp"));
        assert!(r.user_may_subscribe("sensor-9", "cmd/sensor-9"));
        assert!(!r.user_may_subscribe("sensor-9", "cmd/+"));
    }
}
