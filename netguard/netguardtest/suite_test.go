package netguardtest_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/xenha/xenha/netguard"
	"github.com/xenha/xenha/netguard/netguardtest"
)

// Broken guards, each with one defect the conformance suite must catch.
type merging struct{ *netguardtest.Guard }   // Apply adds rules, never removes
type lax struct{ *netguardtest.Guard }       // Apply skips validation
type deaf struct{ *netguardtest.Guard }      // Apply ignores a cancelled context
type forgetful struct{ *netguardtest.Guard } // Current loses the VM names

func (g merging) Apply(ctx context.Context, s netguard.State) error {
	cur := g.State()
	for _, r := range cur.Rules {
		if _, guarded := s.Allowed(r.VIF.MAC); !guarded {
			s.Rules = append(s.Rules, r)
		}
	}
	return g.Guard.Apply(ctx, s)
}

func (g lax) Apply(ctx context.Context, s netguard.State) error {
	if s.Validate() != nil {
		return nil // claims success, changes nothing: the defect is the nil
	}
	return g.Guard.Apply(ctx, s)
}

func (g deaf) Apply(_ context.Context, s netguard.State) error {
	return g.Guard.Apply(context.Background(), s)
}

func (g forgetful) Current(ctx context.Context) (netguard.State, error) {
	s, err := g.Guard.Current(ctx)
	for i := range s.Rules {
		s.Rules[i].VIF.VM = ""
	}
	return s, err
}

const brokenEnv = "NETGUARDTEST_BROKEN"

// TestBrokenGuardHelper runs the suite against one broken guard when
// re-executed by TestSuiteCatchesBrokenGuards; otherwise it does nothing.
func TestBrokenGuardHelper(t *testing.T) {
	which := os.Getenv(brokenEnv)
	if which == "" {
		t.Skip("helper for TestSuiteCatchesBrokenGuards")
	}
	host := netguardtest.New()
	wrap := map[string]func() netguard.Guard{
		"merging":   func() netguard.Guard { return merging{host} },
		"lax":       func() netguard.Guard { return lax{host} },
		"deaf":      func() netguard.Guard { return deaf{host} },
		"forgetful": func() netguard.Guard { return forgetful{host} },
	}[which]
	netguardtest.Run(t, func(*testing.T) netguard.Guard { return wrap() })
}

// TestSuiteCatchesBrokenGuards: the suite fails each broken guard, in the
// subtest that checks the broken property.
func TestSuiteCatchesBrokenGuards(t *testing.T) {
	for which, subtest := range map[string]string{
		"merging":   "Replace",
		"lax":       "InvalidState",
		"deaf":      "Canceled",
		"forgetful": "RoundTrip",
	} {
		t.Run(which, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestBrokenGuardHelper$", "-test.v")
			cmd.Env = append(os.Environ(), brokenEnv+"="+which)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("conformance suite passed a %s guard:\n%s", which, out)
			}
			if !strings.Contains(string(out), "--- FAIL: TestBrokenGuardHelper/"+subtest) {
				t.Errorf("%s guard: want subtest %s to fail; output:\n%s", which, subtest, out)
			}
		})
	}
}
