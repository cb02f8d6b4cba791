//! The page as served: headers, the test hooks, and nothing fetched from elsewhere.

use super::*;
use axum::response::IntoResponse;

#[tokio::test]
async fn served_as_html_that_loads_nothing_from_elsewhere() {
    let resp = page().await.into_response();
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    assert_eq!(h[header::CONTENT_TYPE], "text/html; charset=utf-8");
    let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"));
    for needle in ["http://", "https://", "src=\"//", "@import"] {
        assert!(!PAGE.contains(needle), "the page references {needle}");
    }
    assert!(!PAGE.contains("innerHTML"), "API data goes in as text only");
    assert!(
        !PAGE.contains("window.confirm"),
        "confirmation is a dialog of the page"
    );
}

#[test]
fn has_every_test_hook() {
    for hook in [
        "domain-row",
        "domain-tag",
        "backend-row",
        "backend-health",
        "tag-select",
        "switch-button",
        "confirm-button",
        "undo-button",
        "error-banner",
        "token-input",
        "tag-rate",
        "tag-error-rate",
        "tag-p99",
    ] {
        assert!(
            PAGE.contains(&format!("\"data-testid\": \"{hook}\""))
                || PAGE.contains(&format!("data-testid=\"{hook}\"")),
            "no data-testid {hook}"
        );
    }
    for attr in ["\"data-domain\"", "\"data-backend\"", "\"data-tag\""] {
        assert!(PAGE.contains(attr), "no {attr}");
    }
}
