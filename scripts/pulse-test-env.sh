#!/usr/bin/env bash
# Sets up the sound devices the sound-card tests run against: a private PulseAudio server with
# two null sinks, reached through ALSA's pulse plugin, so cpal sees them as ordinary ALSA PCMs
# that play and record in real time.
#
#   radio_spk          the radio's speaker side: what the gateway transmits (plays) goes here;
#                      tests record it back from the sink's monitor, radio_spk.monitor
#   radio_mic          the radio's receiver side: tests play audio into the null sink radio_mic
#                      (paplay -d radio_mic) and the gateway captures it from radio_mic.monitor
#   radio_spk_monitor  an extra capture PCM on radio_spk.monitor
#
# The server listens on its own socket ($ZELLO_PULSE_SOCKET, by default
# /tmp/zello-gateway-pulse-<uid>/native), so it never touches a desktop sound server the user
# already runs. Clients reach it with PULSE_SERVER=unix:<socket>; the ALSA PCMs carry the
# socket in their definition.
#
# Safe to run again: it installs, starts and loads only what is missing. Runs as root or as a
# user with sudo (for the packages and the ALSA configuration in /etc/alsa/conf.d).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh

uid="$(id -u)"
socket="${ZELLO_PULSE_SOCKET:-/tmp/zello-gateway-pulse-$uid/native}"
runtime="$(dirname "$socket")"
export PULSE_SERVER="unix:$socket"
alsa_conf=/etc/alsa/conf.d/60-zello-gateway-test.conf

if [ "$uid" -eq 0 ]; then
  SUDO=""
else
  SUDO="sudo"
fi

server_up() {
  pactl info >/dev/null 2>&1
}

if ! server_up; then
  mkdir -p "$runtime"
  chmod 700 "$runtime"
  rm -f "$socket"
  # -n: no default script (no hardware detection, no desktop modules). The sinks are loaded
  # before the protocol module opens the socket, so no client ever sees the server without
  # them (a test that stops the server and starts it again relies on this). No pid file, so a
  # user's own PulseAudio does not stop this one. Real-time scheduling and high priority need
  # rtkit/D-Bus, which CI machines lack. Without shared memory, libpulse does not deadlock in
  # the ALSA plugin when a test stops the server under a running capture stream.
  XDG_RUNTIME_DIR="$runtime" pulseaudio \
    --daemonize=yes \
    --system=false \
    --exit-idle-time=-1 \
    --use-pid-file=false \
    --realtime=false \
    --high-priority=false \
    --disable-shm=true \
    --disallow-module-loading=false \
    --log-target="newfile:$runtime/pulseaudio.log" \
    -n \
    -L "module-null-sink sink_name=test_default sink_properties=device.description=test_default" \
    -L "module-null-sink sink_name=radio_spk rate=48000 channels=1 sink_properties=device.description=radio_spk" \
    -L "module-null-sink sink_name=radio_mic rate=48000 channels=1 sink_properties=device.description=radio_mic" \
    -L "module-native-protocol-unix socket=$socket auth-anonymous=1" \
    2>/dev/null || true
  for _ in $(seq 1 50); do
    server_up && break
    sleep 0.1
  done
  if ! server_up; then
    echo "error: PulseAudio did not start; see $runtime/pulseaudio.log" >&2
    exit 1
  fi
fi

sink_loaded() {
  pactl list short sinks | awk '{print $2}' | grep -qx "$1"
}

# A server that was already running may have lost a sink (pactl unload-module): load it again.
# test_default is neither of ours, so that nothing plays into a radio sink by default.
if ! sink_loaded test_default; then
  pactl load-module module-null-sink sink_name=test_default \
    sink_properties=device.description=test_default >/dev/null
fi
for sink in radio_spk radio_mic; do
  if ! sink_loaded "$sink"; then
    pactl load-module module-null-sink \
      sink_name="$sink" rate=48000 channels=1 \
      sink_properties="device.description=$sink" >/dev/null
  fi
done
pactl set-default-sink test_default
pactl set-default-source test_default.monitor

pcm() {
  local name="$1" device="$2" description="$3"
  cat <<EOF
pcm.$name {
	type pulse
	server "unix:$socket"
	device "$device"
	hint {
		show on
		description "$description"
	}
}
EOF
}

wanted="$(
  echo "# Written by zello-gateway's scripts/pulse-test-env.sh: test sound devices on a private"
  echo "# PulseAudio server ($socket). Delete this file to remove them."
  pcm radio_spk radio_spk "Test radio speaker (PulseAudio null sink radio_spk)"
  pcm radio_mic radio_mic.monitor "Test radio receiver (PulseAudio radio_mic.monitor)"
  pcm radio_spk_monitor radio_spk.monitor "Test: what was played to radio_spk (radio_spk.monitor)"
)"
if [ ! -f "$alsa_conf" ] || [ "$(cat "$alsa_conf")" != "$wanted" ]; then
  printf '%s\n' "$wanted" | $SUDO tee "$alsa_conf" >/dev/null
fi

echo "PulseAudio test sound devices ready: PULSE_SERVER=$PULSE_SERVER, ALSA PCMs radio_spk, radio_mic, radio_spk_monitor ($alsa_conf)"
