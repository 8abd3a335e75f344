//! The `Idempotency-Key` header of `POST /v1/records` (the IETF HTTP API
//! draft of that name): the upload's batch id. A resend with the same key
//! by the same principal resumes after what was committed, or gets the
//! first answer when the upload had finished; one still running answers
//! 409 `run_in_progress` (with `Retry-After`); the same key with other
//! content answers 422 `run_mismatch`.

use axum::http::HeaderMap;

use crate::ApiError;

/// The header's value, unquoted (the draft sends a structured-field
/// string, `"..."`; plain tokens are accepted too).
pub(crate) fn key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bad = || {
        ApiError::bad_request(format!(
            "`Idempotency-Key` must be 1 to {} printable ASCII characters",
            postvault::MAX_BATCH_ID
        ))
    };
    let text = v.to_str().map_err(|_| bad())?.trim();
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    if text.is_empty()
        || text.len() > postvault::MAX_BATCH_ID
        || !text.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    {
        return Err(bad());
    }
    Ok(Some(text.to_string()))
}
