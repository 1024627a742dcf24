#!/usr/bin/env bash
# Regenerates the prompt audio in media/ with espeak-ng (speech) and sox (tones, music,
# format). Every file is 16 kHz mono 16-bit PCM WAV. The WAVs are committed, so a fresh
# clone needs neither tool; run this only after changing a text or a sound below.
# Output is repeatable: dithering is off, so the same tools give the same bytes.
set -euo pipefail

cd "$(dirname "$0")/../media"
for tool in espeak-ng sox; do
  command -v "$tool" >/dev/null || { echo "make-prompts: $tool is missing (scripts/install-deps.sh installs it)" >&2; exit 1; }
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The format every prompt is stored in; -D turns dithering off so output is repeatable.
out=(-D -r 16000 -c 1 -b 16 -e signed-integer)

# speak FILE TEXT: British English at a calm pace, normalised to -3 dBFS, with a short
# silence either side so it does not start or stop abruptly on a phone line.
speak() {
  espeak-ng -v en-gb -s 150 -w "$tmp/speech.wav" "$2"
  sox -D "$tmp/speech.wav" "${out[@]}" "$1" norm -3 pad 0.2 0.3
}

speak bank-welcome.wav \
  "Welcome to Baton Bank. This call may be recorded. Please tell us how we can help after the tone."
speak record-after-tone.wav \
  "Please leave your message after the tone. Press the hash key when you have finished."
speak echo-welcome.wav \
  "This is the echo test. After the tone, everything you say will be played back to you."
# What a caller hears when text to speech fails, instead of silence.
speak tts-fallback.wav \
  "One moment, please."

# A 400 ms 1 kHz tone with 10 ms ramps, so it clicks neither in nor out.
sox -n "${out[@]}" beep.wav synth 0.4 sine 1000 fade 0.01 0.4 0.01 vol 0.5

# Hold music: four soft sine chords (C, A minor, F, G), 2.5 s each, each fading in and out
# so chords blend and the 10 s loop joins silently end to start.
chord() {
  local name=$1
  shift
  local tones=()
  for f in "$@"; do tones+=(sine "$f"); done
  sox -n -D -r 16000 -c "$#" -b 16 "$tmp/$name.wav" synth 2.5 "${tones[@]}" \
    remix - fade q 0.6 2.5 0.8 vol 0.22
}
chord c 261.63 329.63 392.00 130.81
chord am 220.00 261.63 329.63 110.00
chord f 174.61 220.00 261.63 87.31
chord g 196.00 246.94 293.66 98.00
sox -D "$tmp/c.wav" "$tmp/am.wav" "$tmp/f.wav" "$tmp/g.wav" "${out[@]}" hold-music.wav

for f in bank-welcome.wav record-after-tone.wav echo-welcome.wav tts-fallback.wav beep.wav hold-music.wav; do
  printf '%-22s %6.2f s %7d bytes\n' "$f" "$(soxi -D "$f")" "$(stat -c %s "$f")"
done
