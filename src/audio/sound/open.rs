//! Opening one side's PCM, and the words for one that does not open, saying what to do.

use std::sync::{Arc, Mutex};

use super::device::Opened;
use super::list::{alsa_host, describe_rates, device_names};
use super::{PERIOD_KEY, RATE_KEY, lock};
use crate::audio::AudioError;
use crate::audio::alsa_pcm::{Direction, OpenFailure, PERIOD_MS_RANGE, Pcm};
use crate::audio::resample::ResampleError;

/// A device that cannot open as configured, saying what to do in `message`.
pub(super) fn open_error(key: &str, device: &str, message: impl Into<String>) -> AudioError {
    AudioError::DeviceOpen {
        key: key.to_string(),
        device: device.to_string(),
        message: message.into(),
        source: None,
        transient: false,
    }
}

/// A device whose rate the resampler cannot convert from or to.
pub(super) fn rate_error(key: &str, device: &str, e: ResampleError) -> AudioError {
    AudioError::DeviceOpen {
        key: key.to_string(),
        device: device.to_string(),
        message: e.to_string(),
        source: Some(Box::new(e)),
        transient: false,
    }
}

/// A PCM that did not open: what to do, ALSA's own error when there is one, and whether
/// trying later may work (a busy device).
fn pcm_error(
    key: &str,
    device: &str,
    f: OpenFailure,
    rate: u32,
    direction: Direction,
) -> AudioError {
    AudioError::DeviceOpen {
        key: key.to_string(),
        device: device.to_string(),
        message: explain(&f, rate, direction),
        transient: f == OpenFailure::Busy,
        source: match f {
            OpenFailure::Other(e) => Some(Box::new(e)),
            _ => None,
        },
    }
}

/// Words for a PCM that did not open, saying what to do about it.
fn explain(f: &OpenFailure, rate: u32, direction: Direction) -> String {
    match f {
        OpenFailure::NotFound => {
            let names = alsa_host().map(|h| device_names(&h)).unwrap_or_default();
            let list = if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            };
            format!(
                "no such sound device. Devices that exist: {list} (the `devices` command \
                 describes them)"
            )
        }
        OpenFailure::Busy => "the device is busy: another program (or another radio of this \
             gateway) has it open. Stop that program, or share the card through a dsnoop \
             (capture) or dmix (playback) PCM"
            .to_string(),
        OpenFailure::Permission => {
            "permission denied: add the gateway's user to the `audio` group".to_string()
        }
        OpenFailure::Rate { min, max } => format!(
            "sample rate {rate} Hz ({RATE_KEY}) is not supported; the device supports {} \
             (a plughw: name converts any rate)",
            describe_rates(&[(*min, *max)])
        ),
        OpenFailure::Format => "the device offers neither 16-bit nor float samples; use its \
             plughw: name, which converts"
            .to_string(),
        OpenFailure::Other(e) => {
            format!("the device cannot {} audio: {e}", direction.verb())
        }
    }
}

/// The open PCM of one side, shared by the device thread (which opens and closes it) and the
/// reader or writer on the codec thread (which moves the samples without blocking). `None`
/// once the device thread has closed it.
pub(super) type SharedPcm = Arc<Mutex<Option<Pcm>>>;

/// What the device thread keeps of an open stream: dropping it closes the PCM (on the helper
/// thread of [`release`], so a driver that hangs while closing cannot stop the device thread).
pub(super) struct PcmHolder(SharedPcm);

impl Drop for PcmHolder {
    fn drop(&mut self) {
        let pcm = lock(&self.0).take();
        drop(pcm);
    }
}

/// Opens `name` for `direction`, saying what to do when it does not open.
pub(super) fn open_pcm(
    key: &'static str,
    name: &str,
    rate: u32,
    period_ms: u32,
    direction: Direction,
) -> Result<Opened<SharedPcm, PcmHolder>, AudioError> {
    if name.trim().is_empty() {
        return Err(open_error(
            key,
            name,
            "no device named; put an ALSA device name here, e.g. plughw:CARD=Device,DEV=0 (the \
             `devices` command lists them)",
        ));
    }
    let pcm = Pcm::open(name, direction, rate, period_ms)
        .map_err(|f| pcm_error(key, name, f, rate, direction))?;
    let period = pcm.opened.period;
    let description = pcm.opened.describe();
    let shared: SharedPcm = Arc::new(Mutex::new(Some(pcm)));
    Ok(Opened {
        stream: PcmHolder(shared.clone()),
        ring: shared,
        period,
        description,
    })
}

pub(super) fn check_rate(key: &str, device: &str, rate: u32) -> Result<(), AudioError> {
    if rate == 0 {
        return Err(open_error(
            key,
            device,
            format!("{RATE_KEY} = 0 is not a sample rate; use the card's rate, e.g. 48000"),
        ));
    }
    Ok(())
}

pub(super) fn check_period(key: &str, device: &str, period_ms: u32) -> Result<(), AudioError> {
    if !PERIOD_MS_RANGE.contains(&period_ms) {
        return Err(open_error(
            key,
            device,
            format!(
                "{PERIOD_KEY} = {period_ms} is out of range; use {} to {} ms (20 suits most \
                 cards)",
                PERIOD_MS_RANGE.start(),
                PERIOD_MS_RANGE.end()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::INPUT_KEY;
    use super::*;

    #[test]
    fn busy_and_missing_devices_explained() {
        let explained = |f: OpenFailure| explain(&f, 16_000, Direction::Capture);
        assert!(explained(OpenFailure::Busy).contains("busy"));
        assert!(explained(OpenFailure::Permission).contains("audio` group"));
        assert!(explained(OpenFailure::Format).contains("plughw"));
        let e = explained(OpenFailure::Rate {
            min: 44_100,
            max: 48_000,
        });
        assert!(
            e.contains("16000 Hz (audio.sample_rate) is not supported"),
            "{e}"
        );
        assert!(e.contains("44100-48000 Hz"), "{e}");
        assert!(explained(OpenFailure::NotFound).contains("no such sound device"));
        let e = check_rate(INPUT_KEY, "x", 0).unwrap_err().to_string();
        assert!(e.contains("audio.sample_rate = 0"), "{e}");
        for bad in [0, 1, 101, 1000] {
            let e = check_period(INPUT_KEY, "x", bad).unwrap_err().to_string();
            assert!(
                e.contains(&format!("audio.period_ms = {bad} is out of range")),
                "{e}"
            );
        }
        for good in [2, 20, 100] {
            assert!(check_period(INPUT_KEY, "x", good).is_ok());
        }
    }
}
