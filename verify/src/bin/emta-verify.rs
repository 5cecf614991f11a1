//! `emta-verify`: audit a presale campaign from its public transparency log alone, over
//! HTTP or from a saved file. The whole of what an outside auditor needs to build.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "emta-verify",
    version,
    about = "Audit an emta presale campaign from its public transparency log alone"
)]
struct Cli {
    #[command(flatten)]
    verify: emta_verify::cli::VerifyArgs,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    Cli::parse().verify.run().await
}
