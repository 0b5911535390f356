# shellcheck shell=bash
# What scripts/install.sh and scripts/uninstall.sh share: their common options, their
# messages and the way each system change is made, printed (--dry-run) or skipped (DESTDIR).
# Sourced; the caller sets dry_run (0, or 1 through common_option) and calls system_steps,
# which sets SUDO ("" or sudo) and DESTDIR.
# shellcheck disable=SC2154  # dry_run comes from the caller

# shellcheck source=scripts/lib/apt.sh
. "$(dirname "${BASH_SOURCE[0]}")/apt.sh"

# The script's header comment, as its --help.
usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

# The options both scripts take: --dry-run sets dry_run=1, -h/--help prints the help and
# exits 0; any other option is an error (exit 2).
common_option() {
  case "$1" in
    --dry-run) dry_run=1 ;;
    -h | --help) usage; exit 0 ;;
    *)
      echo "error: unknown option $1 (see scripts/${0##*/} --help)" >&2
      exit 2
      ;;
  esac
}

# system_steps WHY: DESTDIR (empty unless set) and SUDO for the system steps; WHY is the
# error with neither root nor sudo (see need_root).
system_steps() {
  DESTDIR="${DESTDIR:-}"
  need_root "$1" "$DESTDIR" "$dry_run"
}

step() { printf '==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }

# Prints a command, shell-quoted, with a prefix.
show() {
  local prefix="$1"
  shift
  local arg
  printf '%s' "$prefix"
  for arg in "$@"; do
    if [[ "$arg" =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then
      printf ' %s' "$arg"
    else
      printf ' %q' "$arg"
    fi
  done
  printf '\n'
}

# A change to files (under DESTDIR when set), as root.
run() {
  if [ "$dry_run" -eq 1 ]; then
    show "+" ${SUDO:+"$SUDO"} "$@"
  else
    ${SUDO:+"$SUDO"} "$@"
  fi
}

# A change to the running system (users, ownership, udev, systemd): only printed when
# DESTDIR is set.
live() {
  if [ -n "$DESTDIR" ]; then
    show "    skipped (DESTDIR is set):" "$@"
  else
    run "$@"
  fi
}
