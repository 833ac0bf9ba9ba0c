//! Wires the drivers to the node task and runs them until shutdown.

use anyhow::Context;
use ringchat_proto::ids::server_sender_id;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cli::DiscoveryMode;
use crate::net::client_session::SessionConfig;
use crate::net::discovery::{self, DiscoveryConfig};
use crate::net::{client_listener, peer_listener};
use crate::node::{AdminRequest, Event, NodeTask};
use crate::ops::signals::SignalEvents;
use crate::ops::{Controls, admin, metrics};
use crate::settings::Settings;

/// Events queued for the node task before drivers wait.
const EVENT_QUEUE: usize = 16_384;

/// Runs a server until `shutdown` is cancelled, then leaves the ring and returns.
///
/// Every listener is bound before anything else starts, so a port in use is reported at
/// once with the port named, rather than as a half-started server.
pub async fn run(
    settings: Settings,
    signals: SignalEvents,
    controls: Controls,
) -> anyhow::Result<()> {
    let SignalEvents {
        shutdown,
        reload: mut sighup,
    } = signals;
    let ring = TcpListener::bind(settings.ring_bind()?)
        .await
        .with_context(|| {
            format!(
                "port: cannot listen on {}:{}",
                settings.address, settings.port
            )
        })?;
    let clients = TcpListener::bind(settings.client_bind()?)
        .await
        .with_context(|| {
            format!(
                "client-port: cannot listen on {}:{}",
                settings.address, settings.client_port
            )
        })?;
    let admin = admin::bind(
        &settings.admin_socket,
        settings.admin_mode,
        settings.admin_group.as_deref(),
    )?;
    let http = match settings.metrics_addr {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("metrics-addr: cannot listen on {addr}"))?;
            Some((listener, metrics::install()?))
        }
        None => None,
    };
    let disc_cfg = DiscoveryConfig {
        group: settings.multicast_group,
        port: settings.multicast_port,
        interface: settings.multicast_interface,
        interval: settings.discovery_interval,
        cluster: settings.cluster.clone(),
        key: settings.cluster_key.clone(),
    };
    let disc_sockets = match settings.discovery {
        DiscoveryMode::Multicast => Some(discovery::bind(&disc_cfg).with_context(|| {
            format!(
                "discovery: cannot use multicast group {}:{} on interface {}",
                disc_cfg.group, disc_cfg.port, disc_cfg.interface
            )
        })?),
        DiscoveryMode::Static => None,
    };

    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let max_text = controls.max_text.clone();
    let (task, view) = NodeTask::new(settings.clone(), events_rx, events_tx.clone(), controls);
    let stop_drivers = CancellationToken::new();
    let mut drivers = JoinSet::new();
    drivers.spawn(peer_listener::run(
        ring,
        server_sender_id(settings.id),
        settings.cluster.clone(),
        settings.ring_auth(),
        events_tx.clone(),
        stop_drivers.clone(),
    ));
    let session_cfg = SessionConfig {
        sender_id: server_sender_id(settings.id),
        max_frame: settings.max_frame,
        max_text,
        queue: settings.client_queue,
        idle_timeout: settings.client_idle_timeout,
        write_timeout: std::time::Duration::from_secs(5),
    };
    drivers.spawn(client_listener::run(
        clients,
        session_cfg,
        settings.max_clients,
        events_tx.clone(),
        stop_drivers.clone(),
    ));
    drivers.spawn(admin::run(
        admin,
        settings.admin_socket.clone(),
        events_tx.clone(),
        stop_drivers.clone(),
    ));
    drivers.spawn(crate::ops::systemd::report(
        view.clone(),
        stop_drivers.clone(),
    ));
    if let Some((listener, handle)) = http {
        drivers.spawn(crate::ops::http::serve(
            listener,
            handle,
            view.clone(),
            stop_drivers.clone(),
        ));
    }
    if let Some(sockets) = disc_sockets {
        drivers.spawn(discovery::run(
            sockets,
            disc_cfg,
            view.clone(),
            events_tx.clone(),
            stop_drivers.clone(),
        ));
    }
    // SIGHUP: the same reload as `ringchatctl reload`; the node task logs the outcome.
    let reload_events = events_tx.clone();
    let stop = stop_drivers.clone();
    drivers.spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                hup = sighup.recv() => if hup.is_none() { return },
            }
            let (reply, _) = tokio::sync::oneshot::channel();
            let req = AdminRequest::Reload;
            if reload_events
                .send(Event::Admin { req, reply })
                .await
                .is_err()
            {
                return;
            }
        }
    });
    drop(events_tx);
    tracing::info!(
        id = settings.id,
        address = %settings.address,
        port = settings.port,
        client_port = settings.client_port,
        discovery = ?settings.discovery,
        authenticated = settings.cluster_key.is_some(),
        admin_socket = %settings.admin_socket.display(),
        "RingChat server started."
    );
    // The node task leaves the ring gracefully when `shutdown` fires; drivers stop after.
    task.run(shutdown).await;
    stop_drivers.cancel();
    while drivers.join_next().await.is_some() {}
    tracing::info!("Stopped.");
    Ok(())
}
