//! What goes into the state machine and what comes out.

use ringchat_proto::peer::{NodeInfo, PeerBody, PeerMessage};
use ringchat_proto::{Epoch, NodeId, Seq};

/// Something that happened outside the state machine.
#[derive(Debug, Clone)]
pub enum Input {
    /// Time passed; timers are checked against the `now` given to [`crate::Node::step`].
    Tick,
    /// A ring frame arrived.
    Peer(PeerMessage),
    /// The link to a peer broke and could not be re-established.
    PeerUnreachable(NodeId),
    /// Discovery heard of a server (multicast announcement).
    Discovered {
        /// The server.
        node: NodeInfo,
        /// The leader it follows, if any.
        leader: Option<NodeInfo>,
        /// Its epoch: a server that knows no leader still elects above it.
        epoch: Epoch,
    },
}

/// A client message the leader is asked to store.
#[derive(Debug, Clone)]
pub struct Proposal {
    /// Sender.
    pub client_id: String,
    /// Deduplication key within `client_id`.
    pub message_id: String,
    /// Display name.
    pub username: String,
    /// Text.
    pub content: String,
    /// Receive time (seconds since the Unix epoch), becomes the entry's timestamp.
    pub timestamp: f64,
}

/// What became of a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProposeOutcome {
    /// Stored at this sequence number; acknowledge once it is committed.
    Appended(Seq),
    /// Stored before (a resend): same sequence number, acknowledge once committed.
    Duplicate(Seq),
}

/// Why a proposal was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProposeError {
    /// Another server leads.
    NotLeader(Option<NodeInfo>),
    /// An election or a new leader's recovery is running; retry soon.
    NoLeader,
}

/// Why an election round was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionTrigger {
    /// No leader was found after start-up.
    Startup,
    /// The leader stopped answering.
    LeaderLost,
    /// The previous round did not finish in time.
    Timeout,
    /// A higher id joined and caught up, or a newer epoch was seen.
    HigherId,
    /// Asked for: by another server (`election_start`), or by the operator (`elect`, a
    /// drain, a leaving leader).
    Requested,
}

impl ElectionTrigger {
    /// Metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            ElectionTrigger::Startup => "startup",
            ElectionTrigger::LeaderLost => "leader_lost",
            ElectionTrigger::Timeout => "timeout",
            ElectionTrigger::HigherId => "higher_id",
            ElectionTrigger::Requested => "requested",
        }
    }
}

/// Changes worth a log line or a metric; the state itself is read from [`crate::Node`].
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// This node started a round.
    ElectionStarted {
        /// Why.
        trigger: ElectionTrigger,
        /// The round's epoch.
        epoch: Epoch,
    },
    /// The role or the leader changed.
    RoleChanged,
    /// This node became leader and finished recovery: it takes writes now.
    LeaderReady {
        /// Entries adopted from followers that were ahead.
        recovered: Seq,
    },
    /// The membership changed.
    RingChanged,
    /// A peer is taken for dead.
    PeerFailed {
        /// The peer.
        id: NodeId,
        /// What showed it.
        cause: &'static str,
    },
    /// A neighbour's heartbeat was late.
    HeartbeatMissed {
        /// The neighbour.
        id: NodeId,
    },
    /// A heartbeat round trip completed.
    HeartbeatRtt {
        /// The neighbour.
        id: NodeId,
        /// Round-trip time in milliseconds.
        millis: u64,
    },
    /// A frame from an older epoch was refused.
    StaleMessage {
        /// Its kind.
        kind: &'static str,
    },
    /// A follower's history did not continue ours and is being replaced.
    FollowerReset {
        /// The follower.
        id: NodeId,
    },
    /// Our history was replaced by the leader's.
    HistoryReset,
    /// A diverged follower's messages were merged into our history: client views from
    /// `from` to `to` are no longer valid.
    HistoriesMerged {
        /// First sequence number where the merged side's history differed (or 1).
        from: Seq,
        /// The merged side's newest sequence number.
        to: Seq,
    },
}

/// Something the driver must do.
#[derive(Debug, Clone)]
pub enum Action {
    /// Send a frame to a member.
    Send {
        /// The receiver.
        to: NodeInfo,
        /// The message (the driver wraps it in a [`PeerMessage`]).
        body: PeerBody,
    },
    /// Send a frame to an address whose server id is unknown (a static peer).
    SendToAddress {
        /// Host.
        address: String,
        /// Ring port.
        port: u16,
        /// The message.
        body: PeerBody,
    },
    /// Worth telling the operator or a metric.
    Notice(Notice),
}
