// Command kstatus prints what the kstatus library (sigs.k8s.io/cli-utils/pkg/kstatus/status,
// whose status package Flux's fork carries unchanged and Helm 4's --wait uses) concludes
// about one Kubernetes object: reads the object as JSON on stdin, prints
// {"status": ..., "message": ...} on stdout.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	data, err := io.ReadAll(in)
	if err != nil {
		return err
	}
	// Unstructured's own decoder keeps integers as int64, as kstatus reads them from the
	// API server (encoding/json would make them float64, and generation checks fail).
	var u unstructured.Unstructured
	if err := u.UnmarshalJSON(data); err != nil {
		return fmt.Errorf("reading the object: %w", err)
	}
	result, err := status.Compute(&u)
	if err != nil {
		return err
	}
	return json.NewEncoder(out).Encode(map[string]string{
		"status":  result.Status.String(),
		"message": result.Message,
	})
}
