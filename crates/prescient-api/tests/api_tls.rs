//! HTTPS: a certificate generated here, the server started with it, and a
//! client that trusts it.

use std::time::Duration;

use prescient_agent::config::Config;
use prescient_agent::control::{Control, LiveView};
use prescient_api::ApiError;

fn client(trust: Option<&str>) -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = reqwest::blocking::Client::builder().timeout(Duration::from_secs(30));
    if let Some(pem) = trust {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

#[test]
fn serves_https_with_a_certificate_from_pem_files() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_pem = cert.cert.pem();
    std::fs::write(dir.path().join("cert.pem"), &cert_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), cert.key_pair.serialize_pem()).unwrap();
    let mut config = Config::default();
    config.store.path = dir.path().join("tls.db");
    config.api.listen = "127.0.0.1:0".into();
    config.api.tls_cert = Some(dir.path().join("cert.pem"));
    config.api.tls_key = Some(dir.path().join("key.pem"));
    let (handle, port) = Control::new();
    port.publish(LiveView {
        host: "tls-host".into(),
        ..LiveView::default()
    });
    let server = prescient_api::serve(&config, handle).unwrap();
    assert!(server.url().starts_with("https://"), "{}", server.url());
    let addr = server.addr();
    let url = format!("https://localhost:{}/api/v1/health", addr.port());

    let trusting = reqwest::blocking::Client::builder()
        .resolve("localhost", addr)
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(30));
    let _ = client(None);
    let r = trusting.build().unwrap().get(&url).send().unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["host"], "tls-host");

    // A client that does not trust the certificate is refused by TLS; plain
    // HTTP to the HTTPS port gets no answer.
    let untrusting = reqwest::blocking::Client::builder()
        .resolve("localhost", addr)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    assert!(untrusting.get(&url).send().is_err());
    let plain = client(None)
        .get(format!("http://{addr}/api/v1/health"))
        .send();
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    server.shutdown();
}

#[test]
fn an_unreadable_certificate_is_an_error_naming_the_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.store.path = dir.path().join("tls.db");
    config.api.listen = "127.0.0.1:0".into();
    config.api.tls_cert = Some(dir.path().join("missing.pem"));
    config.api.tls_key = Some(dir.path().join("missing-key.pem"));
    let (handle, _port) = Control::new();
    let err = prescient_api::serve(&config, handle).unwrap_err();
    assert!(
        matches!(
            err,
            ApiError::Tls {
                key: "api.tls_cert",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("missing.pem"), "{err}");

    std::fs::write(dir.path().join("junk.pem"), "not a certificate").unwrap();
    config.api.tls_cert = Some(dir.path().join("junk.pem"));
    let (handle, _port) = Control::new();
    let err = prescient_api::serve(&config, handle).unwrap_err();
    assert!(err.to_string().contains("api.tls_cert"), "{err}");
}

#[test]
fn a_taken_port_is_an_error_naming_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = Config::default();
    config.store.path = dir.path().join("x.db");
    config.api.listen = taken.local_addr().unwrap().to_string();
    let (handle, _port) = Control::new();
    let err = prescient_api::serve(&config, handle).unwrap_err();
    assert!(err.to_string().contains(&config.api.listen), "{err}");
    config.api.listen = "nonsense".into();
    let (handle, _port) = Control::new();
    let err = prescient_api::serve(&config, handle).unwrap_err();
    assert!(err.to_string().contains("api.listen"), "{err}");
}
