//! VOX: carrier detect from the received audio level, for radios without a squelch or COS
//! line.
//!
//! Rules, applied once per audio frame to the frame's peak level, measured after the receive
//! chain's high-pass ([`crate::audio::dsp::VoxFilter`]: a CTCSS tone or hum below it does not
//! count):
//! - Closed, it opens once the level has been at or above `open_dbfs` for `attack_ms` of
//!   consecutive frame time (a shorter blip is ignored; a frame below `open_dbfs` starts the
//!   count again).
//! - Open, it closes once the level has stayed below `close_dbfs` for `hang_ms` of frame
//!   time. Any frame at or above `close_dbfs` (hysteresis: even one below `open_dbfs`) keeps
//!   it open and restarts the hang countdown, so the pauses between words do not cut a
//!   message.

use serde::Deserialize;

use super::{CarrierDetect, Fault, RadioError};

/// VOX thresholds and timings (the `[radio.vox]` section of the configuration).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VoxSettings {
    /// Level at or above which the VOX opens, in dBFS (default -35).
    pub open_dbfs: f32,
    /// Level below which the VOX starts its hang countdown, in dBFS; at most `open_dbfs`
    /// (default -40).
    pub close_dbfs: f32,
    /// How long the level must stay at or above `open_dbfs` before the VOX opens, in ms
    /// (default 20).
    pub attack_ms: u32,
    /// How long the level must stay below `close_dbfs` before the VOX closes, in ms
    /// (default 300).
    pub hang_ms: u32,
}

impl Default for VoxSettings {
    fn default() -> Self {
        Self {
            open_dbfs: -35.0,
            close_dbfs: -40.0,
            attack_ms: 20,
            hang_ms: 300,
        }
    }
}

impl VoxSettings {
    /// Checks the settings; the error says which value is wrong and what is accepted.
    pub fn validate(&self) -> Result<(), Fault> {
        for (name, value) in [
            ("open_dbfs", self.open_dbfs),
            ("close_dbfs", self.close_dbfs),
        ] {
            if !value.is_finite() {
                return Err(Fault::Setting(format!(
                    "vox {name} must be a number, not {value}"
                )));
            }
            if !(-96.0..=0.0).contains(&value) {
                return Err(Fault::Setting(format!(
                    "vox {name} = {value} is outside -96 ..= 0 dBFS (0 dBFS is full scale)"
                )));
            }
        }
        if self.close_dbfs > self.open_dbfs {
            return Err(Fault::Setting(format!(
                "vox close_dbfs ({}) must not be above open_dbfs ({}): the VOX would never \
                 close once open",
                self.close_dbfs, self.open_dbfs
            )));
        }
        Ok(())
    }
}

/// Carrier detect from the audio level (see the module documentation for the rules).
#[derive(Debug, Clone)]
pub struct Vox {
    settings: VoxSettings,
    open: bool,
    /// Time the level has been at or above `open_dbfs` while closed.
    above_ms: u32,
    /// Time the level has been below `close_dbfs` while open.
    below_ms: u32,
}

impl Vox {
    /// A closed VOX with these settings, which must pass [`VoxSettings::validate`].
    pub fn new(settings: VoxSettings) -> Result<Self, RadioError> {
        settings
            .validate()
            .map_err(|source| RadioError::carrier("vox", source))?;
        Ok(Self {
            settings,
            open: false,
            above_ms: 0,
            below_ms: 0,
        })
    }

    /// Whether the VOX currently reports a carrier.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// The settings in use.
    pub fn settings(&self) -> &VoxSettings {
        &self.settings
    }

    /// Back to closed, forgetting any attack or hang time counted so far.
    pub fn reset(&mut self) {
        self.open = false;
        self.above_ms = 0;
        self.below_ms = 0;
    }
}

impl CarrierDetect for Vox {
    /// Never fails. A NaN level counts as silence.
    fn update(&mut self, level_dbfs: f32, frame_ms: u32) -> Result<bool, RadioError> {
        if self.open {
            if level_dbfs >= self.settings.close_dbfs {
                self.below_ms = 0;
            } else {
                self.below_ms = self.below_ms.saturating_add(frame_ms);
                if self.below_ms >= self.settings.hang_ms {
                    self.open = false;
                    self.below_ms = 0;
                }
            }
        } else if level_dbfs >= self.settings.open_dbfs {
            self.above_ms = self.above_ms.saturating_add(frame_ms);
            if self.above_ms >= self.settings.attack_ms {
                self.open = true;
                self.above_ms = 0;
            }
        } else {
            self.above_ms = 0;
        }
        Ok(self.open)
    }

    fn describe(&self) -> String {
        format!(
            "vox {}/{} dBFS",
            self.settings.open_dbfs, self.settings.close_dbfs
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOUD: f32 = -20.0;
    const BETWEEN: f32 = -37.0;
    const QUIET: f32 = -60.0;

    fn vox() -> Vox {
        Vox::new(VoxSettings::default()).unwrap()
    }

    /// Feeds `frames` frames of `ms` at `level`; returns the state after each.
    fn feed(vox: &mut Vox, level: f32, ms: u32, frames: usize) -> Vec<bool> {
        (0..frames)
            .map(|_| vox.update(level, ms).unwrap())
            .collect()
    }

    #[test]
    fn defaults() {
        let s = VoxSettings::default();
        assert_eq!(s.open_dbfs, -35.0);
        assert_eq!(s.close_dbfs, -40.0);
        assert_eq!(s.attack_ms, 20);
        assert_eq!(s.hang_ms, 300);
        assert!(s.validate().is_ok());
        let vox = vox();
        assert!(!vox.is_open());
        assert_eq!(vox.describe(), "vox -35/-40 dBFS");
    }

    #[test]
    fn opens_after_the_attack_time() {
        let mut vox = vox();
        // 10 ms frames: the first loud frame is 10 ms, the second reaches 20 ms.
        assert_eq!(feed(&mut vox, LOUD, 10, 2), vec![false, true]);
        // A 20 ms frame opens at once.
        let mut vox2 = self::vox();
        assert_eq!(feed(&mut vox2, LOUD, 20, 1), vec![true]);
        // Exactly at the threshold counts.
        let mut vox3 = self::vox();
        assert_eq!(feed(&mut vox3, -35.0, 10, 2), vec![false, true]);
    }

    #[test]
    fn short_blips_are_ignored() {
        let mut vox = vox();
        for _ in 0..50 {
            assert!(!vox.update(LOUD, 10).unwrap());
            assert!(!vox.update(QUIET, 10).unwrap());
        }
        // A level between the thresholds does not continue an attack either.
        assert!(!vox.update(LOUD, 10).unwrap());
        assert!(!vox.update(BETWEEN, 10).unwrap());
        assert!(!vox.update(LOUD, 10).unwrap());
        assert!(vox.update(LOUD, 10).unwrap());
    }

    #[test]
    fn level_between_thresholds_does_not_open() {
        let mut vox = vox();
        assert!(feed(&mut vox, BETWEEN, 20, 100).iter().all(|&open| !open));
    }

    #[test]
    fn closes_after_the_hang_time() {
        let mut vox = vox();
        feed(&mut vox, LOUD, 20, 5);
        assert!(vox.is_open());
        // 300 ms of 20 ms frames: open for 14 frames, closed on the 15th.
        let states = feed(&mut vox, QUIET, 20, 16);
        assert!(states[..14].iter().all(|&open| open), "{states:?}");
        assert!(!states[14] && !states[15]);
        // Closed now; needs a new attack.
        assert_eq!(feed(&mut vox, LOUD, 10, 2), vec![false, true]);
    }

    #[test]
    fn hysteresis_keeps_it_open_and_restarts_the_hang() {
        let mut vox = vox();
        feed(&mut vox, LOUD, 20, 1);
        assert!(vox.is_open());
        // Between the thresholds for a long time: stays open.
        assert!(feed(&mut vox, BETWEEN, 20, 100).iter().all(|&open| open));
        // 280 ms quiet, then one frame between the thresholds, then 280 ms quiet: still
        // open, because the in-between frame restarted the countdown.
        assert!(feed(&mut vox, QUIET, 20, 14).iter().all(|&open| open));
        assert!(vox.update(BETWEEN, 20).unwrap());
        assert!(feed(&mut vox, QUIET, 20, 14).iter().all(|&open| open));
        assert!(!vox.update(QUIET, 20).unwrap());
        // Exactly at the close threshold counts as "not below".
        feed(&mut vox, LOUD, 20, 1);
        assert!(feed(&mut vox, -40.0, 20, 50).iter().all(|&open| open));
    }

    #[test]
    fn pauses_between_words_do_not_close() {
        let mut vox = vox();
        for _ in 0..10 {
            // 200 ms word, 150 ms pause.
            feed(&mut vox, LOUD, 20, 10);
            assert!(feed(&mut vox, QUIET, 20, 7).iter().all(|&open| open));
        }
    }

    #[test]
    fn zero_attack_and_hang() {
        let mut vox = Vox::new(VoxSettings {
            attack_ms: 0,
            hang_ms: 0,
            ..VoxSettings::default()
        })
        .unwrap();
        assert!(vox.update(LOUD, 20).unwrap());
        assert!(!vox.update(QUIET, 20).unwrap());
        // Even a zero-length frame opens with no attack time.
        assert!(vox.update(LOUD, 0).unwrap());
    }

    #[test]
    fn nan_levels_count_as_silence() {
        let mut vox = vox();
        assert!(!vox.update(f32::NAN, 20).unwrap());
        feed(&mut vox, LOUD, 20, 1);
        assert!(feed(&mut vox, f32::NAN, 20, 14).iter().all(|&open| open));
        assert!(!vox.update(f32::NAN, 20).unwrap());
    }

    #[test]
    fn reset_closes() {
        let mut vox = vox();
        feed(&mut vox, LOUD, 20, 1);
        vox.reset();
        assert!(!vox.is_open());
        assert_eq!(feed(&mut vox, LOUD, 10, 2), vec![false, true]);
    }

    /// The default settings, changed by `change`.
    fn with(change: impl FnOnce(&mut VoxSettings)) -> VoxSettings {
        let mut s = VoxSettings::default();
        change(&mut s);
        s
    }

    #[test]
    fn validation() {
        let bad = with(|s| (s.open_dbfs, s.close_dbfs) = (-40.0, -35.0));
        let message = bad.validate().unwrap_err().to_string();
        assert!(message.contains("close_dbfs (-35)"), "{message}");
        assert!(message.contains("open_dbfs (-40)"), "{message}");
        let err = Vox::new(bad).unwrap_err().to_string();
        assert!(err.contains("carrier detect vox"), "{err}");

        let equal = with(|s| (s.open_dbfs, s.close_dbfs) = (-40.0, -40.0));
        assert!(equal.validate().is_ok());

        for (settings, needle) in [
            (with(|s| s.open_dbfs = f32::NAN), "open_dbfs"),
            (with(|s| s.open_dbfs = 3.0), "open_dbfs = 3"),
            (with(|s| s.close_dbfs = -120.0), "close_dbfs = -120"),
        ] {
            let err = settings.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err} should name {needle}");
        }
    }

    #[test]
    fn deserializes_with_defaults_and_rejects_unknown_keys() {
        let s: VoxSettings = toml::from_str("open_dbfs = -30.0\nhang_ms = 500").unwrap();
        assert_eq!(
            s,
            VoxSettings {
                open_dbfs: -30.0,
                hang_ms: 500,
                ..VoxSettings::default()
            }
        );
        let empty: VoxSettings = toml::from_str("").unwrap();
        assert_eq!(empty, VoxSettings::default());
        let err = toml::from_str::<VoxSettings>("open_db = -30.0").unwrap_err();
        assert!(err.to_string().contains("open_db"), "{err}");
        assert!(toml::from_str::<VoxSettings>("hang_ms = -5").is_err());
    }

    #[test]
    fn describe_shows_fractions() {
        let vox = Vox::new(VoxSettings {
            open_dbfs: -32.5,
            close_dbfs: -38.0,
            ..VoxSettings::default()
        })
        .unwrap();
        assert_eq!(vox.describe(), "vox -32.5/-38 dBFS");
    }

    /// Whether VOX opens on `samples` (16 kHz) measured the way the engine does: 20 ms
    /// frames through the default receive chain's high-pass.
    fn opens_through_the_receive_filter(samples: &[i16]) -> bool {
        let chain =
            crate::audio::dsp::RxChain::new(&crate::audio::dsp::RxSettings::default(), 16000)
                .unwrap();
        let mut filter = chain.vox_filter();
        let mut vox = vox();
        let mut opened = false;
        for frame in samples.chunks_exact(320) {
            opened |= vox.update(filter.peak_dbfs(frame), 20).unwrap();
        }
        opened
    }

    #[test]
    fn a_ctcss_tone_alone_never_opens_it_voice_over_it_does() {
        use crate::audio::speech::tone;
        let ctcss = crate::audio::dsp::fade_in(tone(16000, 100.0, 3.0, -12.0), 16000);
        // Unfiltered, the tone is 23 dB above open_dbfs.
        assert!(crate::audio::level::peak_dbfs(&ctcss) > -13.0);
        assert!(!opens_through_the_receive_filter(&ctcss));
        let voice = tone(16000, 1000.0, 3.0, -25.0);
        let both: Vec<i16> = ctcss.iter().zip(&voice).map(|(a, b)| a + b).collect();
        assert!(opens_through_the_receive_filter(&both));
        // A voice just below open_dbfs stays below it with the tone under it.
        let faint = tone(16000, 1000.0, 3.0, -38.0);
        let both: Vec<i16> = ctcss.iter().zip(&faint).map(|(a, b)| a + b).collect();
        assert!(!opens_through_the_receive_filter(&both));
    }
}
