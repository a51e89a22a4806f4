// Package sbd fences hosts with a poison pill on shared storage ("storage
// based death", after the SBD daemon): every host has a slot on a small
// shared block device; to fence a host, write "off" into its slot and wait
// msgwait. The victim's [Watcher] reads its slot every loop interval and
// fences itself when it finds the pill — or when it could not read the slot
// for its watchdog timeout, since then a pill may be there unseen. So after
// msgwait (at least watchdog + loop) the victim is down either way, and the
// [Fencer] returns a proof.
//
// A host may use one to three devices, as with SBD. The pill must then reach
// a majority of them, and the victim fences itself when it cannot read a
// majority for its watchdog timeout; any two majorities share a device, so
// a victim that keeps running has read the device holding its pill.
//
// The layout is versioned and checksummed (see layout.go): a header with the
// timeouts and slot count, then one 4 KiB block per slot with owner, message
// type, sender, sequence number, time and CRC32C. A corrupt header or slot is
// a clear error, never a silent "clear". Block devices are opened with
// O_DIRECT and O_DSYNC so every read sees the disk, not this host's cache;
// tests use a plain file and, as root, a loop device.
//
// In production the Watcher's callback stops feeding the hardware watchdog
// (see fence/watchdog) and reboots, and [OnHealthy] feeds the watchdog keeper
// as a source of its own: the watchdog then makes the self-fence certain
// even if the host is too sick to run the callback, or the watcher hangs.
package sbd
