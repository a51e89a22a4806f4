// Package netguardtest helps test code that uses a [netguard.Guard].
//
// [Guard] is an in-memory fake: it keeps the state in force, records every
// call, and can be told to fail, hang or slow down, so that a controller's
// handling of a packet filter that will not program can be exercised without
// root. It also implements [netguard.Announcer].
//
// [Run] is the conformance suite every Guard implementation must pass (the
// fake does, and so does the nftables implementation in netguard/nft, with
// real packets through a [Probe]). Embedders with their own Guard run it too.
package netguardtest
