//! Lambda "segments": the segment and person routes. Builds the shared state once, then hands every request to the core.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    audience_sync::lambda::run_http(audience_sync::http::Group::Segments).await
}
