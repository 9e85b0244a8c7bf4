//! `lookout-bench`: a load tool that drives real Lookout replicas and reports what it
//! measured. Each area of Lookout adds its subcommand in its own module.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "lookout-bench", about = "Load tool for Lookout replicas")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {}
}
