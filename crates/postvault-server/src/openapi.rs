//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::handlers;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "postvault",
        description = "A purpose-bound personal data vault for postal data. Every endpoint but /health and the transparency log needs `Authorization: Bearer <token>`. Errors are {\"error\": {\"code\", \"message\"}}.",
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
        handlers::metrics,
        handlers::openapi,
        handlers::log_checkpoint,
        handlers::log_inclusion,
        handlers::log_consistency,
        handlers::log_entries,
        handlers::log_witnesses,
        handlers::log_tile,
    ),
    modifiers(&Bearer),
    security(("bearer" = []))
)]
struct ApiDoc;

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

pub fn document() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|_| "{}".into())
}
