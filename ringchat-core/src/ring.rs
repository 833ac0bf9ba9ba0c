//! Ring membership: servers ordered by id, each with a successor and a predecessor.

use std::collections::BTreeMap;

use ringchat_proto::NodeId;
use ringchat_proto::peer::NodeInfo;

/// The servers a node believes are in the ring, ordered by id.
///
/// The successor of a server is the next higher id (wrapping to the lowest); Chang-Roberts
/// votes travel in that direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring {
    members: BTreeMap<NodeId, NodeInfo>,
}

impl Ring {
    /// A ring holding only `me`.
    pub fn alone(me: NodeInfo) -> Self {
        let mut members = BTreeMap::new();
        members.insert(me.id, me);
        Self { members }
    }

    /// Adds or updates a member; true when something changed.
    pub fn insert(&mut self, node: NodeInfo) -> bool {
        match self.members.get(&node.id) {
            Some(old) if *old == node => false,
            _ => {
                self.members.insert(node.id, node);
                true
            }
        }
    }

    /// Removes a member; true when it was there.
    pub fn remove(&mut self, id: NodeId) -> bool {
        self.members.remove(&id).is_some()
    }

    /// Whether `id` is a member.
    pub fn contains(&self, id: NodeId) -> bool {
        self.members.contains_key(&id)
    }

    /// The member's addresses.
    pub fn get(&self, id: NodeId) -> Option<&NodeInfo> {
        self.members.get(&id)
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Never true for a node's own ring (it always holds the node itself).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Members in ring order (ascending id).
    pub fn members(&self) -> impl Iterator<Item = &NodeInfo> {
        self.members.values()
    }

    /// Member ids in ring order.
    pub fn ids(&self) -> Vec<NodeId> {
        self.members.keys().copied().collect()
    }

    /// The next member after `id` (wrapping); `id` itself when it is alone.
    pub fn successor(&self, id: NodeId) -> Option<&NodeInfo> {
        self.members
            .range(id + 1..)
            .next()
            .or_else(|| self.members.iter().next())
            .map(|(_, n)| n)
    }

    /// The member before `id` (wrapping); `id` itself when it is alone.
    pub fn predecessor(&self, id: NodeId) -> Option<&NodeInfo> {
        self.members
            .range(..id)
            .next_back()
            .or_else(|| self.members.iter().next_back())
            .map(|(_, n)| n)
    }

    /// Replaces the whole membership (from the leader's `ring_update`).
    pub fn replace(&mut self, members: impl IntoIterator<Item = NodeInfo>) {
        self.members = members.into_iter().map(|n| (n.id, n)).collect();
    }

    /// The highest id in the ring.
    pub fn max_id(&self) -> Option<NodeId> {
        self.members.keys().next_back().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(id: NodeId) -> NodeInfo {
        NodeInfo {
            id,
            address: "127.0.0.1".into(),
            port: 5000 + id as u16,
            client_port: 5100 + id as u16,
        }
    }

    #[test]
    fn neighbours_wrap_around() {
        let mut r = Ring::alone(n(2));
        assert_eq!(r.successor(2).unwrap().id, 2);
        r.insert(n(5));
        r.insert(n(9));
        assert_eq!(r.successor(2).unwrap().id, 5);
        assert_eq!(r.successor(9).unwrap().id, 2);
        assert_eq!(r.predecessor(2).unwrap().id, 9);
        assert_eq!(r.predecessor(5).unwrap().id, 2);
        // Neighbours of an id that is not a member (it was just removed) still exist.
        r.remove(5);
        assert_eq!(r.successor(5).unwrap().id, 9);
        assert_eq!(r.max_id(), Some(9));
    }
}
