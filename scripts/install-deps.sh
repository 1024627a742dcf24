#!/usr/bin/env bash
# Installs what baton needs on Debian 12 and is missing: the build tools for the bundled
# libopus, and the real peers the tests and the demo talk to. Safe to run again: it only
# touches apt when a package is missing.
set -euo pipefail

want=(build-essential cmake pkg-config curl sip-tester sox espeak-ng baresip-core tcpdump chromium)
if [ "${1:-}" = "--bench" ]; then
  want+=(rtpengine-daemon procps)
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "cargo is missing: install Rust (https://rustup.rs) and run again" >&2
  exit 1
fi
