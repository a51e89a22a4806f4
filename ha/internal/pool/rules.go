package pool

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Rules tie VMs to hosts and to each other, as Proxmox VE 9's HA rules do.
type Rules struct {
	Nodes     []NodeAffinity
	Resources []ResourceAffinity
}

// NodeAffinity keeps VMs on some hosts. Hosts maps each host to a priority:
// the VMs go to the highest-priority host that can take them. A strict rule
// never places them elsewhere; a preferred one falls back to any host.
type NodeAffinity struct {
	Name   string
	VMs    []string
	Hosts  map[string]int
	Strict bool
}

// ResourceAffinity keeps VMs on one host (Together) or on different hosts.
type ResourceAffinity struct {
	Name     string
	VMs      []string
	Together bool
}

func (r Rules) clone() Rules {
	c := Rules{Nodes: slices.Clone(r.Nodes), Resources: slices.Clone(r.Resources)}
	for i := range c.Nodes {
		c.Nodes[i].VMs = slices.Clone(c.Nodes[i].VMs)
		c.Nodes[i].Hosts = maps.Clone(c.Nodes[i].Hosts)
	}
	for i := range c.Resources {
		c.Resources[i].VMs = slices.Clone(c.Resources[i].VMs)
	}
	return c
}

// RuleError is a refused rule set. Rules names the rules that contradict
// each other (or the one that is malformed).
type RuleError struct {
	Rules []string
	Msg   string
}

func (e *RuleError) Error() string {
	return "pool: rules " + strings.Join(quoteAll(e.Rules), " and ") + ": " + e.Msg
}

// keep renders `"r" keeps` or `"r" and "s" keep`.
func keep(rules []string) string {
	if len(rules) == 1 {
		return quoteAll(rules)[0] + " keeps"
	}
	return strings.Join(quoteAll(rules), " and ") + " keep"
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

// withGroups returns r's resource rules plus one implicit rule per
// affinity or anti-affinity group named in the VMs' policies, so that a
// group and an explicit rule are checked against each other.
func withGroups(r Rules, vms map[string]*VM) []ResourceAffinity {
	out := slices.Clone(r.Resources)
	together, apart := map[string][]string{}, map[string][]string{}
	for _, name := range sortedKeys(vms) {
		vm := vms[name]
		if g := vm.Affinity; g != "" {
			together[g] = append(together[g], name)
		}
		if g := vm.AntiAffinity; g != "" {
			apart[g] = append(apart[g], name)
		}
	}
	for _, g := range sortedKeys(together) {
		if len(together[g]) > 1 {
			out = append(out, ResourceAffinity{Name: "affinity group " + g, VMs: together[g], Together: true})
		}
	}
	for _, g := range sortedKeys(apart) {
		if len(apart[g]) > 1 {
			out = append(out, ResourceAffinity{Name: "anti-affinity group " + g, VMs: apart[g]})
		}
	}
	return out
}

// ValidateRules refuses a rule set that is malformed or contradicts itself
// (or the affinity groups in the VMs' policies), with an error that names
// the rules concerned. vms may be nil.
func ValidateRules(r Rules, vms map[string]*VM) error {
	if err := validateShapes(r); err != nil {
		return err
	}
	inNode, err := nodeRuleOf(r)
	if err != nil {
		return err
	}
	res := withGroups(r, vms)
	comp := togetherComponents(res)
	if err := togetherApart(res, comp); err != nil {
		return err
	}
	byName := map[string]NodeAffinity{}
	for _, n := range r.Nodes {
		byName[n.Name] = n
	}
	if err := togetherOnStrict(comp, inNode, byName); err != nil {
		return err
	}
	return apartOnStrict(res, inNode, byName)
}

// nodeRuleOf maps each VM to its node-affinity rule, refusing a VM in two:
// it would have two answers to "where".
func nodeRuleOf(r Rules) (map[string]string, error) {
	inNode := map[string]string{}
	for _, n := range r.Nodes {
		for _, vm := range n.VMs {
			if other, ok := inNode[vm]; ok {
				return nil, &RuleError{Rules: []string{other, n.Name}, Msg: fmt.Sprintf("both place VM %s: a VM may be in one node-affinity rule", vm)}
			}
			inNode[vm] = n.Name
		}
	}
	return inNode, nil
}

// togetherApart refuses a negative rule over VMs that positive rules tie.
func togetherApart(res []ResourceAffinity, comp map[string]*component) error {
	for _, a := range res {
		if a.Together {
			continue
		}
		for i, x := range a.VMs {
			for _, y := range a.VMs[i+1:] {
				if comp[x] != nil && comp[x] == comp[y] {
					tie := comp[x].chain(x, y)
					return &RuleError{Rules: append(tie, a.Name),
						Msg: fmt.Sprintf("contradict: %s VMs %s and %s on one host, %s them apart", keep(tie), x, y, keep([]string{a.Name}))}
				}
			}
		}
	}
	return nil
}

// togetherOnStrict refuses VMs kept together whose strict rules allow them
// no common host.
func togetherOnStrict(comp map[string]*component, inNode map[string]string, byName map[string]NodeAffinity) error {
	for _, c := range uniqueComponents(comp) {
		var strict []NodeAffinity
		for _, vm := range c.vms {
			if n, ok := byName[inNode[vm]]; ok && n.Strict && !slices.ContainsFunc(strict, func(s NodeAffinity) bool { return s.Name == n.Name }) {
				strict = append(strict, n)
			}
		}
		for i, a := range strict {
			for _, b := range strict[i+1:] {
				if !sharesHost(a, b) {
					return &RuleError{Rules: []string{a.Name, b.Name},
						Msg: fmt.Sprintf("contradict: they allow no common host, but %s their VMs together", keep(c.chain(a.VMs[0], b.VMs[0])))}
				}
			}
		}
	}
	return nil
}

// apartOnStrict refuses more VMs kept apart than their strict rule has hosts.
func apartOnStrict(res []ResourceAffinity, inNode map[string]string, byName map[string]NodeAffinity) error {
	for _, a := range res {
		if a.Together {
			continue
		}
		n, ok := byName[inNode[a.VMs[0]]]
		if !ok || !n.Strict || !allIn(a.VMs, inNode, n.Name) {
			continue
		}
		if len(n.Hosts) < len(a.VMs) {
			return &RuleError{Rules: []string{n.Name, a.Name},
				Msg: fmt.Sprintf("contradict: %d VMs must run apart on the %d host(s) the strict rule allows", len(a.VMs), len(n.Hosts))}
		}
	}
	return nil
}

func validateShapes(r Rules) error {
	seen := map[string]bool{}
	name := func(n string) error {
		if n == "" {
			return &RuleError{Rules: []string{""}, Msg: "a rule has no name: name every rule"}
		}
		if seen[n] {
			return &RuleError{Rules: []string{n, n}, Msg: "two rules share the name: rename one"}
		}
		seen[n] = true
		return nil
	}
	for _, n := range r.Nodes {
		if err := name(n.Name); err != nil {
			return err
		}
		if len(n.VMs) == 0 || len(n.Hosts) == 0 {
			return &RuleError{Rules: []string{n.Name}, Msg: "a node-affinity rule needs at least one VM and one host"}
		}
		for h, p := range n.Hosts {
			if p < 0 {
				return &RuleError{Rules: []string{n.Name}, Msg: fmt.Sprintf("host %s has priority %d: priorities are 0 or more", h, p)}
			}
		}
	}
	for _, a := range r.Resources {
		if err := name(a.Name); err != nil {
			return err
		}
		if len(a.VMs) < 2 {
			return &RuleError{Rules: []string{a.Name}, Msg: "a resource-affinity rule needs at least two VMs"}
		}
	}
	return nil
}

// component is a set of VMs that positive rules tie together, directly or
// through each other.
type component struct {
	vms   []string
	rules []ResourceAffinity
}

// chain returns the positive rules of c that tie x to y, in order: one
// rule when it holds both, else the shortest chain through other VMs.
func (c *component) chain(x, y string) []string {
	type hop struct {
		from, rule string
	}
	prev := map[string]hop{x: {}}
	queue := []string{x}
	for len(queue) > 0 && prev[y].rule == "" {
		at := queue[0]
		queue = queue[1:]
		for _, r := range c.rules {
			if !slices.Contains(r.VMs, at) {
				continue
			}
			for _, v := range r.VMs {
				if _, seen := prev[v]; !seen {
					prev[v] = hop{from: at, rule: r.Name}
					queue = append(queue, v)
				}
			}
		}
	}
	var out []string
	for v := y; v != x && prev[v].rule != ""; v = prev[v].from {
		if len(out) == 0 || out[0] != prev[v].rule {
			out = append([]string{prev[v].rule}, out...)
		}
	}
	return out
}

func togetherComponents(res []ResourceAffinity) map[string]*component {
	comp := map[string]*component{}
	for _, a := range res {
		if !a.Together {
			continue
		}
		merged := &component{rules: []ResourceAffinity{a}}
		for _, vm := range a.VMs {
			if old := comp[vm]; old != nil && old != merged {
				for _, r := range old.rules {
					if !slices.ContainsFunc(merged.rules, func(m ResourceAffinity) bool { return m.Name == r.Name }) {
						merged.rules = append(merged.rules, r)
					}
				}
				for _, v := range old.vms {
					comp[v] = merged
					merged.vms = append(merged.vms, v)
				}
			}
		}
		for _, vm := range a.VMs {
			if comp[vm] != merged {
				comp[vm] = merged
				merged.vms = append(merged.vms, vm)
			}
		}
	}
	for _, c := range comp {
		slices.Sort(c.vms)
		c.vms = slices.Compact(c.vms)
	}
	return comp
}

func uniqueComponents(comp map[string]*component) []*component {
	var out []*component
	for _, vm := range sortedKeys(comp) {
		if c := comp[vm]; !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

func sharesHost(a, b NodeAffinity) bool {
	for h := range a.Hosts {
		if _, ok := b.Hosts[h]; ok {
			return true
		}
	}
	return false
}

func allIn(vms []string, inNode map[string]string, rule string) bool {
	for _, vm := range vms {
		if inNode[vm] != rule {
			return false
		}
	}
	return true
}

// nodeRule returns the node-affinity rule that holds vm, or nil.
func (r *Rules) nodeRule(vm string) *NodeAffinity {
	for i := range r.Nodes {
		if slices.Contains(r.Nodes[i].VMs, vm) {
			return &r.Nodes[i]
		}
	}
	return nil
}
