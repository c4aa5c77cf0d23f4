//! The node's HTTP API (axum): push ingest, batch reports, record queries, data quality and audit.
//!
//! `app(state) -> Router` is testable without a socket. Deny by default: every route but
//! `/health` needs `Authorization: Bearer <token>` — the node's API token, or a single-sign-on
//! token of the coordinator verified offline with the key of the cached global configuration
//! (province administrators; administrators, operators and auditors of the node's jurisdiction). Errors map to status codes with a message; internals are logged,
//! never sent. Every record read is written to the data log.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use xy_ingest::view::{Disclosure, record_view};
use xy_ingest::{IngestError, IngestOptions, Ingestor, InputFormat};
use xy_store::{NodeKeys, NodeStores, RecordFilter, StoreError};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

/// Who made a request, as the data log records it: `api-token` or `sso:<user>`.
#[derive(Debug, Clone)]
pub struct Actor(pub String);

/// Single sign-on at a node: its jurisdiction, and where the coordinator's token key comes from
/// (the cached global configuration; `None` while the node has no valid one).
pub struct SingleSignOn {
    /// The node's jurisdiction.
    pub jurisdiction: String,
    /// The token key at a time (Unix seconds).
    pub key: Arc<dyn Fn(u64) -> Option<xy_shangmi::sm2::Sm2PublicKey> + Send + Sync>,
}

/// What a node's flows add to its API: its jurisdiction and role (for lineage) and the scenarios
/// it extracts (the service-interface sharing mode reads them).
#[derive(Debug, Clone)]
pub struct FlowViews {
    /// The node's jurisdiction.
    pub jurisdiction: String,
    /// Whether it is the province (it holds the raw, base and theme stores).
    pub is_province: bool,
    /// The scenario stores it extracts.
    pub scenarios: Vec<String>,
}

struct Inner {
    sso: std::sync::OnceLock<SingleSignOn>,
    flows: std::sync::OnceLock<FlowViews>,
    stores: NodeStores,
    ingestor: Ingestor,
    keys: NodeKeys,
    token: String,
    upload_dir: PathBuf,
    max_upload_bytes: u64,
}

impl AppState {
    /// State over a node's stores. Uploads are spooled to `upload_dir`, at most `max_upload_bytes`.
    pub fn new(
        stores: NodeStores,
        ingestor: Ingestor,
        keys: NodeKeys,
        token: String,
        upload_dir: PathBuf,
        max_upload_bytes: u64,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                sso: std::sync::OnceLock::new(),
                flows: std::sync::OnceLock::new(),
                stores,
                ingestor,
                keys,
                token,
                upload_dir,
                max_upload_bytes,
            }),
        }
    }
}

impl AppState {
    /// Also accept the coordinator's single-sign-on tokens (once; later calls are ignored).
    pub fn set_single_sign_on(&self, sso: SingleSignOn) {
        let _ = self.inner.sso.set(sso);
    }

    /// Serve the flows' views: lineage, the return-flow store and the scenario stores (once).
    pub fn set_flows(&self, flows: FlowViews) {
        let _ = self.inner.flows.set(flows);
    }
}

/// An API error: a status and a message for the client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => {
                Self::new(StatusCode::NOT_FOUND, format!("not found: {what}"))
            }
            other => {
                tracing::error!(error = %other, "store error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error (see the node's log)",
                )
            }
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Store(s) => s.into(),
            IngestError::Internal(m) => {
                tracing::error!(error = %m, "ingest internal error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error (see the node's log)",
                )
            }
            other => Self::new(StatusCode::UNPROCESSABLE_ENTITY, other.to_string()),
        }
    }
}

/// The router.
pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .route("/api/v1/ingest", post(ingest))
        .route("/api/v1/batches/{id}", get(batch))
        .route("/api/v1/batches/{id}/report", get(batch_report))
        .route("/api/v1/records", get(records))
        .route("/api/v1/records/{id}/history", get(history))
        .route("/api/v1/quality", get(quality))
        .route("/api/v1/audit/verify", get(audit_verify))
        .route("/api/v1/lineage/{gid}", get(lineage))
        .route("/api/v1/return-flow/records", get(return_flow_records))
        .route("/api/v1/scenarios/{name}/records", get(scenario_records))
        .route("/api/v1/work-orders", get(work_orders))
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .layer(DefaultBodyLimit::disable());
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .merge(api)
        .with_state(state)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn require_token(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let actor = match presented {
        Some(t) if constant_time_eq(t.as_bytes(), state.inner.token.as_bytes()) => {
            Ok(Actor("api-token".into()))
        }
        Some(t) => single_sign_on(&state, t),
        None => Err(StatusCode::UNAUTHORIZED),
    };
    match actor {
        Ok(actor) => {
            request.extensions_mut().insert(actor);
            next.run(request).await
        }
        Err(status) => {
            tracing::warn!(path = %request.uri().path(), %status, "request refused");
            let message = if status == StatusCode::FORBIDDEN {
                "this user may not use this node"
            } else {
                "authentication required"
            };
            let mut r = ApiError::new(status, message).into_response();
            if status == StatusCode::UNAUTHORIZED {
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            r
        }
    }
}

/// A coordinator token, verified offline: 401 unless valid, 403 unless the role and
/// jurisdiction fit this node.
fn single_sign_on(state: &AppState, token: &str) -> Result<Actor, StatusCode> {
    let sso = state.inner.sso.get().ok_or(StatusCode::UNAUTHORIZED)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let key = (sso.key)(now).ok_or(StatusCode::UNAUTHORIZED)?;
    let claims = xy_coordination::verify_sso_token(token, &key, xy_coordination::SSO_AUDIENCE, now)
        .map_err(|_| StatusCode::UNAUTHORIZED)?;
    let allowed = claims.role == "province-admin"
        || (matches!(
            claims.role.as_str(),
            "prefecture-admin" | "department-operator" | "auditor"
        ) && claims.jurisdiction == sso.jurisdiction);
    if allowed {
        Ok(Actor(format!("sso:{}", claims.sub)))
    } else {
        Err(StatusCode::FORBIDDEN)
    }
}

#[derive(Debug, Deserialize)]
struct IngestParams {
    category: Option<String>,
    source_unit: Option<String>,
    format: Option<String>,
    operator: Option<String>,
}

async fn ingest(
    State(state): State<AppState>,
    Query(p): Query<IngestParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let format = match p.format.as_deref() {
        Some(f) => InputFormat::from_name(f).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("unknown format {f:?} (csv, jsonl, xlsx)"),
            )
        })?,
        None => match headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
        {
            t if t.starts_with("text/csv") => InputFormat::Csv,
            t if t.contains("ndjson")
                || t.contains("jsonl")
                || t.starts_with("application/json") =>
            {
                InputFormat::Jsonl
            }
            t if t.contains("spreadsheetml") => InputFormat::Xlsx,
            _ => {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "set Content-Type (text/csv, application/x-ndjson, xlsx) or ?format=",
                ));
            }
        },
    };
    let inner = &state.inner;
    tokio::fs::create_dir_all(&inner.upload_dir)
        .await
        .map_err(|e| internal("upload dir", e))?;
    let ext = match format {
        InputFormat::Csv => "csv",
        InputFormat::Jsonl => "jsonl",
        InputFormat::Xlsx => "xlsx",
    };
    let path = inner
        .upload_dir
        .join(format!("upload-{}.{ext}", random_hex()));
    let result = async {
        let mut file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| internal("create upload", e))?;
        let mut stream = body.into_data_stream();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("body: {e}")))?;
            size += chunk.len() as u64;
            if size > inner.max_upload_bytes {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("body larger than {} bytes", inner.max_upload_bytes),
                ));
            }
            file.write_all(&chunk)
                .await
                .map_err(|e| internal("write upload", e))?;
        }
        file.sync_all()
            .await
            .map_err(|e| internal("sync upload", e))?;
        let (today, now) = xy_ingest::now_china();
        let options = IngestOptions {
            category: p.category.clone(),
            source_unit: p.source_unit.clone(),
            operator: p.operator.clone().unwrap_or_else(|| "http-push".into()),
            today,
            now,
        };
        let result = inner
            .ingestor
            .ingest_file(&path, Some(format), &options, None, None)
            .await?;
        Ok(Json(result).into_response())
    }
    .await;
    let _ = tokio::fs::remove_file(&path).await;
    result
}

fn internal(what: &str, e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "{what}");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error (see the node's log)",
    )
}

fn random_hex() -> String {
    use rand::RngCore;
    let mut b = [0u8; 8];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

async fn batch(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.inner.stores.collection.batch(&id).await?).into_response())
}

#[derive(Debug, Deserialize)]
struct ReportParams {
    format: Option<String>,
    only_problems: Option<bool>,
}

async fn batch_report(
    State(state): State<AppState>,
    axum::Extension(actor): axum::Extension<Actor>,
    Path(id): Path<String>,
    Query(p): Query<ReportParams>,
) -> Result<Response, ApiError> {
    let rows = state.inner.stores.collection.batch_report(&id).await?;
    let only_problems = p.only_problems.unwrap_or(false);
    let (_, now) = xy_ingest::now_china();
    state
        .inner
        .stores
        .collection
        .log_access(
            &now,
            "report",
            &actor.0,
            serde_json::json!({ "via": "http", "batch": id, "rows": rows.len() }),
        )
        .await?;
    match p.format.as_deref().unwrap_or("jsonl") {
        "jsonl" => {
            let mut body = String::new();
            for r in rows
                .iter()
                .filter(|r| !only_problems || !r.faults.is_empty() || !r.warnings.is_empty())
            {
                body.push_str(&xy_ingest::report::jsonl_line(r));
                body.push('\n');
            }
            Ok((
                [(header::CONTENT_TYPE, "application/x-ndjson; charset=utf-8")],
                body,
            )
                .into_response())
        }
        "csv" => {
            let mut out = Vec::new();
            xy_ingest::report::write_csv(&mut out, &rows, only_problems)
                .map_err(|e| internal("csv", e))?;
            Ok((
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{id}-report.csv\""),
                    ),
                ],
                out,
            )
                .into_response())
        }
        other => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("unknown format {other:?} (jsonl, csv)"),
        )),
    }
}

/// Query parameters of `/api/v1/records`.
#[derive(Debug, Deserialize)]
struct RecordParams {
    subject: Option<String>,
    category: Option<String>,
    source_unit: Option<String>,
    from: Option<String>,
    to: Option<String>,
    status: Option<String>,
    limit: Option<u32>,
    offset: Option<u32>,
}

fn normalise_date(s: &Option<String>) -> Result<Option<String>, ApiError> {
    s.as_deref()
        .map(|d| {
            xy_policy::dates::parse_date(d)
                .map(xy_policy::dates::format_date)
                .map_err(|_| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        format!("bad date {d:?} (YYYY/MM/DD, YYYY-MM-DD or YYYYMMDD)"),
                    )
                })
        })
        .transpose()
}

async fn records(
    State(state): State<AppState>,
    axum::Extension(actor): axum::Extension<Actor>,
    Query(p): Query<RecordParams>,
) -> Result<Response, ApiError> {
    let inner = &state.inner;
    let mut filter = RecordFilter {
        category: p.category.clone(),
        source_unit: p.source_unit.clone(),
        decided_from: normalise_date(&p.from)?,
        decided_to: normalise_date(&p.to)?,
        status: p.status.clone(),
        limit: p.limit,
        offset: p.offset,
        ..Default::default()
    };
    let mut audit_subject = None;
    if let Some(subject) = &p.subject {
        let (code, index, shown) = xy_ingest::subject_lookup(subject, &inner.keys);
        filter.subject_code = code;
        filter.subject_index = index;
        audit_subject = Some(shown);
    }
    let found = inner.stores.collection.query(&filter).await?;
    let (_, now) = xy_ingest::now_china();
    inner
        .stores
        .collection
        .log_access(&now, "query", &actor.0, serde_json::json!({
            "via": "http", "subject": audit_subject, "category": p.category, "source_unit": p.source_unit,
            "from": p.from, "to": p.to, "status": p.status, "returned": found.len(),
        }))
        .await?;
    let views = found
        .iter()
        .map(|r| record_view(r, &inner.keys, Disclosure::Masked))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(serde_json::json!({ "count": views.len(), "records": views })).into_response())
}

async fn history(
    State(state): State<AppState>,
    axum::Extension(actor): axum::Extension<Actor>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let inner = &state.inner;
    let versions = inner.stores.collection.history(id).await?;
    let (_, now) = xy_ingest::now_china();
    inner
        .stores
        .collection
        .log_access(
            &now,
            "history",
            &actor.0,
            serde_json::json!({ "via": "http", "record": id, "returned": versions.len() }),
        )
        .await?;
    let views = versions
        .iter()
        .map(|r| record_view(r, &inner.keys, Disclosure::Masked))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(serde_json::json!({ "record": id, "versions": views })).into_response())
}

#[derive(Debug, Deserialize)]
struct QualityParams {
    format: Option<String>,
}

async fn quality(
    State(state): State<AppState>,
    Query(p): Query<QualityParams>,
) -> Result<Response, ApiError> {
    let lines = state.inner.stores.quality_report().await?;
    match p.format.as_deref().unwrap_or("json") {
        "json" => Ok(Json(lines).into_response()),
        "csv" => Ok((
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            xy_ingest::report::quality_csv(&lines),
        )
            .into_response()),
        "text" => Ok((
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            xy_ingest::report::quality_text(&lines),
        )
            .into_response()),
        other => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("unknown format {other:?} (json, csv, text)"),
        )),
    }
}

async fn audit_verify(State(state): State<AppState>) -> Result<Response, ApiError> {
    let report = state.inner.stores.collection.verify_audit().await?;
    let status = if report.is_intact() {
        StatusCode::OK
    } else {
        StatusCode::CONFLICT
    };
    Ok((status, Json(report)).into_response())
}

fn flow_views(state: &AppState) -> Result<&FlowViews, ApiError> {
    state.inner.flows.get().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "this node takes part in no flows (no [flows] section)",
        )
    })
}

async fn lineage(
    State(state): State<AppState>,
    axum::Extension(actor): axum::Extension<Actor>,
    Path(gid): Path<String>,
) -> Result<Response, ApiError> {
    let flows = flow_views(&state)?;
    let scenarios: Vec<&str> = flows.scenarios.iter().map(String::as_str).collect();
    let inner = &state.inner;
    let found = inner
        .stores
        .lineage(&gid, &flows.jurisdiction, flows.is_province, &scenarios)
        .await?;
    let (_, now) = xy_ingest::now_china();
    inner
        .stores
        .collection
        .log_access(
            &now,
            "lineage",
            &actor.0,
            serde_json::json!({"via": "http", "gid": gid}),
        )
        .await?;
    Ok(Json(found).into_response())
}

#[derive(Debug, Deserialize)]
struct FlowRecordParams {
    subject: Option<String>,
    limit: Option<i64>,
}

/// A flow-store record as the API shows it: its fields with personal ones masked.
fn held_view(
    record: &xy_store::HeldRecord,
    keys: &NodeKeys,
) -> Result<serde_json::Value, ApiError> {
    let mut fields: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&record.payload).unwrap_or_default();
    let (personal, _) =
        xy_store::flows::open_personal(keys, &record.gid, record.personal.as_deref())?;
    let personal = personal
        .and_then(|p| serde_json::from_str(&p).ok())
        .unwrap_or_default();
    xy_ingest::view::disclose(&mut fields, personal, Disclosure::Masked);
    Ok(serde_json::json!({
        "gid": record.gid,
        "version": record.version,
        "category": record.category,
        "status": record.status,
        "source_unit": record.source_unit,
        "subject_code": record.subject_code,
        "document_number": record.document_number,
        "decision_date": record.decision_date,
        "fields": fields,
    }))
}

fn flow_limit(limit: Option<i64>) -> i64 {
    limit.unwrap_or(100).clamp(1, 10_000)
}

async fn return_flow_records(
    State(state): State<AppState>,
    axum::Extension(actor): axum::Extension<Actor>,
    Query(p): Query<FlowRecordParams>,
) -> Result<Response, ApiError> {
    flow_views(&state)?;
    let inner = &state.inner;
    let found = inner
        .stores
        .return_flow
        .query(p.subject.as_deref(), flow_limit(p.limit))
        .await?;
    let (_, now) = xy_ingest::now_china();
    inner
        .stores
        .collection
        .log_access(&now, "query", &actor.0, serde_json::json!({
            "via": "http", "store": "return_flow", "subject": p.subject, "returned": found.len(),
        }))
        .await?;
    let views = found
        .iter()
        .map(|r| held_view(r, &inner.keys))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(serde_json::json!({ "count": views.len(), "records": views })).into_response())
}

async fn scenario_records(
    State(state): State<AppState>,
    axum::Extension(actor): axum::Extension<Actor>,
    Path(name): Path<String>,
    Query(p): Query<FlowRecordParams>,
) -> Result<Response, ApiError> {
    let flows = flow_views(&state)?;
    if !flows.scenarios.contains(&name) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no scenario {name:?} on this node"),
        ));
    }
    let inner = &state.inner;
    let found = inner
        .stores
        .scenario(&name)
        .await?
        .records(p.subject.as_deref(), flow_limit(p.limit))
        .await?;
    let (_, now) = xy_ingest::now_china();
    inner
        .stores
        .collection
        .log_access(&now, "query", &actor.0, serde_json::json!({
            "via": "http", "store": format!("scenario:{name}"), "subject": p.subject, "returned": found.len(),
        }))
        .await?;
    Ok(Json(serde_json::json!({ "count": found.len(), "records": found })).into_response())
}

async fn work_orders(State(state): State<AppState>) -> Result<Response, ApiError> {
    let orders = state.inner.stores.collection.work_orders(false).await?;
    Ok(Json(serde_json::json!({ "count": orders.len(), "work_orders": orders })).into_response())
}
