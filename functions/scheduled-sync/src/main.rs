//! Lambda "scheduled-sync": on each EventBridge schedule event, syncs the due audiences within
//! the invocation's time. Builds the shared state once, then hands every event to the core.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    audience_sync::lambda::run_scheduled().await
}
