//! Timing and size parameters of the state machine.

use crate::Millis;

/// What the core needs to know of the configuration. Times are in milliseconds.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Cluster name put on every ring frame.
    pub cluster: String,
    /// How often a server sends heartbeats to both ring neighbours.
    pub heartbeat_interval: Millis,
    /// Silence after which a neighbour is taken for dead.
    pub heartbeat_timeout: Millis,
    /// A round that has not produced a leader by then is restarted with a higher epoch.
    pub election_timeout: Millis,
    /// A follower that leaves entries unacknowledged this long is spliced out, so one dead
    /// follower never blocks writes.
    pub replication_timeout: Millis,
    /// How long a server that knows no leader waits for others before electing itself;
    /// also how often it asks its static peers to let it join.
    pub startup_grace: Millis,
    /// Entries per sync or replication frame.
    pub sync_chunk_size: usize,
    /// Entries sent to a follower but not yet acknowledged, at most.
    pub max_inflight_entries: u64,
    /// Ring addresses to ask for the ring when multicast is not used (`--peer`).
    pub seeds: Vec<(String, u16)>,
    /// Entries of history kept in memory, at most (0: all). Only committed entries are ever
    /// dropped; a server that needs older ones is sent the retained window instead.
    pub history_retention: usize,
    /// What a server does when it cannot reach a majority of the ring.
    pub mode: ReplicationMode,
}

/// Consistency or availability under a partition: the operator's choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplicationMode {
    /// Every side of a partition keeps serving (a lone server leads a ring of one); the
    /// sides' histories are merged when they meet again.
    #[default]
    Available,
    /// A leader acknowledges a message only once a majority of the configured ring stores
    /// it, and a side without a majority takes no writes: no merge ever has to reconcile
    /// acknowledged messages.
    Quorum {
        /// Servers in the configured ring (the static peers and this one, or as configured).
        cluster_size: usize,
    },
}

impl ReplicationMode {
    /// Servers that make a majority of the configured ring (`None`: available mode).
    pub fn majority(self) -> Option<usize> {
        match self {
            ReplicationMode::Available => None,
            ReplicationMode::Quorum { cluster_size } => Some(cluster_size / 2 + 1),
        }
    }
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            cluster: "ringchat".into(),
            heartbeat_interval: 100,
            heartbeat_timeout: 500,
            election_timeout: 1000,
            replication_timeout: 1000,
            startup_grace: 400,
            sync_chunk_size: 100,
            max_inflight_entries: 32_768,
            seeds: Vec::new(),
            history_retention: 0,
            mode: ReplicationMode::Available,
        }
    }
}
