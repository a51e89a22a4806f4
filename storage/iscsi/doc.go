// Package iscsi attaches iSCSI volumes for xenha and speaks enough iSCSI in
// pure Go to probe a target and fence an old writer through SCSI-3
// persistent reservations.
//
// # Volumes
//
// A volume of Kind "iscsi" names a logical unit by three parameters:
//
//	portal  "198.18.0.10" or "198.18.0.10:3260"
//	iqn     "iqn.2026-11.com.example:vm1"
//	lun     "1"
//
// # Two modes
//
// [NetworkDisk] (the default) leaves the login to QEMU: Attach logs in with
// the pure-Go probe, reads the unit's capacity, and returns
// storage.Source{Type: network, Protocol: "iscsi", Name: "<iqn>/<lun>",
// Hosts: portal}, which libvirt renders as <disk type='network'
// protocol='iscsi'>. The host needs no initiator. The target cannot tell the
// old writer from the new here (QEMU's initiator does the I/O), so the
// backend enforces one writer only by refusing generations older than one it
// has seen (storage.ErrStaleGeneration); fence-before-recover does the rest.
//
// [HostLogin] logs the host in with open-iscsi's iscsiadm, finds the LUN's
// disk in `iscsiadm -m session -P 3`, and makes the storage itself refuse
// old writers with a persistent reservation whose key is the volume's
// generation (sg_persist from sg3_utils):
//
//	sg_persist -n -i -k DEV; sg_persist -n -i -r DEV     registered keys, holder
//	sg_persist -n -o -I -S GEN DEV                       register key = generation
//	sg_persist -n -i -k DEV; sg_persist -n -i -r DEV     read again
//	sg_persist -n -o -R -K GEN -T 5 DEV                  reserve, if nobody holds it
//	sg_persist -n -o -A -K GEN -S OLD -T 5 DEV           preempt and abort each older key
//
// Registering first re-keys this host's own registration (a host moving to
// a newer generation does not preempt itself), and the second read catches
// a newer generation that registered in between, in which case this host
// unregisters and steps back.
// Type 5 is Write Exclusive, Registrants Only: registered initiators may
// write, everyone else gets RESERVATION CONFLICT. Since only the newest
// generation stays registered, a fenced host that wakes up cannot write even
// if it missed the fence. A newer key already registered is
// storage.ErrStaleGeneration; the same key held without this host having
// attached it is storage.ErrInUse. Detach unregisters the key (releasing the
// reservation) and logs out; a host that was preempted detaches without
// error and without disturbing the new holder. Health of an attached volume
// checks that this host's key still holds the reservation, so a preempted
// host learns it is a stale writer (storage.ErrStaleGeneration). Targets without PREEMPT AND
// ABORT (tgt 1.0.85) get PREEMPT, which removes the old key just the same
// but does not abort commands it had already queued.
//
// The sequence lives in one function shared by the sg_persist path and
// [Session.TakeOver], which runs it in pure Go. The
// tests run it against a real tgtd with two initiators and show the fenced
// initiator's WRITE refused. Host mode itself is tested on recorded
// iscsiadm and sg_persist output: this kernel has no iSCSI initiator.
//
// # Probe
//
// [ReadCapacity] and [Discover] implement the initiator side of RFC 7143
// that a health check needs: TCP connect, Login (security negotiation with
// AuthMethod=None, then operational negotiation to full feature phase),
// SendTargets=All in a discovery session, READ CAPACITY(16) falling back to
// (10), Logout. A silent or closed portal is storage.ErrUnreachable; a
// target or LUN the portal does not have is storage.ErrNotFound; a unit
// reserved by another host is storage.ErrInUse. CHAP is not spoken: give the
// probe's initiator name (WithInitiatorName) access without it.
package iscsi
