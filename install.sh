#!/usr/bin/env bash
# Installs merkit and everything it needs on a fresh Debian/Ubuntu machine with Python >= 3.10.
#   apt: FluidSynth + the General MIDI soundfont (rendering MIDI: EMOPIA, `merkit predict x.mid`)
#   pip: the CPU build of torch (pinned: an unpinned torch pulls several GB of CUDA packages),
#        then merkit itself with its test/benchmark extras.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}

need_apt=0
command -v fluidsynth >/dev/null 2>&1 || need_apt=1
[ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || need_apt=1
if [ "$need_apt" = 1 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fluidsynth fluid-soundfont-gm >/dev/null
fi

$PY -m pip install -q --disable-pip-version-check "torch==2.13.0"
$PY -m pip install -q --disable-pip-version-check -e ".[dev]"
# pyenv installs console scripts behind shims that must be refreshed
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
echo "merkit installed: $($PY -c 'import merkit; print(merkit.__version__)')"
