//! The OpenAPI document, built in code: paths from the route table below, schemas
//! derived (`utoipa::ToSchema`) from the `hashdrop-wire` types the handlers use. A
//! test checks the table against the router so the two cannot drift.

use hashdrop_wire as w;
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ComponentsBuilder, ObjectBuilder, Ref, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, InfoBuilder, OpenApiBuilder, PathsBuilder, Required, ResponseBuilder,
    SecurityRequirement,
};

/// One documented route.
#[derive(Debug, Clone, Copy)]
pub struct RouteDoc {
    /// HTTP method.
    pub method: &'static str,
    /// Path template as routed.
    pub path: &'static str,
    /// One-line summary.
    pub summary: &'static str,
    /// Needs `Authorization: Bearer`.
    pub auth: bool,
    /// JSON request body schema.
    pub request: Option<&'static str>,
    /// JSON success body schema, and whether it is an array of it.
    pub response: Option<(&'static str, bool)>,
    /// Documented statuses.
    pub statuses: &'static [u16],
}

const fn r(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    auth: bool,
    request: Option<&'static str>,
    response: Option<(&'static str, bool)>,
    statuses: &'static [u16],
) -> RouteDoc {
    RouteDoc {
        method,
        path,
        summary,
        auth,
        request,
        response,
        statuses,
    }
}

/// Every route the server answers.
pub const ROUTES: &[RouteDoc] = &[
    r(
        "GET",
        "/api/healthz",
        "Liveness: plain text OK",
        false,
        None,
        None,
        &[200, 429],
    ),
    r(
        "GET",
        "/api/readyz",
        "Readiness: database and blob store (503 when failing or draining); cache and rate_limit report ok|degraded|disabled, and status degraded still answers 200",
        false,
        None,
        Some(("Readiness", false)),
        &[200, 503],
    ),
    r(
        "GET",
        "/api/cli/version",
        "CLI version this server is compatible with",
        false,
        None,
        Some(("CliVersion", false)),
        &[200],
    ),
    r(
        "GET",
        "/metrics",
        "Prometheus metrics (text)",
        false,
        None,
        None,
        &[200],
    ),
    r(
        "GET",
        "/api/openapi.json",
        "This document",
        false,
        None,
        None,
        &[200],
    ),
    r(
        "POST",
        "/api/user/register",
        "Create an account and mail a verification code",
        false,
        Some("Credentials"),
        Some(("UserResponse", false)),
        &[201, 400, 409, 429],
    ),
    r(
        "PATCH",
        "/api/user/verify",
        "Verify an account with the mailed code",
        false,
        Some("VerifyRequest"),
        None,
        &[204, 400, 401, 429],
    ),
    r(
        "POST",
        "/api/user/login",
        "Get an access and a refresh token",
        false,
        Some("Credentials"),
        Some(("LoginResponse", false)),
        &[200, 400, 401, 429],
    ),
    r(
        "DELETE",
        "/api/user",
        "Delete the account (email and password in the body)",
        true,
        Some("Credentials"),
        None,
        &[204, 400, 401],
    ),
    r(
        "POST",
        "/api/token/refresh",
        "Rotate a refresh token",
        false,
        Some("RefreshRequest"),
        Some(("RefreshResponse", false)),
        &[200, 400, 401],
    ),
    r(
        "POST",
        "/api/token/revoke",
        "Revoke a refresh token",
        false,
        Some("RefreshRequest"),
        None,
        &[204, 400],
    ),
    r(
        "POST",
        "/api/files/presign",
        "Reserve quota and get a signed upload URL (multipart: the file, its parts as their URLs are signed)",
        true,
        Some("PresignRequest"),
        Some(("PresignResponse", false)),
        &[200, 400, 401, 403, 413, 503],
    ),
    r(
        "POST",
        "/api/files/complete",
        "Confirm an upload after checking the stored size",
        true,
        Some("CompleteRequest"),
        Some(("CompleteResponse", false)),
        &[200, 400, 401, 404, 413, 503],
    ),
    r(
        "POST",
        "/api/files/parts",
        "Signed URLs for parts of a pending multipart upload, each for its exact length; reserves the quota of parts not counted before",
        true,
        Some("PartUrlsRequest"),
        Some(("PartUrlsResponse", false)),
        &[200, 400, 401, 403, 404, 409, 503],
    ),
    r(
        "GET",
        "/api/files/parts",
        "The parts the store holds of a pending multipart upload (?id=)",
        true,
        None,
        Some(("StoredParts", false)),
        &[200, 400, 401, 404, 409, 503],
    ),
    r(
        "GET",
        "/api/files/all",
        "List own files (404 when none)",
        true,
        None,
        Some(("FileSummary", true)),
        &[200, 401, 404],
    ),
    r(
        "GET",
        "/api/files/resolve",
        "Files whose id starts with ?id=",
        true,
        None,
        Some(("FileMatch", true)),
        &[200, 400, 401, 404],
    ),
    r(
        "GET",
        "/api/files",
        "Details of files whose id starts with ?id=",
        true,
        None,
        Some(("FileDetails", true)),
        &[200, 400, 401, 404],
    ),
    r(
        "DELETE",
        "/api/files",
        "Delete the one file whose id starts with ?id=",
        true,
        None,
        None,
        &[204, 400, 401, 404, 409],
    ),
    r(
        "GET",
        "/api/files/hash",
        "Plaintext SHA-256 of ?id= (409 for a file that recorded none)",
        true,
        None,
        Some(("FileHash", false)),
        &[200, 400, 401, 404, 409],
    ),
    r(
        "GET",
        "/api/files/salt",
        "Always 404: age keeps the salt in the file header",
        true,
        None,
        None,
        &[400, 401, 404],
    ),
    r(
        "GET",
        "/files/download/{user_hash}/{file_id}",
        "Count a download and redirect (303) to a signed URL",
        false,
        None,
        None,
        &[303, 400, 404, 410, 429],
    ),
    r(
        "GET",
        "/api/share/{file_id}",
        "Public facts of a shared file",
        false,
        None,
        Some(("ShareInfo", false)),
        &[200, 400, 404, 410],
    ),
    r(
        "GET",
        "/d/{file_id}",
        "Share page (HTML): decrypts in the browser with the key from the URL fragment",
        false,
        None,
        None,
        &[200, 404, 410],
    ),
    r(
        "PUT",
        "/blob/{prefix}/{name}",
        "Signed upload of one object (create-only; local file:// store only)",
        false,
        None,
        None,
        &[200, 400, 403, 409, 413],
    ),
    r(
        "GET",
        "/blob/{prefix}/{name}",
        "Signed download of one object (Range supported; local file:// store only)",
        false,
        None,
        None,
        &[200, 206, 400, 403, 404],
    ),
    r(
        "DELETE",
        "/admin/reset",
        "Dev mode only: delete everything",
        false,
        None,
        None,
        &[204, 403],
    ),
];

fn method(m: &str) -> HttpMethod {
    match m {
        "POST" => HttpMethod::Post,
        "PUT" => HttpMethod::Put,
        "PATCH" => HttpMethod::Patch,
        "DELETE" => HttpMethod::Delete,
        _ => HttpMethod::Get,
    }
}

fn describe(status: u16) -> &'static str {
    match status {
        200 | 201 | 204 | 206 => "success",
        303 => "redirect to a signed blob URL",
        400 => "malformed input",
        401 => "missing or invalid credentials",
        403 => "forbidden (quota, signature, dev mode)",
        404 => "not found (or not yours)",
        409 => "conflict",
        410 => "expired or download limit reached",
        413 => "too large",
        429 => "rate or download limit; see Retry-After",
        503 => "unavailable; see Retry-After",
        _ => "",
    }
}

fn json_content(name: &str, array: bool) -> utoipa::openapi::Content {
    let schema = Ref::from_schema_name(name);
    if array {
        ContentBuilder::new()
            .schema(Some(ArrayBuilder::new().items(schema).build()))
            .build()
    } else {
        ContentBuilder::new().schema(Some(schema)).build()
    }
}

/// A parameter of `route`: every `{name}` of the path template, the `?id=` prefix of
/// the file routes, and the signature query of the blob routes. Without them the
/// document is invalid OpenAPI (a template names parameters it never declares) and
/// clients and fuzzers cannot build a request.
fn parameters(route: &RouteDoc) -> Vec<utoipa::openapi::path::Parameter> {
    let param = |name: &str, place: ParameterIn, required: bool, ty: Type| {
        ParameterBuilder::new()
            .name(name)
            .parameter_in(place)
            .required(if required {
                Required::True
            } else {
                Required::False
            })
            .schema(Some(ObjectBuilder::new().schema_type(ty)))
            .build()
    };
    let mut out: Vec<_> = route
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| param(name, ParameterIn::Path, true, Type::String))
        .collect();
    if matches!(
        route.path,
        "/api/files" | "/api/files/resolve" | "/api/files/hash" | "/api/files/salt"
    ) || (route.path == "/api/files/parts" && route.method == "GET")
    {
        out.push(param("id", ParameterIn::Query, false, Type::String));
    }
    if route.path.starts_with("/blob/") {
        out.push(param("exp", ParameterIn::Query, true, Type::Integer));
        out.push(param("sig", ParameterIn::Query, true, Type::String));
        out.push(param("max", ParameterIn::Query, false, Type::Integer));
        out.push(param("upload", ParameterIn::Query, false, Type::String));
        out.push(param("part", ParameterIn::Query, false, Type::Integer));
        out.push(param("at", ParameterIn::Query, false, Type::Integer));
    }
    out
}

/// The document as JSON text.
pub fn document_json() -> String {
    let mut paths = PathsBuilder::new();
    for route in ROUTES {
        let mut op = OperationBuilder::new()
            .summary(Some(route.summary))
            .parameters(Some(parameters(route)));
        if route.auth {
            op = op.security(SecurityRequirement::new("bearer", Vec::<String>::new()));
        }
        if let Some(req) = route.request {
            op = op.request_body(Some(
                RequestBodyBuilder::new()
                    .content("application/json", json_content(req, false))
                    .build(),
            ));
        }
        for &s in route.statuses {
            let mut resp = ResponseBuilder::new().description(describe(s));
            if s < 300 {
                if let Some((name, array)) = route.response {
                    resp = resp.content("application/json", json_content(name, array));
                }
            } else if s >= 400
                && !route.path.starts_with("/d/")
                // The signature query is parsed by axum, whose rejection is plain text.
                && !(s == 400 && route.path.starts_with("/blob/"))
            {
                resp = resp.content("application/json", json_content("ErrorBody", false));
            }
            op = op.response(s.to_string(), resp);
        }
        paths = paths.path(route.path, PathItem::new(method(route.method), op));
    }
    let components = ComponentsBuilder::new()
        .schema_from::<w::ErrorBody>()
        .schema_from::<w::KeyMode>()
        .schema_from::<w::Credentials>()
        .schema_from::<w::UserResponse>()
        .schema_from::<w::VerifyRequest>()
        .schema_from::<w::LoginResponse>()
        .schema_from::<w::RefreshRequest>()
        .schema_from::<w::RefreshResponse>()
        .schema_from::<w::PresignRequest>()
        .schema_from::<w::UploadResource>()
        .schema_from::<w::PresignResponse>()
        .schema_from::<w::PartPlan>()
        .schema_from::<w::PartUrlsRequest>()
        .schema_from::<w::PartUrl>()
        .schema_from::<w::PartUrlsResponse>()
        .schema_from::<w::StoredPart>()
        .schema_from::<w::StoredParts>()
        .schema_from::<w::SealedMetadata>()
        .schema_from::<w::CompleteRequest>()
        .schema_from::<w::CompleteResponse>()
        .schema_from::<w::FileSummary>()
        .schema_from::<w::FileMatch>()
        .schema_from::<w::FileDetails>()
        .schema_from::<w::FileHash>()
        .schema_from::<w::ShareInfo>()
        .schema_from::<w::CliVersion>()
        .schema_from::<w::Readiness>()
        .schema_from::<w::ReadinessChecks>()
        .security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        )
        .build();
    let doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Hashdrop API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Errors are JSON {\"error\": \"...\", \"code\": \"...\"}. Schemas come \
                     from the hashdrop-wire crate. Every response carries X-Hashdrop-Instance, \
                     the id of the server instance that answered.",
                )),
        )
        .paths(paths)
        .components(Some(components))
        .build();
    doc.to_json().unwrap_or_else(|_| "{}".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_referenced_schema_exists() {
        let doc: serde_json::Value = serde_json::from_str(&document_json()).unwrap();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for route in ROUTES {
            for name in route
                .request
                .iter()
                .chain(route.response.iter().map(|r| &r.0))
            {
                assert!(schemas.contains_key(*name), "{name} in components");
            }
        }
        let key_mode = &schemas["KeyMode"];
        assert!(key_mode.to_string().contains("passphrase"), "{key_mode}");
    }
}
