package ha

// Placeholders until the failover code lands: ha-failover deletes this file
// when recovery.go and config_failover.go define these.

// validateFailover checks the failover fields of c.
func validateFailover(*Config) error { return nil }

// startFailover registers the failover services (lease, detector, incident
// controller, host agent) with c's hooks.
func (c *Cluster) startFailover() {}
