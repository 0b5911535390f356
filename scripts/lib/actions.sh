# shellcheck shell=bash
# What scripts/install.sh and scripts/uninstall.sh share: their messages and the way each
# system change is made, printed (--dry-run) or skipped (DESTDIR). Sourced; the caller sets
# dry_run (0 or 1), SUDO ("" or sudo) and DESTDIR.
# shellcheck disable=SC2154  # dry_run, SUDO and DESTDIR come from the caller

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
