#!/usr/bin/env bash
# `make demo`: start baton on loopback with the shipped dialplans, place one scripted SIPp
# call to the bank plan, show what baton heard and recorded, and leave baton up.
set -euo pipefail
cd "$(dirname "$0")/.."
sip=${1:-127.0.0.1:5060}
http=${2:-127.0.0.1:8080}
data=${BATON_DATA:-data}
work=$(mktemp -d)
mkdir -p "$data"

bin=target/release/baton
"$bin" check dialplans --media media
echo

"$bin" serve --sip "$sip" --http "$http" --dialplans dialplans --media media --data "$data" \
  >"$work/baton.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' INT TERM
for _ in $(seq 1 100); do
  curl -fsS "http://$http/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://$http/healthz" >/dev/null || { cat "$work/baton.log"; exit 1; }
echo "baton is up: SIP on $sip (UDP and TCP), API on http://$http"

# The caller's side: a sentence spoken by espeak-ng, as a carrier would send it (G.711 µ-law).
espeak-ng -v en-us -s 150 -w "$work/said.wav" \
  "Hello. I would like to check the balance of my current account, please."
# The caller waits for the greeting and the tone before speaking, as a person would.
lead=$(python3 -c "print($(soxi -D media/bank-welcome.wav) + $(soxi -D media/beep.wav) + 0.5)")
sox "$work/said.wav" -r 8000 -c 1 -e u-law "$work/caller.wav" pad "$lead" 1
millis=$(python3 -c "print(int(($(soxi -D "$work/caller.wav") + 1) * 1000))")
sed -e "s|@AUDIO@|$work/caller.wav|" -e "s|@MILLIS@|$millis|" tests/sipp/uac_audio.xml \
  >"$work/call.xml"
echo
echo "Placing a call to sip:bank@$sip with SIPp; the caller says:"
echo "  \"Hello. I would like to check the balance of my current account, please.\""
sipp -sf "$work/call.xml" -s bank -m 1 -i 127.0.0.1 -mi 127.0.0.1 -t u1 -nostdin \
  -timeout 30s -timeout_error -trace_err "${sip}" >/dev/null 2>&1 \
  && echo "SIPp: call completed" || echo "SIPp: call failed (see $work)"

# The caller's last words are transcribed a moment after the hang-up.
sleep 1
echo
echo "What baton saw and heard (GET /v1/calls?include=ended: transcript and vibe included):"
curl -fsS "http://$http/v1/calls?include=ended" | python3 -m json.tool
echo
echo "What baton recorded:"
for f in "$data"/recordings/*.wav; do
  [ -e "$f" ] || continue
  printf '  %s  %s s, RMS %s\n' "$f" "$(soxi -D "$f")" \
    "$(sox "$f" -n stat 2>&1 | awk '/RMS +amplitude/ {print $3}')"
done
echo
echo "baton stays up: point a softphone at sip:bank@$sip, sip:echo@$sip or sip:record@$sip."
echo "Press Ctrl-C to stop."
wait $pid
