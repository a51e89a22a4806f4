package agent

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
)

// Metadata is what an agent says about itself (action=metadata).
type Metadata struct {
	Name       string
	Parameters []string // option names, including deprecated ones
	Actions    []string
}

type metadataXML struct {
	XMLName    xml.Name `xml:"resource-agent"`
	Name       string   `xml:"name,attr"`
	Parameters []struct {
		Name string `xml:"name,attr"`
	} `xml:"parameters>parameter"`
	Actions []struct {
		Name string `xml:"name,attr"`
	} `xml:"actions>action"`
}

// ParseMetadata decodes an agent's metadata XML.
func ParseMetadata(data []byte) (Metadata, error) {
	var m metadataXML
	if err := xml.Unmarshal(data, &m); err != nil {
		return Metadata{}, fmt.Errorf("agent: metadata is not a resource-agent XML document: %w", err)
	}
	if m.Name == "" {
		return Metadata{}, errors.New("agent: metadata has no agent name")
	}
	md := Metadata{Name: m.Name}
	for _, p := range m.Parameters {
		if p.Name != "" {
			md.Parameters = append(md.Parameters, p.Name)
		}
	}
	for _, a := range m.Actions {
		if a.Name != "" {
			md.Actions = append(md.Actions, a.Name)
		}
	}
	if len(md.Parameters) == 0 {
		return Metadata{}, fmt.Errorf("agent: metadata of %s lists no parameters", m.Name)
	}
	slices.Sort(md.Parameters)
	return md, nil
}

// Validate asks each configured agent for its metadata and checks that it
// knows every option the targets give it and supports off, on and status.
// Run it at start-up: a misspelt option is then a clear error before the
// first fencing rather than an agent failure during it.
func (f *Fencer) Validate(ctx context.Context) error {
	var problems []string
	seen := map[string]Metadata{}
	for _, host := range f.Hosts() {
		t := f.targets[host]
		md, ok := seen[t.Agent]
		if !ok {
			r, err := f.run(ctx, host, Target{Agent: t.Agent}, "metadata")
			if err != nil {
				return err
			}
			if r.code != 0 {
				return r.failure(host, t, "metadata")
			}
			md, err = ParseMetadata([]byte(r.stdout))
			if err != nil {
				return fmt.Errorf("agent %s for host %q: %w", t.Agent, host, err)
			}
			seen[t.Agent] = md
		}
		known := map[string]bool{}
		for _, p := range md.Parameters {
			known[p] = true
			known[strings.ReplaceAll(p, "-", "_")] = true
		}
		for _, k := range slices.Sorted(maps.Keys(t.Options)) {
			if !known[k] {
				problems = append(problems, fmt.Sprintf("host %q: %s has no option %q", host, filepath.Base(t.Agent), k))
			}
		}
		if t.PasswordFile != "" && !known["password"] {
			problems = append(problems, fmt.Sprintf("host %q: %s takes no password", host, filepath.Base(t.Agent)))
		}
		if len(md.Actions) > 0 {
			acts := map[string]bool{}
			for _, a := range md.Actions {
				acts[a] = true
			}
			for _, need := range []string{"off", "status"} {
				if !acts[need] {
					problems = append(problems, fmt.Sprintf("host %q: %s does not support action %q", host, filepath.Base(t.Agent), need))
				}
			}
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("agent: configuration does not match the agents' metadata: %s", strings.Join(problems, "; "))
	}
	return nil
}
