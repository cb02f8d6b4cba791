//! The `pingora-vhost` command line: `run` (default), `check`, `demo-backend`.

use clap::{Args, Parser, Subcommand};

/// Pingora allocates a lot per request; mimalloc is markedly faster than glibc malloc there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "pingora-vhost",
    version,
    about = "Virtual-hosting reverse proxy with tag-based A/B switching"
)]
struct Cli {
    /// Configuration file.
    #[arg(long, global = true, default_value = "config.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Cmd>,
    #[command(flatten)]
    run: RunFlags,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the proxy (the default).
    Run(RunFlags),
    /// Validate the configuration: prints every problem, exit 0 valid / 1 invalid.
    Check,
    /// Run a tiny demo origin that names itself in every answer.
    DemoBackend {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:3001")]
        listen: SocketAddr,
        /// Name shown in answers.
        #[arg(long, default_value = "demo")]
        name: String,
        /// Tag shown in answers.
        #[arg(long, default_value = "a")]
        tag: String,
    },
}

#[derive(Args, Clone, Copy, Default)]
struct RunFlags {
    /// Discard the state file and seed the registry from the config again.
    #[arg(long)]
    reset_state: bool,
    /// Take the listening sockets over from a running instance.
    #[arg(long)]
    upgrade: bool,
    /// Detach and run in the background.
    #[arg(long)]
    daemon: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Cmd::Check) => check(&cli.config),
        Some(Cmd::DemoBackend { listen, name, tag }) => {
            pingora_vhost::demo::run(listen, name, tag).map_err(|e| vec![format!("error: {e}")])
        }
        Some(Cmd::Run(flags)) => run(&cli.config, merge(cli.run, flags)),
        None => run(&cli.config, cli.run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(lines) => {
            for line in lines {
                eprintln!("{line}");
            }
            ExitCode::FAILURE
        }
    }
}

fn merge(a: RunFlags, b: RunFlags) -> RunFlags {
    RunFlags {
        reset_state: a.reset_state || b.reset_state,
        upgrade: a.upgrade || b.upgrade,
        daemon: a.daemon || b.daemon,
    }
}

/// The variables the configuration reads, taken from this process's environment.
fn environment() -> pingora_vhost::config::Env {
    pingora_vhost::config::Env::from_source(|name| std::env::var(name).ok())
}

/// Loads the config; the error is the lines to print, one per problem.
fn load(path: &std::path::Path) -> Result<pingora_vhost::config::Config, Vec<String>> {
    pingora_vhost::config::load(path, &environment()).map_err(|e| e.lines())
}

fn check(path: &std::path::Path) -> Result<(), Vec<String>> {
    let cfg = load(path)?;
    for note in &cfg.warnings {
        eprintln!("warning: {note}");
    }
    println!(
        "{}: valid ({} virtual hosts, {} backends)",
        path.display(),
        cfg.seed.domains.len(),
        cfg.seed.backends.len()
    );
    Ok(())
}

fn run(path: &std::path::Path, flags: RunFlags) -> Result<(), Vec<String>> {
    let cfg = load(path)?;
    pingora_vhost::server::run(
        cfg,
        pingora_vhost::server::RunOptions {
            reset_state: flags.reset_state,
            upgrade: flags.upgrade,
            daemon: flags.daemon,
        },
    )
    .map_err(|errs| errs.into_iter().map(|e| format!("error: {e}")).collect())
}
