//! baresip as an agent's softphone: headless, registered to baton with digest credentials,
//! answering on its own, its audio read from and written to files. Killed when dropped.

use super::ports::free_udp_tcp_port;
use super::{tail, Baton};
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A running baresip.
pub struct Softphone {
    child: Child,
    pub dir: PathBuf,
    /// Where its SIP stack listens.
    pub sip_port: u16,
}

impl Softphone {
    /// Starts baresip registering `user` with `password` to `baton`.
    pub fn start(baton: &Baton, user: &str, password: &str) -> Softphone {
        let dir = baton.dir.join(format!("softphone-{user}"));
        fs::create_dir_all(&dir).expect("softphone dir");
        let sip_port = free_udp_tcp_port();
        // An 8 kHz WAV of silence to send: baresip will not answer without a source.
        let source = dir.join("source.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut wav = hound::WavWriter::create(&source, spec).expect("source wav");
        for _ in 0..8000 * 120 {
            wav.write_sample(0i16).expect("sample");
        }
        wav.finalize().expect("source wav");
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
                 module_app account.so\n\
                 module_app menu.so\n",
                source.display()
            ),
        )
        .expect("softphone config");
        fs::write(
            dir.join("accounts"),
            format!(
                "<sip:{user}@{}>;auth_pass={password};answermode=auto;\
                 audio_codecs=PCMU,PCMA;regint=600\n",
                baton.sip
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
            dir,
            sip_port,
        }
    }

    /// The end of its log, for a failure message.
    pub fn log(&self) -> String {
        tail(&self.dir.join("baresip.log"), 30)
    }
}

impl Drop for Softphone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
