//! Voice activity detection: cuts a leg's audio into utterances.
//!
//! Energy against an adaptive noise floor, with the two properties that tell speech from
//! the noise of a phone line: speech is loud against the floor, and it is *modulated* (its
//! level swings by 10 dB or more several times a second with syllables), while hum, hiss
//! and line noise are steady. An utterance starts after a few loud frames, ends after a
//! hangover of quiet ones, and is thrown away if it turns out to be steady noise (a second
//! of it while it goes on, or its loud frames when it ends) or too short for a word, so that
//! no transcript is ever made from silence or noise.

use std::collections::VecDeque;

use crate::FRAME_SAMPLES;

/// Tuning of the detector; the defaults suit telephone speech.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadConfig {
    /// How far above the noise floor a frame must be to count as speech, in dB.
    pub onset_db: f32,
    /// Level below which nothing is speech whatever the floor, in dBFS.
    pub min_level_db: f32,
    /// Loud frames in a row that start an utterance (3 = 60 ms).
    pub onset_frames: usize,
    /// Quiet frames in a row that end an utterance (25 = 500 ms).
    pub hangover_frames: usize,
    /// Loud frames an utterance needs in all to be speech (10 = 200 ms; a single word has
    /// more). A click, or a loud last packet stretched by loss concealment when the caller's
    /// RTP stops, is shorter, and whisper makes words up from it.
    pub min_speech_frames: usize,
    /// An utterance longer than this is cut (and a new one starts if speech goes on), so
    /// a monologue still gets finals and memory stays bounded (frames; 1,000 = 20 s).
    pub max_frames: usize,
    /// Frames of audio kept from before the onset, so the first syllable is not clipped.
    pub preroll_frames: usize,
    /// Below this spread of frame levels (dB, over the last second, or over an utterance's
    /// loud frames when it ends) a sound is steady noise, not speech.
    pub min_modulation_db: f32,
}

impl Default for VadConfig {
    fn default() -> Self {
        Self {
            onset_db: 12.0,
            min_level_db: -50.0,
            onset_frames: 3,
            hangover_frames: 25,
            min_speech_frames: 10,
            max_frames: 1_000,
            preroll_frames: 10,
            min_modulation_db: 3.0,
        }
    }
}

/// What the detector saw in a frame.
#[derive(Debug, Clone, PartialEq)]
pub enum VadEvent {
    /// Speech began; `frame` is the index of its first frame (counted from the first frame
    /// fed), pre-roll not included.
    SpeechStart { frame: u64 },
    /// The speaker paused: the utterance may be over. The audio so far is exactly what
    /// [`VadEvent::Utterance`] will carry if the pause lasts the hangover, so transcribing
    /// it now saves the hangover's wait; if speech goes on, the utterance grows instead.
    Pause { first_frame: u64, samples: Vec<i16> },
    /// An utterance ended: all of its audio, pre-roll included, and the index of the
    /// frame where the audio starts.
    Utterance { first_frame: u64, samples: Vec<i16> },
    /// What looked like speech was steady noise, or too short to be a word: forget it.
    Discarded,
}

/// Frames of level history used to measure modulation (1 s).
const MODULATION_WINDOW: usize = 50;
/// How fast the floor follows the level down (per frame, fraction of the gap).
const FLOOR_FALL: f32 = 0.3;
/// How fast the floor creeps up while no one speaks (per frame, fraction of the gap).
const FLOOR_RISE: f32 = 0.02;
/// Level of digital silence, so that log(0) never appears.
const SILENCE_DB: f32 = -100.0;

/// The detector for one leg. Feed it every 20 ms frame in order.
#[derive(Debug)]
pub struct Vad {
    config: VadConfig,
    frame: u64,
    floor_db: f32,
    levels: VecDeque<f32>,
    preroll: VecDeque<Vec<i16>>,
    loud_run: usize,
    quiet_run: usize,
    /// The utterance being collected: its first frame and its samples.
    current: Option<(u64, Vec<i16>)>,
    /// Frames of the current utterance whose level was above the onset threshold.
    speech_frames: usize,
    /// Sum and sum of squares of those frames' levels, for their spread.
    loud_sum: f64,
    loud_sum_sq: f64,
}

impl Vad {
    /// A detector with `config`.
    pub fn new(config: VadConfig) -> Self {
        Self {
            config,
            frame: 0,
            floor_db: f32::NAN,
            levels: VecDeque::with_capacity(MODULATION_WINDOW),
            preroll: VecDeque::with_capacity(config.preroll_frames + 1),
            loud_run: 0,
            quiet_run: 0,
            current: None,
            speech_frames: 0,
            loud_sum: 0.0,
            loud_sum_sq: 0.0,
        }
    }

    /// True while an utterance is in progress.
    pub fn in_speech(&self) -> bool {
        self.current.is_some()
    }

    /// The utterance in progress so far: the frame its audio starts at, and the audio.
    pub fn current(&self) -> Option<(u64, &[i16])> {
        self.current
            .as_ref()
            .map(|(first, audio)| (*first, audio.as_slice()))
    }

    /// Ends the utterance in progress, if any, as if the speaker had stopped (the audio
    /// ended): its first frame and audio. `None` too when what was collected is too short
    /// to be speech.
    pub fn flush(&mut self) -> Option<(u64, Vec<i16>)> {
        self.loud_run = 0;
        self.quiet_run = 0;
        let current = self.current.take();
        current.filter(|_| self.sounds_like_speech())
    }

    /// The current noise floor, in dBFS.
    pub fn noise_floor_db(&self) -> f32 {
        self.floor_db
    }

    /// Takes one frame of [`FRAME_SAMPLES`] samples (a shorter or longer slice is used as
    /// it is); returns what happened, if anything.
    pub fn push(&mut self, samples: &[i16]) -> Option<VadEvent> {
        let index = self.frame;
        self.frame += 1;
        let level = level_db(samples);
        if self.floor_db.is_nan() {
            self.floor_db = level;
        }
        if self.levels.len() == MODULATION_WINDOW {
            self.levels.pop_front();
        }
        self.levels.push_back(level);
        let threshold = (self.floor_db + self.config.onset_db).max(self.config.min_level_db);
        let loud = level > threshold;
        if loud {
            self.loud_run += 1;
            self.quiet_run = 0;
        } else {
            self.quiet_run += 1;
            self.loud_run = 0;
        }

        if loud && self.current.is_some() {
            self.speech_frames += 1;
            self.loud_sum += f64::from(level);
            self.loud_sum_sq += f64::from(level).powi(2);
        }
        let event = match &mut self.current {
            None => {
                self.track_floor(level, false);
                self.preroll.push_back(samples.to_vec());
                if self.preroll.len() > self.config.preroll_frames + self.config.onset_frames {
                    self.preroll.pop_front();
                }
                if self.loud_run >= self.config.onset_frames {
                    let start = index + 1 - self.config.onset_frames as u64;
                    let kept = self.preroll.len() as u64;
                    let mut audio = Vec::with_capacity(FRAME_SAMPLES * 64);
                    for f in self.preroll.drain(..) {
                        audio.extend_from_slice(&f);
                    }
                    self.current = Some((index + 1 - kept, audio));
                    let onset = self.levels.iter().rev().take(self.config.onset_frames);
                    self.speech_frames = self.config.onset_frames;
                    self.loud_sum = onset.clone().map(|&l| f64::from(l)).sum();
                    self.loud_sum_sq = onset.map(|&l| f64::from(l).powi(2)).sum();
                    Some(VadEvent::SpeechStart { frame: start })
                } else {
                    None
                }
            }
            Some((first, audio)) => {
                audio.extend_from_slice(samples);
                let frames = (index + 1 - *first) as usize;
                // An utterance keeps `preroll_frames` of its quiet tail (see below): at that
                // point of a pause its audio is what the final would hold.
                let pause =
                    (self.quiet_run == self.config.preroll_frames).then(|| VadEvent::Pause {
                        first_frame: *first,
                        samples: audio.clone(),
                    });
                if self.steady() {
                    // A sound that has not varied for a second is noise: take it as the
                    // new floor and drop what was collected.
                    self.floor_db = level;
                    self.current = None;
                    self.loud_run = 0;
                    Some(VadEvent::Discarded)
                } else if self.quiet_run >= self.config.hangover_frames
                    || frames >= self.config.max_frames
                {
                    let (first, mut audio) = self.current.take().expect("in an utterance");
                    self.loud_run = 0;
                    if !self.sounds_like_speech() {
                        return Some(VadEvent::Discarded);
                    }
                    // The hangover is silence: keep only a little of it.
                    let tail = self.quiet_run.saturating_sub(self.config.preroll_frames);
                    audio.truncate(audio.len().saturating_sub(tail * samples.len()));
                    Some(VadEvent::Utterance {
                        first_frame: first,
                        samples: audio,
                    })
                } else {
                    self.track_floor(level, true);
                    pause.filter(|_| self.sounds_like_speech())
                }
            }
        };
        event
    }

    /// The utterance's loud frames are enough for a word, and they vary as syllables do.
    /// A sound that stopped (or whose call ended) before a second of it showed it steady,
    /// such as a beep or a hum heard again after a gap, fails the second test.
    fn sounds_like_speech(&self) -> bool {
        let n = self.speech_frames as f64;
        let mean = self.loud_sum / n;
        let spread = (self.loud_sum_sq / n - mean * mean).max(0.0).sqrt();
        self.speech_frames >= self.config.min_speech_frames
            && spread >= f64::from(self.config.min_modulation_db)
    }

    /// Follows the level down quickly and up slowly (hardly at all during speech, whose
    /// pauses would otherwise drag the floor up).
    fn track_floor(&mut self, level: f32, speaking: bool) {
        let rate = if level < self.floor_db {
            FLOOR_FALL
        } else if speaking {
            FLOOR_RISE / 10.0
        } else {
            FLOOR_RISE
        };
        self.floor_db += (level - self.floor_db) * rate;
    }

    /// The last second of levels hardly varies: steady noise.
    fn steady(&self) -> bool {
        if self.levels.len() < MODULATION_WINDOW {
            return false;
        }
        let n = self.levels.len() as f32;
        let mean = self.levels.iter().sum::<f32>() / n;
        let var = self.levels.iter().map(|l| (l - mean).powi(2)).sum::<f32>() / n;
        var.sqrt() < self.config.min_modulation_db
    }
}

impl Default for Vad {
    fn default() -> Self {
        Self::new(VadConfig::default())
    }
}

/// RMS level of a frame in dBFS (full scale sine ≈ −3 dB).
pub fn level_db(samples: &[i16]) -> f32 {
    if samples.is_empty() {
        return SILENCE_DB;
    }
    let energy: f64 = samples.iter().map(|&s| f64::from(s).powi(2)).sum();
    let rms = (energy / samples.len() as f64).sqrt() / 32_768.0;
    if rms <= 0.0 {
        SILENCE_DB
    } else {
        (20.0 * rms.log10()).max(f64::from(SILENCE_DB)) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic noise source (xorshift).
    struct Noise(u64);

    impl Noise {
        fn sample(&mut self, amplitude: f64) -> i16 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let u = (self.0 >> 11) as f64 / (1u64 << 53) as f64;
            ((u * 2.0 - 1.0) * amplitude) as i16
        }
    }

    /// Speech-like sound: a 140 Hz voice with harmonics, its level swung by syllables at
    /// 4 Hz, over a little line noise.
    fn voice(frames: usize, start: usize, noise: &mut Noise) -> Vec<Vec<i16>> {
        (0..frames)
            .map(|f| {
                (0..FRAME_SAMPLES)
                    .map(|i| {
                        let n = (start + f) * FRAME_SAMPLES + i;
                        let t = n as f64 / 16_000.0;
                        let syllable =
                            (0.5 + 0.5 * (2.0 * std::f64::consts::PI * 4.0 * t).sin()).powi(2);
                        let tone: f64 = (1..=5)
                            .map(|h| {
                                (2.0 * std::f64::consts::PI * 140.0 * h as f64 * t).sin() / h as f64
                            })
                            .sum();
                        (6_000.0 * syllable * tone) as i16 + noise.sample(30.0)
                    })
                    .collect()
            })
            .collect()
    }

    fn quiet(frames: usize, amplitude: f64, noise: &mut Noise) -> Vec<Vec<i16>> {
        (0..frames)
            .map(|_| {
                (0..FRAME_SAMPLES)
                    .map(|_| noise.sample(amplitude))
                    .collect()
            })
            .collect()
    }

    fn run(vad: &mut Vad, frames: &[Vec<i16>]) -> Vec<VadEvent> {
        frames.iter().filter_map(|f| vad.push(f)).collect()
    }

    #[test]
    fn silence_and_line_hiss_are_not_speech() {
        let mut noise = Noise(7);
        let mut vad = Vad::default();
        assert!(run(&mut vad, &vec![vec![0; FRAME_SAMPLES]; 500]).is_empty());
        assert!(run(&mut vad, &quiet(500, 40.0, &mut noise)).is_empty());
    }

    #[test]
    fn steady_loud_noise_is_discarded_not_transcribed() {
        let mut noise = Noise(11);
        let mut vad = Vad::default();
        let mut frames = quiet(50, 30.0, &mut noise);
        frames.extend(quiet(500, 3_000.0, &mut noise));
        let events = run(&mut vad, &frames);
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, VadEvent::Utterance { .. })),
            "{:?}",
            events
                .iter()
                .map(std::mem::discriminant)
                .collect::<Vec<_>>()
        );
        assert!(events.contains(&VadEvent::Discarded));
        // Having learnt the noise, it stays quiet.
        assert!(run(&mut vad, &quiet(200, 3_000.0, &mut noise)).is_empty());
    }

    #[test]
    fn a_pause_offers_the_final_audio_early_and_speech_after_it_grows_the_utterance() {
        let mut noise = Noise(5);
        let mut vad = Vad::default();
        let mut frames = quiet(50, 30.0, &mut noise);
        frames.extend(voice(60, 0, &mut noise));
        // A short pause inside the utterance, then more speech, then the end.
        frames.extend(quiet(15, 30.0, &mut noise));
        frames.extend(voice(40, 75, &mut noise));
        frames.extend(quiet(60, 30.0, &mut noise));
        let events = run(&mut vad, &frames);
        let pauses: Vec<&Vec<i16>> = events
            .iter()
            .filter_map(|e| match e {
                VadEvent::Pause { samples, .. } => Some(samples),
                _ => None,
            })
            .collect();
        let finals: Vec<&Vec<i16>> = events
            .iter()
            .filter_map(|e| match e {
                VadEvent::Utterance { samples, .. } => Some(samples),
                _ => None,
            })
            .collect();
        assert_eq!(finals.len(), 1, "one utterance across the short pause");
        assert_eq!(pauses.len(), 2, "a pause inside, and one at the end");
        assert!(
            pauses[0].len() < finals[0].len(),
            "speech went on after the first"
        );
        assert_eq!(
            pauses[1], finals[0],
            "the last pause held exactly the final audio"
        );
    }

    #[test]
    fn speech_between_pauses_is_one_utterance_with_its_onset() {
        let mut noise = Noise(3);
        let mut vad = Vad::default();
        let mut frames = quiet(50, 30.0, &mut noise);
        frames.extend(voice(100, 50, &mut noise)); // 2 s of speech from frame 50
        frames.extend(quiet(60, 30.0, &mut noise));
        let events = run(&mut vad, &frames);
        let starts: Vec<u64> = events
            .iter()
            .filter_map(|e| match e {
                VadEvent::SpeechStart { frame } => Some(*frame),
                _ => None,
            })
            .collect();
        let utterances: Vec<(u64, usize)> = events
            .iter()
            .filter_map(|e| match e {
                VadEvent::Utterance {
                    first_frame,
                    samples,
                } => Some((*first_frame, samples.len())),
                _ => None,
            })
            .collect();
        assert_eq!(starts.len(), 1, "{events:?}");
        assert!(
            (50..=56).contains(&starts[0]),
            "onset at frame {}",
            starts[0]
        );
        assert_eq!(utterances.len(), 1);
        let (first, len) = utterances[0];
        assert!(first <= 50, "pre-roll keeps the first syllable: {first}");
        let secs = len as f64 / 16_000.0;
        assert!((2.0..=2.6).contains(&secs), "utterance of {secs} s");
    }

    #[test]
    fn a_monologue_is_cut_into_bounded_utterances() {
        let mut noise = Noise(5);
        let mut vad = Vad::new(VadConfig {
            max_frames: 250,
            ..VadConfig::default()
        });
        let frames = voice(1_000, 0, &mut noise);
        let events = run(&mut vad, &frames);
        let lens: Vec<usize> = events
            .iter()
            .filter_map(|e| match e {
                VadEvent::Utterance { samples, .. } => Some(samples.len()),
                _ => None,
            })
            .collect();
        assert!(lens.len() >= 3, "{lens:?}");
        assert!(lens.iter().all(|&l| l <= 260 * FRAME_SAMPLES), "{lens:?}");
    }

    /// Utterance lengths in frames, and whether anything was discarded as noise.
    fn utterance_frames(events: &[VadEvent]) -> Vec<usize> {
        events
            .iter()
            .filter_map(|e| match e {
                VadEvent::Utterance { samples, .. } => Some(samples.len() / FRAME_SAMPLES),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_click_is_not_an_utterance_but_a_short_word_is() {
        let mut noise = Noise(13);
        // A loud last packet, repeated and faded by loss concealment when the RTP stops.
        let click = |noise: &mut Noise| -> Vec<Vec<i16>> {
            [1.0, 0.75, 0.5, 0.25, 0.1]
                .iter()
                .map(|g| {
                    (0..FRAME_SAMPLES)
                        .map(|_| noise.sample(12_000.0 * g))
                        .collect()
                })
                .collect()
        };
        let mut vad = Vad::default();
        let mut frames = vec![vec![0; FRAME_SAMPLES]; 100];
        frames.extend(click(&mut noise));
        frames.extend(vec![vec![0; FRAME_SAMPLES]; 60]);
        let events = run(&mut vad, &frames);
        assert!(utterance_frames(&events).is_empty(), "{events:?}");
        assert!(events.contains(&VadEvent::Discarded), "{events:?}");

        // The call ends during the click: nothing to transcribe either.
        let mut vad = Vad::default();
        run(&mut vad, &vec![vec![0; FRAME_SAMPLES]; 100]);
        run(&mut vad, &click(&mut noise));
        assert!(vad.in_speech());
        assert_eq!(vad.flush(), None);

        // A word of 300 ms is still heard, at the end of the audio too.
        let mut vad = Vad::default();
        let mut frames = vec![vec![0; FRAME_SAMPLES]; 100];
        frames.extend(voice(15, 100, &mut noise));
        frames.extend(vec![vec![0; FRAME_SAMPLES]; 60]);
        assert_eq!(utterance_frames(&run(&mut vad, &frames)).len(), 1);
        let mut vad = Vad::default();
        run(&mut vad, &vec![vec![0; FRAME_SAMPLES]; 100]);
        run(&mut vad, &voice(15, 100, &mut noise));
        assert!(vad.flush().is_some());
    }

    /// A steady tone at `hz`, `frames` long.
    fn tone(hz: f64, amplitude: f64, frames: usize) -> Vec<Vec<i16>> {
        (0..frames)
            .map(|f| {
                (0..FRAME_SAMPLES)
                    .map(|i| {
                        let t = (f * FRAME_SAMPLES + i) as f64 / 16_000.0;
                        (amplitude * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn a_beep_or_a_hum_heard_again_after_a_gap_is_not_an_utterance() {
        let silence = |frames| vec![vec![0i16; FRAME_SAMPLES]; frames];
        let mut vad = Vad::default();
        let mut frames = silence(50);
        frames.extend(tone(1_000.0, 10_000.0, 20)); // a 400 ms beep
        frames.extend(silence(50));
        let events = run(&mut vad, &frames);
        assert!(utterance_frames(&events).is_empty(), "{events:?}");

        // A hum, learnt as the floor; then a gap in the audio (an RTP underrun) drags the
        // floor down and the hum sounds new again, for less than the second that would show
        // it steady before it stops.
        let mut vad = Vad::default();
        let mut frames = silence(50);
        frames.extend(tone(50.0, 20_000.0, 100));
        frames.extend(silence(8));
        frames.extend(tone(50.0, 20_000.0, 30));
        frames.extend(silence(50));
        let events = run(&mut vad, &frames);
        assert!(utterance_frames(&events).is_empty(), "{events:?}");
        assert!(
            events.iter().filter(|e| **e == VadEvent::Discarded).count() >= 2,
            "{events:?}"
        );

        // The same when the call ends while the hum is back.
        let mut vad = Vad::default();
        run(&mut vad, &silence(50));
        run(&mut vad, &tone(50.0, 20_000.0, 100));
        run(&mut vad, &silence(8));
        run(&mut vad, &tone(50.0, 20_000.0, 30));
        assert!(vad.in_speech());
        assert_eq!(vad.flush(), None);
    }

    /// The "ten-minute monologue" of the bad-input requirement, in accelerated time: 30,000
    /// frames of speech with no pause. It is cut at the 20 s cap into finals that cover all
    /// of it, and what the detector holds never grows past one cap.
    #[test]
    fn a_ten_minute_monologue_is_cut_at_the_cap_and_held_audio_stays_bounded() {
        const MINUTES: usize = 10;
        const FRAMES: usize = MINUTES * 60 * 50;
        let cap = VadConfig::default().max_frames;
        let mut noise = Noise(17);
        let mut vad = Vad::default();
        let mut events = Vec::new();
        let mut most_held = 0;
        for start in (0..FRAMES).step_by(500) {
            for frame in voice(500, start, &mut noise) {
                events.extend(vad.push(&frame));
                let held = vad.current().map_or(0, |(_, audio)| audio.len());
                most_held = most_held.max(held);
            }
        }
        events.extend(
            vad.flush()
                .map(|(first_frame, samples)| VadEvent::Utterance {
                    first_frame,
                    samples,
                }),
        );
        assert!(
            !events.contains(&VadEvent::Discarded),
            "speech taken for noise"
        );
        assert!(most_held <= cap * FRAME_SAMPLES, "held {most_held} samples");
        let lens = utterance_frames(&events);
        assert!(lens.iter().all(|&l| l <= cap), "{lens:?}");
        // One final per 20 s, give or take the cut the last one ends on.
        let expected = FRAMES / cap;
        assert!(
            (expected..=expected + 1).contains(&lens.len()),
            "{} finals: {lens:?}",
            lens.len()
        );
        // A cut loses at most the onset frames before the next utterance starts.
        let covered: usize = lens.iter().sum();
        assert!(
            covered + lens.len() * VadConfig::default().onset_frames >= FRAMES,
            "{covered} of {FRAMES} frames in finals"
        );
    }

    #[test]
    fn level_of_full_scale_sine_and_silence() {
        let sine: Vec<i16> = (0..FRAME_SAMPLES)
            .map(|i| {
                (32_767.0 * (2.0 * std::f64::consts::PI * 1_000.0 * i as f64 / 16_000.0).sin())
                    as i16
            })
            .collect();
        assert!((level_db(&sine) + 3.01).abs() < 0.1);
        assert_eq!(level_db(&[0; FRAME_SAMPLES]), SILENCE_DB);
        assert_eq!(level_db(&[]), SILENCE_DB);
    }
}
