//! `demo-backend`: a tiny origin whose answers name it, for the Quick start and tests.

use axum::extract::Request;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;

/// The demo origin's routes: `/health` answers 200, everything else names the backend.
pub fn app(name: String, tag: String) -> Router {
    let hello = move |req: Request| {
        let (name, tag) = (name.clone(), tag.clone());
        async move {
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string();
            (
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!(
                    "Hello from {name} (tag {tag}): {} {} for host {host}\n",
                    req.method(),
                    req.uri()
                ),
            )
                .into_response()
        }
    };
    Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .fallback(hello)
}

/// Serves the demo origin until the process is stopped.
pub fn run(listen: SocketAddr, name: String, tag: String) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start runtime: {e}"))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        eprintln!("demo-backend {name} (tag {tag}) listening on http://{listen}");
        axum::serve(listener, app(name, tag))
            .await
            .map_err(|e| format!("demo-backend: {e}"))
    })
}
