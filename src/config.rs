//! The server's settings: a TOML file whose every key is optional, embedded defaults, and
//! command-line overrides on top. A bad file is refused with an error naming the file, line,
//! column and key, so an operator can fix it without guessing.

pub mod location;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use baton_sip::auth::Algorithm;
use serde::Deserialize;

use location::{KeyPath, Location, SourceFile};

/// Everything baton reads at start-up; see [`Config::EXAMPLE`] for the file format.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `sip`: where SIP is received, on both UDP and TCP.
    pub sip: SocketAddr,
    /// `http`: where the HTTP API listens.
    pub http: SocketAddr,
    /// `rtp_ports`: the ports media may use.
    pub rtp_ports: PortRange,
    /// `dialplans`: the directory of dialplan files (`*.toml`).
    pub dialplans: PathBuf,
    /// `media`: the directory of prompt audio and hold music.
    pub media: PathBuf,
    /// `data`: where baton writes; recordings go to `data/recordings/`.
    pub data: PathBuf,
    /// `context_db`: the SQLite file that keeps ended calls' contexts and the escalation
    /// records; `None` for `baton.sqlite` in `data` (see [`Config::context_db_path`]).
    pub context_db: Option<PathBuf>,
    /// `public_ip`: the address put in SDP and Contact when listening on 0.0.0.0.
    pub public_ip: Option<IpAddr>,
    /// `rtp_inactivity_secs`: a call with no RTP received for this long is hung up.
    pub rtp_inactivity: Duration,
    /// `invite_rate_limit`: new calls accepted per source address; `None` when disabled.
    pub invite_rate_limit: Option<RateLimit>,
    /// `shutdown_grace_secs`: how long a shutdown waits for calls to end before hanging up.
    pub shutdown_grace: Duration,
    /// `max_calls`: calls beyond this many are refused with 503.
    pub max_calls: u32,
    /// `log`: a tracing filter such as `info` or `baton=debug,info`.
    pub log: String,
    /// `speech_model`: the ggml whisper model; `BATON_WHISPER_MODEL` overrides it.
    pub speech_model: PathBuf,
    /// `speech_workers`: transcription threads, each running one job on one core.
    pub speech_workers: usize,
    /// `[[api_token]]`: who may use the HTTP API; with none, the API listens on loopback
    /// only and asks for no token.
    pub api_tokens: Vec<ApiToken>,
    /// `[tts]`: text to speech for `say` steps and the bot.
    pub tts: TtsConfig,
    /// `[[agent]]`: the people calls escalate to, and how their softphones sign in.
    pub agents: Vec<AgentConfig>,
    /// `sip_realm`: the realm agents' softphones authenticate in.
    pub sip_realm: String,
    /// `trusted_ca`: PEM files of certificate authorities trusted, beside the public web
    /// roots, for `wss://` bots and `https://` customer data (a private CA, a test CA).
    pub trusted_ca: Vec<PathBuf>,
    /// `[connector.NAME]`: where follow-up messages (SMS, WhatsApp, e-mail) are handed over
    /// after calls, by the name follow-up tasks use.
    pub connectors: std::collections::BTreeMap<String, ConnectorConfig>,
}

/// How text is turned into speech: the espeak-ng program and its voice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TtsConfig {
    /// `tts.command`: the espeak-ng program, a name looked up in `PATH` or a path.
    pub command: PathBuf,
    /// `tts.voice`: an espeak-ng voice such as `en-gb` or `en-us+f3`.
    pub voice: String,
    /// `tts.speed`: words per minute.
    pub speed: u32,
    /// `tts.timeout_secs`: a render that takes longer is killed and the fallback played.
    pub timeout: Duration,
    /// `tts.cache_mb`: rendered audio kept in memory, in bytes; 0 keeps none.
    pub cache_bytes: usize,
}

impl Default for TtsConfig {
    fn default() -> Self {
        TtsConfig {
            command: PathBuf::from("espeak-ng"),
            voice: "en-gb".to_owned(),
            speed: 160,
            timeout: Duration::from_secs(5),
            cache_bytes: 64 << 20,
        }
    }
}

/// Speeds espeak-ng accepts, in words per minute.
const TTS_SPEEDS: std::ops::RangeInclusive<u32> = 80..=450;
/// Longest TTS timeout: a sentence renders in well under a second, so a minute is broken.
const MAX_TTS_TIMEOUT_SECS: u64 = 60;
/// Largest TTS cache: 4 GiB of audio is about 37 hours at 16 kHz.
const MAX_TTS_CACHE_MB: u32 = 4096;

/// A webhook that delivers follow-up messages: baton POSTs signed JSON to it and retries
/// until it answers 2xx, so the receiver can trust what arrives and drop duplicates.
#[derive(Clone, PartialEq)]
pub struct ConnectorConfig {
    /// `url`: the `http://` or `https://` endpoint the messages are POSTed to.
    pub url: reqwest::Url,
    /// `secret` or `secret_env`: the HMAC-SHA256 key the receiver checks signatures with.
    pub secret: Vec<u8>,
    /// `timeout_ms`: the longest one request may take, answer included.
    pub timeout: Duration,
    /// `attempts`: tries before a message is reported failed.
    pub attempts: u32,
    /// `backoff_ms`: the wait before the second try; it doubles after each further failure.
    pub backoff: Duration,
    /// `max_backoff_secs`: the longest wait between two tries.
    pub max_backoff: Duration,
}

impl fmt::Debug for ConnectorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret, even in a debug dump of the config.
        f.debug_struct("ConnectorConfig")
            .field("url", &self.url.as_str())
            .field("secret", &"<hidden>")
            .field("timeout", &self.timeout)
            .field("attempts", &self.attempts)
            .field("backoff", &self.backoff)
            .field("max_backoff", &self.max_backoff)
            .finish()
    }
}

/// Shortest connector secret accepted: a guessable key lets anyone forge messages.
const MIN_CONNECTOR_SECRET: usize = 16;
/// Connector request timeouts, in milliseconds: below 100 ms even a healthy receiver fails;
/// above a minute a stuck one holds a delivery slot for nothing.
const CONNECTOR_TIMEOUT_MS: std::ops::RangeInclusive<u64> = 100..=60_000;
/// Tries per message: past 20 the doubling waits stretch beyond any useful delivery time.
const CONNECTOR_ATTEMPTS: std::ops::RangeInclusive<u32> = 1..=20;
/// First retry waits, in milliseconds: from a quick second try to ten minutes.
const CONNECTOR_BACKOFF_MS: std::ops::RangeInclusive<u64> = 10..=600_000;
/// Caps on the wait between tries, in seconds: up to a day.
const CONNECTOR_MAX_BACKOFF_SECS: std::ops::RangeInclusive<u64> = 1..=MAX_SECS;

/// An agent: who they are, how their softphone registers, and what they are good at.
#[derive(Clone, PartialEq)]
pub struct AgentConfig {
    /// `id`: how the API, the context and the reports name the agent.
    pub id: String,
    /// `name`: shown to the caller's bridging prompt and on reports.
    pub name: String,
    /// `sip_user`: the user part the softphone registers as (`sip:dana@baton`).
    pub sip_user: String,
    /// `password`: the digest password of the softphone.
    pub password: String,
    /// `skills`: skill name to level, 1 (can help) to 5 (expert).
    pub skills: std::collections::BTreeMap<String, u8>,
    /// `languages`: languages the agent takes calls in, e.g. `["en", "fr"]`.
    pub languages: Vec<String>,
    /// `max_calls`: calls the agent takes at once.
    pub max_calls: u32,
    /// `digest`: the digest algorithms the softphone is challenged with, strongest first
    /// (RFC 8760); `["MD5"]` for older phones that give up at a challenge they do not know.
    pub digest: Vec<Algorithm>,
}

impl fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the password, even in a debug dump of the config.
        f.debug_struct("AgentConfig")
            .field("id", &self.id)
            .field("sip_user", &self.sip_user)
            .field("skills", &self.skills)
            .field("languages", &self.languages)
            .field("max_calls", &self.max_calls)
            .field("digest", &self.digest)
            .finish()
    }
}

/// The digest algorithms an agent's phone is offered unless the config says otherwise:
/// SHA-256 first, as RFC 8760 §2.4 asks, then MD5 for phones that know nothing else.
pub const DEFAULT_DIGEST: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Md5];

/// Shortest agent password accepted: a softphone's password is all that keeps a stranger
/// from taking the calls meant for an agent.
const MIN_AGENT_PASSWORD: usize = 8;
/// Most calls an agent may take at once.
const MAX_AGENT_CALLS: u32 = 8;

/// A bearer token for the HTTP API and what it may do.
#[derive(Clone, PartialEq)]
pub struct ApiToken {
    /// The secret the client sends as `Authorization: Bearer ...`.
    pub token: String,
    pub role: Role,
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret, even in a debug dump of the config.
        f.debug_struct("ApiToken")
            .field("role", &self.role)
            .finish()
    }
}

/// What an API client may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// A bot: reads and writes the context of any call.
    Bot,
    /// An agent: reads and writes only the calls assigned to them.
    Agent(String),
    /// An operator: everything.
    Admin,
}

/// Shortest API token accepted: a guessable token is no protection.
const MIN_TOKEN_LEN: usize = 16;

/// An inclusive range of UDP ports; RTP takes the even ones, RTCP the odd one above each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// The first port (even).
    pub low: u16,
    /// The last port.
    pub high: u16,
}

/// A token bucket per source address for incoming INVITEs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained INVITEs per second from one source.
    pub per_source_per_sec: u32,
    /// INVITEs one source may send at once before the sustained rate applies.
    pub burst: u32,
}

/// Values given on the command line; each one that is set replaces the file's value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// `--sip ADDR`
    pub sip: Option<SocketAddr>,
    /// `--http ADDR`
    pub http: Option<SocketAddr>,
    /// `--rtp-ports LOW-HIGH`
    pub rtp_ports: Option<PortRange>,
    /// `--dialplans DIR`
    pub dialplans: Option<PathBuf>,
    /// `--media DIR`
    pub media: Option<PathBuf>,
    /// `--data DIR`
    pub data: Option<PathBuf>,
}

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read config file: {source}", file.display())]
    Read {
        /// The file as given.
        file: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{at}: {message}")]
    Syntax {
        /// Where parsing stopped.
        at: Location,
        /// What the parser expected.
        message: String,
    },
    /// A key is unknown, has the wrong type, or holds a value baton cannot use.
    #[error("{at}: {message}")]
    Invalid {
        /// The key and where it is.
        at: Location,
        /// What is wrong with it.
        message: String,
    },
}

/// Why a `LOW-HIGH` port range was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected \"LOW-HIGH\" with LOW < HIGH, LOW even and above 0, got \"{0}\"")]
pub struct PortRangeError(pub String);

/// New INVITEs one source address may send: generous enough for a busy carrier trunk,
/// low enough that one flooding address cannot take every call slot.
const DEFAULT_RATE_LIMIT: RateLimit = RateLimit {
    per_source_per_sec: 200,
    burst: 400,
};

impl Default for Config {
    fn default() -> Self {
        Config {
            sip: SocketAddr::from(([127, 0, 0, 1], 5060)),
            http: SocketAddr::from(([127, 0, 0, 1], 8080)),
            rtp_ports: PortRange {
                low: 20000,
                high: 30000,
            },
            dialplans: PathBuf::from("dialplans"),
            media: PathBuf::from("media"),
            data: PathBuf::from("data"),
            context_db: None,
            public_ip: None,
            rtp_inactivity: Duration::from_secs(30),
            invite_rate_limit: Some(DEFAULT_RATE_LIMIT),
            shutdown_grace: Duration::from_secs(30),
            max_calls: 4000,
            log: "info".to_owned(),
            speech_model: PathBuf::from("models/ggml-tiny.en.bin"),
            speech_workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            api_tokens: Vec::new(),
            tts: TtsConfig::default(),
            trusted_ca: Vec::new(),
            connectors: std::collections::BTreeMap::new(),
            agents: Vec::new(),
            sip_realm: "baton".to_owned(),
        }
    }
}

impl Config {
    /// A config file with every key at its default, for operators to copy and edit.
    pub const EXAMPLE: &'static str = r#"# baton configuration. Every key is optional; the values shown are the defaults.
# Relative paths are taken from the directory baton is started in.

sip = "127.0.0.1:5060"        # SIP over UDP and TCP
http = "127.0.0.1:8080"       # HTTP API
rtp_ports = "20000-30000"     # even ports carry RTP, the odd one above RTCP
dialplans = "dialplans"       # dialplan files (*.toml)
media = "media"               # prompts and hold music (WAV)
data = "data"                 # recordings go to data/recordings/
# context_db = "data/baton.sqlite"  # ended calls' contexts and escalations (SQLite); default: in data
# public_ip = "203.0.113.10"  # address for SDP and Contact when sip is 0.0.0.0
rtp_inactivity_secs = 30      # hang up a call that sends no RTP for this long
shutdown_grace_secs = 30      # on shutdown, wait this long for calls to end
max_calls = 4000              # refuse calls beyond this with 503
log = "info"                  # tracing filter, e.g. "baton=debug,info"
speech_model = "models/ggml-tiny.en.bin"  # ggml whisper model (make model installs it;
                              # make model-base: models/ggml-base.bin, more accurate, slower)
# speech_workers = 2          # transcription threads; default: one per core
# trusted_ca = ["certs/private-ca.pem"]  # CAs trusted beside the public web roots, for
                              # wss:// bots and https:// customer data

# sip_realm = "baton"          # the realm agents' softphones authenticate in

# Agents, one table each: their softphones REGISTER as sip_user with the password
# (digest, SHA-256 or MD5). An agent with no phone registered takes calls in the desktop
# (/agent, signed in with their agent api_token) over WebRTC.
# [[agent]]
# id = "a7"
# name = "Dana"
# sip_user = "dana"                # "bot" is reserved: a phone's REFER to it hands back
# password = "a long random secret"  # 8 bytes or more
# skills = { fraud = 4, billing = 2 }  # levels 1 (can help) to 5 (expert)
# languages = ["en"]
# max_calls = 1
# digest = ["SHA-256", "MD5"]     # offered strongest first; ["MD5"] for older phones

# Connectors deliver follow-up messages (SMS, WhatsApp, e-mail) after calls, one table
# each, named by a dialplan's [followup.NAME] (`connector`, "default" unless given). baton POSTs JSON to url with the headers
# Idempotency-Key (the same on every try of a message), X-Baton-Timestamp (Unix seconds)
# and X-Baton-Signature: "v1=" and the hex HMAC-SHA256, keyed with the secret, of the
# timestamp, a ".", and the body. A 2xx answer delivers; 408, 425, 429, 5xx and network
# errors are tried again (after Retry-After seconds when given); other answers fail at once.
# [connector.default]
# url = "https://hooks.example.com/baton"  # http:// or https://, without user:password@
# secret_env = "BATON_SMS_SECRET"  # the environment variable holding the secret, or
# secret = "a long random secret"  # the secret itself; 16 bytes or more, one of the two
# timeout_ms = 5000               # for the whole request (100 to 60000)
# attempts = 6                    # tries before the message is reported failed (1 to 20)
# backoff_ms = 1000               # wait before the 2nd try, doubled after each failure (10 to 600000)
# max_backoff_secs = 600          # longest wait between tries (1 to 86400)

# API clients, one table each; with none, the API listens on loopback only, without tokens.
# [[api_token]]
# token = "a long random secret"  # sent as "Authorization: Bearer ..."; 16 bytes or more
# role = "agent"                  # "bot", "agent" (needs agent = "ID") or "admin"
# agent = "a7"                    # the agent this token belongs to

[invite_rate_limit]           # per source address; per_source_per_sec = 0 disables
per_source_per_sec = 200       # a carrier trunk is one source: size this to its peak
burst = 400

[tts]                         # text to speech for `say` steps and the bot
command = "espeak-ng"         # the espeak-ng program; when it fails, media/tts-fallback.wav plays
voice = "en-gb"               # an espeak-ng voice (espeak-ng --voices), e.g. "en-us"
speed = 160                   # words per minute, 80 to 450
timeout_secs = 5              # a render taking longer is killed (1 to 60)
cache_mb = 64                 # rendered speech kept in memory (0 to 4096; 0: none)
"#;

    /// Reads and checks a config file; keys it does not set keep their defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text, path)
    }

    /// Parses config text; `file` is only used to name the file in errors. Secrets named by
    /// `secret_env` are read from the environment now, so a missing one stops start-up.
    pub fn from_toml(text: &str, file: &Path) -> Result<Config, ConfigError> {
        Config::from_toml_with_env(text, file, &|name| std::env::var_os(name))
    }

    /// [`Config::from_toml`] with the environment given, so tests need not change the
    /// process's own.
    fn from_toml_with_env(text: &str, file: &Path, env: &Env<'_>) -> Result<Config, ConfigError> {
        let source = SourceFile::parse(file, text)
            .map_err(|(at, message)| ConfigError::Syntax { at, message })?;
        let raw: RawConfig = location::deserialize_table(source.root()).map_err(|e| {
            let (at, message) = source.at_error(&e);
            ConfigError::Invalid { at, message }
        })?;
        raw.resolve(&source, env)
    }

    /// Replaces the values the command line set.
    pub fn apply(&mut self, overrides: Overrides) {
        let Overrides {
            sip,
            http,
            rtp_ports,
            dialplans,
            media,
            data,
        } = overrides;
        self.sip = sip.unwrap_or(self.sip);
        self.http = http.unwrap_or(self.http);
        self.rtp_ports = rtp_ports.unwrap_or(self.rtp_ports);
        if let Some(dir) = dialplans {
            self.dialplans = dir;
        }
        if let Some(dir) = media {
            self.media = dir;
        }
        if let Some(dir) = data {
            self.data = dir;
        }
    }

    /// Where call recordings are written.
    pub fn recordings_dir(&self) -> PathBuf {
        self.data.join("recordings")
    }

    /// The SQLite file of ended calls' contexts: `context_db`, or `baton.sqlite` in the
    /// data directory, so that `--data` moves it along with the recordings.
    pub fn context_db_path(&self) -> PathBuf {
        self.context_db
            .clone()
            .unwrap_or_else(|| self.data.join("baton.sqlite"))
    }
}

impl FromStr for PortRange {
    type Err = PortRangeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || PortRangeError(s.to_owned());
        let (low, high) = s.split_once('-').ok_or_else(err)?;
        let low: u16 = low.trim().parse().map_err(|_| err())?;
        let high: u16 = high.trim().parse().map_err(|_| err())?;
        if low == 0 || low & 1 == 1 || low >= high {
            return Err(err());
        }
        Ok(PortRange { low, high })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.low, self.high)
    }
}

impl PortRange {
    /// How many RTP/RTCP port pairs fit in the range, i.e. how many calls' media it can carry.
    pub fn pairs(&self) -> usize {
        usize::from((self.high - self.low).div_ceil(2))
    }
}

/// The file as written: every key optional, checked and turned into a [`Config`] by
/// [`RawConfig::resolve`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    sip: Option<String>,
    http: Option<String>,
    rtp_ports: Option<String>,
    dialplans: Option<PathBuf>,
    media: Option<PathBuf>,
    data: Option<PathBuf>,
    context_db: Option<PathBuf>,
    public_ip: Option<String>,
    rtp_inactivity_secs: Option<u64>,
    invite_rate_limit: Option<RawRateLimit>,
    shutdown_grace_secs: Option<u64>,
    max_calls: Option<u32>,
    log: Option<String>,
    speech_model: Option<PathBuf>,
    speech_workers: Option<u32>,
    api_token: Option<Vec<RawApiToken>>,
    tts: Option<RawTts>,
    trusted_ca: Option<Vec<PathBuf>>,
    agent: Option<Vec<RawAgent>>,
    sip_realm: Option<String>,
    connector: Option<std::collections::BTreeMap<String, RawConnector>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnector {
    url: String,
    secret: Option<String>,
    secret_env: Option<String>,
    timeout_ms: Option<u64>,
    attempts: Option<u32>,
    backoff_ms: Option<u64>,
    max_backoff_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    id: String,
    name: Option<String>,
    sip_user: String,
    password: String,
    #[serde(default)]
    skills: std::collections::BTreeMap<String, i64>,
    #[serde(default)]
    languages: Vec<String>,
    max_calls: Option<u32>,
    digest: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTts {
    command: Option<PathBuf>,
    voice: Option<String>,
    speed: Option<u32>,
    timeout_secs: Option<u64>,
    cache_mb: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApiToken {
    token: String,
    role: String,
    agent: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    per_source_per_sec: Option<u32>,
    burst: Option<u32>,
}

/// Looks up an environment variable.
type Env<'a> = dyn Fn(&str) -> Option<std::ffi::OsString> + 'a;

/// Upper bound for the second-valued keys: a day is already far beyond any sane setting,
/// and it keeps `Duration` arithmetic far from overflow.
const MAX_SECS: u64 = 86_400;

impl RawConfig {
    fn resolve(self, source: &SourceFile<'_>, env: &Env<'_>) -> Result<Config, ConfigError> {
        let invalid = |key: &[&str], message: String| ConfigError::Invalid {
            at: source.at_key(&KeyPath::keys(key)),
            message,
        };
        let address = |key: &str, value: String| {
            value.parse::<SocketAddr>().map_err(|_| {
                invalid(
                    &[key],
                    format!("expected \"IP:PORT\" such as \"0.0.0.0:5060\", got \"{value}\""),
                )
            })
        };
        let secs = |key: &str, value: u64| {
            if (1..=MAX_SECS).contains(&value) {
                Ok(Duration::from_secs(value))
            } else {
                Err(invalid(
                    &[key],
                    format!("expected 1 to {MAX_SECS} seconds, got {value}"),
                ))
            }
        };

        let mut config = Config::default();
        if let Some(sip) = self.sip {
            config.sip = address("sip", sip)?;
        }
        if let Some(http) = self.http {
            config.http = address("http", http)?;
        }
        if let Some(ports) = self.rtp_ports {
            config.rtp_ports = ports
                .parse()
                .map_err(|e: PortRangeError| invalid(&["rtp_ports"], e.to_string()))?;
        }
        config.dialplans = self.dialplans.unwrap_or(config.dialplans);
        config.media = self.media.unwrap_or(config.media);
        config.data = self.data.unwrap_or(config.data);
        if let Some(path) = self.context_db {
            if path.as_os_str().is_empty() {
                return Err(invalid(
                    &["context_db"],
                    "expected the path of a file, got \"\"".to_owned(),
                ));
            }
            config.context_db = Some(path);
        }
        if let Some(ip) = self.public_ip {
            let parsed: IpAddr = ip.parse().map_err(|_| {
                invalid(
                    &["public_ip"],
                    format!("expected an IP address such as \"203.0.113.10\", got \"{ip}\""),
                )
            })?;
            if parsed.is_unspecified() {
                return Err(invalid(
                    &["public_ip"],
                    format!(
                        "\"{ip}\" cannot be reached by peers; give the address they should send to"
                    ),
                ));
            }
            config.public_ip = Some(parsed);
        }
        if let Some(value) = self.rtp_inactivity_secs {
            config.rtp_inactivity = secs("rtp_inactivity_secs", value)?;
        }
        if let Some(value) = self.shutdown_grace_secs {
            config.shutdown_grace = secs("shutdown_grace_secs", value)?;
        }
        if let Some(limit) = self.invite_rate_limit {
            let per_source_per_sec = limit
                .per_source_per_sec
                .unwrap_or(DEFAULT_RATE_LIMIT.per_source_per_sec);
            let burst = limit.burst.unwrap_or(DEFAULT_RATE_LIMIT.burst);
            config.invite_rate_limit = if per_source_per_sec == 0 {
                None
            } else if burst == 0 {
                return Err(invalid(
                    &["invite_rate_limit", "burst"],
                    "must be at least 1 while the limit is on (set per_source_per_sec = 0 to turn it off)".to_owned(),
                ));
            } else {
                Some(RateLimit {
                    per_source_per_sec,
                    burst,
                })
            };
        }
        if let Some(max_calls) = self.max_calls {
            if max_calls == 0 {
                return Err(invalid(&["max_calls"], "must be at least 1".to_owned()));
            }
            config.max_calls = max_calls;
        }
        if let Some(log) = self.log {
            if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&log) {
                return Err(invalid(
                    &["log"],
                    format!("not a log filter (\"{log}\"): {e}"),
                ));
            }
            config.log = log;
        }
        config.speech_model = self.speech_model.unwrap_or(config.speech_model);
        if let Some(workers) = self.speech_workers {
            if !(1..=64).contains(&workers) {
                return Err(invalid(
                    &["speech_workers"],
                    format!("expected 1 to 64 threads, got {workers}"),
                ));
            }
            config.speech_workers = workers as usize;
        }
        for (i, raw) in self.api_token.unwrap_or_default().into_iter().enumerate() {
            let at = |key: &str| source.at_key(&KeyPath::keys(&["api_token"]).index(i).key(key));
            let bad = |key: &str, message: String| ConfigError::Invalid {
                at: at(key),
                message,
            };
            if raw.token.len() < MIN_TOKEN_LEN {
                return Err(bad(
                    "token",
                    format!("must be at least {MIN_TOKEN_LEN} bytes long"),
                ));
            }
            if config.api_tokens.iter().any(|t| t.token == raw.token) {
                return Err(bad("token", "is given twice".to_owned()));
            }
            let role = match (raw.role.as_str(), raw.agent) {
                ("bot", None) => Role::Bot,
                ("admin", None) => Role::Admin,
                ("agent", Some(id)) if !id.is_empty() => Role::Agent(id),
                ("agent", _) => {
                    return Err(bad(
                        "agent",
                        "an agent token needs agent = \"ID\"".to_owned(),
                    ))
                }
                ("bot" | "admin", Some(_)) => {
                    return Err(bad(
                        "agent",
                        format!("only agent tokens name an agent, this one is {}", raw.role),
                    ))
                }
                (other, _) => {
                    return Err(bad(
                        "role",
                        format!("expected \"bot\", \"agent\" or \"admin\", got \"{other}\""),
                    ))
                }
            };
            config.api_tokens.push(ApiToken {
                token: raw.token,
                role,
            });
        }
        config.trusted_ca = self.trusted_ca.unwrap_or_default();
        if let Some(realm) = self.sip_realm {
            if realm.is_empty() || realm.len() > 128 || realm.contains(['"', '\\']) {
                return Err(invalid(
                    &["sip_realm"],
                    "expected 1 to 128 bytes without quotes or backslashes".to_owned(),
                ));
            }
            config.sip_realm = realm;
        }
        for (i, raw) in self.agent.unwrap_or_default().into_iter().enumerate() {
            let at = |key: &str| source.at_key(&KeyPath::keys(&["agent"]).index(i).key(key));
            let bad = |key: &str, message: String| ConfigError::Invalid {
                at: at(key),
                message,
            };
            let plain = |s: &str| {
                !s.is_empty()
                    && s.len() <= 64
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            };
            if !plain(&raw.id) {
                return Err(bad(
                    "id",
                    "expected 1 to 64 letters, digits, '-', '_' or '.'".to_owned(),
                ));
            }
            if !plain(&raw.sip_user) {
                return Err(bad(
                    "sip_user",
                    "expected 1 to 64 letters, digits, '-', '_' or '.'".to_owned(),
                ));
            }
            if raw.sip_user.eq_ignore_ascii_case(crate::desk::BOT_USER) {
                return Err(bad(
                    "sip_user",
                    format!(
                        "\"{}\" is reserved: an agent's phone transfers a call to \
                         sip:bot@baton to hand it back to the bot",
                        raw.sip_user
                    ),
                ));
            }
            if raw.password.len() < MIN_AGENT_PASSWORD {
                return Err(bad(
                    "password",
                    format!("must be at least {MIN_AGENT_PASSWORD} bytes long"),
                ));
            }
            if config.agents.iter().any(|a| a.id == raw.id) {
                return Err(bad("id", format!("agent \"{}\" is defined twice", raw.id)));
            }
            if config.agents.iter().any(|a| a.sip_user == raw.sip_user) {
                return Err(bad(
                    "sip_user",
                    format!("\"{}\" belongs to another agent", raw.sip_user),
                ));
            }
            let mut skills = std::collections::BTreeMap::new();
            for (skill, level) in raw.skills {
                let level = u8::try_from(level).ok().filter(|l| (1..=5).contains(l));
                let Some(level) = level else {
                    return Err(bad(
                        "skills",
                        format!("{skill}: expected a level from 1 (can help) to 5 (expert)"),
                    ));
                };
                if !plain(&skill) {
                    return Err(bad(
                        "skills",
                        format!("\"{skill}\": expected a plain name such as fraud or billing"),
                    ));
                }
                skills.insert(skill, level);
            }
            if let Some(lang) = raw.languages.iter().find(|l| !plain(l) || l.len() > 16) {
                return Err(bad(
                    "languages",
                    format!("\"{lang}\": expected a language tag such as en or fr-CA"),
                ));
            }
            let max_calls = raw.max_calls.unwrap_or(1);
            if !(1..=MAX_AGENT_CALLS).contains(&max_calls) {
                return Err(bad(
                    "max_calls",
                    format!("expected 1 to {MAX_AGENT_CALLS}, got {max_calls}"),
                ));
            }
            let digest = match raw.digest {
                None => DEFAULT_DIGEST.to_vec(),
                Some(names) => {
                    let mut list = Vec::new();
                    for name in &names {
                        match Algorithm::from_name(name) {
                            Some(a) if !list.contains(&a) => list.push(a),
                            _ => {
                                return Err(bad(
                                    "digest",
                                    format!(
                                    "\"{name}\": expected SHA-256, SHA-512-256 or MD5, each once"
                                ),
                                ))
                            }
                        }
                    }
                    if list.is_empty() {
                        return Err(bad("digest", "names no algorithm".to_owned()));
                    }
                    list
                }
            };
            config.agents.push(AgentConfig {
                name: raw.name.unwrap_or_else(|| raw.id.clone()),
                id: raw.id,
                sip_user: raw.sip_user,
                password: raw.password,
                skills,
                languages: if raw.languages.is_empty() {
                    vec!["en".to_owned()]
                } else {
                    raw.languages
                },
                max_calls,
                digest,
            });
        }
        for (name, raw) in self.connector.unwrap_or_default() {
            let connector = raw.resolve(&name, source, env)?;
            config.connectors.insert(name, connector);
        }
        if let Some(tts) = self.tts {
            let key = |name: &'static str| ["tts", name];
            if let Some(command) = tts.command {
                if command.as_os_str().is_empty() {
                    return Err(invalid(&key("command"), "is empty".to_owned()));
                }
                config.tts.command = command;
            }
            if let Some(voice) = tts.voice {
                if !crate::tts::valid_voice(&voice) {
                    return Err(invalid(
                        &key("voice"),
                        format!(
                            "expected an espeak-ng voice name such as \"en-gb\" \
                             (letters, digits, -, _ and +), got \"{voice}\""
                        ),
                    ));
                }
                config.tts.voice = voice;
            }
            if let Some(speed) = tts.speed {
                if !TTS_SPEEDS.contains(&speed) {
                    return Err(invalid(
                        &key("speed"),
                        format!(
                            "expected {} to {} words per minute, got {speed}",
                            TTS_SPEEDS.start(),
                            TTS_SPEEDS.end()
                        ),
                    ));
                }
                config.tts.speed = speed;
            }
            if let Some(value) = tts.timeout_secs {
                if !(1..=MAX_TTS_TIMEOUT_SECS).contains(&value) {
                    return Err(invalid(
                        &key("timeout_secs"),
                        format!("expected 1 to {MAX_TTS_TIMEOUT_SECS} seconds, got {value}"),
                    ));
                }
                config.tts.timeout = Duration::from_secs(value);
            }
            if let Some(mb) = tts.cache_mb {
                if mb > MAX_TTS_CACHE_MB {
                    return Err(invalid(
                        &key("cache_mb"),
                        format!("expected 0 to {MAX_TTS_CACHE_MB} MB, got {mb}"),
                    ));
                }
                config.tts.cache_bytes = (mb as usize) << 20;
            }
        }
        Ok(config)
    }
}

impl RawConnector {
    fn resolve(
        self,
        name: &str,
        source: &SourceFile<'_>,
        env: &Env<'_>,
    ) -> Result<ConnectorConfig, ConfigError> {
        let bad = |key: Option<&str>, message: String| {
            let mut path = KeyPath::keys(&["connector", name]);
            if let Some(key) = key {
                path = path.key(key);
            }
            ConfigError::Invalid {
                at: source.at_key(&path),
                message,
            }
        };
        let plain = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !plain {
            return Err(bad(
                None,
                "expected a name of 1 to 64 letters, digits, '-' or '_'".to_owned(),
            ));
        }

        // The URL is not echoed back: it may carry a token in its path or query.
        let url = reqwest::Url::parse(&self.url)
            .map_err(|e| bad(Some("url"), format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(
                Some("url"),
                format!(
                    "expected an http:// or https:// URL, got {}://",
                    url.scheme()
                ),
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                Some("url"),
                "must not hold a user name or password; the secret signs each message".to_owned(),
            ));
        }

        let too_short = format!("must be at least {MIN_CONNECTOR_SECRET} bytes long");
        let secret = match (self.secret, self.secret_env) {
            (Some(secret), None) => {
                if secret.len() < MIN_CONNECTOR_SECRET {
                    return Err(bad(Some("secret"), too_short));
                }
                secret.into_bytes()
            }
            (None, Some(var)) => {
                use std::os::unix::ffi::OsStringExt;
                let value = env(&var).map(OsStringExt::into_vec).unwrap_or_default();
                if value.is_empty() {
                    return Err(bad(
                        Some("secret_env"),
                        format!("the environment variable \"{var}\" is not set or empty"),
                    ));
                }
                if value.len() < MIN_CONNECTOR_SECRET {
                    return Err(bad(
                        Some("secret_env"),
                        format!("the secret in \"{var}\" {too_short}"),
                    ));
                }
                value
            }
            (Some(_), Some(_)) => {
                return Err(bad(
                    Some("secret_env"),
                    "give either secret or secret_env, not both".to_owned(),
                ))
            }
            (None, None) => {
                return Err(bad(
                    None,
                    "needs secret or secret_env to sign its messages".to_owned(),
                ))
            }
        };

        let timeout_ms = self.timeout_ms.unwrap_or(5_000);
        in_range(timeout_ms, &CONNECTOR_TIMEOUT_MS, " milliseconds")
            .map_err(|e| bad(Some("timeout_ms"), e))?;
        let attempts = self.attempts.unwrap_or(6);
        in_range(attempts, &CONNECTOR_ATTEMPTS, "").map_err(|e| bad(Some("attempts"), e))?;
        let backoff_ms = self.backoff_ms.unwrap_or(1_000);
        in_range(backoff_ms, &CONNECTOR_BACKOFF_MS, " milliseconds")
            .map_err(|e| bad(Some("backoff_ms"), e))?;
        let max_backoff_secs = self.max_backoff_secs.unwrap_or(600);
        in_range(max_backoff_secs, &CONNECTOR_MAX_BACKOFF_SECS, " seconds")
            .map_err(|e| bad(Some("max_backoff_secs"), e))?;
        Ok(ConnectorConfig {
            url,
            secret,
            timeout: Duration::from_millis(timeout_ms),
            attempts,
            backoff: Duration::from_millis(backoff_ms),
            max_backoff: Duration::from_secs(max_backoff_secs),
        })
    }
}

/// Refuses a number outside `range`, saying which numbers would do.
fn in_range<T: PartialOrd + fmt::Display>(
    value: T,
    range: &std::ops::RangeInclusive<T>,
    unit: &str,
) -> Result<(), String> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "expected {} to {}{unit}, got {value}",
            range.start(),
            range.end()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("config.toml"))
    }

    fn error(text: &str) -> String {
        match parse(text) {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn empty_file_gives_defaults() {
        let config = parse("").unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.sip, "127.0.0.1:5060".parse().unwrap());
        assert_eq!(config.http, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(
            config.rtp_ports,
            PortRange {
                low: 20000,
                high: 30000
            }
        );
        assert_eq!(config.rtp_inactivity, Duration::from_secs(30));
        assert_eq!(config.max_calls, 4000);
        assert_eq!(config.recordings_dir(), Path::new("data/recordings"));
        assert_eq!(config.context_db_path(), Path::new("data/baton.sqlite"));
        assert_eq!(
            config.invite_rate_limit,
            Some(RateLimit {
                per_source_per_sec: 200,
                burst: 400
            })
        );
    }

    #[test]
    fn api_tokens_carry_roles_and_bad_ones_name_their_key() {
        let config = parse(
            "[[api_token]]\ntoken = \"0123456789abcdef-bot\"\nrole = \"bot\"\n\
             [[api_token]]\ntoken = \"0123456789abcdef-a7\"\nrole = \"agent\"\nagent = \"a7\"\n",
        )
        .unwrap();
        assert_eq!(
            config
                .api_tokens
                .iter()
                .map(|t| t.role.clone())
                .collect::<Vec<_>>(),
            [Role::Bot, Role::Agent("a7".into())]
        );
        assert!(!format!("{config:?}").contains("0123456789abcdef"));
        let cases = [
            (
                "token = \"short\"\nrole = \"bot\"",
                "token\": must be at least 16",
            ),
            (
                "token = \"0123456789abcdef\"\nrole = \"agent\"",
                "agent\": an agent token needs",
            ),
            (
                "token = \"0123456789abcdef\"\nrole = \"root\"",
                "role\": expected \"bot\"",
            ),
            (
                "token = \"0123456789abcdef\"\nrole = \"bot\"\nagent = \"x\"",
                "only agent tokens",
            ),
            (
                "token = \"0123456789abcdef\"\nrole = \"bot\"\nscope = \"x\"",
                "scope",
            ),
        ];
        for (table, want) in cases {
            let e = error(&format!("[[api_token]]\n{table}\n"));
            assert!(e.contains(want), "{e}");
            assert!(e.starts_with("config.toml:"), "{e}");
        }
        let twice = "[[api_token]]\ntoken = \"0123456789abcdef\"\nrole = \"bot\"\n";
        let e = error(&format!("{twice}{twice}"));
        assert!(
            e.contains("config.toml:5:") && e.contains("given twice"),
            "{e}"
        );
    }

    #[test]
    fn example_file_spells_out_the_defaults() {
        assert_eq!(parse(Config::EXAMPLE).unwrap(), Config::default());
    }

    #[test]
    fn every_key_is_read() {
        let config = parse(
            r#"
sip = "0.0.0.0:5070"
http = "0.0.0.0:9000"
rtp_ports = "40000-40100"
dialplans = "/etc/baton/dialplans"
media = "/usr/share/baton/media"
data = "/var/lib/baton"
context_db = "/var/lib/baton-db/contexts.sqlite"
public_ip = "203.0.113.10"
rtp_inactivity_secs = 60
shutdown_grace_secs = 5
max_calls = 10
log = "baton=debug,info"
invite_rate_limit = { per_source_per_sec = 5, burst = 7 }
"#,
        )
        .unwrap();
        assert_eq!(config.sip, "0.0.0.0:5070".parse().unwrap());
        assert_eq!(config.http, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(
            config.rtp_ports,
            PortRange {
                low: 40000,
                high: 40100
            }
        );
        assert_eq!(config.rtp_ports.pairs(), 50);
        assert_eq!(config.dialplans, Path::new("/etc/baton/dialplans"));
        assert_eq!(config.media, Path::new("/usr/share/baton/media"));
        assert_eq!(
            config.recordings_dir(),
            Path::new("/var/lib/baton/recordings")
        );
        assert_eq!(
            config.context_db_path(),
            Path::new("/var/lib/baton-db/contexts.sqlite")
        );
        assert_eq!(config.public_ip, Some("203.0.113.10".parse().unwrap()));
        assert_eq!(config.rtp_inactivity, Duration::from_secs(60));
        assert_eq!(config.shutdown_grace, Duration::from_secs(5));
        assert_eq!(config.max_calls, 10);
        assert_eq!(config.log, "baton=debug,info");
        assert_eq!(
            config.invite_rate_limit,
            Some(RateLimit {
                per_source_per_sec: 5,
                burst: 7
            })
        );
    }

    #[test]
    fn rate_limit_of_zero_disables_it_and_missing_keys_keep_defaults() {
        let off = parse("[invite_rate_limit]\nper_source_per_sec = 0\n").unwrap();
        assert_eq!(off.invite_rate_limit, None);
        let partial = parse("invite_rate_limit = { burst = 3 }\n").unwrap();
        assert_eq!(
            partial.invite_rate_limit,
            Some(RateLimit {
                per_source_per_sec: 200,
                burst: 3
            })
        );
    }

    #[test]
    fn overrides_replace_only_what_they_set() {
        let mut config = parse("sip = \"127.0.0.1:5070\"\nmedia = \"prompts\"\n").unwrap();
        config.apply(Overrides {
            http: Some("127.0.0.1:9999".parse().unwrap()),
            rtp_ports: Some("10000-10010".parse().unwrap()),
            dialplans: Some(PathBuf::from("plans")),
            data: Some(PathBuf::from("/tmp/baton")),
            ..Overrides::default()
        });
        assert_eq!(config.sip, "127.0.0.1:5070".parse().unwrap());
        assert_eq!(config.http, "127.0.0.1:9999".parse().unwrap());
        assert_eq!(
            config.rtp_ports,
            PortRange {
                low: 10000,
                high: 10010
            }
        );
        assert_eq!(config.dialplans, Path::new("plans"));
        assert_eq!(config.media, Path::new("prompts"));
        assert_eq!(config.data, Path::new("/tmp/baton"));
        assert_eq!(
            config.context_db_path(),
            Path::new("/tmp/baton/baton.sqlite")
        );
    }

    #[test]
    fn port_range_parsing() {
        assert_eq!(
            "20000-30000".parse::<PortRange>(),
            Ok(PortRange {
                low: 20000,
                high: 30000
            })
        );
        assert_eq!("20000-20001".parse::<PortRange>().unwrap().pairs(), 1);
        for bad in [
            "30000-20000",
            "20001-30000",
            "0-100",
            "20000",
            "a-b",
            "20000-20000",
            "1-70000",
        ] {
            assert!(bad.parse::<PortRange>().is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn reversed_port_range_names_file_line_and_key() {
        let text = "# baton\nsip = \"127.0.0.1:5060\"\n\nrtp_ports = \"30000-20000\"\n";
        assert_eq!(
            error(text),
            "config.toml:4:1: key \"rtp_ports\": expected \"LOW-HIGH\" with LOW < HIGH, \
             LOW even and above 0, got \"30000-20000\""
        );
    }

    #[test]
    fn unknown_key_is_an_error() {
        let message = error("sip = \"127.0.0.1:5060\"\nsip_port = 5060\n");
        assert!(
            message.starts_with("config.toml:2:1: key \"sip_port\": unknown key `sip_port`"),
            "{message}"
        );
        let nested = error("[invite_rate_limit]\nburst = 1\nrate = 2\n");
        assert!(
            nested.starts_with("config.toml:3:1: key \"invite_rate_limit.rate\": unknown key"),
            "{nested}"
        );
    }

    #[test]
    fn wrong_type_names_the_key_and_the_value_column() {
        assert_eq!(
            error("max_calls = \"many\"\n"),
            "config.toml:1:13: key \"max_calls\": invalid type: string \"many\", expected u32"
        );
        assert_eq!(
            error("invite_rate_limit = { burst = -1 }\n"),
            "config.toml:1:31: key \"invite_rate_limit.burst\": \
             invalid value: integer `-1`, expected u32"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        assert_eq!(
            error("\nhttp = \"localhost:8080\"\n"),
            "config.toml:2:1: key \"http\": expected \"IP:PORT\" such as \"0.0.0.0:5060\", \
             got \"localhost:8080\""
        );
        assert!(
            error("public_ip = \"0.0.0.0\"\n").starts_with("config.toml:1:1: key \"public_ip\"")
        );
        assert!(error("public_ip = \"host\"\n").starts_with("config.toml:1:1: key \"public_ip\""));
        assert!(error("max_calls = 0\n").starts_with("config.toml:1:1: key \"max_calls\""));
        assert!(error("context_db = \"\"\n")
            .starts_with("config.toml:1:1: key \"context_db\": expected the path of a file"));
        assert!(error("rtp_inactivity_secs = 0\n")
            .starts_with("config.toml:1:1: key \"rtp_inactivity_secs\": expected 1 to"));
        assert!(error("log = \"baton=loud\"\n").starts_with("config.toml:1:1: key \"log\""));
        assert!(error("[invite_rate_limit]\nburst = 0\n")
            .starts_with("config.toml:2:1: key \"invite_rate_limit.burst\": must be at least 1"));
    }

    #[test]
    fn syntax_error_names_line_and_key() {
        let message = error("sip = \"127.0.0.1:5060\"\nhttp = \n");
        assert!(
            message.starts_with("config.toml:2:8: key \"http\": "),
            "{message}"
        );
        let header = error("[invite_rate_limit\nburst = 1\n");
        assert!(header.starts_with("config.toml:1:"), "{header}");
    }

    #[test]
    fn tts_keys_are_read_and_bad_ones_name_their_key() {
        let config = parse(
            "[tts]\ncommand = \"/opt/espeak/bin/espeak-ng\"\nvoice = \"en-us+f3\"\n\
             speed = 200\ntimeout_secs = 2\ncache_mb = 0\n",
        )
        .unwrap();
        assert_eq!(
            config.tts,
            TtsConfig {
                command: PathBuf::from("/opt/espeak/bin/espeak-ng"),
                voice: "en-us+f3".to_owned(),
                speed: 200,
                timeout: Duration::from_secs(2),
                cache_bytes: 0,
            }
        );
        let partial = parse("tts = { voice = \"en-us\" }\n").unwrap();
        assert_eq!(partial.tts.speed, 160, "unset keys keep their defaults");
        assert_eq!(partial.tts.cache_bytes, 64 << 20);
        let cases = [
            ("command = \"\"", "key \"tts.command\": is empty"),
            (
                "voice = \"-m\"",
                "key \"tts.voice\": expected an espeak-ng voice",
            ),
            (
                "voice = \"en gb\"",
                "key \"tts.voice\": expected an espeak-ng voice",
            ),
            (
                "speed = 20",
                "key \"tts.speed\": expected 80 to 450 words per minute, got 20",
            ),
            (
                "timeout_secs = 0",
                "key \"tts.timeout_secs\": expected 1 to 60 seconds",
            ),
            (
                "cache_mb = 5000",
                "key \"tts.cache_mb\": expected 0 to 4096 MB, got 5000",
            ),
            ("ssml = true", "key \"tts.ssml\": unknown key"),
        ];
        for (line, want) in cases {
            let e = error(&format!("[tts]\n{line}\n"));
            assert!(e.starts_with("config.toml:2:"), "{e}");
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn agents_are_read_and_bad_ones_name_their_key() {
        let config = parse(
            "sip_realm = \"bank.example\"\n\
             [[agent]]\nid = \"a7\"\nname = \"Dana\"\nsip_user = \"dana\"\n\
             password = \"correct horse\"\nskills = { fraud = 4, billing = 2 }\n\
             languages = [\"en\", \"fr-CA\"]\nmax_calls = 2\n\
             [[agent]]\nid = \"a8\"\nsip_user = \"sam\"\npassword = \"battery staple\"\n",
        )
        .unwrap();
        assert_eq!(config.sip_realm, "bank.example");
        assert_eq!(config.agents.len(), 2);
        let dana = &config.agents[0];
        assert_eq!(
            (dana.id.as_str(), dana.name.as_str(), dana.sip_user.as_str()),
            ("a7", "Dana", "dana")
        );
        assert_eq!(dana.skills.get("fraud"), Some(&4));
        assert_eq!(dana.languages, ["en", "fr-CA"]);
        assert_eq!(dana.max_calls, 2);
        assert_eq!(dana.digest, [Algorithm::Sha256, Algorithm::Md5]);
        let sam = &config.agents[1];
        assert_eq!((sam.name.as_str(), sam.max_calls), ("a8", 1));
        assert_eq!(sam.languages, ["en"], "English unless told otherwise");
        assert!(
            !format!("{dana:?}").contains("horse"),
            "the password is never printed"
        );

        let agent = "id = \"a1\"\nsip_user = \"u1\"\npassword = \"12345678\"\n";
        let cases = [
            (
                "id = \"a b\"\nsip_user = \"u\"\npassword = \"12345678\"",
                "agent 1 key \"id\": expected 1 to 64",
            ),
            (
                "id = \"a\"\nsip_user = \"u\"\npassword = \"short\"",
                "agent 1 key \"password\": must be at least 8",
            ),
            (
                "id = \"a\"\nsip_user = \"bot\"\npassword = \"12345678\"",
                "agent 1 key \"sip_user\": \"bot\" is reserved",
            ),
            (
                &format!("{agent}skills = {{ fraud = 6 }}"),
                "agent 1 key \"skills\": fraud: expected a level from 1",
            ),
            (
                &format!("{agent}max_calls = 0"),
                "agent 1 key \"max_calls\": expected 1 to 8, got 0",
            ),
            (
                &format!("{agent}languages = [\"\"]"),
                "agent 1 key \"languages\"",
            ),
            (&format!("{agent}pin = 1"), "unknown key"),
            (
                &format!("{agent}digest = [\"MD5\", \"md5\"]"),
                "agent 1 key \"digest\": \"md5\": expected SHA-256",
            ),
            (
                &format!("{agent}digest = [\"SHA-1\"]"),
                "agent 1 key \"digest\"",
            ),
            (
                &format!("{agent}digest = []"),
                "agent 1 key \"digest\": names no algorithm",
            ),
            (
                &format!("{agent}[[agent]]\n{}", agent.replace("u1", "u2")),
                "agent 2 key \"id\": agent \"a1\" is defined twice",
            ),
            (
                &format!("{agent}[[agent]]\n{}", agent.replace("a1", "a2")),
                "agent 2 key \"sip_user\": \"u1\" belongs to another agent",
            ),
        ];
        for (text, want) in cases {
            let e = error(&format!("[[agent]]\n{text}\n"));
            assert!(e.contains(want), "{text}: {e}");
        }
        assert!(error("sip_realm = \"a\\\"b\"\n").contains("key \"sip_realm\""));
    }

    const HOOK: &str = "url = \"https://hooks.example.com/baton\"\n";

    fn parse_with_env(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env = |name: &str| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| std::ffi::OsString::from(v))
        };
        Config::from_toml_with_env(text, Path::new("config.toml"), &env)
    }

    fn connector_error(table: &str, vars: &[(&str, &str)]) -> String {
        match parse_with_env(&format!("[connector.sms]\n{table}\n"), vars) {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn connector_keys_have_defaults_and_are_read() {
        assert!(Config::default().connectors.is_empty());
        let config = parse(&format!(
            "[connector.sms]\n{HOOK}secret = \"0123456789abcdef\"\n"
        ))
        .unwrap();
        assert_eq!(
            config.connectors["sms"],
            ConnectorConfig {
                url: "https://hooks.example.com/baton".parse().unwrap(),
                secret: b"0123456789abcdef".to_vec(),
                timeout: Duration::from_secs(5),
                attempts: 6,
                backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(600),
            }
        );
        assert!(!format!("{config:?}").contains("0123456789abcdef"));
        assert!(format!("{:?}", config.connectors["sms"]).contains("secret: \"<hidden>\""));

        let config = parse_with_env(
            "[connector.whats-app_2]\nurl = \"http://10.0.0.5:8080/hook\"\n\
             secret_env = \"HOOK_SECRET\"\ntimeout_ms = 100\nattempts = 20\n\
             backoff_ms = 600000\nmax_backoff_secs = 86400\n",
            &[("HOOK_SECRET", "a secret from the environment")],
        )
        .unwrap();
        let hook = &config.connectors["whats-app_2"];
        assert_eq!(hook.url.as_str(), "http://10.0.0.5:8080/hook");
        assert_eq!(hook.secret, b"a secret from the environment");
        assert_eq!(hook.timeout, Duration::from_millis(100));
        assert_eq!(hook.attempts, 20);
        assert_eq!(hook.backoff, Duration::from_secs(600));
        assert_eq!(hook.max_backoff, Duration::from_secs(86_400));
    }

    #[test]
    fn connector_ranges_name_their_key() {
        let cases = [
            (
                "timeout_ms = 99",
                "timeout_ms\": expected 100 to 60000 milliseconds, got 99",
            ),
            (
                "timeout_ms = 60001",
                "timeout_ms\": expected 100 to 60000 milliseconds",
            ),
            ("attempts = 0", "attempts\": expected 1 to 20, got 0"),
            ("attempts = 21", "attempts\": expected 1 to 20, got 21"),
            (
                "backoff_ms = 9",
                "backoff_ms\": expected 10 to 600000 milliseconds",
            ),
            (
                "backoff_ms = 600001",
                "backoff_ms\": expected 10 to 600000 milliseconds",
            ),
            (
                "max_backoff_secs = 0",
                "max_backoff_secs\": expected 1 to 86400 seconds",
            ),
            (
                "max_backoff_secs = 86401",
                "max_backoff_secs\": expected 1 to 86400 seconds",
            ),
        ];
        for (line, want) in cases {
            let e = connector_error(&format!("{HOOK}secret = \"0123456789abcdef\"\n{line}"), &[]);
            assert!(
                e.starts_with("config.toml:4:1: key \"connector.sms."),
                "{e}"
            );
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn connector_secret_rules() {
        let vars = [("SHORT", "fifteen bytes!!"), ("EMPTY", "")];
        let cases = [
            ("", "key \"connector.sms\": needs secret or secret_env"),
            (
                "secret = \"fifteen bytes!!\"",
                "key \"connector.sms.secret\": must be at least 16 bytes long",
            ),
            (
                "secret = \"0123456789abcdef\"\nsecret_env = \"SHORT\"",
                "key \"connector.sms.secret_env\": give either secret or secret_env",
            ),
            (
                "secret_env = \"SHORT\"",
                "key \"connector.sms.secret_env\": the secret in \"SHORT\" must be at least 16",
            ),
            (
                "secret_env = \"EMPTY\"",
                "key \"connector.sms.secret_env\": the environment variable \"EMPTY\" is not set",
            ),
            (
                "secret_env = \"MISSING\"",
                "key \"connector.sms.secret_env\": the environment variable \"MISSING\" is not set",
            ),
        ];
        for (lines, want) in cases {
            let e = connector_error(&format!("{HOOK}{lines}"), &vars);
            assert!(e.starts_with("config.toml:"), "{e}");
            assert!(e.contains(want), "{lines}: {e}");
            assert!(!e.contains("fifteen"), "the secret is never printed: {e}");
        }
    }

    #[test]
    fn connector_url_and_name_rules() {
        let secret = "secret = \"0123456789abcdef\"";
        let cases = [
            (
                "url = \"ftp://files.example.com/\"",
                "key \"connector.sms.url\": expected an http:// or https:// URL, got ftp://",
            ),
            (
                "url = \"https://bob:hunter2@hooks.example.com/\"",
                "key \"connector.sms.url\": must not hold a user name or password",
            ),
            (
                "url = \"https://bob@hooks.example.com/\"",
                "key \"connector.sms.url\": must not hold a user name",
            ),
            (
                "url = \"hooks.example.com\"",
                "key \"connector.sms.url\": not a URL",
            ),
            ("", "missing field `url`"),
            (
                &format!("{HOOK}retries = 3"),
                "key \"connector.sms.retries\": unknown key",
            ),
        ];
        for (lines, want) in cases {
            let e = connector_error(&format!("{lines}\n{secret}"), &[]);
            assert!(e.starts_with("config.toml:"), "{e}");
            assert!(e.contains(want), "{lines}: {e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
        let long = "n".repeat(65);
        for name in ["\"a b\"", "\"\"", "\"sms.eu\"", long.as_str()] {
            let e = error(&format!("[connector.{name}]\n{HOOK}{secret}\n"));
            assert!(
                e.starts_with("config.toml:1:") && e.contains("expected a name of 1 to 64"),
                "{name}: {e}"
            );
        }
        assert!(parse(&format!("[connector.{}]\n{HOOK}{secret}\n", "n".repeat(64))).is_ok());
    }

    #[test]
    fn unreadable_file_names_it() {
        let err = Config::load(Path::new("/nonexistent/baton.toml")).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        assert!(err
            .to_string()
            .starts_with("/nonexistent/baton.toml: cannot read config file"));
    }
}
