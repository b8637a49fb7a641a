//! `hashdrop-server` binary: argument parsing and signal handling around the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hashdrop_server::config::{FlagOverrides, EXAMPLE_CONFIG};
use hashdrop_server::{App, Config};

/// The Hashdrop API server.
///
/// With no arguments it runs the embedded setup: SQLite (WAL) and blobs under
/// ./hashdrop-data, in-process rate limits, mail written to ./hashdrop-data/mail,
/// listening on 127.0.0.1:8080. Secrets are generated on first start and kept in
/// the data dir.
///
/// Configuration is layered: built-in defaults, then the TOML file (--config or
/// HASHDROP_CONFIG), then HASHDROP_* environment variables (nested keys joined with
/// "__", e.g. HASHDROP_LIMITS__USER_BYTES=1000000), then these flags. Run
/// `hashdrop-server example-config` for every key with its default.
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    /// TOML config file.
    #[arg(long, env = "HASHDROP_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Listen address [default: 127.0.0.1:8080].
    #[arg(long, env = "HASHDROP_LISTEN", global = true)]
    listen: Option<String>,
    /// Data directory [default: ./hashdrop-data].
    #[arg(long, env = "HASHDROP_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Base URL of every link handed out [default: http://{listen}].
    #[arg(long, env = "HASHDROP_PUBLIC_URL", global = true)]
    public_url: Option<String>,
    /// sqlite://PATH or postgres://... [default: sqlite://{data_dir}/hashdrop.db].
    #[arg(long, env = "HASHDROP_DATABASE_URL", global = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Print an annotated example configuration file.
    ExampleConfig,
    /// Print the effective configuration after all layers (secrets hidden).
    ShowConfig,
    /// Inspect or requeue background jobs.
    Jobs {
        #[command(subcommand)]
        action: JobsAction,
    },
    /// Take a SQLite snapshot into the blob store now.
    Backup,
    /// Restore a SQLite snapshot from the blob store (server must be stopped).
    Restore {
        /// Object key such as backups/hashdrop-1700000000000.sqlite; newest if omitted.
        #[arg(long)]
        from: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum JobsAction {
    /// List recent jobs.
    List {
        /// Only jobs in this state: queued, running, done, dead.
        #[arg(long)]
        state: Option<String>,
    },
    /// Requeue a dead job with a fresh attempt budget.
    Retry {
        /// Job id.
        id: i64,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::ExampleConfig) = cli.command {
        print!("{EXAMPLE_CONFIG}");
        return Ok(());
    }
    hashdrop_server::observability::init_logging();
    let flags = FlagOverrides {
        listen: cli.listen.clone(),
        data_dir: cli.data_dir.clone(),
        public_url: cli.public_url.clone(),
        database_url: cli.database_url.clone(),
    };
    let cfg = Config::load(cli.config.as_deref(), &flags)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cli.command.unwrap_or(Command::Serve), cfg))
}

async fn run(cmd: Command, mut cfg: Config) -> anyhow::Result<()> {
    match cmd {
        Command::ExampleConfig => unreachable!("handled before startup"),
        Command::ShowConfig => {
            cfg.auth.jwt_secret = cfg.auth.jwt_secret.map(|_| "<hidden>".into());
            cfg.auth.hmac_secret = cfg.auth.hmac_secret.map(|_| "<hidden>".into());
            cfg.s3.secret_access_key = cfg.s3.secret_access_key.map(|_| "<hidden>".into());
            cfg.metrics_token = cfg.metrics_token.map(|_| "<hidden>".into());
            let redact = hashdrop_server::config::redact_url;
            cfg.database_url = cfg.database_url.as_deref().map(redact);
            cfg.database_replica_url = cfg.database_replica_url.as_deref().map(redact);
            cfg.mailer = redact(&cfg.mailer);
            cfg.rate_limit.backend = redact(&cfg.rate_limit.backend);
            cfg.cache.backend = redact(&cfg.cache.backend);
            println!("{}", serde_json::to_string_pretty(&cfg)?);
        }
        Command::Serve => {
            let listener = tokio::net::TcpListener::bind(&cfg.listen)
                .await
                .with_context(|| format!("binding {}", cfg.listen))?;
            let addr = listener.local_addr()?;
            // With --listen 127.0.0.1:0 the real port is known only now; links must use it.
            cfg.listen = addr.to_string();
            if cfg.public_url.is_none() {
                cfg.public_url = Some(format!("http://{addr}"));
            }
            let app = App::build(cfg).await?;
            tracing::info!(%addr, "hashdrop-server listening");
            // One stable line on stdout for scripts and tests that start the binary.
            println!("hashdrop-server listening on http://{addr}");
            app.serve(listener, shutdown_signal()).await?;
        }
        Command::Jobs { action } => {
            cfg.jobs.worker_enabled = false;
            let app = App::build(cfg).await?;
            let db = &app.state().db;
            match action {
                JobsAction::List { state } => {
                    let rows = hashdrop_server::store::jobs::list(db, state.as_deref()).await?;
                    println!(
                        "{:>6}  {:<12} {:<8} {:>8}  {:<25} last_error",
                        "id", "kind", "state", "attempts", "run_at"
                    );
                    for r in rows {
                        println!(
                            "{:>6}  {:<12} {:<8} {:>4}/{:<3}  {:<25} {}",
                            r.id,
                            r.kind,
                            r.state,
                            r.attempts,
                            r.max_attempts,
                            hashdrop_server::domain::time::rfc3339(r.run_at),
                            r.last_error.unwrap_or_default()
                        );
                    }
                }
                JobsAction::Retry { id } => {
                    if hashdrop_server::store::jobs::retry(
                        db,
                        id,
                        hashdrop_server::domain::time::now_ms(),
                    )
                    .await?
                    {
                        println!("job {id} requeued");
                    } else {
                        anyhow::bail!("job {id} is not dead (or does not exist)");
                    }
                }
            }
        }
        Command::Backup => {
            cfg.jobs.worker_enabled = false;
            let app = App::build(cfg).await?;
            let key = hashdrop_server::service::ops::backup_now(app.state()).await?;
            println!("{key}");
        }
        Command::Restore { from } => {
            let key = hashdrop_server::service::ops::restore(&cfg, from.as_deref()).await?;
            println!("restored {key}");
        }
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
