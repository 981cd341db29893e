package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// Input of PassThrough: Produce makes Size bytes from Seed, then Activities-1 Reverse activities
// each take the previous result as input and return it reversed.
type Input struct {
	Seed       uint64
	Size       int
	Activities int
}

// Result is what the workflow says of the last activity's bytes: small, whatever their size.
type Result struct {
	SHA256 string
	Size   int
}

// PassThrough moves the payload through history as activity results and activity inputs,
// the places where the proxy must offload it and put it back.
func PassThrough(ctx workflow.Context, in Input) (Result, error) {
	if in.Activities < 1 || in.Size < 0 {
		return Result{}, temporal.NewNonRetryableApplicationError("need activities >= 1 and size >= 0", "BadInput", nil)
	}
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		// A few attempts ride out a transient store error; a persistent one fails the
		// workflow with its cause instead of retrying until the execution timeout.
		RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 3},
	})
	var data []byte
	if err := workflow.ExecuteActivity(ctx, Produce, in.Seed, in.Size).Get(ctx, &data); err != nil {
		return Result{}, err
	}
	for range in.Activities - 1 {
		if err := workflow.ExecuteActivity(ctx, Reverse, data).Get(ctx, &data); err != nil {
			return Result{}, err
		}
	}
	return digest(data), nil
}

// Produce returns the workflow's payload.
func Produce(_ context.Context, seed uint64, size int) ([]byte, error) {
	return payload(seed, size), nil
}

// Reverse returns its input reversed: each activity's result differs from its input, so a
// payload put back in the wrong place changes the final SHA-256.
func Reverse(_ context.Context, data []byte) ([]byte, error) {
	slices.Reverse(data)
	return data, nil
}

// payload is size pseudo-random bytes fixed by seed (ChaCha8 is specified, not an
// implementation detail), so the checker derives them without asking the worker.
func payload(seed uint64, size int) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	data := make([]byte, size)
	_, _ = rand.NewChaCha8(key).Read(data) // never fails
	return data
}

// expected is the Result PassThrough must return for in, computed locally.
func expected(in Input) Result {
	data := payload(in.Seed, in.Size)
	for range in.Activities - 1 {
		slices.Reverse(data)
	}
	return digest(data)
}

func digest(data []byte) Result {
	sum := sha256.Sum256(data)
	return Result{SHA256: hex.EncodeToString(sum[:]), Size: len(data)}
}
