//! `zello-gateway devices`: what a user needs to fill in the audio and CM108 settings.

use crate::audio::sound;
use crate::radio::cm108::{self, HidrawCard};
use std::fmt::Write as _;
use std::path::Path;

/// The sound cards and devices, and the CM108-family hidraw nodes found under `sysfs_root`.
pub fn describe(sysfs_root: &Path) -> String {
    let mut out = sound::describe_devices();
    out.push('\n');
    out.push_str(&describe_hidraw(&cm108::list_hidraw_for_cards(sysfs_root)));
    out
}

/// Whether a PulseAudio server answers for this user (see the sound backend).
pub use crate::audio::sound::pulse_server_running;

/// The hidraw part of the listing.
pub fn describe_hidraw(cards: &[HidrawCard]) -> String {
    let mut out =
        String::from("USB sound cards with HID GPIO (for ptt/carrier type = \"cm108\"):\n");
    if cards.is_empty() {
        out.push_str("  none found\n");
        return out;
    }
    for c in cards {
        let chip = cm108::chip_name(c.vendor, c.product).unwrap_or("unknown chip (accepted)");
        let _ = writeln!(
            out,
            "  card {} ({}): {}  {:04x}:{:04x} {}  -> device = \"{}\" or \"auto\"",
            c.card_index,
            c.card_id,
            c.hidraw.display(),
            c.vendor,
            c.product,
            chip,
            c.hidraw.display()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn hidraw_listing_names_the_node_and_chip() {
        let text = describe_hidraw(&[HidrawCard {
            card_index: 1,
            card_id: "Device".into(),
            hidraw: PathBuf::from("/dev/hidraw0"),
            vendor: 0x0d8c,
            product: 0x013c,
        }]);
        assert!(
            text.contains("card 1 (Device): /dev/hidraw0  0d8c:013c"),
            "{text}"
        );
        assert!(text.contains("CM108AH"), "{text}");
        assert!(describe_hidraw(&[]).contains("none found"));
    }
}
