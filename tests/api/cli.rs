//! The `audiences` command as a user runs it: what it prints never carries the database
//! password.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support;

const PASSWORD: &str = "Pw-ShouldNeverBePrinted-77";

/// The test database's URL with a password in it (the local server trusts loopback: it is
/// accepted and ignored).
fn url_with_password(url: &str) -> String {
    let p = support::url_parts(url);
    format!(
        "postgres://{}:{PASSWORD}@{}:{}/{}",
        p.user, p.host, p.port, p.dbname
    )
}

#[tokio::test]
async fn serve_names_its_database_without_the_password() {
    let db = support::fresh_database().await;
    let url = url_with_password(&db);
    let mut child = support::audiences_cli(&["serve", "--port", "0"], &url)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let done = line.starts_with("database:");
            seen.push(line);
            if done {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    child.kill().await.unwrap();
    assert!(found, "serve names its database: {seen:?}");
    let all = seen.join("\n");
    assert!(!all.contains(PASSWORD), "{all}");
    assert!(all.contains("database: postgres://"), "{all}");
}

#[tokio::test]
async fn a_database_that_cannot_be_reached_is_reported_without_the_password() {
    // Nothing listens on port 1.
    let url = format!("postgres://app:{PASSWORD}@127.0.0.1:1/app?connect_timeout=2");
    let out = support::audiences_cli(&["migrate"], &url)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.trim().is_empty(), "it says what failed");
    assert!(!text.contains(PASSWORD), "{text}");
}
