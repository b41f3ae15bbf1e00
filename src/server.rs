//! The local HTTP server of `audiences serve` (and the tests): plain HTTP on loopback, the same
//! router as the Lambdas.

use std::future::Future;
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::IntoResponse;
use http::Request;

use crate::app::App;
use crate::http::{handle, Group};

/// Requests larger than this are refused (Lambda's own payload limit is 6 MB).
pub const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;

async fn route_all(State(app): State<App>, req: Request<Body>) -> axum::response::Response {
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return crate::http::response::error_body(
                http::StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is larger than 6 MB",
                None,
            )
            .into_response()
        }
    };
    handle(&app, Group::All, Request::from_parts(parts, bytes))
        .await
        .into_response()
}

pub fn router(app: App) -> axum::Router {
    axum::Router::new()
        .fallback(route_all)
        .layer(DefaultBodyLimit::disable())
        .with_state(app)
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    app: App,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Binds 127.0.0.1:`port` (0 = any free port).
pub async fn bind(port: u16) -> std::io::Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}
