#!/usr/bin/env bash
# Creates (or reuses) the project's virtual environment and installs everything from the repo's own files.
# Re-runs only when pyproject.toml or requirements/ change (the stamp holds their hash).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "robostack needs Python 3.11 (found $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
# System packages: Xvfb, xdotool and imagemagick run the teleop window's tests on a virtual screen; hidapi reads
# a SpaceMouse. Installed once (root, as in CI); elsewhere the command to run is printed.
SYSTEM_PACKAGES="xvfb xdotool imagemagick libhidapi-hidraw0"
if ! command -v Xvfb >/dev/null || ! command -v xdotool >/dev/null || ! command -v import >/dev/null \
   || ! ldconfig -p | grep -q libhidapi-hidraw; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing system packages: $SYSTEM_PACKAGES"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $SYSTEM_PACKAGES >/dev/null
  else
    echo "robostack needs: sudo apt-get install $SYSTEM_PACKAGES" >&2
    exit 1
  fi
fi
want=$(cat pyproject.toml requirements/*.txt scripts/setup_env.sh | sha256sum | cut -d' ' -f1)
if [ -f "$VENV/.robostack-installed" ] && [ "$(cat "$VENV/.robostack-installed")" = "$want" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check"
$PIP install -q --upgrade pip
echo "installing robostack and its dependencies into $VENV (first time: a few minutes, torch is large)..."
# torch + torchvision, numpy, mujoco, zarr, pyarrow... move together: one constraints file for every install.
$PIP install -q -c requirements/constraints.txt -e ".[dev,compare,ros]"
# LeRobot pins torch<2.11 in every release: install it without its deps, then the deps it needs here.
$PIP install -q -c requirements/constraints.txt -r requirements/lerobot.txt
$PIP install -q -c requirements/constraints.txt --no-deps lerobot==0.4.4
"$VENV/bin/python" -c "import robostack, torch, mujoco, robosuite, zarr, lerobot, onnxruntime, rclpy; print('environment ready:', 'torch', torch.__version__, 'mujoco', mujoco.__version__, 'zarr', zarr.__version__)"
echo "$want" > "$VENV/.robostack-installed"
