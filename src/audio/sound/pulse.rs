//! Whether a PulseAudio server (or PipeWire's) answers for this user: the `pulse` ALSA device
//! opens only when one does.

use std::path::{Path, PathBuf};

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
    let runtime = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
    any_answers(&pulse_sockets(server.as_deref(), runtime.as_deref(), uid))
}

/// Whether a server accepts a connection at one of these sockets.
fn any_answers(sockets: &[PathBuf]) -> bool {
    sockets
        .iter()
        .any(|p| std::os::unix::net::UnixStream::connect(p).is_ok())
}

/// Where a PulseAudio server's socket can be: `PULSE_SERVER` (`unix:PATH` or a path), the
/// user's runtime folder, and the system-wide server's.
fn pulse_sockets(server: Option<&str>, runtime: Option<&Path>, uid: u32) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(s) = server {
        for part in s.split_whitespace() {
            let path = part.strip_prefix("unix:").unwrap_or(part);
            if path.starts_with('/') {
                out.push(PathBuf::from(path));
            }
        }
    }
    if let Some(r) = runtime {
        out.push(r.join("pulse/native"));
    }
    out.push(PathBuf::from(format!("/run/user/{uid}/pulse/native")));
    out.push(PathBuf::from("/run/pulse/native"));
    out.push(PathBuf::from("/var/run/pulse/native"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
