//! `zello-gateway bench --device` against the PulseAudio test devices of
//! `scripts/pulse-test-env.sh` (run first, as tests/sound.rs does): a short run gives sane
//! figures, and what is missing is said, not panicked over.
//!
//! No figure is held to a speed: the machine running the tests is shared. The tests share
//! the sound server, so they run one at a time.

mod common;
use common::setup_pulse;
use serial_test::serial;
use std::process::Command;

/// `bench` with the other phases as short as they go.
fn bench(extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zello-gateway"));
    c.args([
        "bench",
        "--json",
        "--device",
        "--seconds",
        "2",
        "--runs",
        "1",
        "--clicks",
        "0",
        "--no-rss",
        "--idle-seconds",
        "1",
        "--speedup",
        "4",
        "--frame-ms",
        "20",
        "--complexity",
        "5",
        "--bitrate",
        "16000",
        "--fec",
    ])
    .args(extra);
    c
}

fn number(json: &serde_json::Value, path: &[&str]) -> f64 {
    let mut v = json;
    for key in path {
        v = &v[*key];
    }
    v.as_f64()
        .unwrap_or_else(|| panic!("{} is not a number: {json}", path.join(".")))
}

#[test]
#[serial(pulse)]
fn a_short_device_run_gives_sane_figures() {
    setup_pulse();
    let out = bench(&["--onsets", "3"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stderr.contains("bench: device, run 1 of 1"), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["fec"], true, "{json}");
    assert_eq!(json["frame_ms"], 20);
    let d = &json["device"];
    assert_eq!(d["input"], "radio_mic");
    assert_eq!(d["runs"], 1);
    assert_eq!(number(d, &["capture", "rate"]), 48000.0);
    assert!(number(d, &["capture", "period_frames"]) > 0.0, "{d}");
    assert!(number(d, &["capture_period_ms"]) > 0.0, "{d}");
    assert!(number(d, &["arecord_period_us"]) > 0.0, "{d}");
    assert!(
        number(d, &["arecord_buffer_us"]) >= number(d, &["arecord_period_us"]),
        "{d}"
    );
    for idle in [
        "idle_large_blocks",
        "idle_small_blocks",
        "idle_source_stopped",
    ] {
        for key in [
            "gateway_percent_of_core",
            "arecord_percent_of_core",
            "gateway_wakeups_per_s",
            "arecord_wakeups_per_s",
        ] {
            let v = number(d, &[idle, key]);
            assert!(v.is_finite() && v >= 0.0, "{idle}.{key}: {d}");
        }
        // The gateway's devices and threads run all the time: it wakes up while idle.
        assert!(number(d, &[idle, "gateway_wakeups_per_s"]) > 0.0, "{d}");
    }
    assert_eq!(d["idle_large_blocks"]["feeder_latency_ms"], 500);
    assert_eq!(d["idle_small_blocks"]["feeder_latency_ms"], 40);
    assert!(d["idle_source_stopped"]["feeder_latency_ms"].is_null());
    for way in ["radio_to_zello", "zello_to_radio"] {
        for key in ["cpu_s_per_audio_s", "gross_cpu_s_per_audio_s"] {
            let v = number(d, &[way, key]);
            assert!(v.is_finite() && v >= 0.0, "{way}.{key}: {d}");
        }
        for key in [
            "gross_cpu_s_per_audio_s",
            "paced_floor_cpu_s_per_audio_s",
            "packets",
            "wakeups_per_packet",
        ] {
            assert!(number(d, &[way, key]) > 0.0, "{way}.{key}: {d}");
        }
        assert_eq!(d["threads"][way].as_array().map(Vec::is_empty), Some(false));
    }
    // 2 s of 20 ms packets sent to the gateway; at least as much speech came from it (VOX
    // and the rx hang add their tail).
    assert_eq!(number(d, &["zello_to_radio", "packets"]), 100.0);
    assert!(number(d, &["radio_to_zello", "packets"]) >= 90.0, "{d}");
    let lat = &d["start_latency"];
    assert_eq!(lat["onsets"], 3);
    assert!(number(lat, &["measured"]) >= 1.0, "{lat}");
    // A message cannot start before the carrier has lasted rx_min_ms.
    let rx_min = number(lat, &["rx_min_ms"]);
    assert!(rx_min > 0.0);
    for key in ["median_ms", "min_ms", "max_ms"] {
        assert!(number(lat, &[key]) >= rx_min, "{key}: {lat}");
    }
    assert!(number(d, &["peak_rss_mb"]) > 0.0, "{d}");
}

#[test]
#[serial(pulse)]
fn a_missing_device_or_tool_is_said_before_anything_runs() {
    setup_pulse();
    let out = bench(&["--device-input", "no_such_device"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no_such_device"), "{stderr}");
    assert!(stderr.contains("scripts/pulse-test-env.sh"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Refused before the other phases took their minutes.
    assert!(!stderr.contains("bench: the floor"), "{stderr}");

    let empty = tempfile::tempdir().unwrap();
    let out = bench(&[]).env("PATH", empty.path()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("pacat is not installed") && stderr.contains("pulseaudio-utils"),
        "{stderr}"
    );
}
