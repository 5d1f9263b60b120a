#!/usr/bin/env bash
# Installs merkit and everything it needs on a fresh Debian/Ubuntu machine with Python >= 3.10.
#   apt: FluidSynth + the General MIDI soundfont (rendering MIDI: EMOPIA, `merkit predict x.mid`);
#        chromium + chromium-driver for the end-to-end test of the web page (tests/test_web_browser.py;
#        MERKIT_NO_BROWSER=1 skips them, and that test then skips itself); espeak-ng, speech for the
#        tests of the not-music check (MERKIT_MINIMAL=1 skips it, and those tests skip themselves)
#   pip: the CPU build of torch (pinned: an unpinned torch pulls several GB of CUDA packages),
#        then merkit itself with its test/benchmark extras, and the optional extras the tests cover.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}

apt_pkgs=()
command -v fluidsynth >/dev/null 2>&1 || apt_pkgs+=(fluidsynth)
[ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || apt_pkgs+=(fluid-soundfont-gm)
# espeak-ng (~10 MB): speech for the tests and bench of the not-music check; merkit never needs it
[ -n "${MERKIT_MINIMAL:-}" ] || command -v espeak-ng >/dev/null 2>&1 || apt_pkgs+=(espeak-ng)
if [ "${MERKIT_NO_BROWSER:-0}" != 1 ]; then
  { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; } || apt_pkgs+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || apt_pkgs+=(chromium-driver)
fi
if [ "${#apt_pkgs[@]}" -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_pkgs[@]}" >/dev/null
fi

$PY -m pip install -q --disable-pip-version-check "torch==2.13.0"
$PY -m pip install -q --disable-pip-version-check -e ".[dev]"
# The optional extras the test suite covers (each test skips, saying why, when its extra is
# missing): ONNX export (onnx, onnxruntime), dask clusters, the beets plugin, madmom's key and
# chord networks; and the musicnn wheel, whose checkpoints tests/test_musicnn.py converts again.
# MERKIT_MINIMAL=1 skips them all.
if [ "${MERKIT_MINIMAL:-0}" != 1 ]; then
  $PY -m pip install -q --disable-pip-version-check -e ".[onnx,dask,beets]" || echo "install.sh: an optional extra failed to install; its tests will skip"
  $PY -m pip install -q --disable-pip-version-check -e ".[madmom]" || echo "install.sh: madmom extra not installed; its tests will skip"
  $PY -m pip download -q --disable-pip-version-check --no-deps musicnn==0.1.0 \
    -d "${MERKIT_CACHE:-$HOME/.cache/merkit}/wheels" || echo "install.sh: musicnn wheel not fetched; that test will skip"
fi
# pyenv installs console scripts behind shims that must be refreshed
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
echo "merkit installed: $($PY -c 'import merkit; print(merkit.__version__)')"
