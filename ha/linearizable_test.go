package ha_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/xenha/xenha/ha"
)

var (
	linSeed     = flag.Uint64("lin.seed", 0, "seed for TestLinearizableUnderChaos (0: random)")
	linDuration = flag.Duration("lin.duration", 6*time.Second, "how long TestLinearizableUnderChaos runs its clients")
)

// The history is a set of registers (one per key): a write sets a VM's
// MemoryKiB through the vm.put admin command, a read is a consistent State.
type kvInput struct {
	write bool
	key   string
	value uint64
}

type kvOutput struct {
	value uint64 // 0: absent
}

var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(kvInput).key
			byKey[k] = append(byKey[k], op)
		}
		var out [][]porcupine.Operation
		for _, ops := range byKey {
			out = append(out, ops)
		}
		return out
	},
	Init: func() any { return uint64(0) },
	Step: func(state, input, output any) (bool, any) {
		in, st := input.(kvInput), state.(uint64)
		if in.write {
			return true, in.value
		}
		return output.(kvOutput).value == st, st
	},
	DescribeOperation: func(input, output any) string {
		in := input.(kvInput)
		if in.write {
			return fmt.Sprintf("put(%s, %d)", in.key, in.value)
		}
		return fmt.Sprintf("get(%s) -> %d", in.key, output.(kvOutput).value)
	},
}

// TestLinearizableUnderChaos runs concurrent clients against a 3-member
// TCP+bbolt cluster while members crash, restart and are partitioned, and
// checks the history is linearizable. Writes that fail are indeterminate
// (they may take effect at any later time); failed reads are dropped.
func TestLinearizableUnderChaos(t *testing.T) {
	t.Parallel()
	seed := *linSeed
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (rerun with -lin.seed=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	var rngMu sync.Mutex
	intn := func(n int) int {
		rngMu.Lock()
		defer rngMu.Unlock()
		return rng.IntN(n)
	}

	const members, clients = 3, 4
	keys := []string{"ka", "kb", "kc"}
	hc := tcpCluster(t, members)
	ctx := ctxT(t, 3*time.Minute)
	if _, err := hc.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	now := func() int64 { return int64(time.Since(start)) }
	var (
		histMu  sync.Mutex
		history []porcupine.Operation
		nextVal atomic.Uint64
		stop    atomic.Bool
		stats   struct{ ok, indeterminate, readFail atomic.Int64 }
	)
	var wg sync.WaitGroup
	for cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				m := hc.Member(intn(members))
				if m == nil {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				in := kvInput{write: intn(2) == 0, key: keys[intn(len(keys))]}
				opCtx, cancel := context.WithTimeout(ctx, time.Second)
				call := now()
				var op porcupine.Operation
				if in.write {
					in.value = nextVal.Add(1)
					err := putValue(opCtx, m, in.key, in.value)
					ret := now()
					if err != nil {
						// Maybe applied, maybe not, maybe later.
						ret = math.MaxInt64
						stats.indeterminate.Add(1)
					} else {
						stats.ok.Add(1)
					}
					op = porcupine.Operation{ClientId: cl, Input: in, Call: call, Output: kvOutput{}, Return: ret}
				} else {
					v, _, err := getValue(opCtx, m, in.key, ha.Consistent)
					ret := now()
					cancel()
					if err != nil {
						stats.readFail.Add(1)
						continue
					}
					stats.ok.Add(1)
					op = porcupine.Operation{ClientId: cl, Input: in, Call: call, Output: kvOutput{value: v}, Return: ret}
				}
				cancel()
				histMu.Lock()
				history = append(history, op)
				histMu.Unlock()
			}
		}()
	}

	// Chaos: at most one member down or cut off at a time, so a quorum can
	// always form again.
	deadline := time.Now().Add(*linDuration)
	crashed := -1
	for time.Now().Before(deadline) {
		time.Sleep(time.Duration(200+intn(400)) * time.Millisecond)
		switch intn(4) {
		case 0:
			if crashed < 0 {
				crashed = intn(members)
				t.Logf("%v: crash %s", time.Since(start).Round(time.Millisecond), hc.ID(crashed))
				hc.Crash(crashed)
			}
		case 1:
			if crashed >= 0 {
				t.Logf("%v: restart %s", time.Since(start).Round(time.Millisecond), hc.ID(crashed))
				if err := hc.Restart(crashed); err != nil {
					t.Fatal(err)
				}
				crashed = -1
			}
		case 2:
			i := intn(members)
			if crashed < 0 || crashed == i {
				t.Logf("%v: partition %s from the rest", time.Since(start).Round(time.Millisecond), hc.ID(i))
				hc.Partition([]int{i})
			}
		case 3:
			t.Logf("%v: heal", time.Since(start).Round(time.Millisecond))
			hc.Heal()
		}
	}
	hc.Heal()
	if crashed >= 0 {
		if err := hc.Restart(crashed); err != nil {
			t.Fatal(err)
		}
	}
	// On a loaded machine the chaos may leave few completed operations; let
	// the clients go on, calm, until there are enough to judge.
	for calm := time.Now(); stats.ok.Load() < 50 && time.Since(calm) < 30*time.Second; {
		time.Sleep(50 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()

	// A final read of every key after the dust settles is part of the history.
	if _, err := hc.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		call := now()
		v, _, err := getValue(ctx, hc.Member(0), k, ha.Consistent)
		if err != nil {
			t.Fatalf("final read of %s: %v", k, err)
		}
		history = append(history, porcupine.Operation{ClientId: clients, Input: kvInput{key: k}, Call: call, Output: kvOutput{value: v}, Return: now()})
	}
	t.Logf("%d operations: %d completed, %d indeterminate writes, %d failed reads",
		len(history), stats.ok.Load(), stats.indeterminate.Load(), stats.readFail.Load())
	if stats.ok.Load() < 20 {
		t.Fatalf("only %d operations completed: the cluster made too little progress to judge", stats.ok.Load())
	}
	res := porcupine.CheckOperationsTimeout(kvModel, history, time.Minute)
	switch res {
	case porcupine.Illegal:
		t.Fatalf("history is not linearizable (seed %d)", seed)
	case porcupine.Unknown:
		t.Logf("linearizability check timed out (seed %d): inconclusive", seed)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal("test ran out of time")
	}
}
