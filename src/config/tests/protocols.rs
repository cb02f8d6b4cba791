//! `[proxy] default_sni` and `h2c`, and the backend protocol keys.

use super::*;

#[test]
fn backend_protocols_default_to_http1_and_tls_keys_are_kept_on_any_protocol() {
    let c = parse(MINIMAL).unwrap();
    let t = &c.seed.backends[0].transport;
    assert_eq!(t.protocol.as_str(), "http1");
    assert!(t.tls_verify);
    assert!(!c.h2c);
    assert!(c.default_sni.is_none());

    let grpc = MINIMAL.replace(
        "tags = [\"a\"]",
        "tags = [\"a\"]\nprotocol = \"h2c\"\nhealth_check = \"grpc\"",
    );
    let c = parse(&format!("{grpc}\n")).unwrap();
    assert_eq!(c.seed.backends[0].transport.health_check.as_str(), "grpc");

    // TLS keys on a plain backend are kept (used once it switches to https).
    let kept = MINIMAL.replace(
        "tags = [\"a\"]",
        "tags = [\"a\"]\nprotocol = \"h2c\"\ntls_verify = false\n\
         tls_server_name = \"API.Example.net\"",
    );
    let c = parse(&kept).unwrap();
    let t = &c.seed.backends[0].transport;
    assert!(!t.tls_verify);
    assert_eq!(t.tls_server_name.as_deref(), Some("api.example.net"));
    let grpc_h1 = MINIMAL.replace("tags = [\"a\"]", "tags = [\"a\"]\nhealth_check = \"grpc\"");
    let errs = parse(&grpc_h1).unwrap_err();
    assert!(errs[0].contains("needs HTTP/2"), "{errs:?}");

    let bad = MINIMAL.replace(
        "tags = [\"a\"]",
        "tags = [\"a\"]\nprotocol = \"https\"\ntls_ca_file = \"/nonexistent/ca.pem\"\n\
         tls_server_name = \"api.example.net\"",
    );
    let errs = parse(&bad).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("tls_ca_file") && errs[0].contains("cannot be read"),
        "{errs:?}"
    );

    let unknown = MINIMAL.replace("tags = [\"a\"]", "tags = [\"a\"]\nprotocol = \"h3\"");
    assert!(parse(&unknown).is_err());
}

#[test]
fn default_sni_must_name_a_configured_domain() {
    let with = |v: &str| {
        MINIMAL.replace(
            "management_api_addr = \"127.0.0.1:8081\"",
            &format!("management_api_addr = \"127.0.0.1:8081\"\ndefault_sni = \"{v}\"\nh2c = true"),
        )
    };
    let c = parse(&with("APP.localhost")).unwrap();
    assert_eq!(c.default_sni.unwrap().as_str(), "app.localhost");
    assert!(c.h2c);
    let errs = parse(&with("other.localhost")).unwrap_err();
    assert!(
        errs[0].contains("default_sni") && errs[0].contains("not a configured domain"),
        "{errs:?}"
    );
}
