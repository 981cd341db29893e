package main

import (
	"flag"
	"log/slog"
	"time"

	"go.temporal.io/sdk/worker"
)

// serve runs the worker until SIGINT or SIGTERM, then lets running activities finish (a pod's
// termination grace period is 30 s by default).
func serve(args []string, logger *slog.Logger) int {
	flags := flag.NewFlagSet("worker", flag.ContinueOnError)
	taskQueue := taskQueueFlag(flags)
	if err := flags.Parse(args); err != nil {
		return 2
	}
	c, err := dial(logger)
	if err != nil {
		logger.Error("cannot connect to Temporal", "error", err)
		return 1
	}
	defer c.Close()
	w := worker.New(c, *taskQueue, worker.Options{
		// The SDK refuses a payload over the server's limit (2 MiB) before sending it; the
		// claimcheck proxy offloads such payloads, so that check must be off, as Python's
		// disable_payload_error_limit=True.
		DisablePayloadErrorLimit: true,
		WorkerStopTimeout:        20 * time.Second,
	})
	w.RegisterWorkflow(PassThrough)
	w.RegisterActivity(Produce)
	w.RegisterActivity(Reverse)
	for _, wf := range []any{EchoReversed, Signalled, Updated, Queried, Parent, FailingDetails} {
		w.RegisterWorkflow(wf)
	}
	w.RegisterActivity(FailWithDetails)
	logger.Info("worker starting", "taskQueue", *taskQueue)
	if err := w.Run(worker.InterruptCh()); err != nil {
		logger.Error("worker failed", "error", err)
		return 1
	}
	logger.Info("worker stopped")
	return 0
}
