//! The `baton` command: `serve` runs the bridge, `check` validates dialplans.

use baton::config::{Config, Overrides, PortRange};
use baton::dialplan;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "baton",
    version,
    about = "Voice bridge for contact centres: SIP trunks in, bot and agents on one call"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Answer calls: SIP on UDP and TCP, RTP media, the HTTP API.
    Serve {
        /// TOML configuration file (same keys as the flags; flags win).
        #[arg(long)]
        config: Option<PathBuf>,
        /// SIP listen address, UDP and TCP.
        #[arg(long)]
        sip: Option<SocketAddr>,
        /// HTTP API listen address.
        #[arg(long)]
        http: Option<SocketAddr>,
        /// RTP port range, LOW-HIGH.
        #[arg(long = "rtp-ports")]
        rtp_ports: Option<PortRange>,
        /// Directory of dialplan files.
        #[arg(long)]
        dialplans: Option<PathBuf>,
        /// Directory of prompt audio.
        #[arg(long)]
        media: Option<PathBuf>,
        /// Directory for recordings and records.
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Validate the dialplans in DIR and report every error with file, line and key.
    Check {
        dir: PathBuf,
        /// Directory of prompt audio the dialplans refer to.
        #[arg(long, default_value = "media")]
        media: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Check { dir, media } => match dialplan::check_dir(&dir, &media) {
            Ok(summary) => {
                print!("{summary}");
                ExitCode::SUCCESS
            }
            Err(errors) => {
                for e in &errors {
                    eprintln!("{e}");
                }
                eprintln!("{} error(s)", errors.len());
                ExitCode::FAILURE
            }
        },
        Cmd::Serve {
            config,
            sip,
            http,
            rtp_ports,
            dialplans,
            media,
            data,
        } => {
            let mut cfg = match config {
                Some(path) => match Config::load(&path) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::FAILURE;
                    }
                },
                None => Config::default(),
            };
            cfg.apply(Overrides {
                sip,
                http,
                rtp_ports,
                dialplans,
                media,
                data,
            });
            if let Some(model) = std::env::var_os("BATON_WHISPER_MODEL") {
                cfg.speech_model = model.into();
            }
            init_logging(&cfg.log);
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(baton::server::serve(cfg)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("baton: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// whisper.cpp reports every model load in two dozen lines at its info level: they are
/// debug detail for baton's log unless a filter names `whisper_rs` itself.
const WHISPER_QUIET: &str = "whisper_rs=warn";

fn init_logging(default: &str) {
    let text = std::env::var("BATON_LOG").unwrap_or_else(|_| default.to_owned());
    let text = if text.contains("whisper_rs") {
        text
    } else {
        format!("{text},{WHISPER_QUIET}")
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&text)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
