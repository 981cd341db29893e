// Command worker-go is a Temporal Go SDK worker for claimcheck's end-to-end and cluster tests,
// and its checker: `worker` serves a workflow that passes a large payload through activities,
// `run` starts that workflow and checks by SHA-256 that the bytes came through intact;
// `scenario` does the same for each other place a payload travels (scenarios.go).
//
// Both reach Temporal at TEMPORAL_ADDRESS (in a pod: the injected claimcheck sidecar) in the
// namespace TEMPORAL_NAMESPACE. Logs go to stderr; `run` prints its verdict as JSON on stdout.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"

	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
)

const usage = `usage: worker-go worker [-task-queue Q]
       worker-go run [-task-queue Q] [-workflow-id ID] [-seed N] [-size BYTES] [-activities K] [-timeout D]
       worker-go scenario -name NAME [-task-queue Q] [-workflow-id ID] [-seed N] [-size BYTES] [-timeout D]
environment: TEMPORAL_ADDRESS (localhost:7233), TEMPORAL_NAMESPACE (default), TEMPORAL_TASK_QUEUE (claimcheck-go),
             SDK_STORAGE_S3_BUCKET (the SDK's own S3 storage; AWS_ENDPOINT, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)`

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	var code int
	switch os.Args[1] {
	case "worker":
		code = serve(os.Args[2:], logger)
	case "run":
		code = check(os.Args[2:], logger)
	case "scenario":
		code = checkScenario(os.Args[2:], logger)
	default:
		fmt.Fprintln(os.Stderr, usage)
		code = 2
	}
	os.Exit(code)
}

func envOr(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}

// taskQueueFlag registers -task-queue, defaulting to TEMPORAL_TASK_QUEUE, on both subcommands.
func taskQueueFlag(flags *flag.FlagSet) *string {
	return flags.String("task-queue", envOr("TEMPORAL_TASK_QUEUE", "claimcheck-go"), "task queue")
}

func dial(logger *slog.Logger) (client.Client, error) {
	storage, err := sdkStorage()
	if err != nil {
		return nil, err
	}
	return client.Dial(client.Options{
		HostPort:        envOr("TEMPORAL_ADDRESS", "localhost:7233"),
		Namespace:       envOr("TEMPORAL_NAMESPACE", "default"),
		Logger:          sdklog.NewStructuredLogger(logger),
		ExternalStorage: storage,
	})
}
