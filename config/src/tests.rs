//! The whole file end to end: what parses, to which values, and how each refusal reads.

use std::path::PathBuf;

use crate::*;

fn parse_err(text: &str) -> String {
    Config::parse(text, "test.toml").unwrap_err().to_string()
}

#[test]
fn an_empty_file_gives_the_embedded_defaults() {
    let c = Config::parse("", "x").unwrap();
    assert_eq!(c.mqtt.tcp.to_string(), "127.0.0.1:1883");
    assert_eq!(c.http.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.data_dir, PathBuf::from("./data"));
}

#[test]
fn the_shipped_config_parses_to_the_defaults() {
    let text = include_str!("../natter.toml");
    let c = Config::parse(text, "natter.toml").unwrap();
    let d = Config::default();
    assert_eq!(c.mqtt.tcp, d.mqtt.tcp);
    assert_eq!(c.mqtt.ws, d.mqtt.ws);
    assert_eq!(c.http.listen, d.http.listen);
    assert_eq!(c.limits.max_message_bytes, d.limits.max_message_bytes);
    assert_eq!(c.store.max_batch, d.store.max_batch);
    assert_eq!(c.http.header_timeout_secs, d.http.header_timeout_secs);
    assert_eq!(c.http.idle_timeout_secs, d.http.idle_timeout_secs);
    assert_eq!(c.http.max_connections, d.http.max_connections);
    assert_eq!(c.media.max_uploads_per_user, d.media.max_uploads_per_user);
    assert_eq!(c.media.upload_wait_secs, d.media.upload_wait_secs);
    assert_eq!(c.store.backend, d.store.backend);
    assert_eq!(c.presence.backend, d.presence.backend);
    assert_eq!(c.media.backend, d.media.backend);
    assert_eq!(c.log.format, d.log.format);
    assert_eq!(c.limits.group_adds, d.limits.group_adds);
}

#[test]
fn an_unknown_key_is_named() {
    let e = parse_err("[mqtt]\ntcpp = \"1.2.3.4:5\"\n");
    assert!(e.contains("tcpp"), "{e}");
}

#[test]
fn a_wrong_type_names_key_value_and_expectation() {
    let e = parse_err("[mqtt]\nmax_connections = \"many\"\n");
    assert!(e.contains("mqtt.max_connections"), "{e}");
    assert!(e.contains("many"), "{e}");
    assert!(e.contains("usize") || e.contains("integer"), "{e}");
}

#[test]
fn a_bad_address_names_key_and_value() {
    let e = parse_err("[http]\nlisten = \"localhost\"\n");
    assert!(e.contains("http.listen"), "{e}");
    assert!(e.contains("\"localhost\""), "{e}");
    assert!(e.contains("socket address"), "{e}");
}

#[test]
fn an_acl_rule_cannot_open_chat_topics() {
    let e = parse_err("[[acl]]\nuser = \"*\"\nsubscribe = [\"u/#\"]\n");
    assert!(e.contains("acl[0].subscribe"), "{e}");
    let e = parse_err("[[acl]]\nuser = \"*\"\npublish = [\"m/#\"]\n");
    assert!(e.contains("acl[0].publish"), "{e}");
    // A wildcard first level is granted: the broker keeps chat topics out of it.
    assert!(Config::parse(
        "[[acl]]\nuser = \"ops\"\nsubscribe = [\"#\", \"+/x\"]\n",
        "x"
    )
    .is_ok());
    assert!(Config::parse(
        "[[acl]]\nuser = \"sensor-*\"\npublish = [\"tele/%u/#\"]\n",
        "x"
    )
    .is_ok());
}
#[test]
fn http_and_upload_bounds_are_checked_key_by_key() {
    let d = Config::default();
    assert_eq!(d.http.header_timeout_secs, 10);
    assert_eq!(d.http.idle_timeout_secs, 60);
    assert_eq!(d.http.max_connections, 1024);
    assert_eq!(d.media.max_uploads_per_user, 4);
    assert_eq!(d.media.upload_wait_secs, 10);
    for (text, key) in [
        (
            "[http]\nheader_timeout_secs = 0\n",
            "http.header_timeout_secs",
        ),
        ("[http]\nidle_timeout_secs = 0\n", "http.idle_timeout_secs"),
        ("[http]\nmax_connections = 0\n", "http.max_connections"),
        (
            "[media]\nmax_uploads_per_user = 0\n",
            "media.max_uploads_per_user",
        ),
    ] {
        let e = parse_err(text);
        assert!(e.contains(key) && e.contains("at least 1"), "{e}");
    }
    let e = parse_err("[media]\nupload_wait_secs = 3601\n");
    assert!(
        e.contains("media.upload_wait_secs") && e.contains("3601") && e.contains("3600"),
        "{e}"
    );
    let ok = Config::parse(
        "[http]\nheader_timeout_secs = 1\nidle_timeout_secs = 5\nmax_connections = 8\n\
         [media]\nmax_uploads_per_user = 1\nupload_wait_secs = 0\n",
        "x",
    )
    .unwrap();
    assert_eq!(ok.http.max_connections, 8);
    assert_eq!(ok.media.upload_wait_secs, 0);
}

#[test]
fn web_origins_must_be_origins_and_star_stands_alone() {
    for (text, key, value) in [
        (
            "[mqtt]\nws_origins = [\"chat.example.com\"]\n",
            "mqtt.ws_origins[0]",
            "chat.example.com",
        ),
        ("[mqtt]\nws_origins = [\"*\"]\n", "mqtt.ws_origins[0]", "*"),
        (
            "[http]\ncors_origins = [\"https://a.example/app\"]\n",
            "http.cors_origins[0]",
            "/app",
        ),
        (
            "[http]\ncors_origins = [\"https://a.example\", \"*\"]\n",
            "http.cors_origins[1]",
            "*",
        ),
        (
            "[http]\ncors_origins = [\"https://\"]\n",
            "http.cors_origins[0]",
            "https://",
        ),
    ] {
        let e = parse_err(text);
        assert!(
            e.contains(key) && e.contains(value) && e.contains("origins such as"),
            "{e}"
        );
    }
    let ok = Config::parse(
        "[mqtt]\nws_origins = [\"https://chat.example.com\", \"http://localhost:3000\"]\n\
         [http]\ncors_origins = [\"*\"]\n",
        "x",
    )
    .unwrap();
    assert_eq!(ok.mqtt.ws_origins.len(), 2);
    assert_eq!(ok.http.cors_origins, ["*"]);
}

#[test]
fn a_cassandra_store_is_configured_and_checked_key_by_key() {
    let ok = Config::parse(
        "[store]\nbackend = \"cassandra\"\n[store.cassandra]\n\
         contact_points = [\"10.0.0.5:9042\", \"db2.example:9042\"]\n\
         replication_class = \"NetworkTopologyStrategy\"\n\
         datacenters = { dc1 = 3, eu-west = 3 }\nlocal_datacenter = \"dc1\"\n\
         consistency = \"QUORUM\"\nmessage_ttl_days = 365\n\
         [store.cassandra.tls]\nca_file = \"/etc/natter/db-ca.pem\"\n",
        "x",
    )
    .unwrap();
    assert_eq!(ok.store.cassandra.datacenters.get("eu-west"), Some(&3));
    assert_eq!(ok.store.cassandra.keyspace, "natter");
    let cas = |body: &str| {
        parse_err(&format!(
            "[store]\nbackend = \"cassandra\"\n[store.cassandra]\n{body}"
        ))
    };
    let e = cas("contact_points = [\"10.0.0.5\"]\n");
    assert!(
        e.contains("store.cassandra.contact_points") && e.contains("10.0.0.5"),
        "{e}"
    );
    let e = cas("keyspace = \"natter; DROP\"\n");
    assert!(e.contains("store.cassandra.keyspace"), "{e}");
    let e = cas("replication_class = \"NetworkTopologyStrategy\"\n");
    assert!(e.contains("store.cassandra.datacenters"), "{e}");
    let e = cas("consistency = \"TWO_PLEASE\"\n");
    assert!(
        e.contains("store.cassandra.consistency") && e.contains("LOCAL_QUORUM"),
        "{e}"
    );
    let e = cas("message_ttl_days = 1\n");
    assert!(
        e.contains("message_ttl_days") && e.contains("dedup_hours"),
        "{e}"
    );
    let e = cas("password = \"pw\"\n");
    assert!(e.contains("store.cassandra.username"), "{e}");
    let e = cas("[store.cassandra.tls]\nca_file = \"a\"\ncert_file = \"c\"\n");
    assert!(e.contains("store.cassandra.tls.key_file"), "{e}");
    let e = parse_err("[store]\nbackend = \"postgres\"\n");
    assert!(
        e.contains("store.backend") && e.contains("cassandra"),
        "{e}"
    );
}

#[test]
fn a_word_a_key_does_not_accept_names_key_word_and_the_words_accepted() {
    for (text, key, word, accepted) in [
        (
            "[store]\nbackend = \"mongo\"\n",
            "store.backend",
            "mongo",
            "`embedded` or `cassandra`",
        ),
        (
            "[presence]\nbackend = \"etcd\"\n",
            "presence.backend",
            "etcd",
            "`memory` or `redis`",
        ),
        (
            "[media]\nbackend = \"gcs\"\n",
            "media.backend",
            "gcs",
            "`local` or `s3`",
        ),
        (
            "[log]\nformat = \"xml\"\n",
            "log.format",
            "xml",
            "`human` or `json`",
        ),
        (
            "[store.cassandra]\nreplication_class = \"Simple\"\n",
            "store.cassandra.replication_class",
            "Simple",
            "`SimpleStrategy` or `NetworkTopologyStrategy`",
        ),
        (
            "[store.cassandra]\nconsistency = \"local_quorum\"\n",
            "store.cassandra.consistency",
            "local_quorum",
            "`LOCAL_QUORUM`, `QUORUM`, `LOCAL_ONE`, `ONE`, `EACH_QUORUM`, `ALL`",
        ),
    ] {
        let e = parse_err(text);
        assert!(
            e.contains(&format!("key `{key}`"))
                && e.contains(&format!("`{word}`"))
                && e.contains(accepted),
            "{e}"
        );
    }
}

#[test]
fn the_words_each_key_accepts_parse_to_their_variants() {
    let d = Config::default();
    assert_eq!(d.store.backend, StoreBackend::Embedded);
    assert_eq!(d.presence.backend, PresenceBackend::Memory);
    assert_eq!(d.media.backend, MediaBackend::Local);
    assert_eq!(d.log.format, LogFormat::Human);
    assert_eq!(
        d.store.cassandra.replication_class,
        ReplicationClass::SimpleStrategy
    );
    assert_eq!(d.store.cassandra.consistency, Consistency::LocalQuorum);
    let c = Config::parse(
        "[store]\nbackend = \"cassandra\"\n[store.cassandra]\n\
         replication_class = \"NetworkTopologyStrategy\"\ndatacenters = { dc1 = 3 }\n\
         consistency = \"EACH_QUORUM\"\n\
         [presence]\nbackend = \"redis\"\n[log]\nformat = \"json\"\n\
         [media]\nbackend = \"s3\"\n[media.s3]\nbucket = \"b\"\n",
        "x",
    )
    .unwrap();
    assert_eq!(c.store.backend, StoreBackend::Cassandra);
    assert_eq!(
        c.store.cassandra.replication_class,
        ReplicationClass::NetworkTopologyStrategy
    );
    assert_eq!(c.store.cassandra.consistency, Consistency::EachQuorum);
    assert_eq!(c.presence.backend, PresenceBackend::Redis);
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.media.backend, MediaBackend::S3);
    for (word, level) in [
        ("LOCAL_QUORUM", Consistency::LocalQuorum),
        ("QUORUM", Consistency::Quorum),
        ("LOCAL_ONE", Consistency::LocalOne),
        ("ONE", Consistency::One),
        ("EACH_QUORUM", Consistency::EachQuorum),
        ("ALL", Consistency::All),
    ] {
        let c = Config::parse(
            &format!("[store.cassandra]\nconsistency = \"{word}\"\n"),
            "x",
        );
        assert_eq!(c.unwrap().store.cassandra.consistency, level);
    }
}

#[test]
fn an_acl_filter_must_be_well_formed_and_stay_off_every_chat_namespace() {
    for bad in ["", "a/b#", "a/+b", "a/#/b"] {
        let e = parse_err(&format!("[[acl]]\nuser = \"a\"\nsubscribe = [{bad:?}]\n"));
        assert!(e.contains("an MQTT topic filter"), "{e}");
    }
    let chat = natter_types::topic::CHAT_NAMESPACES.map(|ns| format!("{ns}/x"));
    for filter in chat.iter().map(String::as_str).chain(["u/#", "p/+"]) {
        let e = parse_err(&format!(
            "[anonymous]\nlisten = \"127.0.0.1:1884\"\npublish = [{filter:?}]\n"
        ));
        assert!(
            e.contains("anonymous.publish") && e.contains("chat namespaces"),
            "{e}"
        );
    }
    assert!(Config::parse(
        "[anonymous]\nlisten = \"127.0.0.1:1884\"\npublish = [\"#\"]\nsubscribe = [\"+/x\"]\n",
        "x"
    )
    .is_ok());
    let e = parse_err("[anonymous]\nlisten = \"127.0.0.1:8083\"\n");
    assert!(e.contains("anonymous.listen"), "{e}");
}
