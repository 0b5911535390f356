#!/usr/bin/env bash
# Removes what scripts/install.sh installed: stops and disables the service (its
# ExecStopPost forces every PTT line off on the way), removes the unit, the binary and the
# udev rules.
#
# The configuration and secrets in /etc/zello-gateway and the zello-gateway user stay, so a
# reinstall picks up where it left off; --purge removes them too, with /var/lib/zello-gateway.
#
# Options:
#   --purge     also remove /etc/zello-gateway, /var/lib/zello-gateway and the user
#   --dry-run   print each action instead of doing it
#   -h, --help  this text
#
# DESTDIR=/some/dir removes the files from that staged tree instead and only prints the steps
# that would change the running system.
set -euo pipefail
cd "$(dirname "$0")/.."

NAME=zello-gateway
SERVICE_USER=zello-gateway
BIN=/usr/local/bin/zello-gateway
UNIT=/etc/systemd/system/zello-gateway.service
RULES=/etc/udev/rules.d/99-zello-gateway.rules
CONF_DIR=/etc/zello-gateway
STATE_DIR=/var/lib/zello-gateway

# shellcheck source=scripts/lib/actions.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/actions.sh"

dry_run=0
purge=0
while [ $# -gt 0 ]; do
  case "$1" in
    --purge) purge=1 ;;
    *) common_option "$1" ;;
  esac
  shift
done

system_steps "removing the service needs root: run as root or install sudo"

# Removes the files that exist.
remove() {
  local path
  for path in "$@"; do
    if [ -e "$path" ] || [ -L "$path" ]; then
      run rm -f "$path"
    fi
  done
}

[ "$dry_run" -eq 1 ] && echo "Dry run: nothing is changed; each action is printed with a leading +."

step "Stopping and disabling the service (PTT is forced off as it stops)"
if [ -n "$DESTDIR" ] || [ "$dry_run" -eq 1 ] || [ -d /run/systemd/system ]; then
  live systemctl disable --now "$NAME" || note "the service was not installed or not running"
else
  note "systemd is not running here: nothing to stop"
fi

step "Removing $UNIT, $BIN and $RULES"
remove "$DESTDIR$UNIT" "$DESTDIR$BIN" "$DESTDIR$RULES"
if [ -n "$DESTDIR" ] || [ "$dry_run" -eq 1 ] || [ -d /run/systemd/system ]; then
  live systemctl daemon-reload
  live systemctl reset-failed "$NAME" 2>/dev/null || true
fi
if [ -n "$DESTDIR" ] || command -v udevadm >/dev/null 2>&1; then
  live udevadm control --reload-rules
fi

if [ "$dry_run" -eq 1 ]; then
  done_message="Dry run complete: nothing was changed."
else
  done_message="zello-gateway is removed"
fi

if [ "$purge" -eq 1 ]; then
  step "Purging $CONF_DIR, $STATE_DIR and the user $SERVICE_USER"
  for dir in "$DESTDIR$CONF_DIR" "$DESTDIR$STATE_DIR"; do
    if [ -e "$dir" ]; then
      run rm -rf "$dir"
    fi
  done
  if [ -n "$DESTDIR" ] || getent passwd "$SERVICE_USER" >/dev/null; then
    live userdel "$SERVICE_USER"
  fi
  echo
  if [ "$dry_run" -eq 1 ]; then
    echo "$done_message"
  else
    echo "$done_message, with its configuration, secrets and user."
    echo "The groups audio gpio dialout plugdev stay: other software uses them."
  fi
else
  echo
  if [ "$dry_run" -eq 1 ]; then
    echo "$done_message"
  else
    echo "$done_message. Kept: $CONF_DIR (configuration and secrets) and the user"
    echo "$SERVICE_USER; scripts/uninstall.sh --purge removes them too."
  fi
fi
