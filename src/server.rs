//! The local HTTP server of `audiences serve` (and the tests): plain HTTP on loopback, serving
//! the same router as the Lambdas, every group merged, behind the browser checks of
//! `http::browser` (what a web page the developer visits could otherwise make it do).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use crate::app::App;
use crate::http::{self, Group};
use crate::sync::scheduler;

/// `audiences serve`: every route, and with `scheduler` an in-process scheduler pass at that
/// interval ([`scheduler::run_every`], on a task of its own so that a pass never holds up a
/// request), until `shutdown` resolves. Then the scheduler stops at once (a sync in progress
/// is left for the next run: see `run_every`) and the server after its open requests.
pub async fn run(
    app: App,
    listener: tokio::net::TcpListener,
    scheduler: Option<Duration>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let passes = scheduler.map(|every| tokio::spawn(scheduler::run_every(app.clone(), every)));
    let stop_passes = passes.as_ref().map(|p| p.abort_handle());
    let served = serve(app, listener, async move {
        shutdown.await;
        if let Some(p) = stop_passes {
            p.abort();
        }
    })
    .await;
    if let Some(p) = passes {
        // Also when serving failed; awaited so that the pass's connections are closed before
        // the caller stops the database.
        p.abort();
        let _ = p.await;
    }
    served
}

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
