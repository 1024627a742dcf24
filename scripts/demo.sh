#!/usr/bin/env bash
# `make demo`: start baton on loopback with the shipped dialplans, place one scripted SIPp
# call to the bank bot, show the call's shared context, and leave baton up.
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

# The caller's side, as a carrier would send it (G.711 µ-law): Alice Johnson, a customer in
# dialplans/customers.json, answers the bank bot's questions, each after a pause for the
# question (an answer that comes early cuts the bot short, as on a real line); the same
# conversation as tests/bank_bot.rs.
mapfile -t answers < tests/data/bank-answers.txt
pieces=()
for i in "${!answers[@]}"; do
  espeak-ng -v en-us -s 150 -w "$work/said-$i.wav" "${answers[$i]}"
  sox "$work/said-$i.wav" -r 8000 -c 1 -b 16 "$work/piece-$i.wav" pad 0 7
  pieces+=("$work/piece-$i.wav")
done
sox "${pieces[@]}" -r 8000 -c 1 -e u-law "$work/caller.wav" pad 9
sed -e "s|@AUDIO@|$work/caller.wav|" tests/sipp/uac_wait_bye.xml >"$work/call.xml"
echo
echo "Placing a call to sip:bank@$sip with SIPp; the caller answers the bot:"
printf '  "%s"\n' "${answers[@]}"
sipp -sf "$work/call.xml" -s bank -m 1 -i 127.0.0.1 -mi 127.0.0.1 -t u1 -nostdin \
  -timeout 120s -timeout_error -trace_err "${sip}" >/dev/null 2>&1 \
  && echo "SIPp: the bot said goodbye and hung up" || echo "SIPp: call failed (see $work)"

echo
echo "The call's shared context (GET /v1/calls/{id}/context), in brief:"
id=$(curl -fsS "http://$http/v1/calls?include=ended" | python3 -c \
  'import json,sys; calls=json.load(sys.stdin); print(calls[-1]["id"] if calls else "")')
curl -fsS "http://$http/v1/calls/$id/context" | python3 -c '
import json, sys
c = json.load(sys.stdin)
print("  summary:  ", c["summary"]["text"])
print("  identity: ", c["identity"])
print("  intent:   ", c["intent"]["name"], round(c["intent"]["confidence"], 2))
print("  actions:  ", [(a["name"], a["detail"], a["by"]) for a in c["actions"]])
print("  vibe:     ", c["vibe"]["label"], c["vibe"]["trend"])
print("  transcript:")
for line in c["transcript"]:
    if line["final"]:
        print("    %-6s %s" % (line["speaker"], line["text"]))
'
echo
echo "baton stays up: point a softphone at sip:bank@$sip, sip:echo@$sip or sip:record@$sip."
echo "Press Ctrl-C to stop."
wait $pid
