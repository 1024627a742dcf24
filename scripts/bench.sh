#!/usr/bin/env bash
# Runs baton's benchmarks (signalling with SIPp, media with the bench's own RTP generator
# and rtpengine as the reference, the per-frame resampler beside rubato's, speech-to-text
# latency under load and beside whisper.cpp's CLI and faster-whisper, prosody's CPU per
# call, the shared context store, text to speech, and the bank bot's turn latency) and
# keeps their output in target/bench/.
# Parameters are the BENCH_* environment variables described at the top of each bench:
# benches/{signalling,media,speech,context,tts,bot_turn}.rs, crates/media/benches/resample.rs
# and crates/speech/benches/{stt,prosody,peers}.rs.
# BENCHMARKS.md explains the figures.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in sipp rtpengine; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: run scripts/install-deps.sh --bench" >&2; exit 1; }
done

out=target/bench
mkdir -p "$out"
stamp=$(date +%Y%m%d-%H%M%S)
for bench in signalling media speech context tts bot_turn; do
  echo "== $bench (output in $out/$bench-$stamp.txt)"
  cargo bench --locked --bench "$bench" 2>&1 | tee "$out/$bench-$stamp.txt"
done
echo "== resample (output in $out/resample-$stamp.txt)"
cargo bench --locked -p baton-media --bench resample 2>&1 | tee "$out/resample-$stamp.txt"
echo "== stt (output in $out/stt-$stamp.txt)"
cargo bench --locked -p baton-speech --bench stt 2>&1 | tee "$out/stt-$stamp.txt"
echo "== prosody (output in $out/prosody-$stamp.txt)"
cargo bench --locked -p baton-speech --bench prosody 2>&1 | tee "$out/prosody-$stamp.txt"
echo "== stt-peers: whisper.cpp's CLI and faster-whisper beside baton (output in $out/stt-peers-$stamp.txt)"
scripts/stt-peers.sh 2>&1 | tee "$out/stt-peers-$stamp.txt"
