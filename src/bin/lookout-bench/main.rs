//! `lookout-bench`: a load tool that drives real Lookout replicas and reports what it
//! measured. Each area of Lookout adds its subcommand in its own module.

mod ingest;
mod procfs;
mod realtime;
mod sources;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "lookout-bench", about = "Load tool for Lookout replicas")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the resident memory of the process serving each replica URL.
    Rss {
        /// Replica base URLs, e.g. http://127.0.0.1:3000.
        #[arg(required = true)]
        urls: Vec<String>,
    },
    /// CPU and poll lateness of a replica polling N KumoMTA stand-ins.
    Sources(sources::SourcesArgs),
    /// Samples per second through POST /api/v1/metrics vs a raw COPY of the same rows.
    Ingest(ingest::IngestArgs),
    /// Drive the `/ws` gateways: fan-out latency and throughput, or idle memory.
    Realtime {
        #[command(subcommand)]
        mode: realtime::Mode,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("lookout-bench: cannot start the Tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Rss { urls } => {
                rss(&urls);
                Ok(())
            }
            Command::Sources(args) => sources::run(args).await,
            Command::Ingest(args) => ingest::run(args).await,
            Command::Realtime { mode } => realtime::run(mode).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lookout-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn rss(urls: &[String]) {
    for url in urls {
        let pid = procfs::port_of(url).and_then(procfs::pid_listening_on);
        match pid.and_then(|pid| procfs::rss_bytes(pid).map(|rss| (pid, rss))) {
            Some((pid, rss)) => println!("{url}\tpid {pid}\trss {:.1} MiB", rss as f64 / 1048576.0),
            None => println!("{url}\tno process found listening on its port"),
        }
    }
}
