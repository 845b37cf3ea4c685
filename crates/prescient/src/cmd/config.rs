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
    /// Validate a configuration file: every bad key is named with its value;
    /// warnings (a block device not on this host, I/O capacities that no
    /// device is given to cap) are printed and do not fail the check.
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
                // Valid, but not doing what it seems to, or not on this
                // host: said, and the check still passes.
                let warnings = c.warnings();
                for w in &warnings {
                    eprintln!("{}: warning: {w}", file.display());
                }
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
