//! Smoke test of the real Lambda binaries under `cargo lambda watch` (cargo-lambda from PyPI:
//! `pip install cargo-lambda`; no Docker), as they run locally.
//!
//! Each function runs as AWS would start it: `cargo lambda watch` emulates the Lambda runtime
//! API, builds the binary on its first invocation and starts it with the environment of a
//! deployed function; the cold start reads `DB_SECRET_ARN` and `META_TOKEN_SECRET_ARN` from a
//! local Secrets Manager (moto's server, reached through `AWS_ENDPOINT_URL_SECRETS_MANAGER`), the
//! database is a fresh one on the test PostgreSQL and Meta is the fake Graph API. Each function
//! is invoked with its sample event from `events/` through the emulator's Invoke API
//! (`POST /2015-03-31/functions/{name}/invocations`, what `cargo lambda invoke` sends).
//!
//! One `cargo lambda watch` per function: watch runs `cargo run --bin NAME` against the manifest
//! it is given, and in this workspace the root manifest is a package of its own (the default
//! member), so `cargo run --bin lambda-sync` from the root finds no such binary. Each function's
//! watch is therefore pointed at its package's manifest (`functions/*/Cargo.toml`), on a port
//! of its own.
//!
//! The first run compiles the five binaries (minutes on a small machine; timeouts are
//! generous). The output shows, per function, the build time and the cold start: from the
//! binary's process start (cargo's `Running` line) to the first response, secrets included.

#[path = "support/moto.rs"]
mod moto;
mod support;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moto::Moto;
use serde_json::{json, Value};
use support::fake_meta::{FakeMeta, DEFAULT_FAKE_TOKEN};
use support::lambda::PLACEHOLDER;
use uuid::Uuid;

/// The functions: binary name and the directory of its package under `functions/`.
const FUNCTIONS: &[(&str, &str)] = &[
    ("lambda-audiences", "audiences"),
    ("lambda-audience", "audience"),
    ("lambda-sync", "sync"),
    ("lambda-segments", "segments"),
    ("lambda-scheduled-sync", "scheduled-sync"),
];

/// How long one invocation may take, the build of its binary on first use included.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// How long `cargo lambda watch` may take to listen.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(60);

const INSTALL_HINT: &str = "this test runs the Lambda binaries under `cargo lambda watch` and \
    needs cargo-lambda on PATH: install it with `pip install cargo-lambda` (or `pip install -r \
    .ci/requirements.txt`, which pins the version CI uses); .ci/run installs it into \
    target/ci-venv and puts target/ci-venv/bin on PATH";

/// The installed cargo-lambda's version line; fails the test, saying how to install it, when
/// there is none.
fn cargo_lambda_version() -> String {
    let out = Command::new("cargo-lambda")
        .args(["lambda", "--version"])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo-lambda ({e}): {INSTALL_HINT}"));
    assert!(
        out.status.success(),
        "`cargo-lambda lambda --version` failed ({}): {}\n{INSTALL_HINT}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A free port, never one handed out before: the system may give a port it just released to
/// the next bind, and two watches started together got the same one (the second could not
/// listen, and the first was sent the other's invocations).
fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap();
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Every line `cargo lambda watch` and its function print, with the instant it arrived.
type Log = Arc<Mutex<Vec<(Instant, String)>>>;

/// Copies `from` into `log` line by line, echoing each line (shortened) with `tag`.
fn collect(from: impl Read + Send + 'static, tag: String, log: Log) {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            let now = Instant::now();
            let shown: String = line.chars().take(300).collect();
            eprintln!("[{tag}] {shown}");
            log.lock().unwrap().push((now, line));
        }
    });
}

/// One `cargo lambda watch` serving one function on its own port, in a process group of its
/// own; stopped (SIGTERM, then SIGKILL for it and the function it started) when dropped.
struct Watch {
    name: &'static str,
    port: u16,
    child: Child,
    log: Log,
    http: reqwest::Client,
    /// Whether the function has been invoked (its first invocation builds and starts it).
    started: bool,
}

/// What one invocation took.
struct Timing {
    function: &'static str,
    event: String,
    total: Duration,
    /// First invocation only: from the request to cargo's `Running` line (the build).
    build: Option<Duration>,
    /// First invocation only: from the process start to the response.
    cold_start: Option<Duration>,
}

impl Watch {
    fn start(name: &'static str, dir: &str, env: &[(String, String)]) -> Watch {
        let root = env!("CARGO_MANIFEST_DIR");
        let port = free_port();
        let mut cmd = Command::new("cargo-lambda");
        cmd.current_dir(root)
            .args(["lambda", "watch", "--ignore-changes", "--color", "never"])
            .args(["--invoke-address", "127.0.0.1"])
            .args(["--invoke-port", &port.to_string()])
            .args(["--manifest-path", &format!("functions/{dir}/Cargo.toml")])
            // The function's configuration comes from the secrets only.
            .env_remove("DATABASE_URL")
            .env_remove("META_ACCESS_TOKEN")
            .env_remove("AWS_PROFILE")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        // What cargo sets for this test process describes this test crate; passed on, it would
        // reach the build scripts of watch's `cargo run` (ring's declares
        // `rerun-if-env-changed=CARGO_PKG_NAME`, for one) and rebuild them at every run.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("CARGO_PKG_")
                || key.starts_with("CARGO_MANIFEST_")
                || key.starts_with("CARGO_BIN_")
                || matches!(
                    &*key,
                    "CARGO_CRATE_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                        | "CARGO_TARGET_TMPDIR"
                        | "CARGO_RUSTC_CURRENT_DIR"
                        | "OUT_DIR"
                )
            {
                cmd.env_remove(&*key);
            }
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start cargo lambda watch ({e}): {INSTALL_HINT}"));
        let log: Log = Arc::default();
        collect(child.stdout.take().unwrap(), name.to_string(), log.clone());
        collect(child.stderr.take().unwrap(), name.to_string(), log.clone());
        Watch {
            name,
            port,
            child,
            log,
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            started: false,
        }
    }

    /// Waits until the emulator accepts connections.
    async fn wait_listening(&mut self) {
        let deadline = Instant::now() + LISTEN_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "cargo lambda watch for {} exited while starting ({status}):\n{}",
                    self.name,
                    self.tail(0)
                );
            }
            assert!(
                Instant::now() < deadline,
                "cargo lambda watch for {} did not listen on port {} within {LISTEN_TIMEOUT:?}",
                self.name,
                self.port
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last lines of the log from line `from` on.
    fn tail(&self, from: usize) -> String {
        let log = self.log.lock().unwrap();
        let lines = &log[from.min(log.len())..];
        let skip = lines.len().saturating_sub(60);
        lines[skip..]
            .iter()
            .map(|(_, l)| l.chars().take(500).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The arrival of the first line from `from` on that matches.
    fn find(&self, from: usize, pred: impl Fn(&str) -> bool) -> Option<Instant> {
        let log = self.log.lock().unwrap();
        log.get(from..)?
            .iter()
            .find(|(_, l)| pred(l))
            .map(|(t, _)| *t)
    }

    /// Invokes the function with `payload` through the emulator's Invoke API; the function's
    /// answer. Fails at once when the function's process exits (a build error, a failed cold
    /// start) rather than waiting for the timeout.
    async fn invoke(&mut self, event: &str, payload: String) -> (Value, Timing) {
        let url = format!(
            "http://127.0.0.1:{}/2015-03-31/functions/{}/invocations",
            self.port, self.name
        );
        let first = !self.started;
        self.started = true;
        let mark = self.log.lock().unwrap().len();
        let start = Instant::now();
        let request = self
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(payload)
            .send();
        let response = async move {
            let resp = request.await?;
            let status = resp.status();
            let text = resp.text().await?;
            Ok::<_, reqwest::Error>((status, text))
        };
        tokio::pin!(response);
        let deadline = start + INVOKE_TIMEOUT;
        let (status, text) = loop {
            tokio::select! {
                r = &mut response => break r.unwrap_or_else(|e| {
                    panic!("invoking {} with {event}: {e}\n{}", self.name, self.tail(mark))
                }),
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
            if self.find(mark, |l| l.contains("command exited")).is_some() {
                // Let the last lines of its output arrive.
                tokio::time::sleep(Duration::from_millis(500)).await;
                panic!(
                    "{} exited while handling {event} (build error or failed cold start):\n{}",
                    self.name,
                    self.tail(mark)
                );
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "cargo lambda watch for {} exited ({status}) during {event}:\n{}",
                    self.name,
                    self.tail(mark)
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not answer {event} within {INVOKE_TIMEOUT:?}:\n{}",
                self.name,
                self.tail(mark)
            );
        };
        let done = Instant::now();
        assert!(
            status.is_success(),
            "the Invoke API answered {status} to {event} for {}: {text}\n{}",
            self.name,
            self.tail(mark)
        );
        let answer: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!("{} answered {event} with non-JSON ({e}): {text}", self.name)
        });
        let running = if first {
            // cargo's `Running `target/debug/NAME`` (wherever the target directory is).
            let binary = format!("/{}`", self.name);
            self.find(mark, |l| l.contains("Running `") && l.contains(&binary))
        } else {
            None
        };
        let timing = Timing {
            function: self.name,
            event: event.to_string(),
            total: done - start,
            build: running.map(|r| r - start),
            cold_start: running.map(|r| done - r),
        };
        (answer, timing)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SIGTERM first: cargo-lambda then stops the function it started (in a process group of
        // its own) before exiting.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut exited = false;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                exited = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !exited {
            // Not yet reaped, so the ids are still ours: its group, then the function's process
            // groups as cargo-lambda logged them.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let groups: Vec<libc::pid_t> = self
                .log
                .lock()
                .unwrap()
                .iter()
                .filter_map(|(_, l)| l.split("pgid=").nth(1))
                .filter_map(|s| s.split_whitespace().next()?.parse().ok())
                .collect();
            for g in groups {
                unsafe { libc::kill(-g, libc::SIGKILL) };
            }
        }
        let _ = self.child.wait();
    }
}

/// `events/{event}.json`, with `id` in place of the placeholder id.
fn event(event: &str, id: Option<&str>) -> String {
    let path = format!("{}/events/{event}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    match id {
        Some(id) => text.replace(PLACEHOLDER, id),
        None => text,
    }
}

/// The status and JSON body of a `lambda_http` function's API Gateway v2 answer.
fn http_answer(event: &str, answer: &Value) -> (u64, Value) {
    let status = answer["statusCode"]
        .as_u64()
        .unwrap_or_else(|| panic!("{event}: no statusCode in the answer: {answer}"));
    let body = match answer["body"].as_str() {
        Some(b) if !b.is_empty() => serde_json::from_str(b)
            .unwrap_or_else(|e| panic!("{event}: body is not JSON ({e}): {answer}")),
        _ => Value::Null,
    };
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_lambda_binary_answers_its_event_under_cargo_lambda_watch() {
    let version = cargo_lambda_version();
    eprintln!("using {version}");
    let test_start = Instant::now();

    // Secrets Manager, the database and Meta, as a deployed function would reach them.
    let moto = Moto::start();
    let db_url = support::fresh_database().await;
    let support::UrlParts {
        host,
        port,
        user,
        dbname,
    } = support::url_parts(&db_url);
    // The test server trusts loopback connections: the password only has to travel.
    let db_secret = json!({
        "engine": "postgres", "host": host, "port": port, "username": user,
        "password": "smoke-test-password", "dbname": dbname
    });
    let db_arn = moto
        .secret(&support::unique("smoke-db"), &db_secret.to_string())
        .await;
    let token_arn = moto
        .secret(&support::unique("smoke-token"), DEFAULT_FAKE_TOKEN)
        .await;
    let fake = FakeMeta::start().await;
    let mut env: Vec<(String, String)> = moto
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    env.extend([
        ("DB_SECRET_ARN".to_string(), db_arn),
        ("META_TOKEN_SECRET_ARN".to_string(), token_arn),
        ("META_GRAPH_URL".to_string(), fake.url()),
        ("META_AD_ACCOUNT_ID".to_string(), "1".to_string()),
    ]);

    let mut watches: Vec<Watch> = FUNCTIONS
        .iter()
        .map(|(name, dir)| Watch::start(name, dir, &env))
        .collect();
    for w in &mut watches {
        w.wait_listening().await;
    }
    eprintln!(
        "{} emulators listening after {:.1?}",
        watches.len(),
        test_start.elapsed()
    );
    let [audiences, audience, sync, segments, scheduled] = &mut watches[..] else {
        unreachable!()
    };
    let mut timings = Vec::new();
    let db = support::connect(&db_url).await;

    // POST /api/audiences
    let (answer, t) = audiences
        .invoke("audiences-create", event("audiences-create", None))
        .await;
    timings.push(t);
    let (status, created) = http_answer("audiences-create", &answer);
    assert_eq!(status, 201, "audiences-create: {created}");
    assert_eq!(created["name"], "High Engagers for Upsell", "{created}");
    let id = created["id"].as_str().expect("audience id").to_string();

    // Give it a segment of five people, as the wider app would.
    let audience_id = Uuid::parse_str(&id).unwrap();
    let segment: Uuid = db
        .query_one(
            "INSERT INTO segment (name) VALUES ('Smoke segment') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    db.execute(
        "WITH p AS (INSERT INTO person (email, first_name, country) \
           SELECT 'smoke' || i || '@example.com', 'Person' || i, 'US' \
           FROM generate_series(1, 5) i RETURNING id) \
         INSERT INTO segment_member (segment_id, person_id) SELECT $1, id FROM p",
        &[&segment],
    )
    .await
    .unwrap();
    db.execute(
        "UPDATE custom_audience SET segment_id = $1 WHERE id = $2",
        &[&segment, &audience_id],
    )
    .await
    .unwrap();

    // GET /api/audiences (the same, now warm, instance)
    let (answer, t) = audiences
        .invoke("audiences-list", event("audiences-list", None))
        .await;
    timings.push(t);
    let (status, list) = http_answer("audiences-list", &answer);
    assert_eq!(status, 200, "audiences-list: {list}");
    let listed = list["audiences"].as_array().expect("audiences array");
    assert!(
        listed
            .iter()
            .any(|a| a["id"] == id.as_str() && a["name"] == "High Engagers for Upsell"),
        "audiences-list does not list {id}: {list}"
    );

    // GET /api/audiences/{id}
    let (answer, t) = audience
        .invoke("audience-get", event("audience-get", Some(&id)))
        .await;
    timings.push(t);
    let (status, got) = http_answer("audience-get", &answer);
    assert_eq!(status, 200, "audience-get: {got}");
    assert_eq!(got["id"], id.as_str(), "{got}");
    assert_eq!(got["segment_id"], segment.to_string().as_str(), "{got}");

    // POST /api/audiences/sync: the five people reach (fake) Meta.
    let (answer, t) = sync.invoke("sync-one", event("sync-one", Some(&id))).await;
    timings.push(t);
    let (status, synced) = http_answer("sync-one", &answer);
    assert_eq!(status, 200, "sync-one: {synced}");
    assert_eq!(synced["status"], "completed", "{synced}");
    assert_eq!(synced["synced_count"], 5, "{synced}");
    let meta_id: Option<String> = db
        .query_one(
            "SELECT meta_audience_id FROM custom_audience WHERE id = $1",
            &[&audience_id],
        )
        .await
        .unwrap()
        .get(0);
    let meta_id = meta_id.expect("the sync created the audience on (fake) Meta");
    assert_eq!(fake.member_count(&meta_id), 5, "members on Meta");

    // POST /api/segments
    let (answer, t) = segments
        .invoke("segments-create", event("segments-create", None))
        .await;
    timings.push(t);
    let (status, seg) = http_answer("segments-create", &answer);
    assert_eq!(status, 201, "segments-create: {seg}");
    assert_eq!(seg["name"], "High Engagers", "{seg}");

    // The scheduled sync: make the audience due again, then one pass from the EventBridge event.
    db.execute(
        "UPDATE custom_audience SET last_synced_at = now() - interval '25 hours' WHERE id = $1",
        &[&audience_id],
    )
    .await
    .unwrap();
    let (summary, t) = scheduled
        .invoke("scheduled-sync", event("scheduled-sync", None))
        .await;
    timings.push(t);
    for key in ["claimed", "completed", "failed", "resumed"] {
        assert!(
            summary[key].is_u64(),
            "scheduled-sync: no {key} count in the summary: {summary}"
        );
    }
    assert_eq!(summary["failed"], 0, "scheduled-sync summary: {summary}");
    assert_eq!(
        summary["claimed"], summary["completed"],
        "scheduled-sync summary: {summary}"
    );
    let resynced: bool = db
        .query_one(
            "SELECT last_synced_at > now() - interval '1 hour' FROM custom_audience WHERE id = $1",
            &[&audience_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        summary["claimed"], 1,
        "the due audience was claimed: {summary}"
    );
    assert!(resynced, "claimed and completed, yet not synced: {summary}");

    drop(watches);
    eprintln!("\nlambda smoke timings (cargo-lambda: {version}):");
    for t in &timings {
        let ms = |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{d:.2?}"));
        eprintln!(
            "  {:<22} {:<17} total {:>10}  build {:>10}  cold start (process start to response) {:>10}",
            t.function,
            t.event,
            format!("{:.2?}", t.total),
            ms(t.build),
            ms(t.cold_start)
        );
    }
    eprintln!("  whole test: {:.1?}", test_start.elapsed());
}
