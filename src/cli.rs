//! The command line: `serve`, `migrate`, `token issue`, `check-config`.

use crate::app::{App, embedded_secret_for_cli};
use crate::auth::{Keys, Role};
use crate::config::Config;
use crate::store::Store;
use crate::telemetry;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "lookout",
    version,
    about = "Real-time monitoring and alerting hub"
)]
pub struct Cli {
    /// Configuration file (default: ./lookout.toml when it exists). Same as LOOKOUT_CONFIG.
    #[arg(short, long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a replica (embedded mode without settings; cluster mode with DATABASE_URL and REDIS_URL).
    Serve,
    /// Bring the database schema up to date, then exit.
    Migrate,
    /// Tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Print the effective configuration (secrets masked); exit 1 when it is invalid.
    CheckConfig,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Print a JWT signed with the configured key.
    Issue {
        /// Subject (user or agent id).
        #[arg(long)]
        sub: String,
        /// viewer, operator, admin or agent.
        #[arg(long, default_value = "viewer")]
        role: Role,
        #[arg(long, default_value = crate::auth::DEFAULT_TENANT)]
        tenant: String,
        /// Lifetime, e.g. 1h, 30d (default: JWT_EXPIRES_IN).
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<Duration>,
    },
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    if let Some(path) = &cli.config {
        // SAFETY: single-threaded here; the runtime is not started yet.
        unsafe { std::env::set_var("LOOKOUT_CONFIG", path) };
    }
    let config = match Config::load() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("lookout: {e}");
            return ExitCode::from(1);
        }
    };
    match cli.command {
        Command::CheckConfig => {
            println!("# mode: {}", config.mode().name());
            print!("{}", config.to_masked_toml());
            for warning in config.warnings() {
                eprintln!("warning: {warning}");
            }
            ExitCode::SUCCESS
        }
        Command::Token {
            command:
                TokenCommand::Issue {
                    sub,
                    role,
                    tenant,
                    ttl,
                },
        } => match issue_token(&config, &sub, role, &tenant, ttl) {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("lookout: {e:#}");
                ExitCode::from(1)
            }
        },
        Command::Migrate => block_on(migrate(config)),
        Command::Serve => block_on(serve(config)),
    }
}

fn block_on(work: impl Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("lookout: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "lookout failed");
            eprintln!("lookout: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn issue_token(
    config: &Config,
    sub: &str,
    role: Role,
    tenant: &str,
    ttl: Option<Duration>,
) -> anyhow::Result<String> {
    let generated = embedded_secret_for_cli(config)?;
    let keys = Keys::from_config(&config.auth, generated.as_ref())?;
    Ok(keys.issue(sub, role, tenant, ttl.unwrap_or(config.auth.expires_in))?)
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    telemetry::init_logging(&config.log);
    let store = Store::connect(&config.mode(), &config.database).await?;
    store.migrate().await?;
    store.close().await;
    println!(
        "database schema is up to date ({} mode)",
        config.mode().name()
    );
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    telemetry::init_logging(&config.log);
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let address = std::net::SocketAddr::new(config.server.host, config.server.port);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {address}: {e}"))?;
    let app = App::build(config, listener).await?;
    app.run(shutdown_signal()).await
}

/// Resolves on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown requested");
}
