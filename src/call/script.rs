//! Runs a dialplan's steps against the audio clock of a call, one 20 ms frame at a time.
//!
//! Sans-IO: the call task feeds each received frame and each DTMF digit; the script says what
//! to send back, whether to record, and when the call should end. Prompts are decoded before
//! the call starts, so nothing here touches the disk.

use crate::dialplan::{BotSpec, Step};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Samples in one frame of the internal audio format (16 kHz, 20 ms).
pub const FRAME: usize = 320;
/// Frames per second.
const FPS: u32 = 50;
/// Time one sent DTMF digit takes: the tone, its end packets and a pause before the next.
pub const DTMF_SLOT: std::time::Duration = std::time::Duration::from_millis(200);
/// [`DTMF_SLOT`] in frames.
const SLOT_FRAMES: u32 = DTMF_SLOT.as_millis() as u32 / 20;
/// How long each sent digit sounds.
pub const DTMF_TONE: std::time::Duration = std::time::Duration::from_millis(100);

/// What the dialplans play, ready before any call starts, 16 kHz mono: WAV files by path
/// and the texts of `say` steps by voice and text.
#[derive(Debug, Default)]
pub struct Prompts {
    files: HashMap<PathBuf, Arc<[i16]>>,
    spoken: HashMap<(Option<String>, String), Arc<[i16]>>,
}

impl Prompts {
    /// The decoded WAV file at `path`, if it was loaded.
    pub fn file(&self, path: &Path) -> Option<&Arc<[i16]>> {
        self.files.get(path)
    }

    /// The rendered speech of a `say` step (`voice` as the step gives it).
    pub fn spoken(&self, voice: Option<&str>, text: &str) -> Option<&Arc<[i16]>> {
        self.spoken
            .get(&(voice.map(str::to_owned), text.to_owned()))
    }

    /// Keeps the decoded WAV file at `path`.
    pub fn insert_file(&mut self, path: PathBuf, samples: Arc<[i16]>) {
        self.files.insert(path, samples);
    }

    /// Keeps the speech of a `say` step.
    pub fn insert_spoken(&mut self, voice: Option<String>, text: String, samples: Arc<[i16]>) {
        self.spoken.insert((voice, text), samples);
    }
}

/// What the script wants for one frame.
pub struct Turn {
    /// Audio to send to the caller.
    pub out: [i16; FRAME],
    /// Whether this frame belongs to a recording.
    pub record: bool,
    /// The script has finished: the call should hang up.
    pub hangup: bool,
    /// A DTMF digit to start sending to the caller now (RFC 4733).
    pub send_dtmf: Option<char>,
    /// Bot prompts that finished playing, or were cut short, during this frame.
    pub bot_played: usize,
    /// The bot's streamed audio ran out during this frame.
    pub bot_audio_played: bool,
}

/// What the caller's speaking cut short.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// Prompts stopped or dropped.
    pub prompts: usize,
    /// The bot's streamed audio was dropped.
    pub bot_audio: bool,
}

/// The position in a dialplan and the state of the current step.
pub struct Script {
    steps: Vec<Step>,
    prompts: Arc<Prompts>,
    next: usize,
    current: Current,
    /// Digits collected by a `collect_dtmf` step, for the call to report.
    pub collected: String,
}

enum Current {
    Starting,
    Playing {
        samples: Arc<[i16]>,
        pos: usize,
        looped: bool,
    },
    Holding {
        samples: Option<Arc<[i16]>>,
        pos: usize,
        frames_left: u32,
    },
    Echo,
    Recording {
        stop_on: Option<char>,
        frames_left: u32,
        /// A beep still playing before the recording starts.
        beep: Option<(Arc<[i16]>, usize)>,
    },
    Collecting {
        max: usize,
        terminator: Option<char>,
        frames_left: u32,
        got: usize,
    },
    Pausing {
        frames_left: u32,
    },
    /// Digits still to send (the next first), one every [`DTMF_SLOT`].
    SendingDtmf {
        digits: VecDeque<char>,
        frames_left: u32,
    },
    /// The bot has the call: what it says is queued here and played in order.
    Bot {
        spec: BotSpec,
        queue: VecDeque<Arc<[i16]>>,
        pos: usize,
        /// Audio the bot streams itself, played whenever no prompt of its queue is.
        stream: VecDeque<i16>,
        /// Set when the dialog is over: what follows the last queued prompt.
        ending: Option<BotEnding>,
    },
    Done,
}

/// What the script does once the bot's last words have played.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BotEnding {
    /// End the call.
    Hangup,
    /// Go on with the dialplan's next step.
    NextStep,
}

impl Script {
    /// A script over `steps`, with every prompt they name already decoded in `prompts`.
    pub fn new(steps: Vec<Step>, prompts: Arc<Prompts>) -> Script {
        Script {
            steps,
            prompts,
            next: 0,
            current: Current::Starting,
            collected: String::new(),
        }
    }

    /// Advances one frame: `input` is what the caller said during it.
    pub fn turn(&mut self, input: &[i16; FRAME]) -> Turn {
        if matches!(self.current, Current::Starting) {
            self.advance();
        }
        let mut out = [0i16; FRAME];
        let mut record = false;
        let mut finished = false;
        let mut send_dtmf = None;
        let mut bot_played = 0;
        let mut bot_audio_played = false;
        match &mut self.current {
            Current::Playing {
                samples,
                pos,
                looped,
            } => {
                finished = copy_prompt(samples, pos, *looped, &mut out);
            }
            Current::Holding {
                samples,
                pos,
                frames_left,
            } => {
                if let Some(s) = samples {
                    copy_prompt(s, pos, true, &mut out);
                }
                finished = count_down(frames_left);
            }
            Current::Echo => out = *input,
            Current::Recording {
                frames_left, beep, ..
            } => match beep {
                Some((samples, pos)) => {
                    if copy_prompt(samples, pos, false, &mut out) {
                        *beep = None;
                    }
                }
                None => {
                    record = true;
                    finished = count_down(frames_left);
                }
            },
            Current::Collecting { frames_left, .. } | Current::Pausing { frames_left } => {
                finished = count_down(frames_left);
            }
            Current::SendingDtmf {
                digits,
                frames_left,
            } => {
                if *frames_left % SLOT_FRAMES == 0 {
                    send_dtmf = digits.pop_front();
                }
                finished = count_down(frames_left);
            }
            Current::Bot {
                queue,
                pos,
                ending,
                stream,
                ..
            } => {
                if let Some(samples) = queue.front() {
                    if copy_prompt(samples, pos, false, &mut out) {
                        queue.pop_front();
                        *pos = 0;
                        bot_played += 1;
                    }
                } else if !stream.is_empty() {
                    let n = stream.len().min(FRAME);
                    out.iter_mut()
                        .zip(stream.drain(..n))
                        .for_each(|(o, s)| *o = s);
                    bot_audio_played = stream.is_empty();
                }
                if queue.is_empty() && stream.is_empty() {
                    match ending {
                        Some(BotEnding::NextStep) => finished = true,
                        Some(BotEnding::Hangup) => self.current = Current::Done,
                        None => {}
                    }
                }
            }
            Current::Starting | Current::Done => {}
        }
        if finished {
            self.advance();
        }
        Turn {
            out,
            record,
            hangup: matches!(self.current, Current::Done),
            send_dtmf,
            bot_played,
            bot_audio_played,
        }
    }

    /// The bot that has the call, if one has.
    pub fn bot(&self) -> Option<&BotSpec> {
        match &self.current {
            Current::Bot { spec, .. } => Some(spec),
            _ => None,
        }
    }

    /// How many of the bot's prompts are waiting to play (the one playing included).
    pub fn bot_queued(&self) -> usize {
        match &self.current {
            Current::Bot { queue, .. } => queue.len(),
            _ => 0,
        }
    }

    /// Samples of the bot's streamed audio waiting to play.
    pub fn bot_streamed(&self) -> usize {
        match &self.current {
            Current::Bot { stream, .. } => stream.len(),
            _ => 0,
        }
    }

    /// Queues the bot's words after what it already said; ignored once the bot's step is
    /// over. An empty clip counts as played at the next frame, like any other.
    pub fn bot_play(&mut self, samples: Arc<[i16]>) {
        if let Current::Bot { queue, .. } = &mut self.current {
            queue.push_back(samples);
        }
    }

    /// Appends audio the bot streams itself; ignored once the bot's step is over.
    pub fn bot_stream(&mut self, samples: &[i16]) {
        if let Current::Bot { stream, .. } = &mut self.current {
            stream.extend(samples);
        }
    }

    /// The bot is done: once its queued words have played, the script does `ending`.
    pub fn bot_end(&mut self, ending: BotEnding) {
        if let Current::Bot { ending: e, .. } = &mut self.current {
            *e = Some(ending);
        }
    }

    /// Takes the bot's audio out of the script, for a transfer to play it: the rest of the
    /// prompt playing now, and with `all` every prompt queued after it (the bot's goodbye);
    /// the rest is dropped. The script stays at the bot's step.
    pub fn take_bot_audio(&mut self, all: bool) -> Vec<i16> {
        let Current::Bot {
            queue, pos, stream, ..
        } = &mut self.current
        else {
            return Vec::new();
        };
        let mut rest: Vec<i16> = match queue.pop_front() {
            Some(playing) => playing.get(*pos..).unwrap_or_default().to_vec(),
            None => stream.iter().copied().collect(),
        };
        if all {
            queue.iter().for_each(|clip| rest.extend_from_slice(clip));
        }
        queue.clear();
        stream.clear();
        *pos = 0;
        rest
    }

    /// A DTMF digit from the caller: may end a recording or a collection.
    pub fn dtmf(&mut self, digit: char) {
        let done = match &mut self.current {
            Current::Recording { stop_on, .. } => *stop_on == Some(digit),
            Current::Collecting {
                max,
                terminator,
                got,
                ..
            } => {
                if *terminator == Some(digit) {
                    true
                } else {
                    self.collected.push(digit);
                    *got += 1;
                    *got >= *max
                }
            }
            _ => false,
        };
        if done {
            self.advance();
        }
    }

    /// The caller started speaking: a prompt playing (not looped music or hold) stops and
    /// the script goes on, so a caller who knows what to say need not wait; whatever the
    /// bot had queued or streamed is dropped too, as the caller is answering already.
    pub fn barge_in(&mut self) -> Cut {
        match &mut self.current {
            Current::Playing { looped: false, .. } => {
                self.advance();
                Cut {
                    prompts: 1,
                    bot_audio: false,
                }
            }
            Current::Bot {
                queue, pos, stream, ..
            } => {
                *pos = 0;
                let bot_audio = !stream.is_empty();
                stream.clear();
                Cut {
                    prompts: std::mem::take(queue).len(),
                    bot_audio,
                }
            }
            _ => Cut::default(),
        }
    }

    /// Whether the current step records the call.
    pub fn recording(&self) -> bool {
        matches!(self.current, Current::Recording { .. })
    }

    /// Moves to the next step that can run; steps whose prompt failed to load are skipped
    /// rather than played as silence.
    fn advance(&mut self) {
        self.current = loop {
            let Some(step) = self.steps.get(self.next).cloned() else {
                break Current::Done;
            };
            self.next += 1;
            if let Some(current) = self.start(step) {
                break current;
            }
        };
    }

    fn start(&self, step: Step) -> Option<Current> {
        let secs = |s: f32| (s.max(0.0) * FPS as f32).round() as u32;
        Some(match step {
            Step::Play { file, looped } => Current::Playing {
                samples: self.prompts.file(&file).filter(|s| !s.is_empty())?.clone(),
                pos: 0,
                looped,
            },
            Step::Say { text, voice } => Current::Playing {
                samples: self
                    .prompts
                    .spoken(voice.as_deref(), &text)
                    .filter(|s| !s.is_empty())?
                    .clone(),
                pos: 0,
                looped: false,
            },
            Step::Hold { file, secs: s } => Current::Holding {
                samples: file.and_then(|f| self.prompts.file(&f).cloned()),
                pos: 0,
                frames_left: s * FPS,
            },
            Step::Echo => Current::Echo,
            Step::Record {
                stop_on_dtmf,
                max_secs,
                beep,
            } => Current::Recording {
                stop_on: stop_on_dtmf,
                frames_left: max_secs * FPS,
                beep: beep
                    .and_then(|f| self.prompts.file(&f).cloned())
                    .map(|s| (s, 0)),
            },
            Step::CollectDtmf {
                max_digits,
                terminator,
                timeout_secs,
            } => Current::Collecting {
                max: max_digits,
                terminator,
                frames_left: timeout_secs * FPS,
                got: 0,
            },
            Step::Pause { secs: s } => Current::Pausing {
                frames_left: secs(s),
            },
            Step::SendDtmf { digits } => Current::SendingDtmf {
                frames_left: digits.chars().count() as u32 * SLOT_FRAMES,
                digits: digits.chars().collect(),
            },
            Step::Bot(spec) => Current::Bot {
                spec,
                queue: VecDeque::new(),
                pos: 0,
                stream: VecDeque::new(),
                ending: None,
            },
            Step::Hangup => Current::Done,
        })
    }
}

/// Copies the next frame of a prompt; true when a non-looping prompt has ended.
fn copy_prompt(samples: &[i16], pos: &mut usize, looped: bool, out: &mut [i16; FRAME]) -> bool {
    for o in out.iter_mut() {
        if *pos >= samples.len() {
            if !looped {
                return true;
            }
            *pos = 0;
        }
        *o = samples[*pos];
        *pos += 1;
    }
    !looped && *pos >= samples.len()
}

/// Counts a frame off a step's budget; true when it is used up.
fn count_down(frames_left: &mut u32) -> bool {
    *frames_left = frames_left.saturating_sub(1);
    *frames_left == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompts(entries: &[(&str, usize, i16)]) -> Arc<Prompts> {
        let mut prompts = Prompts::default();
        for (name, len, value) in entries {
            prompts.insert_file(PathBuf::from(name), vec![*value; *len].into());
        }
        Arc::new(prompts)
    }

    fn play(name: &str, looped: bool) -> Step {
        Step::Play {
            file: PathBuf::from(name),
            looped,
        }
    }

    const SILENT: [i16; FRAME] = [0; FRAME];

    #[test]
    fn plays_prompt_then_records_until_pound_then_hangs_up() {
        let steps = vec![
            play("greeting", false),
            Step::Record {
                stop_on_dtmf: Some('#'),
                max_secs: 60,
                beep: Some(PathBuf::from("beep")),
            },
        ];
        let mut s = Script::new(
            steps,
            prompts(&[("greeting", 2 * FRAME, 7), ("beep", FRAME, 9)]),
        );
        let t = s.turn(&SILENT);
        assert_eq!(t.out[0], 7);
        assert!(!t.record);
        s.turn(&SILENT);
        let beep = s.turn(&SILENT);
        assert_eq!(beep.out[0], 9, "the beep plays before recording");
        assert!(!beep.record);
        let voice = [100i16; FRAME];
        assert!(s.turn(&voice).record);
        assert!(s.recording());
        s.dtmf('5');
        assert!(s.turn(&voice).record, "only # ends the recording");
        s.dtmf('#');
        assert!(s.turn(&voice).hangup);
    }

    #[test]
    fn echo_returns_the_callers_audio_until_the_end() {
        let mut s = Script::new(vec![Step::Echo], prompts(&[]));
        let voice = [1234i16; FRAME];
        for _ in 0..100 {
            let t = s.turn(&voice);
            assert_eq!(t.out, voice);
            assert!(!t.hangup);
        }
    }

    #[test]
    fn looped_prompt_wraps_and_missing_prompt_is_skipped() {
        let mut s = Script::new(
            vec![play("missing", false), play("music", true)],
            prompts(&[("music", FRAME / 2, 3)]),
        );
        for _ in 0..10 {
            let t = s.turn(&SILENT);
            assert!(t.out.iter().all(|&x| x == 3));
            assert!(!t.hangup);
        }
    }

    #[test]
    fn record_stops_at_max_and_collect_takes_digits() {
        let steps = vec![
            Step::Record {
                stop_on_dtmf: None,
                max_secs: 1,
                beep: None,
            },
            Step::CollectDtmf {
                max_digits: 2,
                terminator: None,
                timeout_secs: 5,
            },
        ];
        let mut s = Script::new(steps, prompts(&[]));
        let recorded = (0..60).filter(|_| s.turn(&SILENT).record).count();
        assert_eq!(recorded, 50, "one second is 50 frames");
        s.dtmf('4');
        s.dtmf('2');
        assert_eq!(s.collected, "42");
        assert!(s.turn(&SILENT).hangup);
    }

    #[test]
    fn send_dtmf_hands_out_one_digit_per_slot() {
        let steps = vec![Step::SendDtmf {
            digits: "42".into(),
        }];
        let mut s = Script::new(steps, prompts(&[]));
        let mut sent = Vec::new();
        for frame in 0..30 {
            let turn = s.turn(&SILENT);
            if let Some(d) = turn.send_dtmf {
                sent.push((frame, d));
            }
            if turn.hangup {
                assert_eq!(frame, 19, "two digits take 400 ms: 20 frames");
                break;
            }
        }
        assert_eq!(sent, [(0, '4'), (10, '2')], "200 ms apart");
    }

    #[test]
    fn pause_and_hangup_steps() {
        let mut s = Script::new(vec![Step::Pause { secs: 0.1 }, Step::Hangup], prompts(&[]));
        let frames = (0..10).take_while(|_| !s.turn(&SILENT).hangup).count();
        assert_eq!(
            frames, 4,
            "100 ms is 5 frames; the fifth ends the pause and the call"
        );
    }

    #[test]
    fn say_plays_its_speech_and_barge_in_cuts_it() {
        let mut prompts = Prompts::default();
        prompts.insert_spoken(None, "Hello.".into(), vec![5i16; 3 * FRAME].into());
        prompts.insert_spoken(
            Some("en-us".into()),
            "Hello.".into(),
            vec![6i16; FRAME].into(),
        );
        let say = |voice: Option<&str>| Step::Say {
            text: "Hello.".into(),
            voice: voice.map(Into::into),
        };
        let mut script = Script::new(
            vec![say(Some("en-us")), say(None), Step::Hangup],
            Arc::new(prompts),
        );
        assert_eq!(script.turn(&SILENT).out[0], 6, "the step's own voice");
        assert_eq!(script.turn(&SILENT).out[0], 5);
        assert_eq!(script.barge_in().prompts, 1, "speech is cut like a prompt");
        assert!(script.turn(&SILENT).hangup);
    }

    #[test]
    fn speech_cuts_a_prompt_but_not_music_or_hold() {
        let mut script = Script::new(
            vec![play("welcome", false), play("music", true)],
            prompts(&[("welcome", 3 * FRAME, 100), ("music", FRAME, 7)]),
        );
        assert_eq!(script.turn(&[0; FRAME]).out[0], 100);
        assert_eq!(script.barge_in().prompts, 1, "the prompt stops");
        assert_eq!(script.turn(&[0; FRAME]).out[0], 7, "the next step at once");
        assert_eq!(script.barge_in(), Cut::default(), "looped music goes on");
        assert_eq!(script.turn(&[0; FRAME]).out[0], 7);
    }

    #[test]
    fn the_bot_queue_plays_in_order_is_cut_by_speech_and_ends_as_told() {
        let steps = vec![Step::Bot(BotSpec::Dialog), play("music", true)];
        let mut script = Script::new(steps, prompts(&[("music", FRAME, 7)]));
        assert_eq!(
            script.turn(&[0; FRAME]).out[0],
            0,
            "silence until the bot speaks"
        );
        assert_eq!(script.bot(), Some(&BotSpec::Dialog));
        script.bot_play(vec![1; FRAME].into());
        script.bot_play(vec![2; FRAME].into());
        script.bot_play(vec![3; FRAME].into());
        assert_eq!(script.bot_queued(), 3);
        let turn = script.turn(&[0; FRAME]);
        assert_eq!(
            (turn.out[0], turn.bot_played),
            (1, 1),
            "the first prompt, done"
        );
        let turn = script.turn(&[0; FRAME]);
        assert_eq!((turn.out[0], turn.bot_played), (2, 1));
        assert_eq!(script.barge_in().prompts, 1, "the rest is dropped");
        assert_eq!(script.bot_queued(), 0);
        script.bot_play(vec![4; FRAME].into());
        script.bot_end(BotEnding::NextStep);
        assert_eq!(
            script.turn(&[0; FRAME]).out[0],
            4,
            "the last words play first"
        );
        assert_eq!(script.bot(), None);
        assert_eq!(script.turn(&[0; FRAME]).out[0], 7, "then the next step");

        let mut script = Script::new(vec![Step::Bot(BotSpec::Dialog)], prompts(&[]));
        script.turn(&[0; FRAME]);
        script.bot_end(BotEnding::Hangup);
        assert!(script.turn(&[0; FRAME]).hangup);
    }

    #[test]
    fn an_empty_bot_clip_is_reported_played() {
        let mut script = Script::new(vec![Step::Bot(BotSpec::Dialog)], prompts(&[]));
        script.turn(&[0; FRAME]);
        script.bot_play(Vec::new().into());
        assert_eq!(script.turn(&[0; FRAME]).bot_played, 1);
    }

    #[test]
    fn streamed_bot_audio_plays_seamlessly_after_prompts_and_is_cut_by_speech() {
        let mut script = Script::new(vec![Step::Bot(BotSpec::Dialog)], prompts(&[]));
        script.turn(&[0; FRAME]);
        // Chunks that do not fall on frame boundaries still play back to back.
        let audio: Vec<i16> = (1..=(2 * FRAME + 10) as i16).collect();
        script.bot_stream(&audio[..100]);
        script.bot_stream(&audio[100..]);
        script.bot_play(vec![-1; FRAME].into());
        assert_eq!(script.bot_streamed(), 2 * FRAME + 10);
        assert_eq!(script.turn(&[0; FRAME]).out[0], -1, "a prompt goes first");
        let turn = script.turn(&[0; FRAME]);
        assert_eq!((turn.out[0], turn.out[FRAME - 1]), (1, FRAME as i16));
        let turn = script.turn(&[0; FRAME]);
        assert_eq!(turn.out[0], FRAME as i16 + 1);
        assert!(!turn.bot_audio_played);
        let turn = script.turn(&[0; FRAME]);
        assert_eq!((turn.out[9], turn.out[10]), (2 * FRAME as i16 + 10, 0));
        assert!(turn.bot_audio_played, "the stream ran out");

        script.bot_stream(&audio);
        script.turn(&[0; FRAME]);
        assert_eq!(
            script.barge_in(),
            Cut {
                prompts: 0,
                bot_audio: true
            }
        );
        assert_eq!(script.bot_streamed(), 0);
        assert_eq!(script.turn(&[0; FRAME]).out[0], 0);
        script.bot_end(BotEnding::Hangup);
        assert!(script.turn(&[0; FRAME]).hangup);
    }
}
