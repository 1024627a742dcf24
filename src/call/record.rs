//! Writes a call's two directions to WAV files named by the call id.

use crate::calls::{self, CallHandle};
use baton_media::{AudioFrame, SAMPLE_RATE};
use hound::{SampleFormat, WavSpec, WavWriter};
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use tracing::warn;

type Writer = WavWriter<BufWriter<File>>;

/// The caller's audio in `<id>-in.wav`, baton's in `<id>-out.wav`, 16 kHz mono 16-bit.
pub(super) struct Recorder {
    inbound: Option<Writer>,
    outbound: Option<Writer>,
}

impl Recorder {
    /// Opens both files and lists them on the call; a file that cannot be created is
    /// logged and skipped, the call goes on.
    pub(super) fn create(dir: &Path, id: &str, info: &CallHandle) -> Recorder {
        let spec = WavSpec {
            channels: 1,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: SampleFormat::Int,
        };
        let open = |suffix: &str| {
            let path = dir.join(format!("{id}-{suffix}.wav"));
            let w = std::fs::create_dir_all(dir)
                .map_err(hound::Error::IoError)
                .and_then(|()| WavWriter::create(&path, spec));
            match w {
                Ok(w) => {
                    calls::lock(info)
                        .recordings
                        .push(path.display().to_string());
                    Some(w)
                }
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "cannot record");
                    None
                }
            }
        };
        Recorder {
            inbound: open("in"),
            outbound: open("out"),
        }
    }

    /// Appends one frame of each direction.
    pub(super) fn write(&mut self, inbound: &AudioFrame, outbound: &AudioFrame) {
        for (w, frame) in [(&mut self.inbound, inbound), (&mut self.outbound, outbound)] {
            if let Some(writer) = w {
                let mut i16w = writer.get_i16_writer(frame.len() as u32);
                for s in frame.iter() {
                    i16w.write_sample(*s);
                }
                if let Err(e) = i16w.flush() {
                    warn!(error = %e, "recording write failed; recording stopped");
                    *w = None;
                }
            }
        }
    }

    /// Completes the WAV headers.
    pub(super) fn finish(self) {
        for w in [self.inbound, self.outbound].into_iter().flatten() {
            if let Err(e) = w.finalize() {
                warn!(error = %e, "recording not finalised");
            }
        }
    }
}
