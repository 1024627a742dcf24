//! `baton serve`: wires the transports, the SIP endpoint, the call tasks and the HTTP API
//! together, and shuts them down gracefully.

use crate::agents::Agents;
use crate::api::{self, ApiState};
use crate::call;
use crate::calls::Calls;
use crate::config::Config;
use crate::context::archive::{Archive, ArchiveError};
use crate::context::{ContextStore, MemoryStore};
use crate::desk::Desks;
use crate::endpoint::{Endpoint, EndpointConfig, Phase};
use crate::escalation::Escalations;
use crate::followup::FollowUps;
use crate::metrics::Metrics;
use crate::outbound::{Outbound, OutboundError};
use crate::plans::{Plans, PlansError};
use crate::rtp_ports::PortPool;
use crate::speech::Speech;
use crate::transport::Transports;
use crate::tts::Tts;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

/// How long the BYEs sent at the end of the grace period may take.
const BYE_GRACE: Duration = Duration::from_secs(5);

/// State every call task and the endpoint share.
pub struct Shared {
    pub metrics: Arc<Metrics>,
    pub calls: Arc<Calls>,
    pub ports: Arc<PortPool>,
    /// Local address RTP sockets bind to.
    pub bind_ip: IpAddr,
    /// The address peers reach baton's media at (in SDP and WebRTC candidates).
    pub advertised_ip: IpAddr,
    /// The dialplans new calls are routed with, and their prompts.
    pub plans: Arc<Plans>,
    pub rtp_inactivity: Duration,
    /// Where recordings are written.
    pub recordings: PathBuf,
    /// Speech-to-text for every call's caller side.
    pub speech: Arc<Speech>,
    /// Every call's shared context.
    pub contexts: Arc<dyn ContextStore>,
    /// Text to speech for what is decided during a call (the bot's replies); `say` steps
    /// are rendered at start-up into `prompts`.
    pub tts: Tts,
    /// How calls reach external bots and customer data.
    pub outbound: Outbound,
    /// The agents, and where their phones are registered.
    pub agents: Arc<Agents>,
    /// Calls that should go, or went, to a person.
    pub escalations: Arc<Escalations>,
    /// The calls waiting for a busy agent, across every plan.
    pub queue: std::sync::Mutex<crate::routing::Queue>,
    /// The agents' open desktops.
    pub desks: Arc<Desks>,
    /// Every call's follow-ups.
    pub followups: Arc<FollowUps>,
    /// The HTTP API as others reach it (`http://192.0.2.1:8080`): an agent's phone finds the
    /// call's context there.
    pub api_base: String,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("dialplans: {0}")]
    Dialplans(#[from] PlansError),
    #[error("{0}")]
    Speech(#[from] baton_speech::stt::ModelError),
    #[error("{0}")]
    Archive(#[from] ArchiveError),
    #[error("{0}")]
    Outbound(#[from] OutboundError),
    #[error("cannot listen for SIP on {addr}: {source}")]
    Sip {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Http {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Where the API listens: as configured, but only on loopback while no token protects it.
fn api_address(config: &Config) -> std::net::SocketAddr {
    if !config.api_tokens.is_empty() {
        return config.http;
    }
    if config.http.ip().is_loopback() {
        info!("no api_token configured: the HTTP API takes requests without a token, on loopback only");
        return config.http;
    }
    let loopback = std::net::SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), config.http.port());
    warn!(
        configured = %config.http,
        listening = %loopback,
        "no api_token configured: the HTTP API listens on loopback only; add [[api_token]] tables to open it to the network"
    );
    loopback
}

/// Runs baton until SIGINT or SIGTERM, then drains calls for up to the configured grace.
pub async fn serve(config: Config) -> Result<(), StartError> {
    let outbound = Outbound::new(&config.trusted_ca)?;
    let metrics = Arc::new(Metrics::default());
    let tts = Tts::new(
        config.tts.clone(),
        call::load_fallback(&config.media),
        metrics.clone(),
    );
    let plans = Arc::new(
        Plans::load(
            config.dialplans.clone(),
            config.media.clone(),
            tts.clone(),
            &config.connectors,
        )
        .await?,
    );
    // Before the speech model, whose load takes a while: a bad database fails at once.
    let archive = Archive::open(&config.context_db_path()).await?;
    // Loading takes a moment of blocking IO; nothing else runs yet.
    let speech = Speech::start(&config.speech_model, config.speech_workers)?;
    let calls = Arc::new(Calls::default());
    let escalations = Arc::new(Escalations::open(archive.clone()).await?);
    // Nonces need only outlive one registration attempt: a new key per start is enough.
    let agents = Arc::new(Agents::new(
        config.agents.clone(),
        &config.sip_realm,
        rand::random(),
    ));
    let contexts: Arc<dyn ContextStore> = Arc::new(MemoryStore::with_archive(archive.clone()));
    let followups = FollowUps::start(
        archive.clone(),
        outbound.http().clone(),
        config.connectors.clone(),
        metrics.clone(),
    );
    let draining = Arc::new(AtomicBool::new(false));

    let http_addr = api_address(&config);
    let http = tokio::net::TcpListener::bind(http_addr)
        .await
        .map_err(|source| StartError::Http {
            addr: http_addr,
            source,
        })?;
    let (inbound_tx, inbound_rx) = mpsc::channel(8192);
    let transports = Transports::bind(config.sip, inbound_tx, metrics.clone())
        .await
        .map_err(|source| StartError::Sip {
            addr: config.sip,
            source,
        })?;

    let bind_ip = config.sip.ip();
    let advertised = config.public_ip.unwrap_or(if bind_ip.is_unspecified() {
        warn!("SIP listens on all addresses and no public_ip is set: advertising 127.0.0.1");
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        bind_ip
    });
    let desks = Arc::new(Desks::new(agents.clone()));
    let shared = Arc::new(Shared {
        metrics: metrics.clone(),
        calls: calls.clone(),
        ports: Arc::new(PortPool::new(config.rtp_ports.low, config.rtp_ports.high)),
        bind_ip,
        advertised_ip: advertised,
        plans: plans.clone(),
        rtp_inactivity: config.rtp_inactivity,
        recordings: config.data.join("recordings"),
        speech: Arc::new(speech),
        contexts: contexts.clone(),
        tts,
        outbound,
        agents: agents.clone(),
        escalations: escalations.clone(),
        queue: Default::default(),
        desks: desks.clone(),
        followups: followups.clone(),
        api_base: match (advertised, config.http.port()) {
            (IpAddr::V6(ip), port) => format!("http://[{ip}]:{port}"),
            (ip, port) => format!("http://{ip}:{port}"),
        },
    });
    let (rate, burst) = config
        .invite_rate_limit
        .map_or((0, 0), |r| (r.per_source_per_sec, r.burst));
    let (commands_tx, commands_rx) = mpsc::channel(8192);
    let endpoint = Endpoint::new(
        shared,
        transports.clone(),
        EndpointConfig {
            advertised,
            invite_rate: rate,
            invite_burst: burst,
            max_calls: config.max_calls as usize,
        },
        commands_tx,
    );
    let (shutdown_tx, shutdown_rx) = watch::channel(Phase::Running);
    let mut endpoint = tokio::spawn(endpoint.run(inbound_rx, commands_rx, shutdown_rx));

    let state = ApiState {
        calls: calls.clone(),
        metrics,
        draining: draining.clone(),
        contexts,
        tokens: Arc::new(config.api_tokens.clone()),
        agents,
        escalations,
        desks,
        followups,
        plans: plans.clone(),
        archive: archive.clone(),
    };
    let (http_stop_tx, http_stop_rx) = watch::channel(false);
    let http_addr = http.local_addr().unwrap_or(http_addr);
    tokio::spawn(async move {
        let mut stop = http_stop_rx;
        let served = axum::serve(http, api::router(state))
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = served {
            warn!(error = %e, "HTTP server stopped");
        }
    });
    info!(sip = %transports.local_addr(), http = %http_addr, "baton is up");

    tokio::spawn(reload_on_hangup(plans));
    shutdown_signal().await;
    info!(active = calls.active_count(), grace = ?config.shutdown_grace, "shutting down: no new calls");
    draining.store(true, Ordering::Relaxed);
    let _ = shutdown_tx.send(Phase::Draining);
    if tokio::time::timeout(config.shutdown_grace, &mut endpoint)
        .await
        .is_err()
    {
        warn!(
            active = calls.active_count(),
            "grace period over: ending the remaining calls"
        );
        let _ = shutdown_tx.send(Phase::Ending);
        // The BYEs get a few seconds to be answered; then baton exits regardless.
        if tokio::time::timeout(BYE_GRACE, &mut endpoint)
            .await
            .is_err()
        {
            endpoint.abort();
        }
    }
    transports.drain(BYE_GRACE).await;
    // The last calls' contexts may still be on their way to disk.
    if let Err(e) = archive.flush().await {
        warn!(error = %e, "context archive not flushed");
    }
    let _ = http_stop_tx.send(true);
    info!("stopped");
    Ok(())
}

/// Reloads the dialplans on each SIGHUP, as daemons do.
async fn reload_on_hangup(plans: Arc<Plans>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            return warn!("SIGHUP cannot be caught: dialplans reload only through the API");
        };
        while hangups.recv().await.is_some() {
            if let Err(e) = plans.reload().await {
                warn!(problems = %e, "dialplans not reloaded: the running ones stay");
            }
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
