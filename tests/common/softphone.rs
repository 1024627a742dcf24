//! baresip as an agent's softphone: headless, registered to baton with digest credentials,
//! its audio read from and written to files. [`Softphone::start`] answers every call with
//! silence; [`Softphone::builder`] chooses how it answers, what it says and whether it
//! records what it hears. Killed when dropped; [`Softphone::stop`] ends it cleanly.
//!
//! What baresip 1.0.0 logs, for [`Softphone::log_contains`] (`<user>` is the account's
//! user, `<baton>` baton's SIP address, `<peer>` the From URI of the INVITE):
//!
//! - registered: `<user>@127.0.0.1: {0/UDP/v4} 200 OK () [1 binding]`;
//! - a call it answers by itself (auto), with no "Incoming call" line:
//!   `call: answering call on line 1 from <peer> with 200`;
//! - a call it leaves ringing (manual; it sends 180 Ringing, and no 100 Trying):
//!   `sip:<user>@<baton>: Incoming call from: <display name> <peer> - (press 'a' to accept)`;
//! - the call answered, media up: `<user>@127.0.0.1: Call established: <peer>`;
//! - the caller gave up (CANCEL) or hung up (BYE), one line for both:
//!   `<peer>: session closed: Connection reset by peer`;
//! - a call that lasted a second or more, however it ended (also by [`Softphone::stop`]),
//!   once torn down: `<To URI of the INVITE>: Call with <peer> terminated (duration: 6 secs)`.
//!
//! So a call cancelled while ringing shows "Incoming call from" then "session closed" and
//! never "Call established"; a call the caller hung up shows "Call established" then
//! "session closed". Between the lines a status line (`[0:00:03] audio=64000/62720 (bit/s)`)
//! is rewritten in place with `\r`.

use super::ports::free_udp_tcp_port;
use super::{run_tool, tail, wait_for, Baton};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Two agents as a config gives them: Dana (fraud 4, billing 1) and Sam (billing 3), their
/// phones offered MD5 alone, as baresip and SIPp need.
pub const AGENTS: &str = "\
[[agent]]\n\
id = \"a-fraud\"\nname = \"Dana\"\nsip_user = \"dana\"\npassword = \"correct-horse-battery\"\n\
skills = { fraud = 4, billing = 1 }\n\
digest = [\"MD5\"]\n\
[[agent]]\n\
id = \"a-billing\"\nname = \"Sam\"\nsip_user = \"sam\"\npassword = \"battery-staple-42\"\n\
skills = { billing = 3 }\n\
digest = [\"MD5\"]\n";

/// Seconds of silence after what a softphone says (all of its audio, when it says nothing):
/// baresip's aufile source ends at the end of its file, and a call must not outlast it.
const SOURCE_SECS: u32 = 120;
/// How long [`Softphone::stop`] waits after each signal before trying the next one.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long [`Softphone::heard`] waits for baresip to finish a recording's WAV header.
const FINALISE_WAIT: Duration = Duration::from_secs(5);

/// How the softphone answers an incoming call (the account's `answermode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Answer {
    /// Answers at once with 200 OK.
    #[default]
    Auto,
    /// Rings (180) and never answers: the caller must give up, as in a ring timeout.
    Manual,
}

impl Answer {
    fn account_param(self) -> &'static str {
        match self {
            Answer::Auto => "auto",
            Answer::Manual => "manual",
        }
    }
}

/// How a test wants its softphone: answer mode, the audio it sends, whether it records.
#[derive(Debug, Clone, Default)]
pub struct SoftphoneBuilder {
    answer: Answer,
    sends: Option<PathBuf>,
    records: bool,
}

impl SoftphoneBuilder {
    /// Answers calls at once ([`Answer::Auto`], the default) or lets them ring.
    pub fn answer(mut self, answer: Answer) -> SoftphoneBuilder {
        self.answer = answer;
        self
    }

    /// Sends the audio of `wav` (any WAV sox reads, e.g. a [`super::CallerAudio`]) once at
    /// the start of each call, then silence; without it, only silence.
    pub fn sends(mut self, wav: &Path) -> SoftphoneBuilder {
        self.sends = Some(wav.to_owned());
        self
    }

    /// Records what the softphone hears, for [`Softphone::heard`].
    pub fn records(mut self) -> SoftphoneBuilder {
        self.records = true;
        self
    }

    /// Starts baresip registering `user` with `password` to `baton`.
    pub fn start(self, baton: &Baton, user: &str, password: &str) -> Softphone {
        let dir = baton.dir.join(format!("softphone-{user}"));
        fs::create_dir_all(&dir).expect("softphone dir");
        let sip_port = free_udp_tcp_port();
        // baresip will not answer without a source, so there is always one.
        let source = dir.join("source.wav");
        match &self.sends {
            Some(wav) => padded_source(wav, &source),
            None => silent_source(&source),
        }
        let heard_dir = dir.join("heard");
        let recording = if self.records {
            // An earlier softphone of the same user must not pass its calls off as ours.
            let _ = fs::remove_dir_all(&heard_dir);
            fs::create_dir_all(&heard_dir).expect("softphone recording dir");
            format!("module sndfile.so\nsnd_path {}\n", heard_dir.display())
        } else {
            String::new()
        };
        fs::write(
            dir.join("config"),
            format!(
                "poll_method epoll\n\
                 sip_listen 127.0.0.1:{sip_port}\n\
                 net_interface 127.0.0.1\n\
                 audio_player aubridge,nil\n\
                 audio_source aufile,{}\n\
                 audio_alert aubridge,nil\n\
                 module_path /usr/lib/baresip/modules\n\
                 module g711.so\n\
                 module aufile.so\n\
                 module aubridge.so\n\
                 {recording}\
                 module_app account.so\n\
                 module_app menu.so\n",
                source.display()
            ),
        )
        .expect("softphone config");
        fs::write(
            dir.join("accounts"),
            format!(
                "<sip:{user}@{}>;auth_pass={password};answermode={};\
                 audio_codecs=PCMU,PCMA;regint=600\n",
                baton.sip,
                self.answer.account_param()
            ),
        )
        .expect("softphone accounts");
        let log = fs::File::create(dir.join("baresip.log")).expect("softphone log");
        let child = Command::new("baresip")
            .arg("-f")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start baresip (scripts/install-deps.sh installs baresip-core)");
        Softphone {
            child,
            heard_dir: self.records.then_some(heard_dir),
            dir,
            sip_port,
        }
    }
}

/// Writes `SOURCE_SECS` of 8 kHz silence to `path`.
fn silent_source(path: &Path) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut wav = hound::WavWriter::create(path, spec).expect("source wav");
    for _ in 0..8000 * SOURCE_SECS {
        wav.write_sample(0i16).expect("sample");
    }
    wav.finalize().expect("source wav");
}

/// Converts `wav` to the 8 kHz mono 16-bit WAV baresip's aufile reads, followed by
/// `SOURCE_SECS` of silence so the call never runs out of audio.
fn padded_source(wav: &Path, path: &Path) {
    run_tool(
        Command::new("sox")
            .arg(wav)
            .args(["-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer"])
            .arg(path)
            .args(["pad", "0", &SOURCE_SECS.to_string()]),
        Duration::from_secs(30),
    );
}

/// Whether a WAV's header has been written for its final length: baresip's sndfile module
/// leaves the RIFF size at 8 (and the data size at 0) until it closes the file.
fn wav_finalised(path: &Path) -> bool {
    let mut header = [0u8; 8];
    let Ok(mut file) = fs::File::open(path) else {
        return false;
    };
    let Ok(len) = file.metadata().map(|m| m.len()) else {
        return false;
    };
    if file.read_exact(&mut header).is_err() {
        return false;
    }
    let riff = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    &header[..4] == b"RIFF" && len > 44 && u64::from(riff) + 8 == len
}

/// A running baresip.
pub struct Softphone {
    child: Child,
    /// Its config, log, audio source and recordings.
    pub dir: PathBuf,
    /// Where its SIP stack listens.
    pub sip_port: u16,
    /// Where sndfile writes its recordings, when it records.
    heard_dir: Option<PathBuf>,
}

impl Softphone {
    /// Starts baresip registering `user` with `password` to `baton`, answering every call
    /// at once with silence and recording nothing.
    pub fn start(baton: &Baton, user: &str, password: &str) -> Softphone {
        Softphone::builder().start(baton, user, password)
    }

    /// A builder for the answer mode, the audio sent and recording.
    pub fn builder() -> SoftphoneBuilder {
        SoftphoneBuilder::default()
    }

    /// The end of its log, for a failure message.
    pub fn log(&self) -> String {
        tail(&self.dir.join("baresip.log"), 30)
    }

    /// Whether its log holds `needle` (see the module docs for the lines of a call).
    pub fn log_contains(&self, needle: &str) -> bool {
        fs::read(self.dir.join("baresip.log"))
            .is_ok_and(|log| String::from_utf8_lossy(&log).contains(needle))
    }

    /// The decoded audio it received on its latest call, as an 8 kHz mono 16-bit WAV, once
    /// that call has closed (or [`Softphone::stop`] ended it); `None` if it does not record,
    /// received nothing, or the call is still up after a few seconds' wait.
    ///
    /// The file holds the packets it decoded, back to back: a pause in the RTP stream is
    /// not in it. sndfile names files by the second the call's audio started
    /// (`dump-2026-11-24-13-09-30-dec.wav`), so a second call started within the same
    /// second overwrites the first's.
    pub fn heard(&self) -> Option<PathBuf> {
        let dir = self.heard_dir.as_ref()?;
        let newest = fs::read_dir(dir)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("dump-") && n.ends_with("-dec.wav"))
            })
            .max()?;
        wait_for(FINALISE_WAIT, || wav_finalised(&newest)).then_some(newest)
    }

    /// Ends baresip as an init system would: SIGTERM hangs up its calls (finalising their
    /// recordings) and un-registers; a second SIGTERM makes it exit at once, and if even
    /// that fails it is killed. Waits for it to exit.
    pub fn stop(&mut self) {
        let pid = self.child.id().to_string();
        for _ in 0..2 {
            if self.exited_within(Duration::ZERO) {
                return;
            }
            // Should it exit after the check, it stays a zombie until waited for, so the
            // signal cannot reach another process that took its pid.
            let _ = Command::new("kill")
                .args(["-TERM", &pid])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if self.exited_within(STOP_GRACE) {
                return;
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn exited_within(&mut self, timeout: Duration) -> bool {
        wait_for(timeout, || !matches!(self.child.try_wait(), Ok(None)))
    }
}

impl Drop for Softphone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
