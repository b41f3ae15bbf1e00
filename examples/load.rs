//! Load run: `--clients` concurrent clients mixing reads, writes, imports and syncs against
//! `audiences serve` for `--seconds`, on loopback only.
//!
//! By default it starts the `audiences` binary built beside it (`target/<profile>/audiences`) as
//! `serve --port 0` in a temporary directory, so that the server starts its own PostgreSQL there
//! as it does for a developer, with Meta not configured (syncs are database-only); `--url` runs
//! against a server already listening on 127.0.0.1 instead. It seeds people, segments and
//! audiences through the API, runs the mix, then reads back every audience and segment the run
//! created. It prints requests/s and p50/p99 latencies per kind and overall, and exits non-zero
//! on any 5xx, transport error or unexpected status, and on any created resource that cannot be
//! read back.
//!
//! ```sh
//! cargo build --release --bin audiences --example load
//! target/release/examples/load --clients 50 --seconds 60
//! ```

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use clap::Parser;
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(about = "Load run against audiences serve (loopback only)")]
struct Args {
    /// Concurrent clients, each sending one request after another.
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// Length of the mixed run, after seeding.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// People imported before the run (in requests of 1,000).
    #[arg(long, default_value_t = 10_000)]
    seed_persons: usize,
    /// A running server (http://127.0.0.1:PORT or http://localhost:PORT) instead of starting one.
    #[arg(long)]
    url: Option<String>,
    /// The `audiences` binary to start (default: the one built beside this tool).
    #[arg(long)]
    server_bin: Option<PathBuf>,
}

/// What a request is counted as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Read,
    Write,
    Import,
    Sync,
}

const KINDS: [Kind; 4] = [Kind::Read, Kind::Write, Kind::Import, Kind::Sync];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Read => "read",
            Kind::Write => "write",
            Kind::Import => "import",
            Kind::Sync => "sync",
        }
    }
}

/// Rows per import request during the run (the seed uses 1,000).
const IMPORT_ROWS: usize = 50;
/// Audiences created before the run; the run's syncs go to these.
const SEED_AUDIENCES: usize = 20;
/// Readback requests in flight at once.
const READBACK_CONCURRENCY: usize = 8;

/// Ids known to every client: seeded ones, and those created during the run (read back at the
/// end).
#[derive(Default)]
struct Known {
    seeded_audiences: Vec<String>,
    seeded_segments: Vec<String>,
    /// Person ids for consent changes (opt-outs): a preview sample.
    persons: Vec<String>,
    created_audiences: Mutex<Vec<(String, String)>>,
    created_segments: Mutex<Vec<(String, String)>>,
}

impl Known {
    fn any_segment(&self) -> String {
        let created = self.created_segments.lock().unwrap();
        let n = self.seeded_segments.len() + created.len();
        let i = rand::random_range(0..n);
        match self.seeded_segments.get(i) {
            Some(id) => id.clone(),
            None => created[i - self.seeded_segments.len()].0.clone(),
        }
    }

    fn any_audience(&self) -> String {
        let created = self.created_audiences.lock().unwrap();
        let n = self.seeded_audiences.len() + created.len();
        let i = rand::random_range(0..n);
        match self.seeded_audiences.get(i) {
            Some(id) => id.clone(),
            None => created[i - self.seeded_audiences.len()].0.clone(),
        }
    }
}

/// What one client saw.
#[derive(Default)]
struct Tally {
    latencies: BTreeMap<Kind, Vec<Duration>>,
    statuses: BTreeMap<(Kind, u16), u64>,
    /// Problems (5xx, unexpected answers, transport errors), described without any body content
    /// beyond the error code the server gave.
    problems: Vec<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        for (k, mut v) in other.latencies {
            self.latencies.entry(k).or_default().append(&mut v);
        }
        for (k, n) in other.statuses {
            *self.statuses.entry(k).or_default() += n;
        }
        self.problems.extend(other.problems);
    }
}

/// One client's connection to the server and its tally.
struct Client {
    http: reqwest::Client,
    base: String,
    tally: Tally,
}

impl Client {
    /// Sends one request, records its latency and status; the parsed body when the status is
    /// one of `expected`, else the problem is recorded and `None` returned.
    async fn call(
        &mut self,
        kind: Kind,
        method: Method,
        path: &str,
        body: Option<&Value>,
        expected: &[StatusCode],
    ) -> Option<(StatusCode, Value)> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(b);
        }
        let started = Instant::now();
        let result = match req.send().await {
            Ok(resp) => {
                let status = resp.status();
                resp.bytes().await.map(|b| (status, b))
            }
            Err(e) => Err(e),
        };
        let took = started.elapsed();
        self.tally.latencies.entry(kind).or_default().push(took);
        let (status, bytes) = match result {
            Ok(r) => r,
            Err(e) => {
                self.tally.problems.push(format!("{method} {path}: {e}"));
                return None;
            }
        };
        *self
            .tally
            .statuses
            .entry((kind, status.as_u16()))
            .or_default() += 1;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !expected.contains(&status) {
            let code = value["error"]["code"].as_str().unwrap_or("-");
            self.tally
                .problems
                .push(format!("{method} {}: {status} ({code})", route_of(path)));
            return None;
        }
        Some((status, value))
    }

    async fn one_op(&mut self, known: &Known, client: usize, seq: usize) {
        match rand::random_range(0..100u32) {
            0..=49 => self.read(known).await,
            50..=74 => self.write(known, client, seq).await,
            75..=84 => self.import(client, seq).await,
            _ => self.sync(known).await,
        }
    }

    async fn read(&mut self, known: &Known) {
        let ok = &[StatusCode::OK];
        // `limit`: list routes answer a page (DESIGN §8.4), as a client pages through them.
        let (method, path, body) = match rand::random_range(0..5u32) {
            0 => (
                Method::GET,
                "/api/audiences?is_active=true&limit=100".to_string(),
                None,
            ),
            1 => (
                Method::GET,
                format!("/api/audiences/{}?include=metrics", known.any_audience()),
                None,
            ),
            2 => (Method::GET, "/api/segments?limit=100".to_string(), None),
            3 => (
                Method::GET,
                format!("/api/segments/{}", known.any_segment()),
                None,
            ),
            _ => (
                Method::POST,
                "/api/segments/preview".to_string(),
                Some(json!({ "rule": renders_rule(rand::random_range(0..20)) })),
            ),
        };
        self.call(Kind::Read, method, &path, body.as_ref(), ok)
            .await;
    }

    async fn write(&mut self, known: &Known, client: usize, seq: usize) {
        let ok = &[StatusCode::OK];
        let created = &[StatusCode::CREATED];
        match rand::random_range(0..4u32) {
            0 => {
                let name = format!("load audience {client}-{seq}-{}", uuid::Uuid::new_v4());
                let body = json!({ "name": name, "segment_id": known.any_segment() });
                let answer = self
                    .call(
                        Kind::Write,
                        Method::POST,
                        "/api/audiences",
                        Some(&body),
                        created,
                    )
                    .await;
                if let Some(id) = answer.and_then(|(_, v)| id_of(&v)) {
                    known.created_audiences.lock().unwrap().push((id, name));
                }
            }
            1 => {
                let body = json!({ "description": format!("edited by client {client} at {seq}") });
                let path = format!("/api/audiences/{}", known.any_audience());
                self.call(Kind::Write, Method::PUT, &path, Some(&body), ok)
                    .await;
            }
            2 => {
                let name = format!("load segment {client}-{seq}-{}", uuid::Uuid::new_v4());
                let body = json!({ "name": name, "rule": renders_rule(rand::random_range(0..20)) });
                let answer = self
                    .call(
                        Kind::Write,
                        Method::POST,
                        "/api/segments",
                        Some(&body),
                        created,
                    )
                    .await;
                if let Some(id) = answer.and_then(|(_, v)| id_of(&v)) {
                    known.created_segments.lock().unwrap().push((id, name));
                }
            }
            _ => {
                let person = &known.persons[rand::random_range(0..known.persons.len())];
                let body = json!({ "marketing_opt_out": true });
                let path = format!("/api/persons/{person}");
                self.call(Kind::Write, Method::PATCH, &path, Some(&body), ok)
                    .await;
            }
        }
    }

    async fn import(&mut self, client: usize, seq: usize) {
        let rows: Vec<Value> = (0..IMPORT_ROWS)
            .map(|i| person(&format!("run-{client}-{seq}-{i}")))
            .collect();
        let body = json!({ "persons": rows });
        let answer = self
            .call(
                Kind::Import,
                Method::POST,
                "/api/persons",
                Some(&body),
                &[StatusCode::OK],
            )
            .await;
        if let Some((_, v)) = answer {
            if v["upserted"] != json!(IMPORT_ROWS) || v["errors"] != json!([]) {
                self.tally.problems.push(format!(
                    "POST /api/persons: upserted {} of {IMPORT_ROWS}, errors {}",
                    v["upserted"],
                    v["errors"].as_array().map_or(0, Vec::len)
                ));
            }
        }
    }

    /// Incremental mostly, full one time in five; 409 when another client's sync of the same
    /// audience runs (expected: 50 clients share 20 audiences).
    async fn sync(&mut self, known: &Known) {
        let audience = &known.seeded_audiences[rand::random_range(0..known.seeded_audiences.len())];
        let sync_type = if rand::random_range(0..5u32) == 0 {
            "full"
        } else {
            "incremental"
        };
        let body = json!({ "audience_id": audience, "sync_type": sync_type });
        let answer = self
            .call(
                Kind::Sync,
                Method::POST,
                "/api/audiences/sync",
                Some(&body),
                &[StatusCode::OK, StatusCode::CONFLICT],
            )
            .await;
        if let Some((StatusCode::OK, v)) = answer {
            if v["status"] != "completed" {
                self.tally.problems.push(format!(
                    "POST /api/audiences/sync: status {} ({})",
                    v["status"],
                    v["error_message"].as_str().unwrap_or("-")
                ));
            }
        }
    }
}

/// The route of a path, ids replaced, for problem lines.
fn route_of(path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    path.split('/')
        .map(|part| {
            if uuid::Uuid::parse_str(part).is_ok() {
                "{id}"
            } else {
                part
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn id_of(v: &Value) -> Option<String> {
    v["id"].as_str().map(str::to_string)
}

fn renders_rule(at_least: u32) -> Value {
    json!({"type": "condition", "attribute": "total_renders", "operator": ">=", "value": at_least})
}

/// A synthetic person (example.com addresses, 555 numbers): varied enough for the rules.
fn person(external_id: &str) -> Value {
    let n = rand::random_range(0..1_000_000u32);
    let countries = ["US", "GB", "DE", "FR", "CA"];
    let plans = ["free", "pro", "team"];
    json!({
        "external_id": external_id,
        "email": format!("{external_id}@example.com"),
        "phone": format!("(650) 555-{:04}", n % 10_000),
        "first_name": "Load",
        "last_name": format!("Tester{}", n % 97),
        "country": countries[n as usize % countries.len()],
        "attributes": {"total_renders": n % 20, "plan": plans[n as usize % plans.len()]},
    })
}

/// Seeds people, three rule segments, the audiences the run syncs (each synced once in full),
/// and a sample of person ids.
async fn seed(client: &mut Client, persons: usize) -> anyhow::Result<Known> {
    let started = Instant::now();
    let ok = &[StatusCode::OK];
    let mut i = 0;
    while i < persons {
        let rows: Vec<Value> = (i..persons.min(i + 1000))
            .map(|n| person(&format!("seed-{n}")))
            .collect();
        i += rows.len();
        let body = json!({ "persons": rows });
        client
            .call(Kind::Import, Method::POST, "/api/persons", Some(&body), ok)
            .await
            .context("seeding people")?;
    }
    let rules = [
        renders_rule(5),
        json!({"type": "condition", "attribute": "plan", "operator": "=", "value": "pro"}),
        json!({"type": "condition", "attribute": "country", "operator": "in", "value": ["US", "CA"]}),
    ];
    let mut known = Known::default();
    for (n, rule) in rules.into_iter().enumerate() {
        let body = json!({ "name": format!("load seed segment {n}"), "rule": rule });
        let (_, v) = client
            .call(
                Kind::Write,
                Method::POST,
                "/api/segments",
                Some(&body),
                &[StatusCode::CREATED],
            )
            .await
            .context("seeding segments")?;
        known.seeded_segments.push(id_of(&v).context("segment id")?);
    }
    for n in 0..SEED_AUDIENCES {
        let segment = &known.seeded_segments[n % known.seeded_segments.len()];
        let body = json!({ "name": format!("load seed audience {n}"), "segment_id": segment });
        let (_, v) = client
            .call(
                Kind::Write,
                Method::POST,
                "/api/audiences",
                Some(&body),
                &[StatusCode::CREATED],
            )
            .await
            .context("seeding audiences")?;
        let id = id_of(&v).context("audience id")?;
        let body = json!({ "audience_id": id, "sync_type": "full" });
        client
            .call(
                Kind::Sync,
                Method::POST,
                "/api/audiences/sync",
                Some(&body),
                ok,
            )
            .await
            .context("first sync of a seeded audience")?;
        known.seeded_audiences.push(id);
    }
    let body = json!({ "rule": renders_rule(0) });
    let (_, v) = client
        .call(
            Kind::Read,
            Method::POST,
            "/api/segments/preview",
            Some(&body),
            ok,
        )
        .await
        .context("sampling people")?;
    known.persons = v["sample"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter_map(|p| p.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    ensure!(!known.persons.is_empty(), "the preview sampled no person");
    println!(
        "seeded {persons} people, {} segments, {} audiences (each synced in full) in {:.1} s",
        known.seeded_segments.len(),
        known.seeded_audiences.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(known)
}

/// Every created audience and segment, read back by id: 200 with the name it was created with.
async fn readback(http: &reqwest::Client, base: &str, known: &Known) -> Vec<String> {
    let audiences = known.created_audiences.lock().unwrap().clone();
    let segments = known.created_segments.lock().unwrap().clone();
    let items = audiences
        .into_iter()
        .map(|(id, name)| ("audiences", id, name))
        .chain(
            segments
                .into_iter()
                .map(|(id, name)| ("segments", id, name)),
        );
    futures_util::stream::iter(items)
        .map(|(what, id, name)| async move {
            let url = format!("{base}/api/{what}/{id}");
            let answer = match http.get(&url).send().await {
                Ok(r) => {
                    let status = r.status();
                    (status, r.json::<Value>().await.unwrap_or(Value::Null))
                }
                Err(e) => return Some(format!("GET /api/{what}/{id}: {e}")),
            };
            match answer {
                (StatusCode::OK, v) if v["id"] == id.as_str() && v["name"] == name.as_str() => None,
                (status, _) => Some(format!("GET /api/{what}/{id}: {status}, or not as created")),
            }
        })
        .buffer_unordered(READBACK_CONCURRENCY)
        .filter_map(|problem| async move { problem })
        .collect()
        .await
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}

fn report_line(name: &str, mut latencies: Vec<Duration>, secs: f64, statuses: &str) {
    latencies.sort_unstable();
    println!(
        "{name:<8} {:>9} {:>9.1} {:>9.1} {:>9.1} {:>9.1}   {statuses}",
        latencies.len(),
        latencies.len() as f64 / secs,
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies
            .last()
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0),
    );
}

fn report(tally: &Tally, secs: f64) {
    println!(
        "{:<8} {:>9} {:>9} {:>9} {:>9} {:>9}   statuses",
        "kind", "requests", "req/s", "p50 ms", "p99 ms", "max ms"
    );
    let mut all = Vec::new();
    for kind in KINDS {
        let latencies = tally.latencies.get(&kind).cloned().unwrap_or_default();
        all.extend_from_slice(&latencies);
        let statuses: Vec<String> = tally
            .statuses
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|((_, s), n)| format!("{s}: {n}"))
            .collect();
        report_line(kind.name(), latencies, secs, &statuses.join(", "));
    }
    let mut by_status: BTreeMap<u16, u64> = BTreeMap::new();
    for ((_, s), n) in &tally.statuses {
        *by_status.entry(*s).or_default() += n;
    }
    let statuses: Vec<String> = by_status.iter().map(|(s, n)| format!("{s}: {n}")).collect();
    report_line("all", all, secs, &statuses.join(", "));
}

/// `audiences serve` started by this tool, in a directory of its own (its PostgreSQL's data
/// under `.local/` there, its log in `serve.log`). Killed if dropped while running; its
/// PostgreSQL dies with it.
struct Server {
    child: Child,
    dir: PathBuf,
    base: String,
}

impl Server {
    fn start(bin: &Path) -> anyhow::Result<Server> {
        ensure!(
            bin.is_file(),
            "no server binary at {} (build it: cargo build --bin audiences, with --release for a release run; or pass --server-bin)",
            bin.display()
        );
        let dir = std::env::temp_dir().join(format!("audience-sync-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut command = Command::new(bin);
        command
            .args(["serve", "--port", "0"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // Its own database and no platform: not the caller's database, never Meta.
        for var in [
            "DATABASE_URL",
            "DB_SECRET_ARN",
            "DB_HOST",
            "DB_PORT",
            "DB_NAME",
            "META_ACCESS_TOKEN",
            "META_TOKEN_SECRET_ARN",
            "META_AD_ACCOUNT_ID",
            "META_GRAPH_URL",
            "PORT",
        ] {
            command.env_remove(var);
        }
        // Should this tool die without stopping it (a kill, a panic), the server gets Ctrl-C and
        // stops its PostgreSQL. The signal follows the thread that forks: this runs in the main
        // future of `#[tokio::main]`, on the main thread, which lives as long as the process.
        // SAFETY: prctl only, between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stderr = child.stderr.take().context("server stderr")?;
        let mut log = std::fs::File::create(dir.join("serve.log"))?;
        let mut server = Server {
            child,
            dir,
            base: String::new(),
        };
        // The server's stderr goes to its log; the line saying where it listens is passed on.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log, "{line}");
                if let Some(url) = line.split("listening on ").nth(1) {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        // First start: initdb and migrations; a debug build takes a few seconds.
        server.base = rx.recv_timeout(Duration::from_secs(180)).map_err(|_| {
            anyhow::anyhow!(
                "the server did not start listening (see {})",
                server.dir.join("serve.log").display()
            )
        })?;
        Ok(server)
    }

    /// Ctrl-C, as a developer stops it: it must shut down cleanly (and stop its PostgreSQL).
    fn stop(mut self) -> anyhow::Result<PathBuf> {
        // SAFETY: signalling our own child process by its id.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let until = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            ensure!(
                Instant::now() < until,
                "the server did not stop within 60 s of Ctrl-C"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        ensure!(
            status.success(),
            "the server exited with {status} on Ctrl-C"
        );
        Ok(self.dir.clone())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn default_server_bin() -> anyhow::Result<PathBuf> {
    // target/<profile>/examples/load → target/<profile>/audiences
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("locating the target directory")?;
    Ok(profile_dir.join(format!("audiences{}", std::env::consts::EXE_SUFFIX)))
}

fn check_loopback(url: &str) -> anyhow::Result<String> {
    let parsed = url::Url::parse(url).with_context(|| format!("--url {url:?}"))?;
    let host = parsed.host_str().unwrap_or_default();
    ensure!(
        parsed.scheme() == "http" && ["127.0.0.1", "localhost", "[::1]"].contains(&host),
        "--url must be http:// on 127.0.0.1, localhost or [::1] (loopback only), not {url:?}"
    );
    Ok(url.trim_end_matches('/').to_string())
}

/// The 1-minute load average (Linux), or "?".
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".to_string())
}

/// The server to load: the one at `--url`, or one started here.
fn target(args: &Args) -> anyhow::Result<(Option<Server>, String, String)> {
    if let Some(url) = &args.url {
        return Ok((None, check_loopback(url)?, format!("server at {url}")));
    }
    let bin = match &args.server_bin {
        Some(b) => b.clone(),
        None => default_server_bin()?,
    };
    let server = Server::start(&bin)?;
    let base = server.base.clone();
    Ok((Some(server), base, format!("server {}", bin.display())))
}

/// `clients` clients, each sending one request after another until `seconds` have passed; their
/// merged tally and the run's length in seconds.
async fn mix(
    http: &reqwest::Client,
    base: &str,
    known: &Arc<Known>,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<(Tally, f64)> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|n| {
            let mut client = Client {
                http: http.clone(),
                base: base.to_string(),
                tally: Tally::default(),
            };
            let known = Arc::clone(known);
            tokio::spawn(async move {
                let mut seq = 0;
                while Instant::now() < deadline {
                    client.one_op(&known, n, seq).await;
                    seq += 1;
                }
                client.tally
            })
        })
        .collect();
    let mut tally = Tally::default();
    for task in tasks {
        tally.merge(task.await?);
    }
    Ok((tally, started.elapsed().as_secs_f64()))
}

/// Passed: no 5xx and no problem (transport error, unexpected answer, unreadable resource).
fn verdict(tally: &Tally, unreadable: &[String]) -> bool {
    let server_errors: u64 = tally
        .statuses
        .iter()
        .filter(|((_, s), _)| *s >= 500)
        .map(|(_, n)| n)
        .sum();
    let problems: Vec<&String> = tally.problems.iter().chain(unreadable).collect();
    for p in problems.iter().take(20) {
        eprintln!("  {p}");
    }
    let ok = server_errors == 0 && problems.is_empty();
    println!(
        "load: {} ({server_errors} 5xx, {} problems)",
        if ok { "PASSED" } else { "FAILED" },
        problems.len()
    );
    ok
}

async fn run(args: Args) -> anyhow::Result<bool> {
    ensure!(
        args.clients > 0 && args.seconds > 0,
        "--clients and --seconds must be at least 1"
    );
    let (server, base, build) = target(&args)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "load: {} clients for {} s against {base} ({build}; {cpus} CPUs; Meta not configured unless the server has it)",
        args.clients, args.seconds
    );
    let mut seeder = Client {
        http: http.clone(),
        base: base.clone(),
        tally: Tally::default(),
    };
    let known = match seed(&mut seeder, args.seed_persons).await {
        Ok(k) => Arc::new(k),
        Err(e) => {
            seeder
                .tally
                .problems
                .iter()
                .for_each(|p| eprintln!("  {p}"));
            return Err(e);
        }
    };
    let before = load_average();
    let (tally, secs) = mix(&http, &base, &known, args.clients, args.seconds).await?;
    report(&tally, secs);
    // What else the machine was doing: the figures mean little on a busy one.
    println!(
        "machine load average (1 min): {before} before the run, {} after",
        load_average()
    );
    let unreadable = readback(&http, &base, &known).await;
    println!(
        "readback: {} audiences and {} segments created during the run, {} not readable",
        known.created_audiences.lock().unwrap().len(),
        known.created_segments.lock().unwrap().len(),
        unreadable.len()
    );
    let ok = verdict(&tally, &unreadable);
    let Some(server) = server else { return Ok(ok) };
    let dir = server.stop()?;
    if ok {
        // Our own temporary directory (the server's database and log): gone on success.
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("server log kept: {}", dir.join("serve.log").display());
    }
    Ok(ok)
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("load: {e:#}");
            ExitCode::FAILURE
        }
    }
}
