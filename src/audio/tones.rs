//! Tones the gateway transmits itself: the courtesy tone and CW station identification.

use std::f32::consts::TAU;

/// A sine tone with 5 ms raised-cosine edges (no clicks on the air).
pub fn beep(rate: u32, hz: f32, ms: u32, dbfs: f32) -> Vec<i16> {
    let n = (rate as u64 * ms as u64 / 1000) as usize;
    let amp = 32767.0 * 10f32.powf(dbfs.min(0.0) / 20.0);
    let edge = ((rate as usize * 5) / 1000).max(1).min(n / 2).max(1);
    (0..n)
        .map(|i| {
            let env = if i < edge {
                0.5 - 0.5 * (std::f32::consts::PI * i as f32 / edge as f32).cos()
            } else if i >= n - edge {
                0.5 - 0.5 * (std::f32::consts::PI * (n - 1 - i) as f32 / edge as f32).cos()
            } else {
                1.0
            };
            (amp * env * (TAU * hz * i as f32 / rate as f32).sin()) as i16
        })
        .collect()
}

/// International Morse code for letters, digits and the characters call signs use.
fn morse(c: char) -> Option<&'static str> {
    Some(match c.to_ascii_uppercase() {
        'A' => ".-",
        'B' => "-...",
        'C' => "-.-.",
        'D' => "-..",
        'E' => ".",
        'F' => "..-.",
        'G' => "--.",
        'H' => "....",
        'I' => "..",
        'J' => ".---",
        'K' => "-.-",
        'L' => ".-..",
        'M' => "--",
        'N' => "-.",
        'O' => "---",
        'P' => ".--.",
        'Q' => "--.-",
        'R' => ".-.",
        'S' => "...",
        'T' => "-",
        'U' => "..-",
        'V' => "...-",
        'W' => ".--",
        'X' => "-..-",
        'Y' => "-.--",
        'Z' => "--..",
        '0' => "-----",
        '1' => ".----",
        '2' => "..---",
        '3' => "...--",
        '4' => "....-",
        '5' => ".....",
        '6' => "-....",
        '7' => "--...",
        '8' => "---..",
        '9' => "----.",
        '/' => "-..-.",
        '-' => "-....-",
        '.' => ".-.-.-",
        '?' => "..--..",
        _ => return None,
    })
}

/// Whether every character of `text` can be sent in CW (spaces allowed).
pub fn cw_supported(text: &str) -> Result<(), char> {
    match text.chars().find(|&c| c != ' ' && morse(c).is_none()) {
        Some(c) => Err(c),
        None => Ok(()),
    }
}

/// `text` in CW at `wpm` words per minute (PARIS timing: a dot is 1200/wpm ms), `hz` pitch.
/// Characters with no Morse code are skipped.
pub fn cw(rate: u32, text: &str, wpm: u32, hz: f32, dbfs: f32) -> Vec<i16> {
    let dot_ms = 1200 / wpm.clamp(5, 60);
    let silence = |units: u32| vec![0i16; (rate as u64 * (dot_ms * units) as u64 / 1000) as usize];
    let mut out = Vec::new();
    for (wi, word) in text.split_whitespace().enumerate() {
        if wi > 0 {
            out.extend(silence(7));
        }
        for (ci, code) in word.chars().filter_map(morse).enumerate() {
            if ci > 0 {
                out.extend(silence(3));
            }
            for (ei, element) in code.chars().enumerate() {
                if ei > 0 {
                    out.extend(silence(1));
                }
                let units = if element == '-' { 3 } else { 1 };
                out.extend(beep(rate, hz, dot_ms * units, dbfs));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::level::peak_dbfs;

    #[test]
    fn beep_has_its_length_level_and_soft_edges() {
        let b = beep(16000, 1000.0, 150, -20.0);
        assert_eq!(b.len(), 2400);
        assert!((peak_dbfs(&b) + 20.0).abs() < 0.5, "{}", peak_dbfs(&b));
        assert!(b[0].abs() < 50 && b[2399].abs() < 50);
        // 1 kHz: 300 zero crossings in 150 ms.
        let crossings = b.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        assert!((295..=305).contains(&crossings), "{crossings}");
    }

    #[test]
    fn cw_timing_follows_paris() {
        // "E" is one dot: 60 ms at 20 WPM.
        assert_eq!(cw(8000, "E", 20, 800.0, -20.0).len(), 480);
        // "EE": dot, 3 units gap, dot = 5 units.
        assert_eq!(cw(8000, "EE", 20, 800.0, -20.0).len(), 5 * 480);
        // "E E": dot, 7 units, dot = 9 units.
        assert_eq!(cw(8000, "E E", 20, 800.0, -20.0).len(), 9 * 480);
        // "T": one dash, 3 units.
        assert_eq!(cw(8000, "T", 20, 800.0, -20.0).len(), 3 * 480);
        let call = cw(16000, "N0CALL/R", 20, 800.0, -20.0);
        assert!(call.len() > 16000 * 3, "a call sign takes a few seconds");
        assert_eq!(cw_supported("N0CALL/R"), Ok(()));
        assert_eq!(cw_supported("N0CALL!"), Err('!'));
        assert!(cw(16000, "", 20, 800.0, -20.0).is_empty());
    }
}
