//! `load`: the surge replayer's command line. Thin: parses arguments, calls the library.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "load",
    version,
    about = "emta load: surge replayer and stub services"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the stub civil registry, mobile-ownership service and SMS gateway over
    /// synthetic citizens; point the IdP's EMTA_REGISTRY_URL, EMTA_OWNERSHIP_URL and
    /// EMTA_SMS_URL at it.
    Stubs {
        #[arg(long, default_value = "127.0.0.1:8700")]
        listen: SocketAddr,
        /// How many synthetic citizens.
        #[arg(long, default_value_t = 100_000)]
        citizens: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Where to write the citizens (JSON) for the replayer.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    idp::telemetry::init_logging();
    match Cli::parse().command {
        Command::Stubs {
            listen,
            citizens,
            seed,
            out,
        } => {
            let (addr, list, handle) = load::stubs::serve(
                listen,
                citizens,
                seed,
                out.as_deref(),
                idp::app::shutdown_signal(),
            )
            .await?;
            println!(
                "stub services on http://{addr} for {} synthetic citizens",
                list.len()
            );
            println!("  EMTA_REGISTRY_URL=http://{addr} EMTA_OWNERSHIP_URL=http://{addr} EMTA_SMS_URL=http://{addr}");
            println!("  codes sent: GET http://{addr}/outbox?to=09…");
            handle.await?;
        }
    }
    Ok(())
}
