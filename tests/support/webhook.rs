//! A webhook receiver on loopback for the alert tests: records every request body, and answers
//! 500 to the first `fail_first` requests (a delivery to retry), 200 after.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::Router;

type Seen = Arc<Mutex<Vec<(u16, String)>>>;

/// A webhook on loopback: records every body, and answers 500 to the first `fail_first`.
pub struct Receiver {
    pub addr: SocketAddr,
    seen: Seen,
    _task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start(fail_first: usize) -> Receiver {
        let seen: Seen = Arc::default();
        let state = (seen.clone(), fail_first);
        let app = Router::new()
            .fallback(
                |State((seen, fail_first)): State<(Seen, usize)>, body: String| async move {
                    let mut seen = seen.lock().unwrap();
                    let status = if seen.len() < fail_first { 500 } else { 200 };
                    seen.push((status, body));
                    StatusCode::from_u16(status).unwrap()
                },
            )
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            addr,
            seen,
            _task: task,
        }
    }

    pub fn url(&self) -> url::Url {
        format!("http://{}/hooks/T000/B000/secretpart", self.addr)
            .parse()
            .unwrap()
    }

    pub fn seen(&self) -> Vec<(u16, String)> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits (at most 20 s) until it has received `n` requests.
    pub async fn wait_for(&self, n: usize) -> Vec<(u16, String)> {
        let until = Instant::now() + Duration::from_secs(20);
        while self.seen().len() < n {
            assert!(Instant::now() < until, "only {:?}", self.seen());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.seen()
    }
}
