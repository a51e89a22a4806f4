// Package watchdog makes a host's lease self-enforcing with a watchdog
// device, and lets the leader prove that a silent host is down.
//
// On every host a [Keeper] holds the watchdog device (/dev/watchdog, or a
// file or FIFO in tests) open and writes a keep-alive every pet interval,
// but only while the host's lease is valid: Keeper.Feed(leaseExpiry) is
// called each time a lease renewal is committed (set the Keeper as
// ha.Config.Watchdog and the ha member does it). If the
// renewals stop (partition, hung daemon, lost quorum), the keep-alives stop
// at the lease's expiry and the device resets the machine at most one
// watchdog timeout later — even if the host is too sick to run any code.
// A clean stop writes the magic close character 'V' so the device disarms.
// Other reasons to stay alive are fed as their own sources
// (Keeper.FeedSource): an SBD watcher feeds "sbd" through sbd.OnHealthy, so
// a hung watcher stops the keep-alives as surely as a lapsed lease.
//
// On the leader, [Expiry] says when such a host is provably dead: the last
// renewal the leader applied, plus the lease, plus the watchdog timeout,
// plus a margin for clock-rate error and scheduling. The [Fencer] waits
// until then (re-checking that no renewal arrived meanwhile) and returns a
// proof. It needs no device on the victim's side to answer — which makes
// it the fencing method of last resort when BMC and storage are both gone.
package watchdog
