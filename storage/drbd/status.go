package drbd

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ErrParse: drbdsetup printed something the parsers cannot read at all.
// Unknown keys and missing keys are not errors.
var ErrParse = errors.New("drbd: cannot parse drbdsetup output")

// Resource is one DRBD resource as this node sees it, from `drbdsetup status`
// (text or --json) or folded from `drbdsetup events2`. Fields the output did
// not carry stay at their zero value ("" for states).
type Resource struct {
	Name string `json:"name"`
	// Role of this node: "Primary", "Secondary" or "Unknown".
	Role        string       `json:"role,omitempty"`
	Devices     []Device     `json:"devices,omitempty"`
	Connections []Connection `json:"connections,omitempty"`
	// MayPromote and PromotionScore come from events2 only.
	MayPromote     *bool `json:"may_promote,omitempty"`
	PromotionScore int64 `json:"promotion_score,omitempty"`
}

// Device is one volume of the resource on this node.
type Device struct {
	Volume int `json:"volume"`
	// Minor is the device minor (/dev/drbd<Minor>), -1 if not reported.
	Minor int `json:"minor"`
	// Disk is the local disk state: "UpToDate", "Inconsistent", "Outdated",
	// "Diskless", "Failed", ...
	Disk   string `json:"disk,omitempty"`
	Quorum *bool  `json:"quorum,omitempty"`
	Open   *bool  `json:"open,omitempty"`
}

// Connection is this node's connection to one peer.
type Connection struct {
	Name       string `json:"name"`
	PeerNodeID int    `json:"peer_node_id"`
	// State: "Connected", "Connecting", "StandAlone", ...
	State string `json:"connection,omitempty"`
	// PeerRole: "Primary", "Secondary", "Unknown".
	PeerRole    string       `json:"peer_role,omitempty"`
	PeerDevices []PeerDevice `json:"peer_devices,omitempty"`
	// SplitBrain is set when events2 reported the split-brain helper (or the
	// initial-split-brain one) for this connection.
	SplitBrain bool `json:"split_brain,omitempty"`
}

// PeerDevice is one volume as replicated to one peer.
type PeerDevice struct {
	Volume      int    `json:"volume"`
	Replication string `json:"replication,omitempty"`
	// PeerDisk is the peer's disk state: "UpToDate", "Outdated",
	// "DUnknown", ...
	PeerDisk string `json:"peer_disk,omitempty"`
	// Done is the resync progress in percent, when syncing.
	Done *float64 `json:"done,omitempty"`
}

// Device returns the device of volume vol, or nil.
func (r *Resource) Device(vol int) *Device {
	for i := range r.Devices {
		if r.Devices[i].Volume == vol {
			return &r.Devices[i]
		}
	}
	return nil
}

// ParseStatusJSON reads `drbdsetup status --json`. It takes what it knows
// and ignores the rest: peer devices appear as "peer_devices" (what
// drbdsetup prints) or "peer-devices"; numbers may be quoted; booleans may be
// "yes"/"no" strings.
func ParseStatusJSON(data []byte) ([]Resource, error) {
	var raw []map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%w: status --json: %v", ErrParse, err)
	}
	out := make([]Resource, 0, len(raw))
	for _, r := range raw {
		res := Resource{Name: str(r["name"]), Role: str(r["role"])}
		if res.Name == "" {
			return nil, fmt.Errorf("%w: status --json: a resource without a name", ErrParse)
		}
		for _, d := range list(r["devices"]) {
			res.Devices = append(res.Devices, Device{Volume: num(d["volume"], 0), Minor: num(d["minor"], -1),
				Disk: str(d["disk-state"]), Quorum: boolean(d["quorum"]), Open: boolean(d["open"])})
		}
		for _, c := range list(r["connections"]) {
			conn := Connection{Name: str(c["name"]), PeerNodeID: num(c["peer-node-id"], -1),
				State: str(c["connection-state"]), PeerRole: str(c["peer-role"])}
			pds := c["peer_devices"]
			if pds == nil {
				pds = c["peer-devices"]
			}
			for _, p := range list(pds) {
				pd := PeerDevice{Volume: num(p["volume"], 0), Replication: str(p["replication-state"]),
					PeerDisk: str(p["peer-disk-state"])}
				if v, ok := float(p["percent-resync-done"]); ok {
					pd.Done = &v
				}
				conn.PeerDevices = append(conn.PeerDevices, pd)
			}
			res.Connections = append(res.Connections, conn)
		}
		out = append(out, res)
	}
	return out, nil
}

func str(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	}
	return ""
}

func list(v any) []map[string]any {
	l, _ := v.([]any)
	var out []map[string]any
	for _, e := range l {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func num(v any, def int) int {
	if f, ok := float(v); ok && f >= math.MinInt32 && f <= math.MaxInt32 {
		return int(f)
	}
	return def
}

func float(v any) (float64, bool) {
	s := str(v)
	if s == "" {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	return f, err == nil && !math.IsNaN(f) && !math.IsInf(f, 0)
}

func boolean(v any) *bool {
	var b bool
	switch v := v.(type) {
	case bool:
		b = v
	case string:
		switch v {
		case "yes", "true":
			b = true
		case "no", "false":
		default:
			return nil
		}
	default:
		return nil
	}
	return &b
}

func yesno(s string) *bool { return boolean(s) }

// ParseStatusText reads `drbdsetup status`, with or without --verbose and
// --statistics. The layout is by indentation: a resource line at column 0;
// at column 2 a device ("disk:..." or "volume:N ...") or a peer connection
// (its name first); at column 4 a peer device under a connection, or more
// resource keys; deeper lines continue the object above them.
func ParseStatusText(data []byte) ([]Resource, error) {
	var out []Resource
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	var res *Resource
	var kv func(k, v string) // where continuation keys go
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimRight(sc.Text(), " \t\r")
		trimmed := strings.TrimLeft(text, " ")
		indent := len(text) - len(trimmed)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		fields := strings.Fields(trimmed)
		if len(fields) == 0 {
			continue // other white space (\f, \v)
		}
		switch {
		case indent == 0:
			out = append(out, Resource{Name: fields[0]})
			res = &out[len(out)-1]
			kv = res.set
			fields = fields[1:]
		case res == nil:
			return nil, fmt.Errorf("%w: status line %d is indented but follows no resource: %q", ErrParse, line, text)
		case indent == 2 && !strings.Contains(fields[0], ":"):
			res.Connections = append(res.Connections, Connection{Name: fields[0], PeerNodeID: -1})
			c := &res.Connections[len(res.Connections)-1]
			kv = c.set
			fields = fields[1:]
		case indent == 2:
			res.Devices = append(res.Devices, Device{Minor: -1})
			kv = res.Devices[len(res.Devices)-1].set
		case indent == 4 && len(res.Connections) > 0:
			// Connections come after devices, so from the first one on
			// every line at column 4 is a peer device.
			c := &res.Connections[len(res.Connections)-1]
			c.PeerDevices = append(c.PeerDevices, PeerDevice{})
			kv = c.PeerDevices[len(c.PeerDevices)-1].set
		}
		for _, f := range fields {
			k, v, ok := strings.Cut(f, ":")
			if !ok {
				continue // a word without a key: tolerate
			}
			kv(k, v)
		}
	}
	return out, sc.Err()
}

// set applies one key:value of the status or events2 output; unknown keys
// are ignored, as newer drbd-utils add them (open:, tls:, ...).
func (r *Resource) set(k, v string) {
	switch k {
	case "role":
		r.Role = v
	case "may_promote":
		r.MayPromote = yesno(v)
	case "promotion_score":
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			r.PromotionScore = n
		}
	}
}

func (d *Device) set(k, v string) {
	switch k {
	case "volume":
		d.Volume = atoi(v, d.Volume)
	case "minor":
		d.Minor = atoi(v, d.Minor)
	case "disk":
		d.Disk = v
	case "quorum":
		d.Quorum = yesno(v)
	case "open":
		d.Open = yesno(v)
	}
}

func (c *Connection) set(k, v string) {
	switch k {
	case "connection":
		c.State = v
	case "role":
		c.PeerRole = v
	case "peer-node-id", "node-id":
		c.PeerNodeID = atoi(v, c.PeerNodeID)
	case "conn-name":
		c.Name = v
	}
}

func (p *PeerDevice) set(k, v string) {
	switch k {
	case "volume":
		p.Volume = atoi(v, p.Volume)
	case "replication":
		p.Replication = v
	case "peer-disk":
		p.PeerDisk = v
	case "done":
		if f, err := strconv.ParseFloat(v, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
			p.Done = &f
		}
	}
}

func atoi(s string, def int) int {
	n, err := strconv.Atoi(s)
	if err != nil || n < math.MinInt32 || n > math.MaxInt32 {
		return def
	}
	return n
}
