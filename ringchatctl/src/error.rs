//! Why a command did not succeed, and the exit code each reason maps to.

use std::io;
use std::path::PathBuf;

/// A failed command.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// No connection could be made (exit 2).
    #[error(
        "cannot reach ringchatd at {}: {} (is it running? --socket PATH)",
        path.display(),
        describe(source)
    )]
    Unreachable {
        /// The socket path tried.
        path: PathBuf,
        /// What the connect said.
        source: io::Error,
    },
    /// Connected, but the daemon stopped answering mid-conversation (exit 2).
    #[error("ringchatd at {} stopped answering: {reason}", path.display())]
    Lost {
        /// The socket path.
        path: PathBuf,
        /// What happened.
        reason: String,
    },
    /// The daemon answered, but the operation failed or did not finish in time (exit 1).
    #[error("{0}")]
    Failed(String),
}

impl CtlError {
    /// The process exit code: 2 when the daemon cannot be reached, else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Unreachable { .. } | CtlError::Lost { .. } => 2,
            CtlError::Failed(_) => 1,
        }
    }
}

/// An I/O error as a short phrase: "No such file or directory", without "(os error 2)".
pub fn describe(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(cut) => text[..cut].to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_names_the_path_and_the_reason() {
        let e = CtlError::Unreachable {
            path: "/run/ringchat/admin.sock".into(),
            source: io::Error::from_raw_os_error(2),
        };
        assert_eq!(
            e.to_string(),
            "cannot reach ringchatd at /run/ringchat/admin.sock: No such file or directory \
             (is it running? --socket PATH)"
        );
        assert_eq!(e.exit_code(), 2);
        assert_eq!(CtlError::Failed("x".into()).exit_code(), 1);
    }
}
