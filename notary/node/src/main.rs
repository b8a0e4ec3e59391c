//! `notaryd`: one replica of the notary cluster, and the tools to set one up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use notary_node::config::{Config, Home};

/// mimalloc, not glibc's malloc: allocation took about 15 % of the box under load
/// (BENCHMARKS.md, "Less CPU per notarisation").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "notaryd",
    version,
    about = "A replica of the BFT notary cluster"
)]
struct Cli {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Subcommand)]
enum Verb {
    /// Create a replica's home directory: its TLS and consensus keys and a commented
    /// notary.toml; prints the member entry to add to the shared cluster file.
    Init(notary_node::setup::InitArgs),
    /// Write every home directory of a local development cluster (dealer BLS keys:
    /// for development only).
    Testnet(notary_node::setup::TestnetArgs),
    /// Run the replica.
    Start(StartArgs),
    /// Check a configuration without starting.
    Config {
        #[command(subcommand)]
        verb: ConfigVerb,
    },
    /// The key ceremony: generate the cluster's BLS keys with the other agencies, without a
    /// dealer (online, or offline in rounds of files), and verify its transcript.
    Dkg(notary_node::dkg::DkgArgs),
    /// Start a local 4-replica cluster with a demo workload (what `scripts/demo` runs).
    Demo(notary_node::demo::DemoArgs),
    /// Print the version.
    Version,
}

#[derive(Subcommand)]
enum ConfigVerb {
    /// Validate the home directory: n ≥ 3f+1, own id in the member list, key files present
    /// and private, listen ports free.
    Check(HomeArgs),
}

#[derive(Args)]
struct HomeArgs {
    /// The replica's home directory.
    #[arg(long, env = "NOTARY_HOME")]
    home: PathBuf,
}

#[derive(Args)]
struct StartArgs {
    #[command(flatten)]
    home: HomeArgs,
    /// Override `listen.peer` of notary.toml.
    #[arg(long, env = "NOTARY_LISTEN_PEER")]
    listen_peer: Option<SocketAddr>,
    /// Override `listen.api` of notary.toml.
    #[arg(long, env = "NOTARY_LISTEN_API")]
    listen_api: Option<SocketAddr>,
    /// Override `listen.admin` of notary.toml.
    #[arg(long, env = "NOTARY_LISTEN_ADMIN")]
    listen_admin: Option<SocketAddr>,
}

fn load(home: &HomeArgs) -> anyhow::Result<Config> {
    let config = Config::load(&Home::new(&home.home))?;
    config.validate()?;
    Ok(config)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.verb {
        Verb::Version => {
            println!("notaryd {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Verb::Init(args) => notary_node::setup::init(&args),
        Verb::Testnet(args) => notary_node::setup::testnet(&args),
        Verb::Demo(args) => notary_node::demo::run(&args),
        Verb::Dkg(args) => notary_node::dkg::run(&args),
        Verb::Config {
            verb: ConfigVerb::Check(home),
        } => load(&home).and_then(|c| {
            notary_node::setup::check(&c)?;
            println!("{}: configuration OK", home.home.display());
            Ok(())
        }),
        Verb::Start(args) => load(&args.home).and_then(|mut c| {
            if let Some(a) = args.listen_peer {
                c.node.listen.peer = a;
            }
            if let Some(a) = args.listen_api {
                c.node.listen.api = a;
            }
            if let Some(a) = args.listen_admin {
                c.node.listen.admin = a;
            }
            notary_node::replica::run(c)
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("notaryd: {e:#}");
            ExitCode::from(2)
        }
    }
}
