#!/usr/bin/env bash
# Installs zello-gateway as a systemd service on Raspberry Pi OS or Debian:
#
#   - the build packages (scripts/deps.sh --build-only) and a release build
#   - /usr/local/bin/zello-gateway
#   - /etc/systemd/system/zello-gateway.service
#   - /etc/udev/rules.d/99-zello-gateway.rules (sound-card GPIO and gpiochip permissions)
#   - /etc/zello-gateway/gateway.toml from config/gateway.example.toml, only if there is none
#     (0640 root:zello-gateway); the secret files it names are made 0600 zello-gateway
#   - the zello-gateway system user, in the groups audio gpio dialout plugdev (groups that are
#     missing are created)
#   - systemctl daemon-reload, enable, and start (or restart, to pick up a new binary)
#
# Safe to run again: it updates the binary, unit and rules and never overwrites the
# configuration. A freshly written configuration is the example: the service is enabled but
# not started until it has been edited.
#
# Run it as your normal user from the source folder (it builds with your Rust toolchain and
# uses sudo for the system steps), or as root.
#
# Options:
#   --no-start     install and enable, but do not start or restart the service
#   --binary PATH  install this binary instead of building one (a cross-compiled build)
#   --dry-run      print each action instead of doing it
#   -h, --help     this text
#
# DESTDIR=/some/dir installs the files under that folder instead (a staged install) and only
# prints the steps that would change the running system (user, ownership, udev, systemctl).
set -euo pipefail
cd "$(dirname "$0")/.."

NAME=zello-gateway
SERVICE_USER=zello-gateway
SERVICE_GROUPS=(audio gpio dialout plugdev)
BIN=/usr/local/bin/zello-gateway
UNIT=/etc/systemd/system/zello-gateway.service
RULES=/etc/udev/rules.d/99-zello-gateway.rules
CONF_DIR=/etc/zello-gateway
CONF="$CONF_DIR/gateway.toml"
STATE_DIR=/var/lib/zello-gateway

# shellcheck source=scripts/lib/actions.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/actions.sh"

dry_run=0
start=1
binary=""
while [ $# -gt 0 ]; do
  case "$1" in
    --no-start) start=0 ;;
    --binary)
      [ $# -ge 2 ] || { echo "error: --binary needs a path" >&2; exit 2; }
      binary="$2"
      shift
      ;;
    *) common_option "$1" ;;
  esac
  shift
done

system_steps "the system steps need root: run as root or install sudo"

# Creates a folder that is missing (an existing one keeps its mode: Debian's /usr/local/bin is
# 2775 root:staff).
ensure_dir() {
  local mode="$1" dir
  shift
  for dir in "$@"; do
    [ -d "$dir" ] || run install -d -m "$mode" "$dir"
  done
}

systemd_running() {
  [ -d /run/systemd/system ]
}

# The secret files the configuration names (password_file, auth_token_file,
# private_key_file), relative ones resolved against the configuration's folder.
secret_files() {
  local path
  sed -nE 's/^[[:space:]]*(password_file|auth_token_file|private_key_file)[[:space:]]*=[[:space:]]*"([^"]+)".*/\2/p' "$1" |
    while IFS= read -r path; do
      case "$path" in
        /*) printf '%s\n' "$path" ;;
        *) printf '%s/%s\n' "$CONF_DIR" "$path" ;;
      esac
    done
}

[ "$dry_run" -eq 1 ] && echo "Dry run: nothing is changed; each action is printed with a leading +."
[ -n "$DESTDIR" ] && echo "Staged install into $DESTDIR."

# 1. Build.
if [ -n "$binary" ]; then
  step "Using the binary $binary"
  if [ ! -f "$binary" ] || [ ! -x "$binary" ]; then
    echo "error: --binary $binary is not an executable file" >&2
    exit 1
  fi
  note "it needs the runtime libraries libopus0 and libasound2 on this system"
else
  step "Installing the build packages and building the release binary"
  if [ "$dry_run" -eq 1 ]; then
    show "+" scripts/deps.sh --build-only
    show "+" cargo build --release --locked
  else
    scripts/deps.sh --build-only
    cargo build --release --locked
  fi
  binary=target/release/zello-gateway
fi

# 2. The service user and its groups.
step "Service user $SERVICE_USER in the groups ${SERVICE_GROUPS[*]}"
for group in "${SERVICE_GROUPS[@]}"; do
  if ! getent group "$group" >/dev/null; then
    note "creating the missing group $group"
    live groupadd --system "$group"
  fi
done
if ! getent passwd "$SERVICE_USER" >/dev/null; then
  live useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home \
    --shell /usr/sbin/nologin --comment "Zello radio gateway" "$SERVICE_USER"
fi
live usermod --append --groups "$(IFS=,; echo "${SERVICE_GROUPS[*]}")" "$SERVICE_USER"

# 3. Binary, unit, udev rules.
step "Installing $BIN, $UNIT and $RULES"
ensure_dir 0755 "$DESTDIR/usr/local/bin" "$DESTDIR/etc/systemd/system" "$DESTDIR/etc/udev/rules.d"
run install -m 0755 "$binary" "$DESTDIR$BIN"
run install -m 0644 systemd/zello-gateway.service "$DESTDIR$UNIT"
run install -m 0644 hw/99-zello-gateway.rules "$DESTDIR$RULES"
if [ -n "$DESTDIR" ] || command -v udevadm >/dev/null 2>&1; then
  live udevadm control --reload-rules
  live udevadm trigger --action=change --subsystem-match=hidraw --subsystem-match=gpio
else
  note "udevadm not found: the udev rules apply from the next boot"
fi

# 4. Configuration and secrets.
step "Configuration in $CONF_DIR"
ensure_dir 0755 "$DESTDIR$CONF_DIR"
fresh_config=0
if [ -e "$DESTDIR$CONF" ]; then
  note "keeping the existing $CONF"
else
  fresh_config=1
  note "writing $CONF from config/gateway.example.toml: edit it before starting"
  run install -m 0640 config/gateway.example.toml "$DESTDIR$CONF"
fi
live chown "root:$SERVICE_USER" "$CONF"
run chmod 0640 "$DESTDIR$CONF"
config_to_read="$DESTDIR$CONF"
[ -e "$config_to_read" ] || config_to_read=config/gateway.example.toml
missing_secrets=()
while IFS= read -r secret; do
  if [ -e "$DESTDIR$secret" ]; then
    note "secret file $secret: owner $SERVICE_USER, mode 0600"
    run chmod 0600 "$DESTDIR$secret"
    live chown "$SERVICE_USER:$SERVICE_USER" "$secret"
  else
    missing_secrets+=("$secret")
  fi
done < <(secret_files "$config_to_read")

# 5. systemd.
step "systemd"
started=0
if [ -n "$DESTDIR" ] || [ "$dry_run" -eq 1 ] || systemd_running; then
  live systemctl daemon-reload
  if [ "$start" -eq 0 ]; then
    live systemctl enable "$NAME"
  elif [ "$fresh_config" -eq 1 ]; then
    live systemctl enable "$NAME"
  elif [ -z "$DESTDIR" ] && systemctl is-active --quiet "$NAME" 2>/dev/null; then
    live systemctl enable "$NAME"
    live systemctl restart --no-block "$NAME"
    started=1
  else
    live systemctl enable --now --no-block "$NAME"
    started=1
  fi
else
  note "systemd is not running here: enable the service on the gateway with"
  note "  sudo systemctl daemon-reload && sudo systemctl enable --now $NAME"
fi

# 6. What is left to do.
echo
if [ "$dry_run" -eq 1 ]; then
  echo "Dry run complete: nothing was changed. After a real run:"
elif [ -n "$DESTDIR" ]; then
  echo "zello-gateway is staged in $DESTDIR. On the gateway itself:"
else
  echo "zello-gateway is installed."
fi
if [ ${#missing_secrets[@]} -gt 0 ]; then
  echo "The configuration names secret files that do not exist yet. Create each one, holding"
  echo "only the secret, readable by the service alone:"
  for secret in "${missing_secrets[@]}"; do
    echo "  sudo install -m 600 -o $SERVICE_USER -g $SERVICE_USER /dev/null $secret && sudoedit $secret"
  done
fi
if [ "$fresh_config" -eq 1 ]; then
  echo "Edit it with: sudoedit $CONF (server, account, [[radio]]: see hw/*.md for the wiring)."
  echo "Check it with the service's own rights (the file and its devices as the service sees"
  echo "them; the file is readable by root and the service only):"
  echo "  sudo -u $SERVICE_USER $BIN check --config $CONF"
  echo "then start the gateway: sudo systemctl start $NAME"
elif [ "$start" -eq 0 ]; then
  echo "Not started (--no-start). Start or restart it with: sudo systemctl restart $NAME"
elif [ "$started" -eq 1 ]; then
  echo "The gateway is starting as a service; systemctl status $NAME shows its state."
  echo "Its log: journalctl -u $NAME -f"
fi
