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
    Agent(cmd::agent::AgentArgs),
    #[command(subcommand)]
    Api(cmd::api::ApiCommand),
    Backtest(cmd::backtest::BacktestArgs),
    #[command(subcommand)]
    Config(cmd::config::ConfigCommand),
    Demo(cmd::demo::DemoArgs),
    Import(cmd::import::ImportArgs),
    Kube(cmd::kube::KubeArgs),
    Loadgen(cmd::loadgen::LoadgenArgs),
    #[command(name = "loadgen-worker", hide = true)]
    LoadgenWorker(cmd::loadgen::LoadgenWorkerArgs),
    Plan(cmd::plan::PlanArgs),
    Replay(cmd::replay::ReplayArgs),
    Status(cmd::status::StatusArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Agent(args) => cmd::agent::run(args),
        Command::Api(c) => cmd::api::run(c),
        Command::Backtest(args) => cmd::backtest::run(args),
        Command::Config(c) => cmd::config::run(c),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Import(args) => cmd::import::run(args),
        Command::Kube(args) => cmd::kube::run(args),
        Command::Loadgen(args) => cmd::loadgen::run(args),
        Command::LoadgenWorker(args) => cmd::loadgen::run_worker(args),
        Command::Plan(args) => cmd::plan::run(args),
        Command::Replay(args) => cmd::replay::run(args),
        Command::Status(args) => cmd::status::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
