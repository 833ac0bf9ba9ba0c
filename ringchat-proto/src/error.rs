//! Error codes of the client protocol and the error a parser returns.

use serde::{Deserialize, Serialize};

/// The `code` of an `error` frame (PROTOCOL.md, "Error codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)]
pub enum ErrorCode {
    BadFrame,
    FrameTooLarge,
    BadJson,
    UnknownType,
    BadField,
    NotConnected,
    NotLeader,
    NoLeader,
    ContentTooLong,
    RateLimited,
    ShuttingDown,
}

impl ErrorCode {
    /// The wire spelling, also used as a metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "BAD_FRAME",
            ErrorCode::FrameTooLarge => "FRAME_TOO_LARGE",
            ErrorCode::BadJson => "BAD_JSON",
            ErrorCode::UnknownType => "UNKNOWN_TYPE",
            ErrorCode::BadField => "BAD_FIELD",
            ErrorCode::NotConnected => "NOT_CONNECTED",
            ErrorCode::NotLeader => "NOT_LEADER",
            ErrorCode::NoLeader => "NO_LEADER",
            ErrorCode::ContentTooLong => "CONTENT_TOO_LONG",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::ShuttingDown => "SHUTTING_DOWN",
        }
    }

    /// Whether the server closes the connection after sending this error: the framing
    /// can no longer be trusted after a bad frame, everything else is recoverable.
    pub fn closes_connection(self) -> bool {
        matches!(
            self,
            ErrorCode::BadFrame | ErrorCode::FrameTooLarge | ErrorCode::BadJson
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a frame from the network was refused; becomes one `error` frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ProtocolError {
    /// The code sent to the peer.
    pub code: ErrorCode,
    /// Human-readable reason, naming the offending field where there is one.
    pub message: String,
    /// The `message_id` the error refers to, when the frame carried one.
    pub message_id: Option<String>,
}

impl ProtocolError {
    /// An error without a `message_id`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            message_id: None,
        }
    }

    /// Attaches the `message_id` of the refused message.
    pub fn with_message_id(mut self, id: Option<String>) -> Self {
        self.message_id = id;
        self
    }
}
