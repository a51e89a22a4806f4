package ha

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"
)

// Every replicated change is a command: a Go type registered under a stable
// kind name, carried in the log inside a versioned envelope. apply must be
// deterministic: it may read only the State, the command and applyMeta (never
// the applying member's clock, randomness or I/O), so that every member
// reaches the same State at the same index.
//
// An error returned by apply is a refusal: the State must be left unchanged
// (apply checks first and mutates after), and the error travels back to the
// proposer as the command's result, not as a Raft failure.
type command interface {
	kind() string
	apply(s *State, m applyMeta) (any, error)
}

// applyMeta is what apply may know besides the command.
type applyMeta struct {
	Index     uint64
	Term      uint64
	RequestID string
	At        time.Time // proposer's clock when proposed
}

// envelopeVersion is the log format this build writes and reads. A member
// meeting a newer version halts (see fsm.go) rather than guess.
const envelopeVersion = 1

// envelope is a command as stored in the Raft log (JSON).
type envelope struct {
	V         int             `json:"v"`
	Kind      string          `json:"kind"`
	RequestID string          `json:"req"`
	At        time.Time       `json:"at"`
	Body      json.RawMessage `json:"body"`
}

var (
	registryMu sync.RWMutex
	registry   = map[string]func() command{}
)

// registerCommand makes kind decodable. newCmd returns a pointer to a zero
// command, which the body is decoded into (encoding/json, so fields must be
// exported). Called from init in each commands_*.go; a duplicate or an empty
// kind is a programming error and panics.
func registerCommand(kind string, newCmd func() command) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if kind == "" {
		panic("ha: registerCommand with empty kind")
	}
	if _, dup := registry[kind]; dup {
		panic("ha: command kind registered twice: " + kind)
	}
	if got := newCmd().kind(); got != kind {
		panic(fmt.Sprintf("ha: command registered as %q reports kind %q", kind, got))
	}
	registry[kind] = newCmd
}

// commandKinds lists the registered kinds, sorted.
func commandKinds() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	kinds := make([]string, 0, len(registry))
	for k := range registry {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	return kinds
}

// encodeCommand wraps cmd in an envelope.
func encodeCommand(cmd command, requestID string, at time.Time) ([]byte, error) {
	kind := cmd.kind()
	registryMu.RLock()
	_, known := registry[kind]
	registryMu.RUnlock()
	if !known {
		return nil, fmt.Errorf("ha: encode command %q: kind not registered (call registerCommand in init): %w", kind, ErrUnknownCommand)
	}
	body, err := json.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("ha: encode command %q: %w", kind, err)
	}
	return json.Marshal(envelope{V: envelopeVersion, Kind: kind, RequestID: requestID, At: at.UTC().Round(0), Body: body})
}

// decodeEnvelope reads the envelope only.
func decodeEnvelope(data []byte) (envelope, error) {
	var env envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return env, fmt.Errorf("ha: decode command envelope: %w", err)
	}
	if env.Kind == "" {
		return env, fmt.Errorf("ha: decode command envelope: no kind")
	}
	return env, nil
}

// decodeCommand decodes a log entry. Unknown kinds, newer envelope versions
// and malformed bodies return an *UnknownCommandError (index left zero for
// the caller to fill).
func decodeCommand(data []byte) (command, envelope, error) {
	env, err := decodeEnvelope(data)
	if err != nil {
		return nil, env, &UnknownCommandError{Err: err}
	}
	if env.V != envelopeVersion {
		return nil, env, &UnknownCommandError{Kind: env.Kind, Version: env.V}
	}
	registryMu.RLock()
	newCmd, ok := registry[env.Kind]
	registryMu.RUnlock()
	if !ok {
		return nil, env, &UnknownCommandError{Kind: env.Kind, Version: env.V}
	}
	cmd := newCmd()
	dec := json.NewDecoder(bytes.NewReader(env.Body))
	if err := dec.Decode(cmd); err != nil {
		return nil, env, &UnknownCommandError{Kind: env.Kind, Version: env.V, Err: fmt.Errorf("decode body: %w", err)}
	}
	return cmd, env, nil
}
