//! Identifiers shared by every layer, kept as plain integers on the wire.

/// A server's id: it decides who leads (the highest id among the servers that reach each other).
pub type NodeId = u64;

/// An election epoch. Every election raises it; messages from an older epoch are rejected.
pub type Epoch = u64;

/// A position in the global chat order. Starts at 1; 0 means "nothing yet".
pub type Seq = u64;

/// The `sender_id` a server puts on its frames, as the prototype did (`"Server 3"`).
pub fn server_sender_id(id: NodeId) -> String {
    format!("Server {id}")
}

/// Seconds since the Unix epoch as a float, the protocol's `timestamp` format.
pub fn unix_timestamp() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
