//! API errors: `{"error": {"code", "message"}}` with a stable code and the
//! HTTP status it maps to. Messages come from the vault, which never puts a
//! personal-data value in one.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use postvault::VaultError;
use serde::Serialize;

/// The body of every error answer: `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// A stable machine-readable code (docs/http.md lists them) and a message
/// for a person, never carrying a personal-data value.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    #[schema(example = "invalid")]
    pub code: String,
    pub message: String,
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send `Authorization: Bearer <token>` with the token of a principal",
        )
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the request body is larger than {limit} bytes"),
        )
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl From<VaultError> for ApiError {
    fn from(e: VaultError) -> ApiError {
        let code = e.code();
        let status = crate::stats::status(code).unwrap_or(match code {
            "not_permitted" => StatusCode::FORBIDDEN,
            "invalid"
            | "unknown_purpose"
            | "unknown_role"
            | "input"
            | "bad_pack"
            | "invalid_subject_id"
            | "consent_prohibited_purpose"
            | "consent_not_required" => StatusCode::BAD_REQUEST,
            "unknown_principal" | "principal_not_active" => StatusCode::NOT_FOUND,
            "principal_revoked" | "rotate_own_token_only" => StatusCode::FORBIDDEN,
            "principal_exists" | "run_in_progress" | "already_decided" | "held" | "delay_order" => {
                StatusCode::CONFLICT
            }
            "no_such_request" => StatusCode::NOT_FOUND,
            "run_mismatch" => StatusCode::UNPROCESSABLE_ENTITY,
            "no_final_checkpoint" | "witnesses_not_configured" | "busy" => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        });
        // Records whose keys are missing: a fault of the vault's key store,
        // which no retry fixes (500, not 503). The message tells the
        // operator what to run; the count goes to the service log only (a
        // statistics query's would be an exact count of records that no
        // noise protects).
        if let VaultError::RecordKeysMissing { .. } = e {
            tracing::error!(code, error = %e, "records without keys");
            return ApiError::new(
                status,
                code,
                "records could not be opened: their keys are missing from the key store or \
                 damaged; nothing was returned. The operator should run `postvault check` and \
                 restore the key store from the backup taken with this data store",
            );
        }
        if status.is_server_error() {
            // The detail (paths, the database's words) goes to the service
            // log, not to the client.
            tracing::error!(code, error = %e, "vault error");
            return ApiError::new(
                status,
                code,
                "the vault could not complete the request; the service log has the cause",
            );
        }
        ApiError::new(status, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        let mut r = (self.status, axum::Json(body)).into_response();
        if self.code == "run_in_progress" || self.code == "busy" {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}
