//! The UI's routes: `/` and `/ui/*` (the embedded files) and the dashboards API.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::assets;
use crate::definitions::{self, Dashboard};

/// Sent with every page: everything comes from this origin, nothing from a CDN, no framing.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

#[derive(Clone)]
struct UiState {
    extra_dir: Option<Arc<PathBuf>>,
}

/// The UI's routes, for the binary to merge into its router:
///
/// - `GET /` the single page, `GET /ui/{path}` its scripts, styles and icon, with their content
///   types, an ETag, and `Cache-Control: no-cache` (revalidated each load, answered 304 when
///   unchanged, so a new binary never leaves stale scripts in a browser);
/// - `GET /api/v1/dashboards` the dashboards (built-in ones and the YAML files of `extra_dir`),
///   `GET /api/v1/dashboards/{name}` one of them as JSON. A file in `extra_dir` named like a
///   built-in one replaces it. Files are read at each request, so edits show without a restart.
pub fn router(extra_dir: Option<PathBuf>) -> Router {
    let state = UiState {
        extra_dir: extra_dir.map(Arc::new),
    };
    Router::new()
        .route("/", get(index))
        .route("/ui/{*path}", get(asset))
        .route("/api/v1/dashboards", get(list))
        .route("/api/v1/dashboards/{name}", get(one))
        .with_state(state)
}

async fn index(headers: HeaderMap) -> Response {
    serve(assets::find("index.html"), &headers)
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(assets::find(&path), &headers)
}

fn serve(asset: Option<&'static assets::Asset>, headers: &HeaderMap) -> Response {
    let Some(asset) = asset else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == asset.etag || t.trim() == "*"));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        asset.body.into_response()
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    h.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if asset.path == "index.html" {
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
        h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    response
}

/// Built-in dashboards and the folder's, the folder's replacing built-ins of the same name.
struct Catalog {
    dashboards: Vec<(String, &'static str, Dashboard)>,
    errors: Vec<(String, definitions::DefinitionError)>,
}

async fn catalog(state: &UiState) -> Catalog {
    let mut dashboards: Vec<(String, &'static str, Dashboard)> = definitions::builtin_dashboards()
        .into_iter()
        .map(|(n, d)| (n, "builtin", d))
        .collect();
    let mut errors = Vec::new();
    if let Some(dir) = state.extra_dir.clone() {
        let loaded = tokio::task::spawn_blocking(move || definitions::load_dir(&dir)).await;
        match loaded {
            Ok(loaded) => {
                for (name, d) in loaded.dashboards {
                    dashboards.retain(|(n, _, _)| *n != name);
                    dashboards.push((name, "file", d));
                }
                errors = loaded.errors;
            }
            Err(e) => tracing::error!(error = %e, "reading the dashboards folder failed"),
        }
    }
    dashboards.sort_by(|a, b| a.0.cmp(&b.0));
    Catalog { dashboards, errors }
}

async fn list(State(state): State<UiState>) -> Response {
    let catalog = catalog(&state).await;
    let data: Vec<_> = catalog
        .dashboards
        .iter()
        .map(|(name, source, d)| {
            json!({"name": name, "title": d.title, "description": d.description, "source": source,
                   "panels": d.panels.len()})
        })
        .collect();
    let warnings: Vec<String> = catalog.errors.iter().map(|(_, e)| e.to_string()).collect();
    let mut body = json!({"status": "success", "data": data});
    if !warnings.is_empty() {
        body["warnings"] = json!(warnings);
    }
    axum::Json(body).into_response()
}

async fn one(State(state): State<UiState>, Path(name): Path<String>) -> Response {
    let error = |status: StatusCode, kind: &str, message: String| {
        (
            status,
            axum::Json(json!({"status": "error", "errorType": kind, "error": message})),
        )
            .into_response()
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_data",
            format!("dashboard name {name:?}: use letters, digits, - and _"),
        );
    }
    let catalog = catalog(&state).await;
    if let Some((name, source, d)) = catalog.dashboards.into_iter().find(|(n, _, _)| *n == name) {
        let mut data = serde_json::to_value(&d).unwrap_or_default();
        data["name"] = json!(name);
        data["source"] = json!(source);
        return axum::Json(json!({"status": "success", "data": data})).into_response();
    }
    if let Some((_, e)) = catalog.errors.into_iter().find(|(n, _)| *n == name) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "bad_data", e.to_string());
    }
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no dashboard named {name:?}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn call(router: &Router, path: &str, etag: Option<&str>) -> (StatusCode, HeaderMap, String) {
        let mut req = Request::get(path);
        if let Some(tag) = etag {
            req = req.header(header::IF_NONE_MATCH, tag);
        }
        let res = router.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        let (parts, body) = res.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 24).await.unwrap();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    #[tokio::test]
    async fn serves_pages_with_types_and_revalidation() {
        let r = router(None);
        let (status, headers, body) = call(&r, "/", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(
            headers[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("default-src 'self'")
        );
        assert!(body.contains("<script type=\"module\" src=\"/ui/js/main.js\">"));

        let (status, headers, _) = call(&r, "/ui/js/chart.js", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
        let tag = headers[header::ETAG].to_str().unwrap().to_string();
        let (status, _, body) = call(&r, "/ui/js/chart.js", Some(&tag)).await;
        assert_eq!((status, body.as_str()), (StatusCode::NOT_MODIFIED, ""));
        let (status, _, _) = call(&r, "/ui/js/chart.js", Some("\"other\"")).await;
        assert_eq!(status, StatusCode::OK);

        assert_eq!(
            call(&r, "/ui/app.css", None).await.1[header::CONTENT_TYPE],
            "text/css; charset=utf-8"
        );
        assert_eq!(call(&r, "/ui/../Cargo.toml", None).await.0, StatusCode::NOT_FOUND);
        assert_eq!(call(&r, "/ui/nope.js", None).await.0, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn lists_builtin_and_folder_dashboards() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("hosts.yaml"),
            "title: My hosts\npanels:\n  - {title: Up, type: stat, query: up}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("broken.yaml"),
            "title: x\npanels:\n  - {title: a, type: pie, query: up}\n",
        )
        .unwrap();
        let r = router(Some(dir.path().to_path_buf()));

        let (status, _, body) = call(&r, "/api/v1/dashboards", None).await;
        assert_eq!(status, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let names: Vec<_> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["containers", "hosts", "services"]);
        assert_eq!(v["data"][1]["title"], "My hosts");
        assert_eq!(v["data"][1]["source"], "file");
        assert!(v["warnings"][0].as_str().unwrap().contains("broken.yaml"), "{body}");

        let (status, _, body) = call(&r, "/api/v1/dashboards/containers", None).await;
        assert_eq!(status, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["data"]["name"], "containers");
        assert_eq!(v["data"]["source"], "builtin");
        assert_eq!(v["data"]["panels"][3]["type"], "timeseries");

        let (status, _, body) = call(&r, "/api/v1/dashboards/broken", None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(body.contains("unknown variant `pie`"), "{body}");
        assert_eq!(
            call(&r, "/api/v1/dashboards/missing", None).await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            call(&r, "/api/v1/dashboards/a.b", None).await.0,
            StatusCode::BAD_REQUEST
        );
    }
}
