//! A PostgreSQL server of our own, started from the machine's server binaries, for
//! `audiences serve` without `DATABASE_URL` and for the tests.
//!
//! Hand-rolled rather than `pgtemp` because it must also work as root (sessions and CI run as
//! root, and PostgreSQL refuses to): the server then runs as the `postgres` system user, or as
//! an unprivileged user created for it. The server dies with the process that started it
//! (parent-death signal), so a crashed test run leaves no server behind.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RUN_AS_USER: &str = "postgres";
const CREATED_USER: &str = "audience-sync-pg";
const EPHEMERAL_PREFIX: &str = "audience-sync-pg-";

#[derive(Debug, thiserror::Error)]
pub enum LocalPgError {
    #[error(
        "no PostgreSQL server binaries (initdb, postgres) on PATH or under /usr/lib/postgresql/*/bin; \
         install them (Debian: apt-get install postgresql) or set DATABASE_URL"
    )]
    NoBinaries,
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Failed(String),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> LocalPgError {
    let context = context.into();
    move |source| LocalPgError::Io { context, source }
}

/// Extra settings and files for [`LocalPostgres::start_ephemeral_with`] (tests: a server with
/// TLS on).
#[derive(Clone, Default)]
pub struct LocalOptions {
    /// Server settings, each passed as `-c name=value`.
    pub settings: Vec<(String, String)>,
    /// Files written into the data directory before the server starts, owned by the server's
    /// user with mode 0600 (e.g. `server.crt`, `server.key`); settings name them relative to
    /// the data directory.
    pub files: Vec<(String, Vec<u8>)>,
}

impl std::fmt::Debug for LocalOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.files.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("LocalOptions")
            .field("settings", &self.settings)
            .field("files", &names)
            .finish()
    }
}

impl LocalOptions {
    pub fn setting(mut self, name: &str, value: &str) -> Self {
        self.settings.push((name.to_string(), value.to_string()));
        self
    }

    pub fn file(mut self, name: &str, contents: impl Into<Vec<u8>>) -> Self {
        self.files.push((name.to_string(), contents.into()));
        self
    }
}

/// A running server. Stopped (and, when ephemeral, its files removed) on `stop` or drop.
pub struct LocalPostgres {
    child: Option<Child>,
    data_dir: PathBuf,
    port: u16,
    ephemeral: bool,
}

impl LocalPostgres {
    /// A server in a fresh temporary directory, tuned for tests (no fsync), removed on stop.
    pub fn start_ephemeral() -> Result<Self, LocalPgError> {
        Self::start_ephemeral_with(&LocalOptions::default())
    }

    /// As [`LocalPostgres::start_ephemeral`], with extra settings and files.
    pub fn start_ephemeral_with(options: &LocalOptions) -> Result<Self, LocalPgError> {
        remove_stale_ephemeral_dirs();
        let dir = std::env::temp_dir().join(format!(
            "{EPHEMERAL_PREFIX}{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        Self::start(&dir, true, options)
    }

    /// A server whose data lives in `data_dir` (initialised on first use) and survives restarts.
    /// When another process of ours already runs it, that server is used (and left running).
    pub fn start_persistent(data_dir: &Path) -> Result<Self, LocalPgError> {
        let data_dir = absolute(data_dir)?;
        if let Some(port) = running_port(&data_dir) {
            return Ok(LocalPostgres {
                child: None,
                data_dir,
                port,
                ephemeral: false,
            });
        }
        Self::start(&data_dir, false, &LocalOptions::default())
    }

    fn start(
        data_dir: &Path,
        ephemeral: bool,
        options: &LocalOptions,
    ) -> Result<Self, LocalPgError> {
        let bin = find_bin_dir().ok_or(LocalPgError::NoBinaries)?;
        let owner = if unsafe { libc::geteuid() } == 0 {
            Some(unprivileged_user()?)
        } else {
            None
        };
        let data_dir = absolute(data_dir)?;
        if !data_dir.join("PG_VERSION").exists() {
            init_cluster(&bin, &data_dir, owner, ephemeral)?;
        }
        for (name, contents) in &options.files {
            write_owned_file(&data_dir.join(name), contents, owner)?;
        }
        let port = free_port()?;
        let child = spawn_server(&bin, &data_dir, port, owner, ephemeral, &options.settings)?;
        let mut server = LocalPostgres {
            child: Some(child),
            data_dir,
            port,
            ephemeral,
        };
        server.wait_ready(Duration::from_secs(60))?;
        Ok(server)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connection URL for database `dbname` (trust authentication on loopback only).
    pub fn url(&self, dbname: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{dbname}", self.port)
    }

    fn log_path(&self) -> PathBuf {
        log_path(&self.data_dir)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), LocalPgError> {
        let deadline = Instant::now() + timeout;
        let pid_file = self.data_dir.join("postmaster.pid");
        loop {
            // The 8th line of postmaster.pid is the server's status; "ready" once it accepts
            // connections.
            let ready = fs::read_to_string(&pid_file)
                .map(|s| s.lines().nth(7).map(str::trim) == Some("ready"))
                .unwrap_or(false);
            if ready {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(LocalPgError::Failed(format!(
                        "PostgreSQL exited ({status}) while starting: {}",
                        tail(&self.log_path())
                    )));
                }
            }
            if Instant::now() > deadline {
                return Err(LocalPgError::Failed(format!(
                    "PostgreSQL did not become ready within {timeout:?}: {}",
                    tail(&self.log_path())
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fast shutdown: running sessions are ended, data is consistent on disk.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.ephemeral {
            let _ = fs::remove_dir_all(&self.data_dir);
        }
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The port of a server already running on `data_dir`, from its postmaster.pid (pid on line 1,
/// port on line 4, status on line 8).
fn running_port(data_dir: &Path) -> Option<u16> {
    let text = fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let lines: Vec<&str> = text.lines().collect();
    let pid: i32 = lines.first()?.trim().parse().ok()?;
    let alive = unsafe { libc::kill(pid, 0) } == 0
        || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    (alive && lines.get(7).map(|s| s.trim()) == Some("ready"))
        .then(|| lines.get(3)?.trim().parse().ok())
        .flatten()
}

fn log_path(data_dir: &Path) -> PathBuf {
    data_dir.join("server.log")
}

fn absolute(p: &Path) -> Result<PathBuf, LocalPgError> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Ok(std::env::current_dir()
            .map_err(io_err("current directory"))?
            .join(p))
    }
}

/// `initdb` and `postgres` from PATH, else the newest /usr/lib/postgresql/<version>/bin.
pub fn find_bin_dir() -> Option<PathBuf> {
    let has_both = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(dir) = std::env::split_paths(&path).find(|d| has_both(d)) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, d)| has_both(d))
        .collect();
    versions.sort();
    versions.pop().map(|(_, d)| d)
}

/// As root, the user the server runs as: `postgres` when the system has it, else one we create.
fn unprivileged_user() -> Result<(u32, u32), LocalPgError> {
    if let Some(ids) = lookup_user(RUN_AS_USER).or_else(|| lookup_user(CREATED_USER)) {
        return Ok(ids);
    }
    let status = Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            CREATED_USER,
        ])
        .status()
        .map_err(io_err("useradd"))?;
    if !status.success() {
        return Err(LocalPgError::Failed(format!(
            "running as root and could not create the unprivileged user {CREATED_USER} for PostgreSQL"
        )));
    }
    lookup_user(CREATED_USER)
        .ok_or_else(|| LocalPgError::Failed(format!("user {CREATED_USER} not found after useradd")))
}

fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let cname = std::ffi::CString::new(name).ok()?;
    // getpwnam is not thread-safe in general, but we only read two integers at once.
    let pw = unsafe { libc::getpwnam(cname.as_ptr()) };
    if pw.is_null() {
        None
    } else {
        Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
    }
}

fn make_owned_dir(dir: &Path, owner: Option<(u32, u32)>) -> Result<(), LocalPgError> {
    fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(io_err(format!("chmod {}", dir.display())))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid))
            .map_err(io_err(format!("chown {}", dir.display())))?;
    }
    Ok(())
}

fn write_owned_file(
    path: &Path,
    contents: &[u8],
    owner: Option<(u32, u32)>,
) -> Result<(), LocalPgError> {
    fs::write(path, contents).map_err(io_err(format!("write {}", path.display())))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(io_err(format!("chmod {}", path.display())))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(io_err(format!("chown {}", path.display())))?;
    }
    Ok(())
}

fn as_owner(cmd: &mut Command, owner: Option<(u32, u32)>) {
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid).env("HOME", "/tmp");
    }
}

fn init_cluster(
    bin: &Path,
    data_dir: &Path,
    owner: Option<(u32, u32)>,
    ephemeral: bool,
) -> Result<(), LocalPgError> {
    make_owned_dir(data_dir, owner)?;
    let mut cmd = Command::new(bin.join("initdb"));
    cmd.arg("-D").arg(data_dir).args([
        "-U",
        "postgres",
        "-A",
        "trust",
        "-E",
        "UTF8",
        "--no-locale",
    ]);
    if ephemeral {
        cmd.arg("--no-sync");
    }
    as_owner(&mut cmd, owner);
    let out = cmd.output().map_err(io_err("initdb"))?;
    if !out.status.success() {
        return Err(LocalPgError::Failed(format!(
            "initdb failed in {} (the server's user must be able to reach that directory): {}",
            data_dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn free_port() -> Result<u16, LocalPgError> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(io_err("find a free port"))?;
    Ok(listener
        .local_addr()
        .map_err(io_err("find a free port"))?
        .port())
}

fn spawn_server(
    bin: &Path,
    data_dir: &Path,
    port: u16,
    owner: Option<(u32, u32)>,
    ephemeral: bool,
    settings: &[(String, String)],
) -> Result<Child, LocalPgError> {
    let log = fs::File::create(log_path(data_dir)).map_err(io_err("server log"))?;
    let log_err = log.try_clone().map_err(io_err("server log"))?;
    let mut cmd = Command::new(bin.join("postgres"));
    cmd.arg("-D")
        .arg(data_dir)
        .arg("-p")
        .arg(port.to_string())
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "max_connections=200",
        ])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", data_dir.display()))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        // Our own process group: a terminal's Ctrl-C reaches us, and we stop the server cleanly.
        .process_group(0);
    if ephemeral {
        cmd.args([
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ]);
    }
    for (name, value) in settings {
        cmd.arg("-c").arg(format!("{name}={value}"));
    }
    as_owner(&mut cmd, owner);
    unsafe {
        cmd.pre_exec(|| {
            // Runs after the uid change (which would clear it): the server gets a fast-shutdown
            // signal when the thread that started it dies.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // The parent-death signal fires when the *thread* that forked exits, so fork from a thread
    // that lives as long as the process.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("local-postgres".into())
        .spawn(move || {
            let _ = tx.send(cmd.spawn());
            loop {
                std::thread::park();
            }
        })
        .map_err(io_err("spawn thread"))?;
    rx.recv()
        .map_err(|_| LocalPgError::Failed("server thread died".into()))?
        .map_err(io_err("start postgres"))
}

fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

/// Ephemeral directories of test runs whose process is gone.
fn remove_stale_ephemeral_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(EPHEMERAL_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        let alive = unsafe { libc::kill(pid, 0) } == 0
            || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        if !alive {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}
