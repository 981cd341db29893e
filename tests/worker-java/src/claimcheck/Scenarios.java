package claimcheck;

import static claimcheck.Payloads.digest;
import static claimcheck.Payloads.payload;
import static claimcheck.Payloads.reversed;

import claimcheck.Payloads.Result;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.temporal.client.WorkflowClient;
import io.temporal.client.WorkflowOptions;
import io.temporal.client.WorkflowStub;
import java.util.LinkedHashMap;
import java.util.Map;

/** Each scenario as a client: what must come back, and what did. */
final class Scenarios {
  private Scenarios() {}

  private record Outcome(Result expected, Result got, String runId) {}

  @FunctionalInterface
  private interface Scenario {
    Outcome run(WorkflowClient client, WorkflowOptions options, long seed, int size);
  }

  private static final Map<String, Scenario> SCENARIOS =
      Map.of(
          "workflow-input-and-result", Scenarios::echo,
          "signal", Scenarios::signal,
          "update", Scenarios::update,
          "query", Scenarios::query,
          "child", Scenarios::child,
          "failure-details", Scenarios::failureDetails);

  /** Runs the scenario the flags name, prints the verdict as JSON, and says whether it held. */
  static boolean check(WorkflowClient client, Map<String, String> flags) throws Exception {
    String name = flags.getOrDefault("name", "");
    String workflowId = flags.getOrDefault("workflow-id", "scenario-" + System.nanoTime());
    long seed = Long.parseLong(flags.getOrDefault("seed", "1"));
    int size = Integer.parseInt(flags.getOrDefault("size", String.valueOf(3 << 20)));
    WorkflowOptions options =
        WorkflowOptions.newBuilder()
            .setWorkflowId(workflowId)
            .setTaskQueue(flags.getOrDefault("task-queue", "claimcheck-java"))
            .setWorkflowExecutionTimeout(Main.seconds(flags.getOrDefault("timeout", "120")))
            .build();
    Map<String, Object> verdict = new LinkedHashMap<>();
    verdict.put("scenario", name);
    verdict.put("workflowId", workflowId);
    long started = System.nanoTime();
    boolean ok = false;
    try {
      Scenario scenario = SCENARIOS.get(name);
      if (scenario == null) {
        throw new IllegalArgumentException("unknown scenario " + name);
      }
      Outcome outcome = scenario.run(client, options, seed, size);
      verdict.put("runId", outcome.runId());
      verdict.put("expected", outcome.expected());
      verdict.put("got", outcome.got());
      ok = outcome.expected().equals(outcome.got());
    } catch (RuntimeException e) {
      verdict.put("error", describe(e));
    }
    verdict.put("seconds", (System.nanoTime() - started) / 1e9);
    verdict.put("ok", ok);
    System.out.println(new ObjectMapper().writeValueAsString(verdict));
    return ok;
  }

  /** The exception and its causes: a WorkflowFailedException says why only in its cause. */
  private static String describe(Throwable e) {
    StringBuilder text = new StringBuilder(e.toString());
    for (Throwable cause = e.getCause(); cause != null; cause = cause.getCause()) {
      text.append("; caused by ").append(cause);
    }
    return text.toString();
  }

  private static Outcome echo(WorkflowClient client, WorkflowOptions options, long seed, int size) {
    Workflows.EchoReversed stub = client.newWorkflowStub(Workflows.EchoReversed.class, options);
    String runId = WorkflowClient.start(stub::run, payload(seed, size)).getRunId();
    byte[] back = WorkflowStub.fromTyped(stub).getResult(byte[].class);
    return new Outcome(digest(reversed(payload(seed, size))), digest(back), runId);
  }

  private static Outcome signal(WorkflowClient client, WorkflowOptions options, long seed, int size) {
    Workflows.Signalled stub = client.newWorkflowStub(Workflows.Signalled.class, options);
    String runId = WorkflowClient.start(stub::run).getRunId();
    stub.put(payload(seed, size));
    Result got = WorkflowStub.fromTyped(stub).getResult(Result.class);
    return new Outcome(digest(payload(seed, size)), got, runId);
  }

  private static Outcome update(WorkflowClient client, WorkflowOptions options, long seed, int size) {
    Workflows.Updated stub = client.newWorkflowStub(Workflows.Updated.class, options);
    String runId = WorkflowClient.start(stub::run).getRunId();
    byte[] back = stub.transform(payload(seed, size));
    WorkflowStub.fromTyped(stub).getResult(Void.class);
    return new Outcome(digest(reversed(payload(seed, size))), digest(back), runId);
  }

  private static Outcome query(WorkflowClient client, WorkflowOptions options, long seed, int size) {
    Workflows.Queried stub = client.newWorkflowStub(Workflows.Queried.class, options);
    String runId = WorkflowClient.start(stub::run, seed, size).getRunId();
    byte[] answer = stub.blob();
    stub.done();
    WorkflowStub.fromTyped(stub).getResult(Void.class);
    return new Outcome(digest(payload(seed, size)), digest(answer), runId);
  }

  private static Outcome child(WorkflowClient client, WorkflowOptions options, long seed, int size) {
    Workflows.Parent stub = client.newWorkflowStub(Workflows.Parent.class, options);
    String runId = WorkflowClient.start(stub::run, seed, size).getRunId();
    Result got = WorkflowStub.fromTyped(stub).getResult(Result.class);
    return new Outcome(digest(reversed(payload(seed, size))), got, runId);
  }

  private static Outcome failureDetails(
      WorkflowClient client, WorkflowOptions options, long seed, int size) {
    Workflows.FailingDetails stub = client.newWorkflowStub(Workflows.FailingDetails.class, options);
    String runId = WorkflowClient.start(stub::run, seed, size).getRunId();
    Result got = WorkflowStub.fromTyped(stub).getResult(Result.class);
    return new Outcome(digest(payload(seed, size)), got, runId);
  }
}
