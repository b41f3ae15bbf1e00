//! A local Secrets Manager: moto's server (`pip install "moto[server]"`), one per test, on a free
//! loopback port, killed when dropped.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use audience_sync::secrets::SecretsClient;

pub const REGION: &str = "us-east-1";

pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start moto_server ({e}): these tests need it on PATH. Install it with \
                     `pip install -r .ci/requirements.txt` (or `pip install \"moto[server]\"`); \
                     .ci/run installs it into target/ci-venv and puts target/ci-venv/bin on PATH"
                )
            });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("moto_server exited while starting: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen on port {port} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// A client for this server (dummy credentials, us-east-1).
    pub fn client(&self) -> SecretsClient {
        SecretsClient::with_endpoint(&self.endpoint, REGION, "test", "test")
    }

    /// Creates a secret; its ARN.
    pub async fn secret(&self, name: &str, value: &str) -> String {
        self.client()
            .sdk()
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "create secret {name}: {}",
                    aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
                )
            })
            .arn()
            .expect("ARN")
            .to_string()
    }

    /// The environment a process needs to reach this server through the standard AWS chain.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", REGION.into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
