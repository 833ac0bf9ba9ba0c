//! The connection manager: one tokio task that finds the leader, keeps one framed TCP
//! connection to it alive (pings, a liveness deadline, write timeouts) and reconnects
//! whenever it is lost or the leader moves, feeding everything through the [`Session`].
//!
//! The user side talks to it through a [`Client`] handle and reads [`Event`]s; it never
//! waits on the network itself, so the prompt stays responsive during a failover.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use ringchat_proto::frame::FrameCodec;
use ringchat_proto::limits::MAX_CLIENT_FRAME;
use ringchat_proto::server::ServerMessage;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep, sleep_until, timeout};
use tokio_util::codec::Framed;

use crate::backoff::Backoff;
use crate::discovery::{Discovery, Finder};
use crate::render::json_line;
use crate::session::{Control, Effects, Event, Session};

/// How often a `client_ping` goes out.
const PING_INTERVAL: Duration = Duration::from_secs(1);
/// A connection that has received nothing for this long is dead.
const DEAD_AFTER: Duration = Duration::from_secs(3);
/// A server that takes longer than this to accept our frames is treated as dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause before asking again when a live server says there is no leader right now.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// Redirects followed at once before pausing, so two servers naming each other cannot spin.
const QUICK_REDIRECTS: u32 = 3;
/// Pause before resending rate-limited messages.
const THROTTLE_PAUSE: Duration = Duration::from_millis(250);
/// How long `client_disconnect` may take on the way out.
const GOODBYE_TIMEOUT: Duration = Duration::from_millis(500);

type Connection = Framed<TcpStream, FrameCodec>;

/// A request from the user side.
#[derive(Debug)]
pub enum Command {
    /// Send a chat message (use [`Client::send`] or [`Client::try_send`]).
    Send(String),
    /// Show the last N messages.
    History(u64),
    /// Show what is known about the leader.
    ShowLeader,
    /// Say goodbye to the server and stop.
    Quit,
}

/// Too many messages wait for an acknowledgement (`--max-pending`).
#[derive(Debug)]
pub struct QueueFull;

/// The user side's handle on the connection manager.
///
/// Each message takes one of `max_pending` slots until it is acknowledged or refused, so a
/// long outage bounds memory: interactive input is refused when none is free, a script
/// waits for one.
#[derive(Debug, Clone)]
pub struct Client {
    commands: UnboundedSender<Command>,
    slots: Arc<Semaphore>,
}

impl Client {
    /// Queues a message, or refuses it when all slots are taken.
    pub fn try_send(&self, content: String) -> Result<(), QueueFull> {
        self.slots.try_acquire().map_err(|_| QueueFull)?.forget();
        self.request(Command::Send(content));
        Ok(())
    }

    /// Queues a message, first waiting for a free slot.
    pub async fn send(&self, content: String) {
        // The semaphore is never closed, so this only fails if that changes.
        if let Ok(permit) = self.slots.acquire().await {
            permit.forget();
        }
        self.request(Command::Send(content));
    }

    /// Any other request.
    pub fn request(&self, command: Command) {
        // A stopped manager has nothing left to do with it.
        let _ = self.commands.send(command);
    }
}

/// What the connection manager needs to know up front.
#[derive(Debug)]
pub struct Options {
    /// Stable id of this client.
    pub client_id: String,
    /// How to find the leader.
    pub discovery: Discovery,
    /// Most unacknowledged messages.
    pub max_pending: usize,
}

/// Starts the connection manager; it runs until [`Command::Quit`] or until every
/// [`Client`] is dropped. With `raw_frames` every received frame is also an [`Event::Frame`].
pub fn spawn(
    options: Options,
    username: String,
    raw_frames: bool,
) -> (Client, UnboundedReceiver<Event>, JoinHandle<()>) {
    let (commands_tx, commands) = unbounded_channel();
    // Unbounded: a slow terminal must not stall pings and turn into a false reconnect.
    let (events, events_rx) = unbounded_channel();
    let slots = Arc::new(Semaphore::new(options.max_pending));
    let finder = Finder::new(options.discovery, events.clone());
    let link = Link {
        session: Session::new(options.client_id, username),
        commands,
        events,
        slots: slots.clone(),
        raw_frames,
    };
    let task = tokio::spawn(run(finder, link));
    let client = Client {
        commands: commands_tx,
        slots,
    };
    (client, events_rx, task)
}

/// Why a connection ended.
enum Outcome {
    /// The user quit.
    Quit,
    /// EOF, an I/O error, or silence.
    Lost(String),
    /// The session wants another server.
    Moved(Control),
}

/// The reconnect loop: find a server, serve the connection, decide how soon to retry.
async fn run(finder: Finder, mut link: Link) {
    let mut backoff = Backoff::default();
    let mut redirect = None;
    let mut redirects = 0;
    let mut pause = Duration::ZERO;
    loop {
        if !pause.is_zero() && link.offline(sleep(pause)).await.is_none() {
            return;
        }
        let Some((stream, address)) = link.offline(finder.find(redirect.take())).await else {
            return;
        };
        let outcome = link.serve(stream, &address).await;
        let was_ready = link.session.is_ready();
        link.session.disconnected();
        if was_ready {
            backoff.reset();
            redirects = 0;
        }
        let reason = match outcome {
            Outcome::Quit => return,
            Outcome::Lost(reason) => {
                pause = backoff.next_delay();
                format!("leader lost ({reason})")
            }
            Outcome::Moved(Control::Redirect { address, reason }) => {
                redirect = Some(address);
                redirects += 1;
                pause = if redirects <= QUICK_REDIRECTS {
                    Duration::ZERO
                } else {
                    RETRY_PAUSE
                };
                reason
            }
            Outcome::Moved(Control::Rediscover { reason }) => {
                pause = RETRY_PAUSE;
                reason
            }
        };
        if was_ready {
            link.reconnecting(reason);
        }
    }
}

/// The manager's state besides the finder: the session and both channel ends.
struct Link {
    session: Session,
    commands: UnboundedReceiver<Command>,
    events: UnboundedSender<Event>,
    slots: Arc<Semaphore>,
    raw_frames: bool,
}

impl Link {
    /// Runs `fut` (a pause, a search) while still taking user requests; `None` on quit.
    async fn offline<T>(&mut self, fut: impl Future<Output = T>) -> Option<T> {
        tokio::pin!(fut);
        loop {
            let command = tokio::select! {
                out = &mut fut => return Some(out),
                command = self.commands.recv() => command,
            };
            match command {
                None | Some(Command::Quit) => return None,
                Some(command) => {
                    // Not connected: the session queues messages and sends nothing.
                    let mut fx = Effects::default();
                    self.command(command, &mut fx);
                    fx.events.into_iter().for_each(|e| self.emit(e));
                }
            }
        }
    }

    /// One connection, from `client_connect` until it ends.
    async fn serve(&mut self, stream: TcpStream, address: &str) -> Outcome {
        let mut conn = Framed::new(stream, FrameCodec::new(MAX_CLIENT_FRAME));
        let mut fx = Effects::default();
        self.session.connect(address, &mut fx);
        if let Err(outcome) = self.apply(&mut conn, fx).await {
            return outcome;
        }
        let mut ping = interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut dead_at = Instant::now() + DEAD_AFTER;
        let mut retry_at = None;
        loop {
            let mut fx = Effects::default();
            tokio::select! {
                frame = conn.next() => match frame {
                    None => return Outcome::Lost("connection closed".into()),
                    Some(Err(e)) => return Outcome::Lost(e.to_string()),
                    Some(Ok(payload)) => {
                        dead_at = Instant::now() + DEAD_AFTER;
                        self.receive(&payload, &mut fx);
                    }
                },
                command = self.commands.recv() => match command {
                    None | Some(Command::Quit) => {
                        let goodbye = self.session.goodbye();
                        let _ = timeout(GOODBYE_TIMEOUT, conn.send(goodbye)).await;
                        return Outcome::Quit;
                    }
                    Some(command) => self.command(command, &mut fx),
                },
                _ = ping.tick() => fx.frames.push(self.session.ping()),
                () = sleep_until(dead_at) => {
                    return Outcome::Lost(format!("no answer for {} s", DEAD_AFTER.as_secs()));
                }
                () = sleep_until(retry_at.unwrap_or(dead_at)), if retry_at.is_some() => {
                    retry_at = None;
                    self.session.resend_throttled(&mut fx);
                }
            }
            if fx.retry_later && retry_at.is_none() {
                retry_at = Some(Instant::now() + THROTTLE_PAUSE);
            }
            if let Err(outcome) = self.apply(&mut conn, fx).await {
                return outcome;
            }
        }
    }

    /// One frame from the server: echoed raw if asked, then handed to the session.
    fn receive(&mut self, payload: &[u8], fx: &mut Effects) {
        if self.raw_frames
            && let Some(line) = json_line(payload)
        {
            fx.events.push(Event::Frame(line));
        }
        match serde_json::from_slice::<ServerMessage>(payload) {
            Ok(msg) => self.session.handle(msg, fx),
            Err(e) => fx
                .events
                .push(Event::Notice(format!("skipped an unreadable frame: {e}"))),
        }
    }

    fn command(&mut self, command: Command, fx: &mut Effects) {
        match command {
            Command::Send(content) => self.session.submit(&content, fx),
            Command::History(count) => self.session.request_recent(count, fx),
            Command::ShowLeader => fx.events.push(Event::Leader(self.session.leader().clone())),
            Command::Quit => {} // handled by the callers: it ends the loop
        }
    }

    /// Shows the events, writes the frames, and ends the connection if the session asks.
    async fn apply(&mut self, conn: &mut Connection, fx: Effects) -> Result<(), Outcome> {
        fx.events.into_iter().for_each(|e| self.emit(e));
        if !fx.frames.is_empty() {
            let write = async {
                for frame in fx.frames {
                    conn.feed(frame).await?;
                }
                SinkExt::<Bytes>::flush(conn).await
            };
            match timeout(WRITE_TIMEOUT, write).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(Outcome::Lost(e.to_string())),
                Err(_) => return Err(Outcome::Lost("the server stopped reading".into())),
            }
        }
        fx.control.map_or(Ok(()), |c| Err(Outcome::Moved(c)))
    }

    fn reconnecting(&mut self, mut reason: String) {
        let pending = self.session.pending_len();
        if pending > 0 {
            reason.push_str(&format!(
                "; {pending} unacknowledged messages will be resent"
            ));
        }
        self.emit(Event::Reconnecting { reason });
    }

    fn emit(&mut self, event: Event) {
        if matches!(event, Event::Delivered { .. } | Event::Failed { .. }) {
            self.slots.add_permits(1);
        }
        // The user side may have gone already while we say goodbye.
        let _ = self.events.send(event);
    }
}
