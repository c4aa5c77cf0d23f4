//! The coordinator's HTTP API (axum). Administrative endpoints take `Authorization: Bearer
//! <access token>`; errors are JSON `{"error": "..."}` with the status of their kind, never
//! internals. `/api/openapi.json` describes every endpoint.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use xy_gmtls::pki::{PeerIdentity, Role, pem_encode};

use crate::ca::pem_decode;
use crate::catalogue::ResourceMetadata;
use crate::certificates::{CertificateLogin, Renewal};
use crate::sso::Claims;
use crate::statistics::{Feedback, Grouping, SignedReport};
use crate::users::UserRole;
use crate::{Coordinator, CoordinatorError};

/// The router's state: the coordinator and a clock (Unix seconds).
#[derive(Clone)]
pub struct ApiState {
    /// The coordinator.
    pub coordinator: Arc<Coordinator>,
    /// Now, in Unix seconds.
    pub clock: Arc<dyn Fn() -> u64 + Send + Sync>,
}

impl IntoResponse for CoordinatorError {
    fn into_response(self) -> Response {
        let status = match &self {
            CoordinatorError::BadRequest(_) | CoordinatorError::Pki(_) => StatusCode::BAD_REQUEST,
            CoordinatorError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            CoordinatorError::Forbidden(_) => StatusCode::FORBIDDEN,
            CoordinatorError::NotFound(_) => StatusCode::NOT_FOUND,
            CoordinatorError::Conflict(_) => StatusCode::CONFLICT,
            CoordinatorError::Store(_)
            | CoordinatorError::Database(_)
            | CoordinatorError::Io(..) => {
                tracing::error!(error = %self, "coordinator failure");
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(serde_json::json!({"error": "internal error"})),
                )
                    .into_response();
            }
        };
        (status, Json(serde_json::json!({"error": self.to_string()}))).into_response()
    }
}

type ApiResult<T> = Result<T, CoordinatorError>;

/// Deny by default: every protected route passes here first, before its body is even read; the
/// caller's claims travel on to the handler.
async fn authenticate(
    State(s): State<ApiState>,
    mut request: Request,
    next: Next,
) -> ApiResult<Response> {
    let claims = caller(&s, request.headers())?;
    request.extensions_mut().insert(claims);
    Ok(next.run(request).await)
}

fn caller(state: &ApiState, headers: &HeaderMap) -> ApiResult<Claims> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| CoordinatorError::Unauthorized("a bearer token is required".into()))?;
    state.coordinator.verify(token.trim(), (state.clock)())
}

fn identity(jurisdiction: &str, role: &str) -> ApiResult<PeerIdentity> {
    let role = Role::parse(role).ok_or_else(|| {
        CoordinatorError::BadRequest(format!(
            "role {role:?}: one of {}",
            Role::ALL.map(Role::as_str).join(", ")
        ))
    })?;
    PeerIdentity::new(jurisdiction, role).map_err(|e| CoordinatorError::BadRequest(e.to_string()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrolRequest {
    token: String,
    csr_pem: String,
}

async fn enrol(State(s): State<ApiState>, Json(body): Json<EnrolRequest>) -> ApiResult<Response> {
    let der = pem_decode("CERTIFICATE REQUEST", &body.csr_pem)?;
    let enrolment = s.coordinator.enrol(&body.token, &der, (s.clock)()).await?;
    Ok((StatusCode::CREATED, Json(enrolment)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    jurisdiction: String,
    role: String,
    common_name: String,
    #[serde(default)]
    ttl_hours: Option<u64>,
}

async fn create_token(
    State(s): State<ApiState>,
    Extension(actor): Extension<Claims>,
    Json(body): Json<TokenRequest>,
) -> ApiResult<Response> {
    let identity = identity(&body.jurisdiction, &body.role)?;
    let token = s
        .coordinator
        .create_enrolment_token(
            &actor,
            &identity,
            &body.common_name,
            body.ttl_hours.unwrap_or(72) * 3600,
            (s.clock)(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(token)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    reason: String,
}

async fn revoke(
    State(s): State<ApiState>,
    Extension(actor): Extension<Claims>,
    Path(serial): Path<String>,
    Json(body): Json<RevokeRequest>,
) -> ApiResult<Response> {
    s.coordinator
        .revoke(&actor, &serial, &body.reason, (s.clock)())
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn crl(State(s): State<ApiState>) -> ApiResult<Response> {
    let der = s.coordinator.revocation_list((s.clock)()).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        pem_encode("X509 CRL", &der),
    )
        .into_response())
}

async fn config(State(s): State<ApiState>) -> ApiResult<Response> {
    Ok(Json(s.coordinator.global_config((s.clock)()).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeRequest {
    jurisdiction: String,
    role: String,
    address: String,
    server_name: String,
}

async fn register_node(
    State(s): State<ApiState>,
    Extension(actor): Extension<Claims>,
    Json(body): Json<NodeRequest>,
) -> ApiResult<Response> {
    let identity = identity(&body.jurisdiction, &body.role)?;
    s.coordinator
        .register_node(
            &actor,
            &identity,
            &body.address,
            &body.server_name,
            (s.clock)(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterRequest {
    username: String,
    password: String,
    role: String,
    jurisdiction: String,
}

async fn register_user(
    State(s): State<ApiState>,
    Json(body): Json<RegisterRequest>,
) -> ApiResult<Response> {
    let role = UserRole::parse(&body.role).ok_or_else(|| {
        CoordinatorError::BadRequest(format!(
            "role {:?}: one of {}",
            body.role,
            UserRole::ALL.map(UserRole::as_str).join(", ")
        ))
    })?;
    s.coordinator
        .register_user(
            &body.username,
            &body.password,
            role,
            &body.jurisdiction,
            (s.clock)(),
        )
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"status": "pending"})),
    )
        .into_response())
}

async fn approve_user(
    State(s): State<ApiState>,
    Extension(actor): Extension<Claims>,
    Path(username): Path<String>,
) -> ApiResult<Response> {
    s.coordinator
        .approve_user(&actor, &username, (s.clock)())
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    username: String,
    password: String,
    #[serde(default)]
    code: Option<String>,
}

async fn login(State(s): State<ApiState>, Json(body): Json<LoginRequest>) -> ApiResult<Response> {
    let tokens = s
        .coordinator
        .login(
            &body.username,
            &body.password,
            body.code.as_deref(),
            (s.clock)(),
        )
        .await?;
    Ok(Json(tokens).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshRequest {
    refresh_token: String,
}

async fn refresh(
    State(s): State<ApiState>,
    Json(body): Json<RefreshRequest>,
) -> ApiResult<Response> {
    Ok(Json(
        s.coordinator
            .refresh(&body.refresh_token, (s.clock)())
            .await?,
    )
    .into_response())
}

async fn audit(
    State(s): State<ApiState>,
    Extension(actor): Extension<Claims>,
) -> ApiResult<Response> {
    if !matches!(actor.role, UserRole::Auditor | UserRole::ProvinceAdmin) {
        let reason = "the audit log is for auditors and province administrators".to_owned();
        return Err(s
            .coordinator
            .deny(&actor, "audit.read", reason, (s.clock)())
            .await);
    }
    let check = s.coordinator.verify_audit().await?;
    let entries = s.coordinator.audit_entries(200).await?;
    Ok(Json(serde_json::json!({"check": check, "entries": entries})).into_response())
}

async fn register_resource(
    State(s): State<ApiState>,
    Extension(actor): Extension<Claims>,
    Json(body): Json<ResourceMetadata>,
) -> ApiResult<Response> {
    let version = s
        .coordinator
        .register_resource(&actor, &body, (s.clock)())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"code": body.code, "version": version, "status": "registered"})),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchQuery {
    q: Option<String>,
    class: Option<String>,
    sharing: Option<String>,
}

async fn search_resources(
    State(s): State<ApiState>,
    Extension(_caller): Extension<Claims>,
    Query(query): Query<SearchQuery>,
) -> ApiResult<Response> {
    let found = s
        .coordinator
        .search_resources(
            query.q.as_deref(),
            query.class.as_deref(),
            query.sharing.as_deref(),
        )
        .await?;
    Ok(Json(found).into_response())
}

async fn resource(
    State(s): State<ApiState>,
    Extension(_caller): Extension<Claims>,
    Path(code): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(s.coordinator.resource(&code).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewRequest {
    approve: bool,
    #[serde(default)]
    note: String,
}

async fn review_resource(
    State(s): State<ApiState>,
    Extension(actor): Extension<Claims>,
    Path((code, version)): Path<(String, i64)>,
    Json(body): Json<ReviewRequest>,
) -> ApiResult<Response> {
    s.coordinator
        .review_resource(
            &actor,
            &code,
            version,
            body.approve,
            &body.note,
            (s.clock)(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn publish_resource(
    State(s): State<ApiState>,
    Extension(actor): Extension<Claims>,
    Path((code, version)): Path<(String, i64)>,
) -> ApiResult<Response> {
    s.coordinator
        .publish_resource(&actor, &code, version, (s.clock)())
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn retire_resource(
    State(s): State<ApiState>,
    Extension(actor): Extension<Claims>,
    Path(code): Path<String>,
) -> ApiResult<Response> {
    s.coordinator
        .retire_resource(&actor, &code, (s.clock)())
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscribeRequest {
    purpose: String,
}

async fn subscribe(
    State(s): State<ApiState>,
    Extension(actor): Extension<Claims>,
    Path(code): Path<String>,
    Json(body): Json<SubscribeRequest>,
) -> ApiResult<Response> {
    let subscription = s
        .coordinator
        .subscribe(&actor, &code, &body.purpose, (s.clock)())
        .await?;
    Ok((StatusCode::CREATED, Json(subscription)).into_response())
}

async fn list_subscriptions(
    State(s): State<ApiState>,
    Extension(actor): Extension<Claims>,
) -> ApiResult<Response> {
    Ok(Json(
        s.coordinator
            .list_subscriptions(&actor, (s.clock)())
            .await?,
    )
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideRequest {
    grant: bool,
    #[serde(default)]
    reason: String,
}

async fn decide_subscription(
    State(s): State<ApiState>,
    Extension(actor): Extension<Claims>,
    Path(id): Path<i64>,
    Json(body): Json<DecideRequest>,
) -> ApiResult<Response> {
    let subscription = s
        .coordinator
        .decide_subscription(&actor, id, body.grant, &body.reason, (s.clock)())
        .await?;
    Ok(Json(subscription).into_response())
}

async fn statistics_report(
    State(s): State<ApiState>,
    Json(body): Json<SignedReport>,
) -> ApiResult<Response> {
    let lines = s.coordinator.accept_report(&body, (s.clock)()).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"lines": lines})),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatisticsQuery {
    from: String,
    to: String,
    #[serde(default)]
    by: Option<Grouping>,
    #[serde(default)]
    format: Option<String>,
}

fn grouping_name(by: Grouping) -> &'static str {
    match by {
        Grouping::Prefecture => "市州",
        Grouping::Department => "数据来源单位",
        Grouping::Category => "类别",
        Grouping::Day => "日期",
    }
}

async fn statistics(
    State(s): State<ApiState>,
    Extension(actor): Extension<Claims>,
    Query(query): Query<StatisticsQuery>,
) -> ApiResult<Response> {
    let by = query.by.unwrap_or(Grouping::Prefecture);
    let rows = s
        .coordinator
        .statistics(&actor, &query.from, &query.to, by, (s.clock)())
        .await?;
    match query.format.as_deref().unwrap_or("json") {
        "json" => Ok(Json(rows).into_response()),
        "csv" => Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"statistics.csv\"",
                ),
            ],
            crate::statistics::to_csv(grouping_name(by), &rows),
        )
            .into_response()),
        "xlsx" => Ok((
            [
                (
                    header::CONTENT_TYPE,
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                ),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"statistics.xlsx\"",
                ),
            ],
            crate::statistics::to_xlsx(grouping_name(by), &rows)?,
        )
            .into_response()),
        other => Err(CoordinatorError::BadRequest(format!(
            "format {other:?}: json, csv or xlsx"
        ))),
    }
}

async fn statistics_ticket(
    State(s): State<ApiState>,
    Extension(actor): Extension<Claims>,
) -> ApiResult<Response> {
    let ticket = s.coordinator.view_ticket(&actor, (s.clock)()).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"ticket": ticket, "expires_in": 300})),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    ticket: String,
    from: String,
    to: String,
}

async fn statistics_page(
    State(s): State<ApiState>,
    Query(query): Query<PageQuery>,
) -> ApiResult<Response> {
    let now = (s.clock)();
    let actor = s.coordinator.redeem_view_ticket(&query.ticket, now)?;
    let by_prefecture = s
        .coordinator
        .statistics(&actor, &query.from, &query.to, Grouping::Prefecture, now)
        .await?;
    let by_day = s
        .coordinator
        .statistics(&actor, &query.from, &query.to, Grouping::Day, now)
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'",
            ),
        ],
        crate::statistics::report_html(&query.from, &query.to, &by_prefecture, &by_day),
    )
        .into_response())
}

async fn submit_feedback(
    State(s): State<ApiState>,
    Extension(actor): Extension<Claims>,
    Json(body): Json<Feedback>,
) -> ApiResult<Response> {
    let id = s
        .coordinator
        .submit_feedback(&actor, &body, (s.clock)())
        .await?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({"id": id}))).into_response())
}

async fn list_feedback(
    State(s): State<ApiState>,
    Extension(actor): Extension<Claims>,
) -> ApiResult<Response> {
    Ok(Json(s.coordinator.feedback(&actor).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackReview {
    accept: bool,
    #[serde(default)]
    note: String,
}

async fn review_feedback(
    State(s): State<ApiState>,
    Extension(actor): Extension<Claims>,
    Path(id): Path<i64>,
    Json(body): Json<FeedbackReview>,
) -> ApiResult<Response> {
    s.coordinator
        .review_feedback(&actor, id, body.accept, &body.note, (s.clock)())
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn enrol_totp(
    State(s): State<ApiState>,
    Extension(actor): Extension<Claims>,
) -> ApiResult<Response> {
    let enrolment = s.coordinator.enrol_totp(&actor, (s.clock)()).await?;
    Ok((StatusCode::CREATED, Json(enrolment)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeRequest {
    code: String,
}

async fn confirm_totp(
    State(s): State<ApiState>,
    Extension(actor): Extension<Claims>,
    Json(body): Json<CodeRequest>,
) -> ApiResult<Response> {
    s.coordinator
        .confirm_totp(&actor, &body.code, (s.clock)())
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SmsRequest {
    phone: String,
}

async fn enable_sms(
    State(s): State<ApiState>,
    Extension(actor): Extension<Claims>,
    Json(body): Json<SmsRequest>,
) -> ApiResult<Response> {
    s.coordinator
        .enable_sms(&actor, &body.phone, (s.clock)())
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn renew(State(s): State<ApiState>, Json(body): Json<Renewal>) -> ApiResult<Response> {
    let enrolment = s.coordinator.renew(&body, (s.clock)()).await?;
    Ok((StatusCode::CREATED, Json(enrolment)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BindRequest {
    certificate_pem: String,
}

async fn bind_certificate(
    State(s): State<ApiState>,
    Extension(actor): Extension<Claims>,
    Json(body): Json<BindRequest>,
) -> ApiResult<Response> {
    s.coordinator
        .bind_certificate(&actor, &body.certificate_pem, (s.clock)())
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn login_challenge(State(s): State<ApiState>) -> Response {
    Json(serde_json::json!({
        "challenge": s.coordinator.login_challenge((s.clock)()),
        "expires_in": crate::certificates::CHALLENGE_TTL,
    }))
    .into_response()
}

async fn login_certificate(
    State(s): State<ApiState>,
    Json(body): Json<CertificateLogin>,
) -> ApiResult<Response> {
    Ok(Json(
        s.coordinator
            .login_with_certificate(&body, (s.clock)())
            .await?,
    )
    .into_response())
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// Every route: (method, path), as served and as described in the OpenAPI document.
pub const ROUTES: [(&str, &str); 35] = [
    ("post", "/api/enrol"),
    ("post", "/api/tokens"),
    ("post", "/api/certificates/{serial}/revoke"),
    ("get", "/api/crl"),
    ("get", "/api/config"),
    ("post", "/api/nodes"),
    ("post", "/api/users"),
    ("post", "/api/users/{username}/approve"),
    ("post", "/api/login"),
    ("post", "/api/refresh"),
    ("get", "/api/audit"),
    ("get", "/api/openapi.json"),
    ("post", "/api/catalogue/resources"),
    ("get", "/api/catalogue/resources"),
    ("get", "/api/catalogue/resources/{code}"),
    (
        "post",
        "/api/catalogue/resources/{code}/versions/{version}/review",
    ),
    (
        "post",
        "/api/catalogue/resources/{code}/versions/{version}/publish",
    ),
    ("post", "/api/catalogue/resources/{code}/retire"),
    ("post", "/api/catalogue/resources/{code}/subscriptions"),
    ("get", "/api/catalogue/subscriptions"),
    ("post", "/api/catalogue/subscriptions/{id}/decide"),
    ("post", "/api/statistics/reports"),
    ("get", "/api/statistics"),
    ("post", "/api/statistics/tickets"),
    ("get", "/api/statistics/report.html"),
    ("post", "/api/feedback"),
    ("get", "/api/feedback"),
    ("post", "/api/feedback/{id}/review"),
    ("post", "/api/users/me/totp"),
    ("post", "/api/users/me/totp/confirm"),
    ("post", "/api/users/me/sms"),
    ("post", "/api/certificates/renew"),
    ("post", "/api/users/me/certificate"),
    ("post", "/api/login/challenge"),
    ("post", "/api/login/certificate"),
];

/// The OpenAPI 3.1 description of the API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The API router.
pub fn router(state: ApiState) -> Router {
    // Reached without a bearer token: enrolment (a one-time token), the public configuration
    // and CRL, registration and the logins, renewal (the current certificate's signature), node
    // reports (their certificate's signature), the report page (a view ticket), this description.
    let public = Router::new()
        .route("/api/enrol", post(enrol))
        .route("/api/crl", get(crl))
        .route("/api/config", get(config))
        .route("/api/users", post(register_user))
        .route("/api/login", post(login))
        .route("/api/refresh", post(refresh))
        .route("/api/login/challenge", post(login_challenge))
        .route("/api/login/certificate", post(login_certificate))
        .route("/api/certificates/renew", post(renew))
        .route("/api/openapi.json", get(openapi))
        // Node reports carry up to a few thousand lines; everything else is small.
        .route(
            "/api/statistics/reports",
            post(statistics_report).layer(axum::extract::DefaultBodyLimit::max(4 << 20)),
        )
        .route("/api/statistics/report.html", get(statistics_page));
    // Everything else: a valid access token first (401), then the role (403, audited).
    let protected = Router::new()
        .route("/api/tokens", post(create_token))
        .route("/api/certificates/{serial}/revoke", post(revoke))
        .route("/api/nodes", post(register_node))
        .route("/api/users/{username}/approve", post(approve_user))
        .route("/api/audit", get(audit))
        .route(
            "/api/catalogue/resources",
            post(register_resource).get(search_resources),
        )
        .route("/api/catalogue/resources/{code}", get(resource))
        .route(
            "/api/catalogue/resources/{code}/versions/{version}/review",
            post(review_resource),
        )
        .route(
            "/api/catalogue/resources/{code}/versions/{version}/publish",
            post(publish_resource),
        )
        .route(
            "/api/catalogue/resources/{code}/retire",
            post(retire_resource),
        )
        .route(
            "/api/catalogue/resources/{code}/subscriptions",
            post(subscribe),
        )
        .route("/api/catalogue/subscriptions", get(list_subscriptions))
        .route(
            "/api/catalogue/subscriptions/{id}/decide",
            post(decide_subscription),
        )
        .route("/api/statistics", get(statistics))
        .route("/api/statistics/tickets", post(statistics_ticket))
        .route("/api/feedback", post(submit_feedback).get(list_feedback))
        .route("/api/feedback/{id}/review", post(review_feedback))
        .route("/api/users/me/totp", post(enrol_totp))
        .route("/api/users/me/totp/confirm", post(confirm_totp))
        .route("/api/users/me/sms", post(enable_sms))
        .route("/api/users/me/certificate", post(bind_certificate))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    public
        .merge(protected)
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .with_state(state)
}
