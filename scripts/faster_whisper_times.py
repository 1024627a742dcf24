#!/usr/bin/env python3
"""Times faster-whisper on WAV files for crates/speech/benches/peers.rs.

Usage: faster_whisper_times.py CT2_MODEL_DIR COMPUTE_TYPE[,COMPUTE_TYPE...]

Loads the model once per compute type (one CPU thread each) and prints
"ready<TAB>FASTER_WHISPER_VERSION<TAB>CTRANSLATE2_VERSION"; then for each line
"COMPUTE_TYPE<TAB>WAV_PATH" on standard input prints "ok<TAB>SECONDS<TAB>TEXT" or
"error<TAB>MESSAGE", one line each (tab-separated rather than JSON, so the bench needs
no JSON parser). The bench sends the requests, so it can interleave them with the other
engines; it closes standard input to stop this.

The WAV (16 kHz mono 16-bit) is read here, outside the timing, and given to faster-whisper
as the same float samples the other engines compute from, so its own decoder (PyAV)
plays no part. The timing covers transcribe() and consuming its segment generator, where
faster-whisper does the real work.
"""

import sys
import time
import wave

import ctranslate2
import faster_whisper
import numpy as np
from faster_whisper import WhisperModel


def samples(path):
    with wave.open(path, "rb") as w:
        if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (16000, 1, 2):
            raise ValueError(f"{path}: not 16 kHz mono 16-bit")
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / 32768.0


def transcribe(model, audio):
    # Greedy (beam 1, one candidate on fallback), English, no VAD: what baton does.
    segments, _ = model.transcribe(
        audio, language="en", beam_size=1, best_of=1, vad_filter=False
    )
    return " ".join(" ".join(s.text.split()) for s in segments)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    model_dir, compute_types = sys.argv[1], sys.argv[2].split(",")
    models = {
        ct: WhisperModel(
            model_dir, device="cpu", compute_type=ct, cpu_threads=1, num_workers=1
        )
        for ct in compute_types
    }
    print(f"ready\t{faster_whisper.__version__}\t{ctranslate2.__version__}", flush=True)
    for line in sys.stdin:
        try:
            compute_type, path = line.rstrip("\n").split("\t", 1)
            audio = samples(path)
            started = time.perf_counter()
            text = transcribe(models[compute_type], audio)
            seconds = time.perf_counter() - started
            print(f"ok\t{seconds:.6f}\t{text}", flush=True)
        except Exception as e:  # the bench reports it and stops
            message = " ".join(f"{type(e).__name__}: {e}".split())
            print(f"error\t{message}", flush=True)


if __name__ == "__main__":
    main()
