//! Encrypted private keys, read with `ssl.key.password` as Kafka reads them: the broker's
//! keystore, a librdkafka client's key and the CLI's, each PKCS#8 encrypted.

use crate::cli::serve_exits;
use crate::cli_client::sluice;
use crate::kit::broker::Broker;
use crate::kit::pki::{Ca, KEY_PASSWORD};
use crate::security::{ca_location, round_trip};

#[test]
fn encrypted_private_keys_open_with_ssl_key_password() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "keys");
    let server = ca.server(dir.path(), "broker");
    let alice = ca.issue(dir.path(), "alice", "alice", &["alice"], false);

    // Without the password, or with a wrong one, `serve` stops at start and says why.
    let encrypted = format!(
        "ssl.keystore.location={}",
        server.encrypted_keystore_file.display()
    );
    let ssl = ["--set", "listeners=SSL://127.0.0.1:0", "--set", &encrypted];
    serve_exits(1, &ssl, "set ssl.key.password");
    let wrong = [&ssl[..], &["--set", "ssl.key.password=wrong"]].concat();
    serve_exits(1, &wrong, "cannot be decrypted with ssl.key.password");

    // With it, TLS is served; the client presents a certificate whose key is encrypted too.
    let password = format!("ssl.key.password={KEY_PASSWORD}");
    let truststore = format!("ssl.truststore.location={}", ca.pem_file.display());
    let broker = Broker::start(&[
        "listeners=PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0",
        &encrypted,
        &password,
        &truststore,
        "ssl.client.auth=required",
    ]);
    let addr = broker.listener("SSL");
    let ca_file = ca_location(&ca);
    let cert_file = alice.cert_file.display().to_string();
    let key_file = alice.encrypted_key_file.display().to_string();
    round_trip(
        &addr,
        &[
            ("security.protocol", "SSL"),
            ("ssl.ca.location", &ca_file),
            ("ssl.certificate.location", &cert_file),
            ("ssl.key.location", &key_file),
            ("ssl.key.password", KEY_PASSWORD),
        ],
        "encrypted-keys",
    );

    // The CLI reads the same properties.
    let properties = [
        "security.protocol=SSL".to_string(),
        format!("ssl.ca.location={ca_file}"),
        format!("ssl.certificate.location={cert_file}"),
        format!("ssl.key.location={key_file}"),
    ];
    let mut args = vec!["cluster", "info", "--json"];
    for property in &properties {
        args.extend(["-X", property]);
    }
    let without = sluice(&addr, &args, "");
    assert_eq!(without.code, 1, "{}", without.stderr);
    assert!(
        without.stderr.contains("set ssl.key.password"),
        "{}",
        without.stderr
    );
    let key_password = format!("ssl.key.password={KEY_PASSWORD}");
    args.extend(["-X", &key_password]);
    let info = sluice(&addr, &args, "").ok().json();
    assert_eq!(info["brokers"].as_array().unwrap().len(), 1);
}
