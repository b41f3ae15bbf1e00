//! Lambda "sync": POST /api/audiences/sync. Builds the shared state once, then serves its group's router.

use audience_sync::http::{router, Group};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let app = audience_sync::lambda::cold_start().await;
    lambda_http::run(router(Group::Sync, app)).await
}
