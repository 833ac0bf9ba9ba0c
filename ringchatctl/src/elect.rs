//! `ringchatctl elect`: start an election round on this node and wait until it knows a
//! leader in that round's epoch or a later one (the round clears the old leader, so a
//! leader known in such an epoch is the round's outcome, never the one before it).

use serde_json::{Value, json};

use crate::client::AdminClient;
use crate::commands::{Report, u64_field};
use crate::error::CtlError;
use crate::status::Status;
use crate::wait::Waiter;

/// Sends `elect` and waits for the outcome.
pub fn elect(client: &mut AdminClient, mut waiter: Waiter) -> Result<Report, CtlError> {
    let mut answer = client.request(&json!({"cmd": "elect"}))?;
    let round_epoch = u64_field(&answer, "epoch")?;
    loop {
        let (s, _) = Status::fetch(client)?;
        if let Some(leader) = s.leader.as_ref().filter(|_| s.epoch >= round_epoch) {
            let text = format!(
                "new leader {}, epoch {} (round {})\n",
                leader.id, s.epoch, s.round
            );
            if let Value::Object(fields) = &mut answer {
                fields.insert("leader".into(), json!(leader));
                fields.insert("leader_epoch".into(), json!(s.epoch));
                fields.insert("round".into(), json!(s.round));
                fields.insert("elapsed_ms".into(), json!(waiter.elapsed_ms()));
            }
            return Ok(Report { json: answer, text });
        }
        if !waiter.next() {
            return Err(CtlError::Failed(format!(
                "no leader after {}: node {} is {} in epoch {} (round {}), the forced round \
                 began at epoch {round_epoch}",
                waiter.timeout_text(),
                s.id,
                s.role,
                s.epoch,
                s.round
            )));
        }
        waiter.progress(&format!(
            "waiting for the round to elect a leader (node {} is {})",
            s.id, s.role
        ));
    }
}
