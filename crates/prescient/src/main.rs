//! `prescient`: predictive resource partitioning for shared machines.

mod cmd;
mod progress;

use clap::{Parser, Subcommand};

/// Prescient hands each workload the CPU, memory, I/O and network it is about
/// to need, before it needs it: it profiles usage, forecasts demand, splits
/// capacity with a solver, enforces the split and learns from the outcome.
#[derive(Debug, Parser)]
#[command(name = "prescient", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Backtest(cmd::backtest::BacktestArgs),
    Import(cmd::import::ImportArgs),
    Plan(cmd::plan::PlanArgs),
    Replay(cmd::replay::ReplayArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Backtest(args) => cmd::backtest::run(args),
        Command::Import(args) => cmd::import::run(args),
        Command::Plan(args) => cmd::plan::run(args),
        Command::Replay(args) => cmd::replay::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
