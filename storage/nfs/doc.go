// Package nfs attaches NFS-backed disk images and probes NFSv3 servers in pure Go.
package nfs
