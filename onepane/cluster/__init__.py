"""Several onepane nodes on one database: membership, the leader's lease, fencing, events."""
