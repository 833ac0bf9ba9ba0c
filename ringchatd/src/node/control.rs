//! Admin socket commands that steer the server: elect, drain, undrain, leave, log level,
//! reload. Each answers at once; `ringchatctl` waits for the outcome by polling status.

use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use super::task::NodeTask;
use super::{AdminRequest, status};

impl NodeTask {
    /// Answers one admin request.
    pub(super) fn admin(&mut self, req: AdminRequest) -> Value {
        let now = self.now();
        match req {
            AdminRequest::Status => status::status(self),
            AdminRequest::History { from, limit } => status::history(self, from, limit),
            AdminRequest::Elect => {
                tracing::info!("Election forced by the operator.");
                let epoch = self.node.force_election(now);
                json!({"ok": true, "epoch": epoch})
            }
            AdminRequest::Drain => {
                tracing::info!(
                    leading = self.node.is_serving_leader(),
                    "Draining: no new clients, no leadership."
                );
                self.node.set_draining(now, true);
                json!({"ok": true})
            }
            AdminRequest::Undrain => {
                tracing::info!("Undrained: taking clients and leadership again.");
                self.node.set_draining(now, false);
                json!({"ok": true})
            }
            AdminRequest::Leave => {
                tracing::info!("Leave requested by the operator.");
                self.leave_requested = true;
                json!({"ok": true})
            }
            AdminRequest::LogLevel { level } => match self.controls.log.set(&level) {
                Ok(()) => {
                    tracing::info!(%level, "Log level changed.");
                    self.settings.log_level = level.clone();
                    json!({"ok": true, "level": level})
                }
                Err(e) => json!({"ok": false, "error": format!("{e:#}")}),
            },
            AdminRequest::Reload => self.reload(),
        }
    }

    /// Re-reads the configuration; applies all runtime keys or, on any error, nothing.
    fn reload(&mut self) -> Value {
        let new = match (self.controls.reload)() {
            Ok(s) => s,
            Err(e) => {
                let error = format!("{e:#}");
                tracing::warn!(%error, "Configuration reload refused; nothing changed.");
                return json!({"ok": false, "error": error});
            }
        };
        if new.log_level != self.settings.log_level
            && let Err(e) = self.controls.log.set(&new.log_level)
        {
            let error = format!("{e:#}");
            tracing::warn!(%error, "Configuration reload refused; nothing changed.");
            return json!({"ok": false, "error": error});
        }
        let (applied, restart_required) = self.settings.reload_diff(&new);
        self.node.update_config(new.core.clone());
        self.controls
            .max_text
            .store(new.max_content_chars, Ordering::Relaxed);
        self.settings.log_level = new.log_level;
        self.settings.core = new.core;
        self.settings.max_content_chars = new.max_content_chars;
        self.settings.history_on_connect = new.history_on_connect;
        tracing::info!(?applied, ?restart_required, "Configuration reloaded.");
        json!({"ok": true, "applied": applied, "restart_required": restart_required})
    }
}
