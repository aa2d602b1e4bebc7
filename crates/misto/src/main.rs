//! `misto`: the open city platform in one binary.

mod config;
mod demo;
mod server;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use config::ServeArgs;

// Many small, short-lived allocations on many threads (JSON trees per request): mimalloc keeps them off the
// glibc arena locks that dominated profiles.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "misto",
    version,
    about = "misto — an open city platform built on an NGSI-LD context broker"
)]
struct Cli {
    /// Configuration file (TOML) [default: ./misto.toml when it exists]
    #[arg(long, env = "MISTO_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the platform: the NGSI-LD API and everything on it.
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate(ServeArgs),
    /// Run the platform with a seeded demo city (Kyiv).
    Demo(ServeArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("misto: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => {
                let s = config::resolve(&args, cli.config.as_deref())?;
                server::init_logging(s.log_json);
                server::serve(s, None).await
            }
            Command::Migrate(args) => {
                let s = config::resolve(&args, cli.config.as_deref())?;
                server::init_logging(s.log_json);
                let store = misto_store::open(&s.database_url).await?;
                store.ping().await?;
                println!(
                    "migrations applied ({} at {})",
                    store.backend(),
                    server::redact(&s.database_url)
                );
                Ok(())
            }
            Command::Demo(args) => {
                let s = config::resolve(&args, cli.config.as_deref())?;
                server::init_logging(s.log_json);
                server::serve(s, Some(Box::new(demo::seed))).await
            }
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("misto: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
