//! `kubechat serve`: the HTTP API. `POST /ask` and `POST /diagnose` answer in JSON, or stream with
//! `Accept: text/event-stream` (`token` events, then one `answer` event with the whole answer); `/clusters` and
//! `/namespaces` list what the caller may ask about; `/healthz`, `/readyz` and `/models` are for operators. Errors are
//! JSON with a request id that also appears in the logs.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use sha2::Digest as _;
use tracing::Instrument as _;

use crate::access::{Asker, Platform, Refusal};
use crate::answer::BudgetError;
use crate::audit::Outcome;
use crate::cluster;
use crate::request::{Intent, Request, Scope};
use crate::secret::Secret;
use crate::service::{AppState, ServeError};

use crate::service::BODY_LIMIT;

/// The HTTP front-end: the core, and who may call it how.
pub struct Http {
    pub core: Arc<AppState>,
    pub auth: HttpAuth,
    /// Origins allowed to call the HTTP API from a browser; none by default.
    pub cors_origins: Vec<String>,
}

/// How the HTTP API knows who asks.
#[derive(Debug, Clone)]
pub enum HttpAuth {
    /// Anyone, as `anonymous`: only when configured so, for local use.
    Open,
    /// `Authorization: Bearer TOKEN`; each token has a name, the identity access rules use.
    Tokens(Vec<(String, Secret)>),
    /// A header set by an authenticating proxy in front (oauth2-proxy's `X-Forwarded-User`, say).
    Header(String),
}

impl HttpAuth {
    /// The asker's identity, or why there is none.
    pub fn identify(&self, headers: &HeaderMap) -> Result<String, &'static str> {
        match self {
            HttpAuth::Open => Ok("anonymous".to_string()),
            HttpAuth::Tokens(tokens) => {
                let presented = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .ok_or("send Authorization: Bearer TOKEN")?;
                let digest = |t: &str| sha2::Sha256::digest(t.as_bytes());
                let presented = digest(presented.trim());
                tokens
                    .iter()
                    .find(|(_, token)| digest(token.expose()) == presented)
                    .map(|(name, _)| name.clone())
                    .ok_or("the bearer token is not one kubechat knows")
            }
            HttpAuth::Header(name) => headers
                .get(name.as_str())
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .ok_or("no identity from the authenticating proxy"),
        }
    }
}

pub fn router(http: Http) -> Router {
    let state = Arc::new(http);
    Router::new()
        .route("/ask", post(ask))
        .route("/diagnose", post(diagnose))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/models", get(models))
        .route("/namespaces", get(namespaces))
        .route("/clusters", get(clusters))
        .route("/", get(|| async { page("text/html; charset=utf-8", include_str!("web/index.html")) }))
        .route("/app.js", get(|| async { page("text/javascript; charset=utf-8", include_str!("web/app.js")) }))
        .route("/style.css", get(|| async { page("text/css; charset=utf-8", include_str!("web/style.css")) }))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(state.clone(), cors))
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// What a browser on another site must not do: in open mode, reach kubechat through a name that is not loopback (DNS
/// rebinding: `evil.example` resolving to 127.0.0.1); post anything but JSON (a form or `text/plain` is a "simple"
/// request, sent cross-site without a preflight); post from a foreign page (an `Origin` that is neither kubechat's
/// own nor one of `http.cors_origins`).
async fn guard(
    State(state): State<Arc<Http>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let headers = request.headers();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default().to_string();
    let refuse = |code: StatusCode, why: &str| error(code, why, &state.core.request_id());
    if matches!(state.auth, HttpAuth::Open) && !loopback(&host) {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "http.auth is open, so kubechat answers only at a loopback name (localhost, 127.0.0.1, [::1]); use tokens or a proxy's header to serve other names",
        );
    }
    if request.method() == axum::http::Method::POST {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send the request as Content-Type: application/json");
        }
        let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
        let own = |o: &str| o.split_once("://").is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(&host));
        if let Some(origin) = origin.filter(|o| !own(o) && !state.cors_origins.iter().any(|allowed| allowed == o)) {
            crate::audit::refused("foreign-origin", &format!("a POST from a foreign page ({origin}) is refused"));
            return refuse(StatusCode::FORBIDDEN, "requests from other sites are refused (http.cors_origins)");
        }
    }
    next.run(request).await
}

/// Whether a `Host` header names this machine's loopback: `localhost`, `127.0.0.1` (any of 127/8) or `[::1]`, with
/// any port.
fn loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => {
            host.rsplit_once(':').map_or(host, |(name, port)| if port.parse::<u16>().is_ok() { name } else { host })
        }
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// CORS, closed unless `http.cors_origins` lists the page's origin: then that origin may call the API, with the
/// Authorization header, and preflights are answered.
async fn cors(
    State(state): State<Arc<Http>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let origin = request.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok()).map(str::to_string);
    let allowed = origin.filter(|o| state.cors_origins.iter().any(|allowed| allowed == o));
    if request.method() == axum::http::Method::OPTIONS {
        let Some(origin) = allowed else { return StatusCode::FORBIDDEN.into_response() };
        return (
            StatusCode::NO_CONTENT,
            [
                (header::ACCESS_CONTROL_ALLOW_ORIGIN, origin),
                (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST".to_string()),
                (header::ACCESS_CONTROL_ALLOW_HEADERS, "authorization, content-type, accept".to_string()),
                (header::ACCESS_CONTROL_MAX_AGE, "600".to_string()),
                (header::VARY, "origin".to_string()),
            ],
        )
            .into_response();
    }
    let mut response = next.run(request).await;
    if let Some(origin) = allowed
        && let Ok(value) = HeaderValue::from_str(&origin)
    {
        response.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        response.headers_mut().insert(header::VARY, HeaderValue::from_static("origin"));
    }
    response
}

/// `/metrics` in Prometheus' text format, for its own port.
pub fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(state): State<Arc<AppState>>| async move {
                // Each cluster's reachability as last found (`Clusters::watch`): a scrape never waits on a cluster.
                let reachable: Vec<(&str, Option<bool>)> =
                    state.clusters.entries().iter().map(|e| (e.name.as_str(), e.health().reachable)).collect();
                (
                    [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                    state.metrics.render(state.llm.queue_len(), reachable),
                )
            }),
        )
        .with_state(state)
}

/// An embedded asset of the web chat, under a policy that allows nothing from elsewhere (air-gapped clusters).
fn page(content_type: &'static str, body: &'static str) -> Response {
    let csp = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, csp),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct NamespacesQuery {
    /// The cluster whose namespaces to list; the default cluster when absent.
    cluster: Option<String>,
}

/// The namespaces the asker may read in a cluster (`?cluster=NAME`, else the default), for the web chat's picker.
async fn namespaces(
    State(http): State<Arc<Http>>,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<NamespacesQuery>,
) -> Response {
    let request_id = http.core.request_id();
    let user = match http.auth.identify(&headers) {
        Ok(user) => user,
        Err(why) => return error(StatusCode::UNAUTHORIZED, why, &request_id),
    };
    let asker = Asker { platform: Platform::Http, place: None, user };
    let cluster = http.core.clusters.canonical(query.cluster.as_deref());
    match http.core.namespaces(&asker, &cluster).await {
        Ok((names, default)) => {
            Json(json!({"cluster": cluster, "namespaces": names, "default": default})).into_response()
        }
        Err(ServeError::UnknownCluster(_)) => {
            error(StatusCode::NOT_FOUND, &http.core.unknown_cluster(&asker, &cluster).to_string(), &request_id)
        }
        Err(e @ ServeError::Unreachable { error: cluster::ReadError::Timeout { .. }, .. }) => {
            error(StatusCode::GATEWAY_TIMEOUT, &e.to_string(), &request_id)
        }
        Err(e) => error(StatusCode::BAD_GATEWAY, &e.to_string(), &request_id),
    }
}

/// The clusters the asker may read, the default first, each with its default namespace and whether its API server
/// answered when last asked.
async fn clusters(State(http): State<Arc<Http>>, headers: HeaderMap) -> Response {
    let request_id = http.core.request_id();
    let user = match http.auth.identify(&headers) {
        Ok(user) => user,
        Err(why) => return error(StatusCode::UNAUTHORIZED, why, &request_id),
    };
    let core = &http.core;
    core.clusters.check(core.limits.call_timeout, std::time::Duration::MAX).await;
    let asker = Asker { platform: Platform::Http, place: None, user };
    let default = core.clusters.default().name.as_str();
    let listed: Vec<serde_json::Value> =
        core.visible_clusters(&asker).iter().map(|e| e.status(e.name == default)).collect();
    Json(json!({"clusters": listed})).into_response()
}

/// A JSON error every endpoint answers with.
fn error(code: StatusCode, message: &str, request_id: &str) -> Response {
    with_request_id((code, Json(json!({"error": message, "request_id": request_id}))).into_response(), request_id)
}

/// Marks a response with the request id its logs carry.
fn with_request_id(mut response: Response, request_id: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AskBody {
    #[serde(default)]
    question: String,
    /// kubechat's name of a cluster, or an alias; the default cluster when absent.
    cluster: Option<String>,
    namespace: Option<String>,
    /// `deployment/checkout`, to narrow the question to one object.
    object: Option<String>,
}

async fn ask(State(http): State<Arc<Http>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    handle(http, headers, body, Intent::Ask).await
}

async fn diagnose(State(http): State<Arc<Http>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    handle(http, headers, body, Intent::Diagnose).await
}

async fn handle(http: Arc<Http>, headers: HeaderMap, body: axum::body::Bytes, intent: Intent) -> Response {
    let request_id = http.core.request_id();
    let span = tracing::info_span!("request", platform = "http", %request_id, intent = ?intent);
    respond(http, headers, body, intent, request_id).instrument(span).await
}

async fn respond(
    http: Arc<Http>,
    headers: HeaderMap,
    body: axum::body::Bytes,
    intent: Intent,
    request_id: String,
) -> Response {
    let state = &http.core;
    let user = match http.auth.identify(&headers) {
        Ok(user) => user,
        Err(why) => {
            let asker = Asker { platform: Platform::Http, place: None, user: "(unauthenticated)".into() };
            state.ticket(&asker, intent, &request_id).fail(Outcome::Unauthenticated, why.to_string());
            return error(StatusCode::UNAUTHORIZED, why, &request_id);
        }
    };
    let asker = Asker { platform: Platform::Http, place: None, user };
    let mut ticket = state.ticket(&asker, intent, &request_id);
    if state.drain.is_closing() {
        ticket.fail(Outcome::Busy, "shutting down".into());
        let mut response = error(StatusCode::SERVICE_UNAVAILABLE, crate::drain::RESTARTING, &request_id);
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return response;
    }
    let body: AskBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(e) => {
            ticket.fail(Outcome::Invalid, "invalid request body".into());
            return error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "invalid request body: {e}; send JSON like {{\"question\": \"why is checkout failing?\", \"namespace\": \"shop\"}}"
                ),
                &request_id,
            );
        }
    };
    if intent == Intent::Ask && body.question.trim().is_empty() {
        ticket.fail(Outcome::Invalid, "empty question".into());
        return error(StatusCode::BAD_REQUEST, "the question is empty: send {\"question\": \"…\"}", &request_id);
    }
    let cluster = state.clusters.canonical(body.cluster.as_deref());
    let namespace = body.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or(state.clusters.namespace(&cluster));
    // Names are checked before access: nothing that is not a name is matched against the rules.
    let scope = match Scope::parse(&cluster, namespace, body.object.as_deref()) {
        Ok(scope) => scope,
        Err(invalid) => {
            ticket.fail(Outcome::Invalid, invalid.to_string());
            return error(StatusCode::BAD_REQUEST, &invalid.to_string(), &request_id);
        }
    };
    if let Err(refusal) = ticket.admit(&scope) {
        let mut response = match &refusal {
            Refusal::Namespace { .. } => error(StatusCode::FORBIDDEN, &refusal.to_string(), &request_id),
            Refusal::UnknownCluster { .. } => error(StatusCode::NOT_FOUND, &refusal.to_string(), &request_id),
            Refusal::RateLimited { .. } => error(StatusCode::TOO_MANY_REQUESTS, &refusal.to_string(), &request_id),
            Refusal::Busy { .. } => error(StatusCode::SERVICE_UNAVAILABLE, &refusal.to_string(), &request_id),
        };
        let retry_after = match refusal {
            Refusal::RateLimited { retry_after } => Some(crate::access::whole_seconds(retry_after)),
            Refusal::Busy { .. } => Some(30),
            Refusal::Namespace { .. } | Refusal::UnknownCluster { .. } => None,
        };
        if let Some(retry_after) = retry_after
            && let Ok(value) = HeaderValue::from_str(&retry_after.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    let request = Request::new(&request_id, asker, intent, scope, &body.question, Vec::new());
    let streaming =
        headers.get(header::ACCEPT).and_then(|a| a.to_str().ok()).is_some_and(|a| a.contains("text/event-stream"));
    if !streaming {
        // An answer in flight, which a shutdown waits for.
        let _answering = state.drain.token();
        return match ticket.answer(&request, |_| {}, |_| {}).await {
            Ok(answer) => with_request_id(Json(crate::view::json(&answer)).into_response(), &request_id),
            Err(e) => serve_error(e, &request_id),
        };
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let note = tx.clone();
    let request_id_note = request_id.clone();
    let interrupted = move || async move {
        let body = json!({"error": crate::drain::INTERRUPTED, "request_id": request_id_note});
        let _ = note.send(Event::default().event("error").data(body.to_string()));
    };
    state.drain.spawn(
        async move {
            let token_tx = tx.clone();
            let queue_tx = tx.clone();
            let answering = ticket.answer(
                &request,
                move |token| {
                    let _ = token_tx.send(Event::default().event("token").data(token));
                },
                move |position| {
                    let _ = queue_tx.send(Event::default().event("queued").data(position.to_string()));
                },
            );
            // A client that goes away stops its answer, so the model's slot frees up for the next in line.
            let result = tokio::select! {
                result = answering => result,
                () = tx.closed() => {
                    tracing::info!(request_id = %request.id, "the client left; answer abandoned");
                    ticket.fail(Outcome::Abandoned, "the client left".into());
                    return;
                }
            };
            let event = match result {
                Ok(answer) => Event::default()
                    .event("answer")
                    .json_data(crate::view::json(&answer))
                    .unwrap_or_else(|_| Event::default().event("error")),
                Err(e) => Event::default()
                    .event("error")
                    .data(json!({"error": e.to_string(), "request_id": request.id}).to_string()),
            };
            let _ = tx.send(event);
        },
        interrupted,
    );
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (Ok::<_, std::convert::Infallible>(event), rx))
    });
    with_request_id(Sse::new(stream).keep_alive(KeepAlive::default()).into_response(), &request_id)
}

/// A failed answer as an HTTP error: a name that does not exist is the asker's 404, the rest is the cluster's 502.
fn serve_error(failure: ServeError, request_id: &str) -> Response {
    match failure {
        ServeError::Read(
            e @ (cluster::ReadError::NamespaceNotFound { .. }
            | cluster::ReadError::ObjectNotFound { .. }
            | cluster::ReadError::UnsupportedKind(_)),
        ) => error(StatusCode::NOT_FOUND, &e.to_string(), request_id),
        ServeError::Read(e) => {
            tracing::error!("cannot read the cluster: {e}");
            error(StatusCode::BAD_GATEWAY, &e.to_string(), request_id)
        }
        e @ ServeError::Unreachable { .. } => {
            tracing::warn!("{e}");
            error(StatusCode::BAD_GATEWAY, &e.to_string(), request_id)
        }
        e @ ServeError::UnknownCluster(_) => error(StatusCode::NOT_FOUND, &e.to_string(), request_id),
        ServeError::Budget(e @ BudgetError::QuestionTooLong { .. }) => {
            error(StatusCode::PAYLOAD_TOO_LARGE, &e.to_string(), request_id)
        }
        ServeError::Budget(e) => {
            tracing::error!("{e}");
            error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string(), request_id)
        }
    }
}

async fn readyz(State(http): State<Arc<Http>>) -> Response {
    // Shutting down: out of the Service at once, while the answers in flight finish.
    if http.core.drain.is_closing() {
        let body = json!({"status": "shutting down", "reason": crate::drain::RESTARTING});
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    let ready = http.core.ready().await;
    // Names and reachability only: the probe is unauthenticated (`/clusters` says more, to those who may ask).
    let clusters: Vec<serde_json::Value> = http
        .core
        .clusters
        .entries()
        .iter()
        .map(|e| json!({"name": e.name, "reachable": e.health().reachable}))
        .collect();
    match ready {
        Ok(prompts) => Json(json!({"status": "ready", "prompts": prompts, "clusters": clusters})).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not ready", "reason": reason, "clusters": clusters})),
        )
            .into_response(),
    }
}

/// The models the server offers, for operators: behind the same authentication as the API.
async fn models(State(http): State<Arc<Http>>, headers: HeaderMap) -> Response {
    let request_id = http.core.request_id();
    if let Err(why) = http.auth.identify(&headers) {
        return error(StatusCode::UNAUTHORIZED, why, &request_id);
    }
    match http.core.llm.models().await {
        Ok(models) => Json(json!({"models": models, "configured": http.core.llm.config.model})).into_response(),
        Err(e) => error(StatusCode::BAD_GATEWAY, &e.to_string(), &request_id),
    }
}

/// How long a client has to send a request's headers, the next request's on a kept-alive connection included: a
/// connection that sends nothing, or its headers a byte at a time, is closed.
pub const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Connections open at once; past it, new ones are closed at once, so slow clients cannot hold every socket.
pub const MAX_CONNECTIONS: usize = 512;
/// How long open connections may take to finish once the server stops.
pub const CLOSE_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves `app` (the [`router`], with the Slack routes when Slack runs in HTTP mode) until `shutdown` resolves;
/// requests in flight finish first. Each connection has [`HEADER_TIMEOUT`] to send each request's headers, and at
/// most [`MAX_CONNECTIONS`] are open at once.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let places = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let (closing, _) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors and the like: wait a moment rather than spin.
                Err(e) => {
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(place) = places.clone().try_acquire_owned() else {
            crate::audit::refused(
                "connections",
                &format!("{MAX_CONNECTIONS} connections are open: one more is closed"),
            );
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let mut closing = closing.subscribe();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
            let connection = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
            let mut connection = std::pin::pin!(connection);
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!("a connection ended: {e}");
                        }
                        break;
                    }
                    _ = closing.changed() => connection.as_mut().graceful_shutdown(),
                }
            }
            drop(place);
        });
    }
    // Stop taking requests on open connections; wait for those in flight (the answers among them have had the
    // drain's time already: what is left is brief, or a client that does not let go).
    let _ = closing.send(true);
    if tokio::time::timeout(CLOSE_TIME, places.acquire_many(MAX_CONNECTIONS as u32)).await.is_err() {
        tracing::warn!("connections still open {} s after shutdown; closing them", CLOSE_TIME.as_secs());
    }
    Ok(())
}
