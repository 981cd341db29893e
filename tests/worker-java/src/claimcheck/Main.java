package claimcheck;

import io.temporal.client.WorkflowClient;
import io.temporal.client.WorkflowClientOptions;
import io.temporal.serviceclient.WorkflowServiceStubs;
import io.temporal.serviceclient.WorkflowServiceStubsOptions;
import io.temporal.worker.Worker;
import io.temporal.worker.WorkerFactory;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * The Java SDK worker for claimcheck's end-to-end tests, and its checker: {@code worker} serves
 * the scenario workflows, {@code scenario -name NAME} runs one as a client and prints its verdict
 * as one JSON line (exit 0 if ok, 1 if not). Both reach Temporal at TEMPORAL_ADDRESS in
 * TEMPORAL_NAMESPACE; the worker polls TEMPORAL_TASK_QUEUE.
 */
public final class Main {
  private Main() {}

  public static void main(String[] args) throws Exception {
    if (args.length < 1) {
      usage();
    }
    Map<String, String> flags = flags(args);
    switch (args[0]) {
      case "worker" -> serve(env("TEMPORAL_TASK_QUEUE", "claimcheck-java"));
      case "scenario" -> System.exit(Scenarios.check(client(), flags) ? 0 : 1);
      default -> usage();
    }
  }

  /**
   * A client of TEMPORAL_ADDRESS. Nothing to raise or turn off for payloads of a few MiB: the
   * SDK's channel already accepts inbound messages up to 128 MiB (ChannelManager, no option), and
   * unlike the Go and Python SDKs, 1.38.0 has no client-side payload size limit.
   */
  static WorkflowClient client() {
    WorkflowServiceStubs service =
        WorkflowServiceStubs.newServiceStubs(
            WorkflowServiceStubsOptions.newBuilder()
                .setTarget(env("TEMPORAL_ADDRESS", "localhost:7233"))
                .build());
    return WorkflowClient.newInstance(
        service,
        WorkflowClientOptions.newBuilder().setNamespace(env("TEMPORAL_NAMESPACE", "default")).build());
  }

  /**
   * Runs the worker until SIGINT or SIGTERM, then lets tasks in flight finish (a pod's grace
   * period is 30 s by default) and exits 0, or 1 if they did not finish in time.
   */
  private static void serve(String taskQueue) throws InterruptedException {
    WorkerFactory factory = WorkerFactory.newInstance(client());
    Worker worker = factory.newWorker(taskQueue);
    worker.registerWorkflowImplementationTypes(
        Workflows.EchoReversedImpl.class,
        Workflows.SignalledImpl.class,
        Workflows.UpdatedImpl.class,
        Workflows.QueriedImpl.class,
        Workflows.ParentImpl.class,
        Workflows.FailingDetailsImpl.class);
    worker.registerActivitiesImplementations(new Workflows.FailingImpl());
    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(
                () -> {
                  factory.shutdown();
                  factory.awaitTermination(20, TimeUnit.SECONDS);
                  boolean stopped = factory.isTerminated();
                  System.err.println(stopped ? "worker stopped" : "worker did not stop in 20 s");
                  // After a signal the JVM exits 128 + its number however cleanly the hooks
                  // ran; halt says which it was, as the Go worker's exit status does.
                  Runtime.getRuntime().halt(stopped ? 0 : 1);
                }));
    factory.start();
    System.err.println("worker started, task queue " + taskQueue);
    Thread.currentThread().join();
  }

  private static Map<String, String> flags(String[] args) {
    Map<String, String> flags = new HashMap<>();
    for (int i = 1; i + 1 < args.length; i += 2) {
      flags.put(args[i].replaceFirst("^-+", ""), args[i + 1]);
    }
    return flags;
  }

  static String env(String name, String fallback) {
    String value = System.getenv(name);
    return value == null || value.isEmpty() ? fallback : value;
  }

  /** A duration in seconds, written 60 or 60s. */
  static Duration seconds(String value) {
    return Duration.ofSeconds(Long.parseLong(value.replaceFirst("s$", "")));
  }

  private static void usage() {
    System.err.println(
        "usage: worker | scenario -name NAME -task-queue Q -workflow-id ID [-seed N] [-size BYTES]"
            + " [-timeout SECONDS]");
    System.exit(2);
  }
}
