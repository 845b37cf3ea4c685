//! `prescient api`: helpers for the agent's HTTP API.

use std::io::Read;

use anyhow::{Context, Result, bail};
use clap::Subcommand;

/// The agent's HTTP API (served by `prescient agent` when `api.enabled`).
#[derive(Debug, Subcommand)]
pub enum ApiCommand {
    /// Print the hex SHA-256 of a bearer token, for `[[api.token]] sha256`.
    /// The token is read from standard input when not given (so that it
    /// stays out of the shell history); one trailing newline is dropped.
    HashToken {
        /// The token.
        token: Option<String>,
    },
}

pub fn run(c: ApiCommand) -> Result<()> {
    match c {
        ApiCommand::HashToken { token } => {
            let token = match token {
                Some(t) => t,
                None => {
                    let mut text = String::new();
                    std::io::stdin()
                        .read_to_string(&mut text)
                        .context("reading the token from standard input")?;
                    let trimmed = text.strip_suffix('\n').unwrap_or(&text);
                    trimmed.strip_suffix('\r').unwrap_or(trimmed).to_string()
                }
            };
            if token.is_empty() {
                bail!("the token is empty");
            }
            println!("{}", prescient_api::hash_token(&token));
            Ok(())
        }
    }
}
