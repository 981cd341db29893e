package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// The core payload scenarios, one workflow per place a payload travels, as the Python
// end-to-end suite has them. Each workflow returns the Result of the bytes it received, and the
// client checks it against the bytes it sent (or, for a query or update, what it got back).

const (
	signalName = "put"
	updateName = "transform"
	queryName  = "blob"
	doneSignal = "done"
)

// EchoReversed returns its input reversed: workflow input and workflow result.
func EchoReversed(_ workflow.Context, data []byte) ([]byte, error) {
	slices.Reverse(data)
	return data, nil
}

// Signalled waits for one signal carrying the payload.
func Signalled(ctx workflow.Context) (Result, error) {
	var data []byte
	workflow.GetSignalChannel(ctx, signalName).Receive(ctx, &data)
	return digest(data), nil
}

// Updated answers one update with its argument reversed, then completes.
func Updated(ctx workflow.Context) (Result, error) {
	done := false
	err := workflow.SetUpdateHandler(ctx, updateName, func(_ workflow.Context, data []byte) ([]byte, error) {
		done = true
		slices.Reverse(data)
		return data, nil
	})
	if err != nil {
		return Result{}, err
	}
	return Result{}, workflow.Await(ctx, func() bool { return done })
}

// Queried answers a query with the payload until it is told it is done.
func Queried(ctx workflow.Context, seed uint64, size int) (Result, error) {
	data := payload(seed, size)
	if err := workflow.SetQueryHandler(ctx, queryName, func() ([]byte, error) { return data, nil }); err != nil {
		return Result{}, err
	}
	workflow.GetSignalChannel(ctx, doneSignal).Receive(ctx, nil)
	return digest(data), nil
}

// Parent passes the payload to a child (EchoReversed) and returns what came back.
func Parent(ctx workflow.Context, seed uint64, size int) (Result, error) {
	ctx = workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID: workflow.GetInfo(ctx).WorkflowExecution.ID + "-child",
	})
	var back []byte
	if err := workflow.ExecuteChildWorkflow(ctx, EchoReversed, payload(seed, size)).Get(ctx, &back); err != nil {
		return Result{}, err
	}
	return digest(back), nil
}

// FailingDetails runs an activity that fails with the payload as its failure's details.
func FailingDetails(ctx workflow.Context, seed uint64, size int) (Result, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
	})
	err := workflow.ExecuteActivity(ctx, FailWithDetails, seed, size).Get(ctx, nil)
	var failure *temporal.ApplicationError
	if !errors.As(err, &failure) {
		return Result{}, fmt.Errorf("expected the activity's application error, got %v", err)
	}
	var data []byte
	if err := failure.Details(&data); err != nil {
		return Result{}, err
	}
	return digest(data), nil
}

// FailWithDetails fails, non-retryably, carrying the payload.
func FailWithDetails(_ context.Context, seed uint64, size int) error {
	return temporal.NewNonRetryableApplicationError("fails with the payload as details", "Details", nil, payload(seed, size))
}

// scenario runs one scenario as a client: it returns what must and what did come back.
type scenario func(ctx context.Context, c client.Client, options client.StartWorkflowOptions, seed uint64, size int) (expected, got Result, runID string, err error)

var scenarios = map[string]scenario{
	"workflow-input-and-result": func(ctx context.Context, c client.Client, o client.StartWorkflowOptions, seed uint64, size int) (Result, Result, string, error) {
		run, err := c.ExecuteWorkflow(ctx, o, EchoReversed, payload(seed, size))
		if err != nil {
			return Result{}, Result{}, "", err
		}
		var back []byte
		err = run.Get(ctx, &back)
		return reversedDigest(seed, size), digest(back), run.GetRunID(), err
	},
	"signal": func(ctx context.Context, c client.Client, o client.StartWorkflowOptions, seed uint64, size int) (Result, Result, string, error) {
		run, err := c.ExecuteWorkflow(ctx, o, Signalled)
		if err != nil {
			return Result{}, Result{}, "", err
		}
		if err := c.SignalWorkflow(ctx, o.ID, run.GetRunID(), signalName, payload(seed, size)); err != nil {
			return Result{}, Result{}, run.GetRunID(), err
		}
		var got Result
		err = run.Get(ctx, &got)
		return digest(payload(seed, size)), got, run.GetRunID(), err
	},
	"update": func(ctx context.Context, c client.Client, o client.StartWorkflowOptions, seed uint64, size int) (Result, Result, string, error) {
		run, err := c.ExecuteWorkflow(ctx, o, Updated)
		if err != nil {
			return Result{}, Result{}, "", err
		}
		handle, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
			WorkflowID: o.ID, RunID: run.GetRunID(), UpdateName: updateName,
			Args: []any{payload(seed, size)}, WaitForStage: client.WorkflowUpdateStageCompleted,
		})
		if err != nil {
			return Result{}, Result{}, run.GetRunID(), err
		}
		var back []byte
		if err := handle.Get(ctx, &back); err != nil {
			return Result{}, Result{}, run.GetRunID(), err
		}
		return reversedDigest(seed, size), digest(back), run.GetRunID(), run.Get(ctx, nil)
	},
	"query": func(ctx context.Context, c client.Client, o client.StartWorkflowOptions, seed uint64, size int) (Result, Result, string, error) {
		run, err := c.ExecuteWorkflow(ctx, o, Queried, seed, size)
		if err != nil {
			return Result{}, Result{}, "", err
		}
		answer, err := c.QueryWorkflow(ctx, o.ID, run.GetRunID(), queryName)
		if err != nil {
			return Result{}, Result{}, run.GetRunID(), err
		}
		var data []byte
		if err := answer.Get(&data); err != nil {
			return Result{}, Result{}, run.GetRunID(), err
		}
		if err := c.SignalWorkflow(ctx, o.ID, run.GetRunID(), doneSignal, nil); err != nil {
			return Result{}, Result{}, run.GetRunID(), err
		}
		return digest(payload(seed, size)), digest(data), run.GetRunID(), run.Get(ctx, nil)
	},
	"child": resultOf(Parent, reversedDigest),
	"failure-details": resultOf(FailingDetails, func(seed uint64, size int) Result {
		return digest(payload(seed, size))
	}),
}

// resultOf is a scenario whose workflow takes (seed, size) and returns the Result it saw.
func resultOf(wf any, expected func(uint64, int) Result) scenario {
	return func(ctx context.Context, c client.Client, o client.StartWorkflowOptions, seed uint64, size int) (Result, Result, string, error) {
		run, err := c.ExecuteWorkflow(ctx, o, wf, seed, size)
		if err != nil {
			return Result{}, Result{}, "", err
		}
		var got Result
		err = run.Get(ctx, &got)
		return expected(seed, size), got, run.GetRunID(), err
	}
}

func reversedDigest(seed uint64, size int) Result {
	data := payload(seed, size)
	slices.Reverse(data)
	return digest(data)
}
