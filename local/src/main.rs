//! `local`: emta on one machine. Thin: parses arguments, calls the library.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use local::demo::Ports;

/// mimalloc, the services' own allocator: the deployments this binary runs in process (the
/// sweep's, the demo's) are then measured and run as the services are deployed.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "local", about = "emta on one machine: the demo")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole system on embedded defaults with demo data: stub registries and SMS
    /// gateway, the IdP, two manufacturers' storefronts and one licensed campaign opening
    /// a few minutes later. Prints the URLs.
    Demo {
        /// Folder for the demo's databases, secrets and citizens.
        #[arg(long, default_value = ".emta")]
        dir: PathBuf,
        #[arg(long, default_value_t = 8400)]
        idp_port: u16,
        #[arg(long, default_value_t = 8500)]
        port: u16,
        /// The stub civil registry, mobile ownership and SMS gateway (codes at /outbox).
        #[arg(long, default_value_t = 8300)]
        stubs_port: u16,
        /// Minutes until the demo campaign opens.
        #[arg(long, default_value_t = 3)]
        opens_in: i64,
        /// The IdP (and the stubs) alone, without the storefronts.
        #[arg(long)]
        idp_only: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_kit::telemetry::init_logging();
    match Cli::parse().command {
        Command::Demo {
            dir,
            idp_port,
            port,
            stubs_port,
            opens_in,
            idp_only,
        } => {
            let ports = Ports {
                idp: idp_port,
                presale: port,
                stubs: stubs_port,
            };
            if idp_only {
                local::demo::run_idp(&dir, &ports).await
            } else {
                local::demo::run(&dir, &ports, opens_in).await
            }
        }
    }
}
