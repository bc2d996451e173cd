//! The host's own probes on the service port (`[health] alive` and `ready`): a load balancer
//! checks the very port it sends traffic to. Answered before routing, so no plugin can shadow
//! them. `alive` says the process serves; `ready` also says that every plugin in the folder is
//! loaded and that no drain is coming: from the moment the supervisor is told to stop,
//! readiness is false for `[limits] drain_delay_ms` before the listener closes, so that a
//! balancer stops sending before anything is refused.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use plugin_api::{Request, Response, ResponseBuilder};

use super::{Registry, RouteTable};

/// `[health]`: paths on the service port that the host answers itself; none by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthPaths {
    /// `200 ok` while the process serves.
    pub alive: Option<String>,
    /// `200 ready` when every plugin is loaded and no drain is coming, else `503` with a line
    /// per reason.
    pub ready: Option<String>,
}

impl Registry {
    /// Sets the probe paths (at start and on each configuration reload).
    pub fn set_health(&self, paths: HealthPaths) {
        let mut inner = self.lock();
        inner.health = paths;
        self.rebuild(&mut inner);
    }

    /// The server is going to stop: readiness is false from now on.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Why this process should not be sent traffic, a line each; `None` when it is ready.
    pub fn not_ready(&self) -> Option<String> {
        let mut why = String::new();
        if self.stopping.load(Ordering::Relaxed) {
            why.push_str("draining: the server is stopping\n");
        }
        for (name, m) in &self.lock().mounts {
            if m.file.is_some() && m.mount.current.load().is_none() {
                let _ = writeln!(why, "plugin {name} is not loaded");
            }
        }
        (!why.is_empty()).then_some(why)
    }

    /// The probe's answer, if `request` is for one.
    pub(super) fn probe(&self, table: &RouteTable, request: &Request<'_>) -> Option<Response> {
        let path = request.path();
        let health = &table.health;
        let ready = health.ready.as_deref() == Some(path);
        if !ready && health.alive.as_deref() != Some(path) {
            return None;
        }
        let (status, body) = if !matches!(request.method(), "GET" | "HEAD") {
            (405, "a probe answers GET and HEAD\n".to_owned())
        } else if !ready {
            (200, "ok\n".to_owned())
        } else {
            match self.not_ready() {
                None => (200, "ready\n".to_owned()),
                Some(why) => (503, why),
            }
        };
        let response = ResponseBuilder::new(status)
            .content_type("text/plain; charset=utf-8")
            .header("cache-control", "no-store")
            .header("allow", "GET, HEAD")
            .body(body)
            .build()
            .unwrap_or_else(|_| crate::worker::internal_error());
        Some(response)
    }
}
