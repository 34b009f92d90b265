//! `GET /v1/models` (the one model), `GET /health` (200 while serving,
//! 503 while shutting down, with the slots' state) and `GET /metrics`
//! (Prometheus text).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::app::App;

/// The model list: one model.
pub async fn models(State(app): State<Arc<App>>) -> Response {
    let core = app.model.core();
    Json(json!({
        "object": "list",
        "data": [{
            "id": app.config.model_name,
            "object": "model",
            "created": app.created,
            "owned_by": "tessera",
            "meta": {
                "n_ctx": app.n_ctx,
                "n_vocab": core.hparams().n_vocab,
                "slots": app.config.parallel,
            }
        }]
    }))
    .into_response()
}

/// Whether the server takes requests.
pub async fn health(State(app): State<Arc<App>>) -> Response {
    let snap = app.sched.snapshot();
    let busy = snap.busy.iter().filter(|&&b| b).count();
    let draining = app.draining.load(Ordering::Relaxed);
    let status = if draining {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let body = json!({
        "status": if draining { "shutting down" } else { "ok" },
        "slots_idle": snap.busy.len() - busy,
        "slots_processing": busy,
        "queue_depth": snap.queue_depth,
    });
    (status, Json(body)).into_response()
}

/// The counters, in Prometheus' text format.
pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    let text = app.metrics.render(&app.sched.snapshot());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
