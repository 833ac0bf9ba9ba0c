//! Size limits of the client protocol, in one place so that server and client agree.

/// Largest frame payload a client may send or receive (`max_frame`).
pub const MAX_CLIENT_FRAME: usize = 65_536;
/// Largest frame on the ring port: a sync chunk of 500 (the most `sync_chunk_size` allows)
/// maximal messages fits.
pub const MAX_PEER_FRAME: usize = 16 * 1024 * 1024;
/// Default limit on a chat text, in characters.
pub const DEFAULT_MAX_CONTENT_CHARS: usize = 4096;
/// `client_id` length bounds, in characters.
pub const MAX_CLIENT_ID_CHARS: usize = 64;
/// `message_id` length bounds, in characters.
pub const MAX_MESSAGE_ID_CHARS: usize = 128;
/// `username` length bounds, in characters.
pub const MAX_USERNAME_CHARS: usize = 32;
/// Entries a `history_request` gets when it names no `limit`.
pub const DEFAULT_HISTORY_LIMIT: u64 = 100;
/// Largest `limit` a `history_request` may ask for.
pub const MAX_HISTORY_LIMIT: u64 = 1000;
