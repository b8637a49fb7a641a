//! The OpenAPI document, built in code from the route table below with utoipa's
//! builders. A test checks the table against the router so the two cannot drift.

use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
use utoipa::openapi::{InfoBuilder, OpenApiBuilder, PathsBuilder, ResponseBuilder};

/// (method, path, summary, needs bearer token, documented statuses)
pub const ROUTES: &[(&str, &str, &str, bool, &[u16])] = &[
    (
        "GET",
        "/api/healthz",
        "Liveness: plain OK",
        false,
        &[200, 429],
    ),
    (
        "GET",
        "/api/readyz",
        "Readiness: database and blob store; 503 while draining",
        false,
        &[200, 503],
    ),
    (
        "GET",
        "/api/cli/version",
        "CLI version this server is compatible with",
        false,
        &[200],
    ),
    ("GET", "/metrics", "Prometheus metrics", false, &[200]),
    ("GET", "/api/openapi.json", "This document", false, &[200]),
    (
        "POST",
        "/api/user/register",
        "Create an account and mail a verification code",
        false,
        &[201, 400, 409, 429],
    ),
    (
        "PATCH",
        "/api/user/verify",
        "Verify an account with the mailed code",
        false,
        &[204, 400, 401, 429],
    ),
    (
        "POST",
        "/api/user/login",
        "Get an access and a refresh token",
        false,
        &[200, 400, 401, 429],
    ),
    (
        "DELETE",
        "/api/user",
        "Delete the account (email and password in the body)",
        true,
        &[204, 400, 401],
    ),
    (
        "POST",
        "/api/token/refresh",
        "Rotate a refresh token",
        false,
        &[200, 400, 401],
    ),
    (
        "POST",
        "/api/token/revoke",
        "Revoke a refresh token",
        false,
        &[204, 400],
    ),
    (
        "POST",
        "/api/files/presign",
        "Reserve quota and get a signed upload URL",
        true,
        &[200, 400, 401, 403, 413, 503],
    ),
    (
        "POST",
        "/api/files/complete",
        "Confirm an upload after checking the stored size",
        true,
        &[200, 400, 401, 404, 413],
    ),
    (
        "GET",
        "/api/files/all",
        "List own files (404 when none)",
        true,
        &[200, 401, 404],
    ),
    (
        "GET",
        "/api/files/resolve",
        "Files whose id starts with ?id=",
        true,
        &[200, 400, 401, 404],
    ),
    (
        "GET",
        "/api/files",
        "Details of files whose id starts with ?id=",
        true,
        &[200, 400, 401, 404],
    ),
    (
        "DELETE",
        "/api/files",
        "Delete the one file whose id starts with ?id=",
        true,
        &[204, 400, 401, 404, 409],
    ),
    (
        "GET",
        "/api/files/hash",
        "Plaintext SHA-256 of ?id=",
        true,
        &[200, 400, 401, 404],
    ),
    (
        "GET",
        "/api/files/salt",
        "Always 404: age keeps the salt in the file header",
        true,
        &[400, 401, 404],
    ),
    (
        "GET",
        "/files/download/{user_hash}/{file_id}",
        "Count a download and redirect to a signed URL",
        false,
        &[303, 400, 404, 410, 429],
    ),
    (
        "GET",
        "/api/share/{file_id}",
        "Public facts of a shared file",
        false,
        &[200, 400, 404, 410],
    ),
    (
        "GET",
        "/d/{file_id}",
        "Share page (HTML)",
        false,
        &[200, 404],
    ),
    (
        "PUT",
        "/blob/{prefix}/{name}",
        "Signed upload of one object (create-only)",
        false,
        &[200, 403, 409, 413],
    ),
    (
        "GET",
        "/blob/{prefix}/{name}",
        "Signed download of one object (Range supported)",
        false,
        &[200, 206, 403, 404],
    ),
    (
        "DELETE",
        "/admin/reset",
        "Dev mode only: delete everything",
        false,
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

/// The document as JSON text.
pub fn document_json() -> String {
    let mut paths = PathsBuilder::new();
    for (m, path, summary, auth, statuses) in ROUTES {
        let mut op = OperationBuilder::new().summary(Some(*summary));
        if *auth {
            op = op.description(Some("Requires `Authorization: Bearer <access_token>`."));
        }
        for s in *statuses {
            op = op.response(
                s.to_string(),
                ResponseBuilder::new().description(match s {
                    200 | 201 | 204 | 206 => "success",
                    303 => "redirect to a signed blob URL",
                    400 => "malformed input",
                    401 => "missing or invalid credentials",
                    403 => "forbidden (quota, signature, dev mode)",
                    404 => "not found",
                    409 => "conflict",
                    410 => "expired or download limit reached",
                    413 => "too large",
                    429 => "rate or download limit; see Retry-After",
                    503 => "unavailable",
                    _ => "",
                }),
            );
        }
        paths = paths.path(*path, PathItem::new(method(m), op));
    }
    let doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Hashdrop API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Errors are JSON {\"error\": \"...\", \"code\": \"...\"}. \
                     Request/response shapes are documented in the hashdrop-wire crate.",
                )),
        )
        .paths(paths)
        .build();
    doc.to_json().unwrap_or_else(|_| "{}".into())
}
