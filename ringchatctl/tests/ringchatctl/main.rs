//! Tests of the `ringchatctl` binary: against a daemon that is missing or misbehaves
//! ([`offline`]), and against live 3-node clusters of the real `ringchatd` ([`status`],
//! [`elect`], [`drain`], [`leave`]), checked against what clients see.
//!
//! The clusters come from the cluster tests' harness (`ringchat-cluster-tests`), which
//! builds `ringchatd` with this test's profile, hands out unique ports and puts each node's
//! admin socket in a temporary directory. Waits poll conditions; nothing sleeps a fixed time.

mod drain;
mod elect;
mod leave;
mod offline;
mod status;
mod support;
