//! `prescient config`: print the commented default configuration, or check
//! a file.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Subcommand;
use prescient_agent::config::{Config, ConfigError, EXAMPLE};

/// The agent's configuration file.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the commented default configuration (TOML).
    Example,
    /// Validate a configuration file: every bad key is named with its value.
    Check {
        /// The file.
        file: PathBuf,
    },
}

pub fn run(c: ConfigCommand) -> Result<()> {
    match c {
        ConfigCommand::Example => {
            print!("{EXAMPLE}");
            Ok(())
        }
        ConfigCommand::Check { file } => match Config::load(&file) {
            Ok(c) => {
                println!(
                    "{}: ok ({} mode, {} pool(s), {} workload selector(s))",
                    file.display(),
                    c.agent.mode,
                    c.pools.len(),
                    c.workloads.len()
                );
                Ok(())
            }
            Err(ConfigError::Invalid { file, issues }) => {
                for i in &issues {
                    eprintln!("{}: {i}", file.display());
                }
                bail!(
                    "{}: {} problem(s) in the configuration",
                    file.display(),
                    issues.len()
                )
            }
            Err(e) => Err(e.into()),
        },
    }
}
