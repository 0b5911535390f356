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

/// Whether a PulseAudio server (or PipeWire's) answers for this user, at the socket
/// `PULSE_SERVER` names or at the usual places. A server given by network address is taken
/// to be there.
pub fn pulse_server_running() -> bool {
    let server = std::env::var("PULSE_SERVER").ok();
    if server.as_deref().is_some_and(|s| s.contains("tcp:")) {
        return true;
    }
    // SAFETY: getuid cannot fail and has no preconditions.
    let uid = unsafe { libc::getuid() };
    let runtime = std::env::var_os("XDG_RUNTIME_DIR").map(std::path::PathBuf::from);
    any_answers(&pulse_sockets(server.as_deref(), runtime.as_deref(), uid))
}

/// Whether a server accepts a connection at one of these sockets.
fn any_answers(sockets: &[std::path::PathBuf]) -> bool {
    sockets
        .iter()
        .any(|p| std::os::unix::net::UnixStream::connect(p).is_ok())
}

/// Where a PulseAudio server's socket can be: `PULSE_SERVER` (`unix:PATH` or a path), the
/// user's runtime folder, and the system-wide server's.
fn pulse_sockets(
    server: Option<&str>,
    runtime: Option<&Path>,
    uid: u32,
) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Some(s) = server {
        for part in s.split_whitespace() {
            let path = part.strip_prefix("unix:").unwrap_or(part);
            if path.starts_with('/') {
                out.push(std::path::PathBuf::from(path));
            }
        }
    }
    if let Some(r) = runtime {
        out.push(r.join("pulse/native"));
    }
    out.push(std::path::PathBuf::from(format!(
        "/run/user/{uid}/pulse/native"
    )));
    out.push(std::path::PathBuf::from("/run/pulse/native"));
    out.push(std::path::PathBuf::from("/var/run/pulse/native"));
    out
}

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
    fn pulse_sockets_come_from_pulse_server_and_the_runtime_folder() {
        let dir = tempfile::tempdir().unwrap();
        let sockets = pulse_sockets(Some("unix:/tmp/p/native"), Some(dir.path()), 1000);
        assert_eq!(sockets[0], PathBuf::from("/tmp/p/native"));
        assert_eq!(sockets[1], dir.path().join("pulse/native"));
        assert!(sockets.contains(&PathBuf::from("/run/user/1000/pulse/native")));
        // A socket someone listens on answers; none there, nothing answers.
        assert!(!any_answers(&sockets[1..2]));
        std::fs::create_dir(dir.path().join("pulse")).unwrap();
        let _listener = std::os::unix::net::UnixListener::bind(&sockets[1]).unwrap();
        assert!(any_answers(&sockets[1..2]));
    }

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
