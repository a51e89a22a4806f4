package ha_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xenha/xenha/ha"
	"github.com/xenha/xenha/ha/pki"
)

// membership is what a refused join must not change.
func membership(t *testing.T, ctx context.Context, c *ha.Cluster) string {
	t.Helper()
	s, err := c.State(ctx, ha.Consistent)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for id, h := range s.Hosts {
		// Host states change with leases in the background; identity must not.
		out = append(out, id+"/"+h.Incarnation+"/"+string(h.Role))
	}
	ms, err := c.Members()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		out = append(out, m.ID+"@"+m.Addr)
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

func TestTCPRefusals(t *testing.T) {
	t.Parallel()
	hc := tcpCluster(t, 3)
	ctx := ctxT(t, 90*time.Second)
	l := waitLeader(t, ctx, hc)
	leader := hc.Member(l)
	before := membership(t, ctx, leader)
	otherCA, err := pki.NewCA("elsewhere")
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		id     string
		adjust func(cfg *ha.Config)
		want   error
		says   string
	}{
		{"bad token", "h9", func(cfg *ha.Config) { cfg.JoinToken = "guess" }, ha.ErrBadToken, "JoinToken"},
		{"certificate from another CA", "h9", func(cfg *ha.Config) {
			tc, err := otherCA.Member("h9")
			if err != nil {
				t.Fatal(err)
			}
			cfg.TLS = tc
		}, ha.ErrBadCertificate, "certificate"},
		{"certificate naming another member", "h9", func(cfg *ha.Config) {
			tc, err := hc.CA().Member("h1")
			if err != nil {
				t.Fatal(err)
			}
			cfg.TLS = tc
		}, ha.ErrBadCertificate, `not member "h9"`},
		{"another cluster", "h9", func(cfg *ha.Config) { cfg.ClusterID = "other" }, ha.ErrWrongCluster, "ClusterID"},
		{"plaintext", "h9", func(cfg *ha.Config) { cfg.TLS, cfg.Insecure = nil, true }, ha.ErrBadCertificate, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := hc.NewConfig(tt.id)
			if err != nil {
				t.Fatal(err)
			}
			tt.adjust(&cfg)
			c, err := ha.New(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(context.Background())
			jctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			err = c.Join(jctx, hc.Member((l+1)%3).Addr())
			if !errors.Is(err, tt.want) {
				t.Fatalf("join: got %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.says) {
				t.Errorf("error %q does not mention %q", err, tt.says)
			}
			t.Logf("refused: %v", err)
			if after := membership(t, ctx, leader); after != before {
				t.Fatalf("membership changed by a refused join:\nbefore %s\nafter  %s", before, after)
			}
		})
	}

	t.Run("bad config", func(t *testing.T) {
		cfg, err := hc.NewConfig("h9")
		if err != nil {
			t.Fatal(err)
		}
		cfg.DataDir += "-never"
		cfg.ReassignAfter = cfg.Lease - time.Millisecond
		_, err = ha.New(ctx, cfg)
		var ce *ha.ConfigError
		if !errors.As(err, &ce) || ce.Field != "ReassignAfter" || !errors.Is(err, ha.ErrInvalidConfig) {
			t.Fatalf("got %v, want a ConfigError naming ReassignAfter", err)
		}
		if _, err := os.Stat(cfg.DataDir); !os.IsNotExist(err) {
			t.Fatalf("a refused config created %s", cfg.DataDir)
		}
	})

	t.Run("wiped member rejoining under its old ID", func(t *testing.T) {
		victim := (l + 2) % 3
		cfg := hc.Config(victim)
		hc.Crash(victim)
		if err := os.RemoveAll(cfg.DataDir); err != nil {
			t.Fatal(err)
		}
		before := membership(t, ctx, leader)
		cfg.BindAddr = "127.0.0.1:0"
		cfg.Network = nil // plain TCP: the harness keeps the crashed h3 cut off
		c, err := ha.New(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		if !c.Fresh() {
			t.Fatal("wiped member reports state")
		}
		err = c.Join(ctx, leader.Addr())
		if !errors.Is(err, ha.ErrIDInUse) || !strings.Contains(err.Error(), "new ID") {
			t.Fatalf("got %v, want ErrIDInUse telling to join under a new ID", err)
		}
		if after := membership(t, ctx, leader); after != before {
			t.Fatalf("membership changed:\nbefore %s\nafter  %s", before, after)
		}
	})
}
