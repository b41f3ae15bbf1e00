//! The local HTTP server of `audiences serve` (and the tests): plain HTTP on loopback, serving
//! the same router as the Lambdas, every group merged, behind the browser checks of
//! `http::browser` (what a web page the developer visits could otherwise make it do).

use std::future::Future;
use std::net::SocketAddr;

use crate::app::App;
use crate::http::{self, Group};

/// Serves every route until `shutdown` resolves.
pub async fn serve(
    app: App,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let port = listener.local_addr()?.port();
    let router = http::router(Group::All, app).layer(axum::middleware::from_fn_with_state(
        port,
        http::browser::guard,
    ));
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Binds 127.0.0.1:`port` (0 = any free port).
pub async fn bind(port: u16) -> std::io::Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}
