#!/usr/bin/env bash
# Set up everything the workstation needs on a Debian/Ubuntu machine, idempotently.
#   packaging/bootstrap.sh system   -> Debian packages (only those missing)
#   packaging/bootstrap.sh venv     -> .venv from requirements.lock (only when the lock changed)
#   packaging/bootstrap.sh bytecode -> the workstation's own modules compiled (only those changed)
set -euo pipefail
cd "$(dirname "$0")/.."

SYSTEM_PACKAGES=(
  # Qt offscreen + VTK over EGL
  libgl1 libegl1 libx11-6 libdbus-1-3 libfontconfig1 libfreetype6 libglib2.0-0 libxkbcommon0
  # a real window (and xvfb-run for the real-window test)
  xvfb xauth libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-render-util0
  libxcb-render0 libxcb-shape0 libxcb-util1 libxcb-xkb1 libxkbcommon-x11-0
  # peers for tests and benchmarks
  dcmtk dcm2niix dicom3tools
  # the real archive the integration tests run against
  orthanc orthanc-dicomweb orthanc-gdcm
  # sample studies a fresh machine can install: head CT (DICOM) and brain MRI (NIfTI)
  invesalius-examples mricron-data
  # python on a bare Debian
  python3 python3-venv
)

system() {
  local missing=()
  for p in "${SYSTEM_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  # python3-venv is only needed when the python3 on PATH cannot make a venv
  if python3 -c "import venv, ensurepip" >/dev/null 2>&1; then
    missing=("${missing[@]/python3-venv}"); missing=("${missing[@]/python3}")
  fi
  local todo=()
  for p in "${missing[@]}"; do [ -n "$p" ] && todo+=("$p"); done
  [ ${#todo[@]} -eq 0 ] && return 0
  echo "Installing Debian packages: ${todo[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${todo[@]}"
}

venv() {
  local stamp=.venv/.lock-sha
  local want
  # (the version of this recipe is part of the stamp: a venv made by an older one is made again)
  want=$( (sha256sum requirements.lock pyproject.toml; echo "recipe 2: bytecode") | sha256sum | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check uv==0.13.9
  # compiled now, once: the Makefile runs Python without writing bytecode (no __pycache__ left around), so
  # modules never compiled would be compiled again at every start (~1 s of the workstation's start-up)
  .venv/bin/uv pip sync -q --compile-bytecode --python .venv/bin/python requirements.lock
  .venv/bin/uv pip install -q --python .venv/bin/python --no-deps -e .
  echo "$want" > "$stamp"
}

bytecode() {
  # the workstation's own modules, for the same reason (only files changed since are compiled again); a plugin
  # that does not compile must not stop the workstation from starting (it is refused, with its error, when run)
  .venv/bin/python -m compileall -q -j 0 workstation >/dev/null
  .venv/bin/python -m compileall -q -j 0 plugins >/dev/null 2>&1 || true
}

for step in "$@"; do "$step"; done
