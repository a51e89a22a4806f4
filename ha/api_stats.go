package ha

// RaftStats is this member's view of Raft as hashicorp/raft reports it
// (state, term, last_log_index, commit_index, applied_index, ...), for
// monitoring. The keys and values are raft's own and may change with it.
func (c *Cluster) RaftStats() map[string]string { return c.raft.Stats() }
