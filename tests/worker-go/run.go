package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"go.temporal.io/sdk/client"
)

// Verdict is what `run` prints: ok only if the workflow completed with the expected bytes.
type Verdict struct {
	OK         bool    `json:"ok"`
	WorkflowID string  `json:"workflowId"`
	RunID      string  `json:"runId,omitempty"`
	Input      Input   `json:"input"`
	Expected   Result  `json:"expected"`
	Got        *Result `json:"got,omitempty"`
	Seconds    float64 `json:"seconds"`
	Error      string  `json:"error,omitempty"`
}

// check starts PassThrough, waits for its result and compares it with the local computation.
func check(args []string, logger *slog.Logger) int {
	flags := flag.NewFlagSet("run", flag.ContinueOnError)
	taskQueue := taskQueueFlag(flags)
	workflowID := flags.String("workflow-id", fmt.Sprintf("passthrough-%d", time.Now().UnixNano()), "workflow id")
	seed := flags.Uint64("seed", 1, "seed of the pseudo-random payload")
	size := flags.Int("size", 10<<20, "payload size in bytes")
	activities := flags.Int("activities", 3, "activities the payload passes through (>= 1)")
	timeout := flags.Duration("timeout", 2*time.Minute, "workflow execution timeout")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	in := Input{Seed: *seed, Size: *size, Activities: *activities}
	verdict := Verdict{WorkflowID: *workflowID, Input: in, Expected: expected(in)}
	started := time.Now()
	got, runID, err := execute(logger, *taskQueue, *workflowID, *timeout, in)
	verdict.Seconds = time.Since(started).Seconds()
	verdict.RunID = runID
	if err != nil {
		verdict.Error = err.Error()
	} else {
		verdict.Got = &got
		verdict.OK = got == verdict.Expected
	}
	_ = json.NewEncoder(os.Stdout).Encode(verdict)
	if !verdict.OK {
		return 1
	}
	return 0
}

func execute(logger *slog.Logger, taskQueue, workflowID string, timeout time.Duration, in Input) (Result, string, error) {
	var result Result
	c, err := dial(logger)
	if err != nil {
		return result, "", err
	}
	defer c.Close()
	// The client waits a little longer than the server so that a timeout shows as the
	// workflow's own TIMED_OUT, not as a lost wait.
	ctx, cancel := context.WithTimeout(context.Background(), timeout+10*time.Second)
	defer cancel()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       workflowID,
		TaskQueue:                taskQueue,
		WorkflowExecutionTimeout: timeout,
	}, PassThrough, in)
	if err != nil {
		return result, "", err
	}
	return result, run.GetRunID(), run.Get(ctx, &result)
}

// ScenarioVerdict is what `scenario` prints: ok only if what came back is what must.
type ScenarioVerdict struct {
	OK         bool    `json:"ok"`
	Scenario   string  `json:"scenario"`
	WorkflowID string  `json:"workflowId"`
	RunID      string  `json:"runId,omitempty"`
	Expected   Result  `json:"expected"`
	Got        Result  `json:"got"`
	Seconds    float64 `json:"seconds"`
	Error      string  `json:"error,omitempty"`
}

// checkScenario runs one of the core payload scenarios as a client and checks it by SHA-256.
func checkScenario(args []string, logger *slog.Logger) int {
	flags := flag.NewFlagSet("scenario", flag.ContinueOnError)
	taskQueue := taskQueueFlag(flags)
	name := flags.String("name", "", "scenario: workflow-input-and-result, signal, update, query, child, failure-details")
	workflowID := flags.String("workflow-id", fmt.Sprintf("scenario-%d", time.Now().UnixNano()), "workflow id")
	seed := flags.Uint64("seed", 1, "seed of the pseudo-random payload")
	size := flags.Int("size", 3<<20, "payload size in bytes")
	timeout := flags.Duration("timeout", 2*time.Minute, "workflow execution timeout")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	run, known := scenarios[*name]
	if !known {
		fmt.Fprintf(os.Stderr, "unknown scenario %q\n", *name)
		return 2
	}
	verdict := ScenarioVerdict{Scenario: *name, WorkflowID: *workflowID}
	started := time.Now()
	c, err := dial(logger)
	if err == nil {
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), *timeout+10*time.Second)
		defer cancel()
		options := client.StartWorkflowOptions{ID: *workflowID, TaskQueue: *taskQueue, WorkflowExecutionTimeout: *timeout}
		verdict.Expected, verdict.Got, verdict.RunID, err = run(ctx, c, options, *seed, *size)
	}
	verdict.Seconds = time.Since(started).Seconds()
	if err != nil {
		verdict.Error = err.Error()
	}
	verdict.OK = err == nil && verdict.Got == verdict.Expected
	_ = json.NewEncoder(os.Stdout).Encode(verdict)
	if !verdict.OK {
		return 1
	}
	return 0
}
