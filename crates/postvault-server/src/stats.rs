//! `POST /v1/statistics?purpose=P`: aggregate statistics with differential
//! privacy (docs/statistics.md).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::Response;
use postvault::{Principal, StatsRequest};

use crate::handlers::{Params, json, json_body, params};
use crate::{ApiError, AppState, blocking};

/// The HTTP status of a statistics refusal code.
pub(crate) fn status(code: &str) -> Option<StatusCode> {
    Some(match code {
        "not_aggregate" | "purpose_not_permitted" | "no_statistics" | "no_budget" => {
            StatusCode::FORBIDDEN
        }
        "unknown_category"
        | "undeclared_dimension"
        | "bad_group_by"
        | "undeclared_field"
        | "sum_needs_public_keys"
        | "epsilon_over_cap"
        | "epsilon_under_minimum"
        | "bad_epsilon"
        | "too_many_groups" => StatusCode::BAD_REQUEST,
        "budget_exhausted" => StatusCode::TOO_MANY_REQUESTS,
        _ => return None,
    })
}

/// `POST /v1/statistics?purpose=P` with a query body.
#[utoipa::path(post, path = "/v1/statistics", tag = "statistics", params(crate::openapi::ReadQuery), request_body(content = postvault::StatsRequest, content_type = "application/json"), responses((status = 200, description = "Noisy groups, the privacy spent, a 95% accuracy interval, the budget left and the query's leaf index", body = postvault::StatsAnswer), (status = 400, description = "`invalid`, `undeclared_dimension`, `epsilon_over_cap`, `epsilon_under_minimum`, `bad_epsilon`, `too_many_groups`, `unknown_category`", body = crate::error::ErrorBody), (status = 403, description = "`not_aggregate`: the purpose's cell is not marked A; `purpose_not_permitted`, `no_statistics`, `no_budget`", body = crate::error::ErrorBody), (status = 429, description = "`budget_exhausted`, with the epsilon that remains in the period", body = crate::error::ErrorBody), crate::openapi::Common))]
pub async fn query(
    State(state): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    q: Params,
    body: Body,
) -> Result<Response, ApiError> {
    let purpose = params(q)?
        .remove("purpose")
        .ok_or_else(|| ApiError::bad_request("`purpose` is required"))?;
    let req: StatsRequest = json_body(body, state.config.max_body).await?;
    let r = blocking(&state, move |v| Ok(v.statistics(&p, &purpose, &req)?)).await?;
    Ok(json(StatusCode::OK, &r))
}
