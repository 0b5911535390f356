//! The control endpoints (the control token only; see [`guard`](super::guard)):
//! `POST /api/v1/radios/{name}/tx-inhibit` `{"inhibit": true|false, "reason": "..."}` and
//! `POST /api/v1/radios/{name}/unkey`, carried out by the gateway's
//! [`Controls`](crate::gateway::Controls).

use super::http::{failure, success};
use super::server::Api;
use crate::gateway::{ControlError, Controls};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use tracing::{error, info};

/// The longest reason kept, in characters.
pub const MAX_REASON_CHARS: usize = 200;

/// The largest request body read, in bytes.
const MAX_BODY: usize = 4096;

/// The control routes.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/api/v1/radios/{name}/tx-inhibit", post(tx_inhibit))
        .route("/api/v1/radios/{name}/unkey", post(unkey))
}

/// `tx-inhibit`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InhibitRequest {
    inhibit: bool,
    #[serde(default)]
    reason: Option<String>,
}

/// What the body says, or why it cannot be read.
fn read_request(body: &[u8]) -> Result<InhibitRequest, String> {
    if body.len() > MAX_BODY {
        return Err(format!("the body is over {MAX_BODY} bytes"));
    }
    serde_json::from_slice::<InhibitRequest>(body).map_err(|e| {
        format!("send {{\"inhibit\": true, \"reason\": \"...\"}} or {{\"inhibit\": false}} ({e})")
    })
}

/// A reason as kept and shown: one line, printable, at most [`MAX_REASON_CHARS`].
fn clean_reason(reason: Option<String>) -> Option<String> {
    let text: String = reason?
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_REASON_CHARS)
        .collect();
    let text = text.trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// The gateway's controls, when it offers them.
fn controls(api: &Api) -> Option<Controls> {
    api.control.clone()
}

fn no_controls() -> Response {
    failure(
        StatusCode::SERVICE_UNAVAILABLE,
        "control_unavailable",
        "this gateway offers no controls",
    )
}

fn answer(radio: &str, e: ControlError) -> Response {
    match e {
        ControlError::UnknownRadio(_) => failure(StatusCode::NOT_FOUND, "unknown_radio", e),
        ControlError::NotRunning(_) => failure(StatusCode::CONFLICT, "radio_not_running", e),
        ControlError::Persist { .. } => {
            error!(radio, error = %e, "TX inhibit changed but not kept");
            failure(StatusCode::INTERNAL_SERVER_ERROR, "not_persisted", e)
        }
    }
}

async fn tx_inhibit(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let request = match read_request(&body) {
        Ok(r) => r,
        Err(message) => return failure(StatusCode::BAD_REQUEST, "bad_request", message),
    };
    let Some(controls) = controls(&api) else {
        return no_controls();
    };
    let reason = clean_reason(request.reason);
    let inhibit = request.inhibit;
    let (radio, kept) = (name.clone(), reason.clone());
    // A small file write: off the runtime's thread.
    let done =
        tokio::task::spawn_blocking(move || controls.tx_inhibit(&radio, inhibit, kept)).await;
    match done {
        Ok(Ok(())) => {
            // Who asked; the radio's own line (a warning) says what it does.
            info!(radio = %name, inhibit, "TX inhibit changed through the status API");
            success(json!({"radio": name, "inhibited": inhibit, "reason": reason}))
        }
        Ok(Err(e)) => answer(&name, e),
        Err(e) => failure(StatusCode::INTERNAL_SERVER_ERROR, "internal", e),
    }
}

async fn unkey(State(api): State<Arc<Api>>, Path(name): Path<String>) -> Response {
    let Some(controls) = controls(&api) else {
        return no_controls();
    };
    match controls.unkey(&name) {
        Ok(()) => {
            info!(radio = %name, "transmission ended through the status API");
            success(json!({"radio": name, "unkeyed": true}))
        }
        Err(e) => answer(&name, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_read_strictly_and_reasons_kept_short_and_on_one_line() {
        let r = read_request(br#"{"inhibit": true, "reason": "repeater work"}"#).unwrap();
        assert!(r.inhibit);
        assert_eq!(r.reason.as_deref(), Some("repeater work"));
        assert!(!read_request(br#"{"inhibit": false}"#).unwrap().inhibit);
        for bad in [
            &b"{}"[..],
            b"not json",
            br#"{"inhibit": "yes"}"#,
            br#"{"inhibit": true, "reasn": "x"}"#,
            b"",
        ] {
            let e = read_request(bad).unwrap_err();
            assert!(e.contains(r#"{"inhibit": true"#), "{e}");
        }
        assert!(
            read_request(&vec![b' '; MAX_BODY + 1])
                .unwrap_err()
                .contains("over 4096")
        );
        assert_eq!(
            clean_reason(Some("  a\nb\tc ".into())).as_deref(),
            Some("a b c")
        );
        assert_eq!(clean_reason(Some("   ".into())), None);
        assert_eq!(
            clean_reason(Some("x".repeat(500))).unwrap().chars().count(),
            MAX_REASON_CHARS
        );
    }
}
