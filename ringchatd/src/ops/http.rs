//! The HTTP endpoint on `--metrics-addr`: `/metrics` (Prometheus text), `/healthz` (the
//! process answers) and `/readyz` (200 only in a ring with a known leader and not drained;
//! 503 with the reason otherwise; `?verbose` lists every check).

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use ringchat_core::Role;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::node::NodeView;

/// Serves until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    metrics: PrometheusHandle,
    view: watch::Receiver<NodeView>,
    shutdown: CancellationToken,
) {
    let mut upkeep = tokio::time::interval(Duration::from_secs(5));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = upkeep.tick() => {
                metrics.run_upkeep();
                continue;
            }
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let metrics = metrics.clone();
        let view = view.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let answer = route(&req, &metrics, &view.borrow());
                async move { Ok::<_, Infallible>(answer) }
            });
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            // A client that holds a connection open gets at most this long.
            let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
        });
    }
}

fn route(
    req: &Request<Incoming>,
    metrics: &PrometheusHandle,
    view: &NodeView,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
    }
    match req.uri().path() {
        "/metrics" => {
            let mut r = text(StatusCode::OK, metrics.render());
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => {
            let verbose = req
                .uri()
                .query()
                .is_some_and(|q| q.split('&').any(|p| p == "verbose"));
            readiness(view, verbose)
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz, /readyz\n".into(),
        ),
    }
}

/// Ready: a leader is known (and if that is us, we serve), and we are not drained.
fn readiness(view: &NodeView, verbose: bool) -> Response<Full<Bytes>> {
    let checks = [
        ("leader_known", view.leader.is_some()),
        (
            "serving_if_leader",
            view.role != Role::Leader || view.serving,
        ),
        ("not_draining", !view.draining),
    ];
    let ready = checks.iter().all(|(_, ok)| *ok);
    let mut body = String::new();
    for (name, ok) in checks {
        if verbose || !ok {
            body.push_str(&format!("[{}] {name}\n", if ok { "+" } else { "-" }));
        }
    }
    body.push_str(if ready { "ready\n" } else { "not ready\n" });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    text(status, body)
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}
