use super::*;

fn read(vars: &[(&str, &str)]) -> Result<DeliveryConfig, ConfigError> {
    DeliveryConfig::from_env_with(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    })
}

#[test]
fn defaults_then_environment() {
    let c = read(&[]).unwrap();
    assert_eq!((c.pool_size, c.migrate, c.send_concurrency), (2, false, 64));
    assert_eq!(c.statement_timeout, std::time::Duration::from_secs(2));
    assert_eq!(c.metrics_namespace, "pushq");
    assert_eq!(
        (c.fcm_streams_per_connection, c.fcm_connections()),
        (100, 1)
    );
    assert_eq!(c.fcm_ca_file, None);
    assert_eq!(
        c.policy.stale_device_after,
        std::time::Duration::from_secs(270 * 86_400)
    );
    assert_eq!(c.policy.max_push_age, None);
    let c = read(&[
        ("PUSHQ_STALE_DEVICE_DAYS", "30"),
        ("PUSHQ_MAX_PUSH_AGE_SECONDS", "3600"),
    ])
    .unwrap();
    assert_eq!(
        c.policy.stale_device_after,
        std::time::Duration::from_secs(30 * 86_400)
    );
    assert_eq!(
        c.policy.max_push_age,
        Some(std::time::Duration::from_secs(3600))
    );
    for (name, bad) in [
        ("PUSHQ_STALE_DEVICE_DAYS", "0"),
        ("PUSHQ_MAX_PUSH_AGE_SECONDS", "0"),
        ("PUSHQ_MAX_PUSH_AGE_SECONDS", "1h"),
    ] {
        let err = read(&[(name, bad)]).unwrap_err().to_string();
        assert!(err.contains(name), "{err}");
    }
    let c = read(&[
        ("PUSHQ_MIGRATE", "1"),
        ("PUSHQ_METRICS_NAMESPACE", "gym"),
        ("PUSHQ_SEND_CONCURRENCY", "8"),
    ])
    .unwrap();
    assert_eq!((c.migrate, c.send_concurrency), (true, 8));
    assert_eq!(c.metrics_namespace, "gym");
    let c = read(&[
        ("PUSHQ_SEND_CONCURRENCY", "250"),
        ("PUSHQ_FCM_CA_FILE", "/etc/pushq/ca.pem"),
    ])
    .unwrap();
    assert_eq!(c.fcm_connections(), 3);
    assert_eq!(c.fcm_ca_file.as_deref(), Some("/etc/pushq/ca.pem".as_ref()));
    let c = DeliveryConfig {
        batches_at_once: 4,
        ..read(&[
            ("PUSHQ_SEND_CONCURRENCY", "8"),
            ("PUSHQ_FCM_STREAMS_PER_CONNECTION", "4"),
        ])
        .unwrap()
    };
    assert_eq!(c.fcm_connections(), 8);
    assert_eq!(read(&[]).unwrap().audience_page_size, 500);
    let c = read(&[("PUSHQ_AUDIENCE_PAGE_SIZE", "50")]).unwrap();
    assert_eq!(c.audience_page_size, 50);
    for bad in ["0", "5001", "x"] {
        let e = read(&[("PUSHQ_AUDIENCE_PAGE_SIZE", bad)]).unwrap_err();
        assert!(e.0.contains("PUSHQ_AUDIENCE_PAGE_SIZE"), "{e:?}");
    }
}

#[test]
fn credentials_remember_their_variable_and_do_not_print_their_value() {
    let c = read(&[("GOOGLE_APPLICATION_CREDENTIALS", "/k.json")]).unwrap();
    assert_eq!(
        c.credentials.as_ref().map(|c| c.variable),
        Some("GOOGLE_APPLICATION_CREDENTIALS")
    );
    let c = read(&[
        ("GOOGLE_APPLICATION_CREDENTIALS", "/k.json"),
        ("PUSHQ_FCM_CREDENTIALS", "{\"private_key\": \"secret\"}"),
    ])
    .unwrap();
    assert_eq!(
        c.credentials.as_ref().map(|c| c.variable),
        Some("PUSHQ_FCM_CREDENTIALS")
    );
    assert!(!format!("{c:?}").contains("secret"), "{c:?}");
}

#[test]
fn one_connection_per_stream_limit_of_sends() {
    assert_eq!(connections_for(64, 100), 1);
    assert_eq!(connections_for(100, 100), 1);
    assert_eq!(connections_for(101, 100), 2);
    assert_eq!(connections_for(250, 100), 3);
    assert_eq!(connections_for(12, 4), 3);
    assert_eq!(connections_for(0, 100), 1);
    assert_eq!(connections_for(5, 0), 5);
}

#[test]
fn a_bad_value_names_its_variable() {
    let e = read(&[("PUSHQ_MIGRATE", "yes")]).unwrap_err();
    assert!(e.to_string().contains("PUSHQ_MIGRATE"), "{e}");
    let e = read(&[("PUSHQ_DB_POOL_SIZE", "0")]).unwrap_err();
    assert!(e.to_string().contains("PUSHQ_DB_POOL_SIZE"), "{e}");
}
