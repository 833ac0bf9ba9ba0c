//! One connection to the daemon's admin socket: a JSON object per line out, a JSON line
//! back; several requests may share the connection.
//!
//! Connecting and every read and write are bounded (5 s), an answer over 64 MiB is refused
//! unread, and nothing the daemon sends can panic this process: a malformed answer is an
//! error like any other.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use socket2::{Domain, SockAddr, Socket, Type};

use crate::error::{CtlError, describe};

/// Limit for connecting, and for each read and write.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest answer accepted, newline included.
const MAX_ANSWER: u64 = 64 << 20;

/// A connection to ringchatd's admin socket.
#[derive(Debug)]
pub struct AdminClient {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl AdminClient {
    /// Connects to the socket at `path`.
    pub fn connect(path: &Path) -> Result<AdminClient, CtlError> {
        let unreachable = |source| CtlError::Unreachable {
            path: path.to_path_buf(),
            source,
        };
        let stream = connect_stream(path).map_err(unreachable)?;
        let writer = stream.try_clone().map_err(unreachable)?;
        Ok(AdminClient {
            path: path.to_path_buf(),
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Sends `request` and returns the answer, whatever its `ok` says.
    pub fn call(&mut self, request: &Value) -> Result<Value, CtlError> {
        let mut line = request.to_string();
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .map_err(|e| self.lost(format!("sending the request: {}", describe(&e))))?;
        let answer = self.read_line()?;
        serde_json::from_slice(&answer).map_err(|e| {
            CtlError::Failed(format!(
                "ringchatd sent an answer that is not JSON ({e}): {}",
                preview(&answer)
            ))
        })
    }

    /// Sends `request` and returns the answer if it says `"ok": true`; otherwise fails with
    /// the daemon's `error`.
    pub fn request(&mut self, request: &Value) -> Result<Value, CtlError> {
        let answer = self.call(request)?;
        match answer.get("ok") {
            Some(Value::Bool(true)) => Ok(answer),
            Some(Value::Bool(false)) => {
                let cmd = request.get("cmd").and_then(Value::as_str).unwrap_or("?");
                let why = answer
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("no reason given");
                Err(CtlError::Failed(format!("ringchatd refused {cmd}: {why}")))
            }
            _ => Err(CtlError::Failed(format!(
                "ringchatd sent an answer without \"ok\": {}",
                preview(answer.to_string().as_bytes())
            ))),
        }
    }

    /// Reads one answer line (without its newline).
    fn read_line(&mut self) -> Result<Vec<u8>, CtlError> {
        let mut line = Vec::new();
        let read = (&mut self.reader)
            .take(MAX_ANSWER)
            .read_until(b'\n', &mut line);
        match read {
            Ok(0) => Err(self.lost("it closed the connection".to_owned())),
            Ok(_) if line.last() == Some(&b'\n') => {
                line.pop();
                Ok(line)
            }
            Ok(n) if n as u64 >= MAX_ANSWER => Err(CtlError::Failed(format!(
                "ringchatd sent an answer over {} MiB; refused",
                MAX_ANSWER >> 20
            ))),
            Ok(_) => Err(self.lost("it closed the connection mid-answer".to_owned())),
            Err(e) if is_timeout(&e) => {
                Err(self.lost(format!("no answer within {} s", IO_TIMEOUT.as_secs())))
            }
            Err(e) => Err(self.lost(describe(&e))),
        }
    }

    fn lost(&self, reason: String) -> CtlError {
        CtlError::Lost {
            path: self.path.clone(),
            reason,
        }
    }
}

/// Whether anything accepts connections at `path` right now.
pub fn is_listening(path: &Path) -> bool {
    connect_stream(path).is_ok()
}

fn connect_stream(path: &Path) -> io::Result<UnixStream> {
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.connect_timeout(&SockAddr::unix(path)?, IO_TIMEOUT)?;
    let stream = UnixStream::from(socket);
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The start of a bad answer, for an error message.
fn preview(bytes: &[u8]) -> String {
    const SHOWN: usize = 200;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(SHOWN)]);
    let text: String = text.chars().filter(|c| !c.is_control()).collect();
    if bytes.len() > SHOWN {
        format!("{text}...")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;
    use std::thread;

    use serde_json::json;

    use super::*;

    /// A one-connection server that answers each request line with the next of `answers`.
    fn serve(answers: Vec<Vec<u8>>) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.sock");
        let listener = UnixListener::bind(&path).unwrap();
        thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream;
            for answer in answers {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                if writer.write_all(&answer).is_err() {
                    return;
                }
            }
        });
        (dir, path)
    }

    #[test]
    fn several_requests_share_a_connection() {
        let (_dir, path) = serve(vec![
            b"{\"ok\":true,\"epoch\":7}\n".to_vec(),
            b"{\"ok\":false,\"error\":\"no such level\"}\n".to_vec(),
        ]);
        let mut c = AdminClient::connect(&path).unwrap();
        assert_eq!(c.request(&json!({"cmd": "elect"})).unwrap()["epoch"], 7);
        let e = c.request(&json!({"cmd": "log_level"})).unwrap_err();
        assert_eq!(e.to_string(), "ringchatd refused log_level: no such level");
        assert_eq!(e.exit_code(), 1);
    }

    #[test]
    fn bad_answers_are_errors() {
        let (_dir, path) = serve(vec![b"not json\n".to_vec(), b"[1]\n".to_vec()]);
        let mut c = AdminClient::connect(&path).unwrap();
        let e = c.request(&json!({"cmd": "status"})).unwrap_err();
        assert!(e.to_string().contains("not JSON"), "{e}");
        let e = c.request(&json!({"cmd": "status"})).unwrap_err();
        assert!(e.to_string().contains("without \"ok\""), "{e}");
    }

    #[test]
    fn a_closed_connection_is_lost() {
        let (_dir, path) = serve(vec![b"{\"ok\":tr".to_vec()]);
        let mut c = AdminClient::connect(&path).unwrap();
        let e = c.request(&json!({"cmd": "status"})).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
        assert!(e.to_string().contains("mid-answer"), "{e}");
    }

    #[test]
    fn a_missing_socket_is_unreachable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.sock");
        let e = AdminClient::connect(&path).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        assert!(!is_listening(&path));
    }
}
