//! The OpenAPI 3.1 document, generated from the handlers' annotations and
//! the `ToSchema` types of every body (the vault's answers derive theirs in
//! `postvault` under its `openapi` feature).
//!
//! Invariant: the document describes what the server does. Every status an
//! endpoint can answer is listed with its body's schema; every parameter
//! carries the constraints the handler checks (identifier length and
//! characters, whole numbers up to 2^63 - 1, the values of an enumerated
//! parameter). The document served by a running service also lists the
//! loaded pack's purposes and categories as the values of the parameters
//! and fields that take them. `.ci/schemathesis.sh` checks the document
//! against a live server.

use postvault::{CollectReport, EraseReport};
use postvault_policy::Pack;
use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi, ToSchema};

use crate::error::ErrorBody;
use crate::handlers;

/// A person's, request's or hold's identifier in a path: 1 to 256
/// characters, none of them a control character; percent-encoded.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct IdPath {
    #[param(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]+$"
    )]
    id: String,
}

/// A person's id in a path (`postvault_policy::check_subject_id`, the one
/// check every entry point runs): 1 to 128 bytes in Unicode NFC, without
/// control, formatting, bidirectional or other invisible characters, nor
/// a space at either end; percent-encoded. The pattern excludes the
/// controls, separators, private-use characters and the BMP's format and
/// default-ignorable characters; a byte length and a normalization form are beyond JSON
/// Schema, so `maxLength` (in characters) is the whole rule only for
/// ASCII ids, and an id of other characters within it can still be
/// refused (400 `invalid_subject_id`).
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct SubjectPath {
    #[param(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\u0000-\u0020\u007F-\u009F\u00A0\u00AD\u034F\u0600-\u0605\u061C\u06DD\u070F\u0890\u0891\u08E2\u115F\u1160\u1680\u17B4\u17B5\u180B-\u180F\u2000-\u200F\u2028-\u202F\u205F-\u206F\u3000\u3164\uE000-\uF8FF\uFE00-\uFE0F\uFEFF\uFFA0\uFFF0-\uFFFB](?:[^\u0000-\u001F\u007F-\u009F\u00A0\u00AD\u034F\u0600-\u0605\u061C\u06DD\u070F\u0890\u0891\u08E2\u115F\u1160\u1680\u17B4\u17B5\u180B-\u180F\u2000-\u200F\u2028-\u202F\u205F-\u206F\u3000\u3164\uE000-\uF8FF\uFE00-\uFE0F\uFEFF\uFFA0\uFFF0-\uFFFB]*[^\u0000-\u0020\u007F-\u009F\u00A0\u00AD\u034F\u0600-\u0605\u061C\u06DD\u070F\u0890\u0891\u08E2\u115F\u1160\u1680\u17B4\u17B5\u180B-\u180F\u2000-\u200F\u2028-\u202F\u205F-\u206F\u3000\u3164\uE000-\uF8FF\uFE00-\uFE0F\uFEFF\uFFA0\uFFF0-\uFFFB])?$"
    )]
    id: String,
}

/// A principal's name in a path: 1 to 64 letters, digits, `-`, `_` or `.`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct PrincipalPath {
    /// The principal's name.
    #[param(min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9._-]+$")]
    name: String,
}

/// `Idempotency-Key` of `POST /v1/records`: the upload's batch id, 1 to
/// 200 printable ASCII characters (spaces inside), bare or as a quoted
/// structured-field string.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct IdempotencyHeader {
    /// A batch id: the upload is stored once; a resend of a finished
    /// upload gets its first answer.
    #[param(
        rename = "Idempotency-Key",
        min_length = 1,
        max_length = 200,
        pattern = r#"^(?!""$)[!-~](?:[ -~]*[!-~])?$"#
    )]
    idempotency_key: Option<String>,
}

/// `?purpose=P`: the declared purpose of a read.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ReadQuery {
    /// A purpose of the pack.
    purpose: String,
}

/// `?format=`: the report's format.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ReportQuery {
    /// `json` (the default) or `html` (`text/html`, for the person).
    #[param(inline)]
    format: Option<ReportFormat>,
}

/// `GET /v1/log/witnesses`: the witness policy and where cosigning stands.
#[derive(Serialize, ToSchema)]
pub struct WitnessStatus {
    /// Cosignatures a checkpoint needs to be final (0: no witnesses).
    pub quorum: usize,
    /// The witnesses' verifier keys (C2SP signed-note vkeys).
    pub witnesses: Vec<String>,
    /// The latest final checkpoint, or null.
    #[serde(rename = "final")]
    pub final_checkpoint: Option<FinalCheckpoint>,
    /// The size of the latest signed checkpoint, final or not.
    pub latest_signed: Option<u64>,
    /// The latest signed checkpoint is not final yet.
    pub pending: bool,
}

/// A checkpoint a quorum of witnesses cosigned.
#[derive(Serialize, ToSchema)]
pub struct FinalCheckpoint {
    pub size: u64,
    /// `<name>+<key id>` of each cosigner whose line verified.
    pub cosigners: Vec<String>,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum ReportFormat {
    Json,
    Html,
}

/// `?all=`: the accounting with what a delay order covers (approver role).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct AccountingQuery {
    /// `true` or `1` (the approver role only), `false` or `0` (default).
    #[param(inline)]
    all: Option<Flag>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub enum Flag {
    #[schema(rename = "true")]
    True,
    #[schema(rename = "false")]
    False,
    #[schema(rename = "1")]
    One,
    #[schema(rename = "0")]
    Zero,
}

/// `POST /v1/records` options.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct CollectQuery {
    /// The purpose of lines that name none.
    purpose: Option<String>,
    /// Lines per transaction (default 2048); clamped to 1..65536.
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    batch_size: Option<i64>,
}

/// `GET /v1/log/proof/inclusion`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct InclusionQuery {
    /// The leaf's index: below `size`.
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    index: i64,
    /// The tree size (default: the latest checkpoint's); at most the log's.
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    size: Option<i64>,
}

/// `GET /v1/log/proof/consistency`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ConsistencyQuery {
    /// The older size: at most `new`.
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    old: i64,
    /// The newer size: at most the log's.
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    new: i64,
}

/// `GET /v1/log/entries`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct EntriesQuery {
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    start: i64,
    /// Exclusive: at least `start`, at most `start + 1000`.
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    end: i64,
}

/// `GET /log/tile/{path}`: a C2SP tlog-tiles path below `/log/tile/`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct TilePath {
    /// `<L>/<N>[.p/<W>]` or `entries/<N>[.p/<W>]`, `<N>` in 3-digit
    /// groups, all but the last prefixed with `x`.
    #[param(example = "0/000.p/1")]
    path: String,
}

/// `GET /health`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}

/// The answer to `POST /v1/subjects/{id}/consent`.
#[derive(Serialize, ToSchema)]
pub struct ConsentAnswer {
    pub subject: String,
    pub purpose: String,
    pub granted: bool,
    /// The leaf that records the change.
    pub log_index: u64,
}

/// An error answer of `POST /v1/records`, with the collection report: how
/// far the upload got (`committed_through_line`).
#[derive(Serialize, ToSchema)]
pub struct CollectError {
    pub error: crate::error::ErrorDetail,
    pub report: CollectReport,
}

/// A 400 of `POST /v1/records`: a bad query (no report: nothing was
/// read), or an upload that stopped (with the report).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum CollectBadRequest {
    Query(ErrorBody),
    Upload(CollectError),
}

/// 409 `legal_hold` of an erasure, with the erasure report.
#[derive(Serialize, ToSchema)]
pub struct EraseRefused {
    pub error: crate::error::ErrorDetail,
    pub report: EraseReport,
}

/// The OpenAPI document itself.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct OpenApiDocument {
    #[schema(example = "3.1.0")]
    openapi: String,
    info: serde_json::Value,
    paths: serde_json::Value,
}

/// A legal instrument (docs/instruments.md), the body of
/// `POST /v1/disclosures`. The gateway reads any body: one that is not
/// such an instrument is recorded and refused with its codes (`malformed`,
/// `unknown_field`, `incomplete`, ...), answered 201 like any submission.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Instrument {
    #[schema(inline)]
    kind: InstrumentKind,
    instrument_id: String,
    agency: String,
    signer: Signer,
    authority: String,
    ground: String,
    case_id: String,
    subjects: Vec<InstrumentSubject>,
    /// Category ids of the pack.
    portions: Vec<String>,
    /// A date (`2026-03-10`) or an RFC 3339 date-time.
    issued_at: String,
    expires_at: Option<String>,
    /// Court orders, warrants, written requests, subpoenas.
    time_range: Option<TimeRange>,
    /// Court orders and warrants.
    court: Option<Court>,
    delay_notice_until: Option<String>,
    /// Mail covers (39 CFR 233.3): the fields of docs/instruments.md.
    requester_type: Option<String>,
    statute_cited: Option<String>,
    penalty_max_years: Option<u32>,
    reasonable_grounds: Option<String>,
    oral: Option<bool>,
    written_confirmed_at: Option<String>,
    emergency: Option<bool>,
    start: Option<String>,
    days: Option<u32>,
    extension_no: Option<u32>,
    benefit_statement: Option<String>,
    cumulative_days: Option<u32>,
    cpi_approval_ref: Option<String>,
    indicted_or_information_filed: Option<bool>,
    known_attorney: Option<KnownAttorney>,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum InstrumentKind {
    CourtOrder,
    Warrant,
    WrittenRequest,
    Subpoena,
    MailCover,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Signer {
    name: String,
    title: String,
    /// `agent`, `supervisor`, `section_chief` or `agency_head`.
    level: String,
    delegation_ref: Option<String>,
}

/// One person, named by identifier only.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct InstrumentSubject {
    id: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TimeRange {
    from: String,
    to: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Court {
    name: String,
    docket: String,
    judge: String,
    order_date: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct KnownAttorney {
    name: String,
    address: String,
}

/// The reasons a request is ended early.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum EndReasonName {
    Indicted,
    ImproperlyOrdered,
    Withdrawn,
}

/// What every endpoint behind a token can also answer.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum Common {
    /// No token, or a token no principal holds (`unauthorized`), with
    /// `WWW-Authenticate: Bearer`.
    #[response(status = 401, headers(("WWW-Authenticate" = String)))]
    Unauthorized(ErrorBody),
    /// The caller's bucket is empty (`rate_limited`).
    #[response(status = 429, headers(("Retry-After" = String), ("X-RateLimit-Limit" = String), ("X-RateLimit-Remaining" = String)))]
    RateLimited(ErrorBody),
    /// The vault or the service failed; the service log has the cause.
    #[response(status = 500)]
    Internal(ErrorBody),
    /// The request took longer than `--timeout` (`timeout`), or a read or
    /// fetch was made again too often while mail-cover orders were
    /// destroyed (`busy`, with `Retry-After`).
    #[response(status = 503)]
    Timeout(ErrorBody),
}

/// What the public endpoints can also answer.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum PublicCommon {
    /// The client address's bucket is empty (`rate_limited`).
    #[response(status = 429, headers(("Retry-After" = String), ("X-RateLimit-Limit" = String), ("X-RateLimit-Remaining" = String)))]
    RateLimited(ErrorBody),
    /// The service failed; its log has the cause.
    #[response(status = 500)]
    Internal(ErrorBody),
    /// The request took longer than `--timeout` (`timeout`).
    #[response(status = 503)]
    Timeout(ErrorBody),
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "postvault",
        description = "A purpose-bound personal data vault for postal data. Every endpoint but /health and the transparency log needs `Authorization: Bearer <token>`. Errors are {\"error\": {\"code\", \"message\"}} (docs/http.md).",
        license(name = "Apache-2.0")
    ),
    paths(
        handlers::health,
        handlers::collect,
        handlers::read,
        handlers::subject_report,
        handlers::consent,
        handlers::erase,
        handlers::correct,
        handlers::accounting,
        handlers::access_code,
        handlers::disclose_submit,
        handlers::disclosure_list,
        handlers::disclosure_show,
        handlers::disclose_approve,
        handlers::disclose_refuse,
        handlers::disclose_fetch,
        handlers::disclose_end,
        handlers::hold_place,
        handlers::hold_list,
        handlers::hold_release,
        handlers::retention_run,
        handlers::principal_revoke,
        handlers::principal_rotate,
        handlers::transparency,
        crate::stats::query,
        handlers::metrics,
        handlers::openapi,
        handlers::log_checkpoint,
        handlers::log_inclusion,
        handlers::log_consistency,
        handlers::log_entries,
        handlers::log_witnesses,
        handlers::log_tile,
    ),
    modifiers(&Bearer, &Bodies),
    security(("bearer" = []))
)]
struct ApiDoc;

/// Request bodies the handlers take as optional, the submission body that
/// takes anything, and the officer's copy of it.
struct Bodies;

/// An `Instrument`, or any other JSON document: what was submitted.
fn submitted() -> Schema {
    use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, SchemaType};
    Schema::AnyOf(
        AnyOfBuilder::new()
            .item(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                "Instrument",
            )))
            .item(Schema::Object(
                ObjectBuilder::new()
                    .schema_type(SchemaType::AnyValue)
                    .build(),
            ))
            .description(Some(
                "An `Instrument`; any other body is recorded and refused",
            ))
            .build(),
    )
}

impl Modify for Bodies {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::Required;
        let op = |doc: &mut utoipa::openapi::OpenApi, path: &str| {
            doc.paths
                .paths
                .get_mut(path)
                .and_then(|item| item.post.as_mut())
                .and_then(|op| op.request_body.as_mut())
                .map(|b| b.required = Some(Required::False))
        };
        // An empty upload is an empty collection; no body approves every
        // requested portion.
        op(doc, "/v1/records");
        op(doc, "/v1/disclosures/{id}/approve");
        // No body refuses without a reason beyond the refusal.
        op(doc, "/v1/disclosures/{id}/refuse");
        // Whatever is submitted is recorded: an instrument passes the
        // check, anything else (no body included) is refused with its codes.
        op(doc, "/v1/disclosures");
        if let Some(body) = doc
            .paths
            .paths
            .get_mut("/v1/disclosures")
            .and_then(|item| item.post.as_mut())
            .and_then(|op| op.request_body.as_mut())
        {
            for content in body.content.values_mut() {
                content.schema = Some(RefOr::T(submitted()));
            }
        }
        // The privacy office sees the submission as it was sent, an
        // instrument or not (absent when it was too large to keep).
        if let Some(RefOr::T(Schema::Object(o))) = doc
            .components
            .as_mut()
            .and_then(|c| c.schemas.get_mut("OfficerView"))
            && let Some(slot) = o.properties.get_mut("instrument")
        {
            *slot = RefOr::T(submitted());
        }
    }
}

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The document, the same for every pack.
pub fn document() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|_| "{}".into())
}

/// The document of a service running `pack`: its purposes and categories
/// are the values the parameters and fields that name them take.
pub fn document_for(pack: &Pack) -> String {
    let mut doc = ApiDoc::openapi();
    let t = pack.taxonomy();
    let purposes: Vec<String> = t.purposes.iter().map(|p| p.id.clone()).collect();
    let categories: Vec<String> = t.categories.iter().map(|c| c.id.clone()).collect();
    for item in doc.paths.paths.values_mut() {
        let ops = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in ops.into_iter().flatten() {
            for p in op.parameters.iter_mut().flatten() {
                if p.name == "purpose" {
                    p.schema = Some(enum_of(&purposes));
                }
            }
        }
    }
    if let Some(c) = doc.components.as_mut() {
        for (schema, field, values) in [
            ("ConsentBody", "purpose", &purposes),
            ("CorrectBody", "category", &categories),
        ] {
            if let Some(RefOr::T(Schema::Object(o))) = c.schemas.get_mut(schema)
                && let Some(slot) = o.properties.get_mut(field)
            {
                *slot = enum_of(values);
            }
        }
    }
    doc.to_pretty_json().unwrap_or_else(|_| "{}".into())
}

fn enum_of(values: &[String]) -> RefOr<Schema> {
    RefOr::T(Schema::Object(
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(values.iter().cloned()))
            .build(),
    ))
}
