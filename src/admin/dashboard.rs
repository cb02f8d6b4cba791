//! The operator dashboard at `GET /`: one HTML page with its CSS and JavaScript inline, built
//! into the binary (no CDN, works offline), driving the same admin API curl users call.

use axum::http::header;
use axum::response::IntoResponse;

/// The page. It asks for the token itself when the API answers 401, so loading it needs none.
const PAGE: &str = include_str!("dashboard.html");

/// Nothing may load from elsewhere (the page works offline and cannot leak the token to a
/// third party), API calls go to this origin only, and no other site may frame the page to
/// steer clicks onto its switch and undo buttons.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// `GET /`.
pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
}

#[cfg(test)]
mod tests;
