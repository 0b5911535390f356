# shellcheck shell=bash
# How the project's scripts get root for system steps and install missing Debian packages.
# Sourced.

# need_root WHY [STAGED [DRY_RUN]]: sets SUDO: "" as root or when files are staged under a
# folder (STAGED not empty), else "sudo"; with neither root nor sudo, prints "error: WHY" and
# exits 1, unless DRY_RUN is 1 (the commands are only printed, with sudo).
need_root() {
  local why="$1" staged="${2:-}" dry_run="${3:-0}"
  SUDO=""
  if [ -n "$staged" ] || [ "$(id -u)" -eq 0 ]; then
    return 0
  fi
  if [ "$dry_run" -ne 1 ] && ! command -v sudo >/dev/null 2>&1; then
    echo "error: $why" >&2
    exit 1
  fi
  SUDO="sudo"
}

# Installs PACKAGE... with apt, quietly; WHY is the error when it cannot (see need_root).
apt_install() {
  local why="$1"
  shift
  need_root "$why"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
