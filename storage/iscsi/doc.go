// Package iscsi attaches iSCSI volumes and probes iSCSI targets in pure Go.
package iscsi
