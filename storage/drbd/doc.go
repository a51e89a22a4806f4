// Package drbd hands DRBD 9 resources between hosts: the host that runs a VM
// promotes its replica to Primary, and no other host may.
//
// A [Backend] drives drbdadm (primary, secondary, sh-dev) and reads state
// with drbdsetup (status --json, events2). Attach promotes and returns the
// resource's /dev/drbdN as a block source; Detach demotes. It implements
// storage.Promoter.
//
// # Promotion rules
//
// Promote refuses, with a clear error, unless every peer is provably not
// writing: connected as Secondary, or its disk is Outdated, or the caller
// names it as fenced (volume parameter "fenced", see below). A peer seen as
// Primary means storage.ErrInUse. A peer that is unreachable (Connecting,
// StandAlone, ...) and neither outdated nor fenced is refused too: DRBD
// itself may allow the promotion, which is exactly how split brains begin.
// A split brain (events2 reporting the split-brain helper, which the kernel
// calls when it drops the connection to StandAlone after detecting one) is
// reported as storage.ErrSplitBrain and never resolved automatically.
//
// Volume parameters:
//
//	resource  DRBD resource name (required)
//	volume    volume number inside the resource (default 0)
//	fenced    comma-separated peer names (connection names, as in
//	          drbdsetup status) that the caller has fenced; set it only
//	          after a fence proof for them is committed
//
// # Parsers
//
// [ParseStatusJSON], [ParseStatusText] and [ParseEvents] read every format
// drbd-utils 9.22 through master prints, and tolerate unknown and missing
// keys: newer versions add keys (open:, tls:), and real drbdsetup quirks
// ("peer_devices" spelled with an underscore, a stray space after a comma)
// are accepted.
package drbd
