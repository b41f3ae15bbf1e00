//! `audiences`: run the service locally, migrate, and sync from a terminal. Logs go to stderr;
//! stdout carries only each command's JSON result, as its last line.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use uuid::Uuid;

use audience_sync::config::{redact_url, Config};
use audience_sync::db::local::LocalPostgres;
use audience_sync::sync::scheduler::{self, TickOptions};
use audience_sync::sync::{self, Progress, SyncOptions, SyncType};
use audience_sync::{db, server, telemetry, App};

#[derive(Parser)]
#[command(
    name = "audiences",
    version,
    about = "Keep Meta Custom Audiences in sync with your segments"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply migrations and serve the REST API on 127.0.0.1, running a scheduler pass every
    /// SCHEDULER_INTERVAL_SECONDS (default 60). Without DATABASE_URL, starts a local PostgreSQL
    /// (data under .local/) and stops it on exit.
    Serve {
        /// The port on 127.0.0.1 (default: `PORT`, else 3000).
        #[arg(long)]
        port: Option<u16>,
        /// Run no scheduler passes: audiences sync only when asked (`tick`, `sync`, the API).
        #[arg(long)]
        no_scheduler: bool,
    },
    /// Apply pending migrations to DATABASE_URL (or the local database).
    Migrate,
    /// One scheduler pass (the scheduled Lambda's code): sync the due audiences, print a summary.
    Tick {
        /// Time this pass may take; a sync that does not fit pauses and resumes next time.
        #[arg(long, default_value_t = 840)]
        budget_seconds: u64,
    },
    /// Run one sync of one audience, with a progress bar on a terminal.
    Sync {
        audience_id: Uuid,
        #[arg(long = "type", value_enum, default_value_t = CliSyncType::Incremental)]
        sync_type: CliSyncType,
        /// Print what the sync would do (the API's dry-run answer); change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Sync past the removal guardrails (max_removal_percent, min_members), this once.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum CliSyncType {
    Full,
    Incremental,
    Update,
}

impl From<CliSyncType> for SyncType {
    fn from(t: CliSyncType) -> Self {
        match t {
            CliSyncType::Full => SyncType::Full,
            CliSyncType::Incremental => SyncType::Incremental,
            CliSyncType::Update => SyncType::Update,
        }
    }
}

const LOCAL_DATA_DIR: &str = ".local/pgdata";
const LOCAL_DB_NAME: &str = "audience_sync";

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        tracing::error!("{e:#}");
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::from_env();
    telemetry::init(
        config.as_ref().is_ok_and(|c| c.log_json),
        config.as_ref().ok().and_then(|c| c.log_filter.as_deref()),
    );
    // DB_SECRET_ARN / META_TOKEN_SECRET_ARN work here too (e.g. `migrate` against RDS).
    let mut config = config?.resolve_secrets().await?;
    // Without DATABASE_URL, the project's own local server (shared with a running `serve`).
    let local = match &config.database_url {
        Some(_) => None,
        None => {
            let pg = LocalPostgres::start_persistent(Path::new(LOCAL_DATA_DIR))
                .context("starting the local PostgreSQL (set DATABASE_URL to use another)")?;
            db::ensure_database(&pg.url("postgres"), LOCAL_DB_NAME).await?;
            config.database_url = Some(pg.url(LOCAL_DB_NAME));
            Some(pg)
        }
    };
    let url = config.database_url.clone().unwrap_or_default();
    let applied = db::migrate(&url, &config.db_ca())
        .await
        .context("applying migrations")?;
    if applied > 0 {
        tracing::info!(applied, "migrations applied");
    }
    let result = match cli.command {
        Command::Migrate => Ok(serde_json::json!({ "migrations_applied": applied })),
        Command::Serve { port, no_scheduler } => {
            let scheduler = config.scheduler_interval.filter(|_| !no_scheduler);
            serve(&config, port.unwrap_or(config.port), scheduler, &url).await
        }
        Command::Tick { budget_seconds } => tick(&config, budget_seconds).await,
        Command::Sync {
            audience_id,
            sync_type,
            dry_run,
            force,
        } => {
            let options = SyncOptions {
                sync_type: Some(sync_type.into()),
                force,
            };
            sync_one(&config, audience_id, options, dry_run).await
        }
    };
    drop(local);
    println!("{}", result?);
    Ok(())
}

async fn serve(
    config: &Config,
    port: u16,
    scheduler: Option<Duration>,
    url: &str,
) -> anyhow::Result<serde_json::Value> {
    let app = App::build(config).await?;
    let (listener, addr) = server::bind(port)
        .await
        .with_context(|| format!("binding 127.0.0.1:{port}"))?;
    eprintln!("audience-sync listening on http://{addr}");
    eprintln!("database: {}", redact_url(url));
    if app.meta.is_none() {
        eprintln!(
            "Meta is not configured (META_ACCESS_TOKEN unset): syncs do the database side only"
        );
    }
    match scheduler {
        Some(every) => eprintln!(
            "scheduler: a pass every {} s (SCHEDULER_INTERVAL_SECONDS; --no-scheduler turns it off)",
            every.as_secs()
        ),
        None => eprintln!("scheduler: off (audiences sync only when asked)"),
    }
    server::run(app, listener, scheduler, async {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("shutting down");
    })
    .await?;
    Ok(serde_json::json!({ "stopped": format!("http://{addr}") }))
}

async fn tick(config: &Config, budget_seconds: u64) -> anyhow::Result<serde_json::Value> {
    let app = App::build(config).await?;
    let opts = TickOptions::new(Duration::from_secs(budget_seconds), &app.sync);
    Ok(serde_json::to_value(scheduler::tick(&app, opts).await?)?)
}

async fn sync_one(
    config: &Config,
    id: Uuid,
    options: SyncOptions,
    dry_run: bool,
) -> anyhow::Result<serde_json::Value> {
    let app = App::build(config).await?;
    if dry_run {
        return Ok(serde_json::to_value(
            sync::dry_run(&app, id, options).await?,
        )?);
    }
    let bar = BarProgress::new();
    let result = sync::run_with(&app, id, options, &bar, None).await?;
    bar.0.finish_and_clear();
    Ok(serde_json::to_value(result)?)
}

/// A progress bar on stderr when it is a terminal; hidden otherwise.
struct BarProgress(ProgressBar);

impl BarProgress {
    fn new() -> Self {
        let bar = if std::io::stderr().is_terminal() {
            ProgressBar::new(0)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:>8} [{bar:40}] {pos}/{len} members ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        BarProgress(bar)
    }
}

impl Progress for BarProgress {
    fn shows_total(&self) -> bool {
        !self.0.is_hidden()
    }

    fn begin(&self, stage: &str, total: u64) {
        self.0.set_message(stage.to_string());
        self.0.set_length(total);
        self.0.set_position(0);
    }

    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
}
