package claimcheck;

import static claimcheck.Payloads.digest;
import static claimcheck.Payloads.payload;
import static claimcheck.Payloads.reversed;

import claimcheck.Payloads.Result;
import io.temporal.activity.ActivityInterface;
import io.temporal.activity.ActivityOptions;
import io.temporal.common.RetryOptions;
import io.temporal.failure.ActivityFailure;
import io.temporal.failure.ApplicationFailure;
import io.temporal.workflow.ChildWorkflowOptions;
import io.temporal.workflow.QueryMethod;
import io.temporal.workflow.SignalMethod;
import io.temporal.workflow.UpdateMethod;
import io.temporal.workflow.Workflow;
import io.temporal.workflow.WorkflowInterface;
import io.temporal.workflow.WorkflowMethod;
import java.time.Duration;

/**
 * The core payload scenarios, one workflow per place a payload travels, as the Python and Go
 * suites have them. Each returns what it received, or its Result.
 */
public final class Workflows {
  private Workflows() {}

  /** Workflow input and workflow result. */
  @WorkflowInterface
  public interface EchoReversed {
    @WorkflowMethod
    byte[] run(byte[] data);
  }

  public static class EchoReversedImpl implements EchoReversed {
    @Override
    public byte[] run(byte[] data) {
      return reversed(data);
    }
  }

  /** A signal's input. */
  @WorkflowInterface
  public interface Signalled {
    @WorkflowMethod
    Result run();

    @SignalMethod(name = "put")
    void put(byte[] data);
  }

  public static class SignalledImpl implements Signalled {
    private byte[] data;

    @Override
    public Result run() {
      Workflow.await(() -> data != null);
      return digest(data);
    }

    @Override
    public void put(byte[] data) {
      this.data = data;
    }
  }

  /** An update's argument and result. */
  @WorkflowInterface
  public interface Updated {
    @WorkflowMethod
    void run();

    @UpdateMethod(name = "transform")
    byte[] transform(byte[] data);
  }

  public static class UpdatedImpl implements Updated {
    private boolean done;

    @Override
    public void run() {
      Workflow.await(() -> done);
    }

    @Override
    public byte[] transform(byte[] data) {
      done = true;
      return reversed(data);
    }
  }

  /** A query's result, which never reaches history. */
  @WorkflowInterface
  public interface Queried {
    @WorkflowMethod
    void run(long seed, int size);

    @QueryMethod(name = "blob")
    byte[] blob();

    @SignalMethod(name = "done")
    void done();
  }

  public static class QueriedImpl implements Queried {
    private byte[] data;
    private boolean done;

    @Override
    public void run(long seed, int size) {
      data = payload(seed, size);
      Workflow.await(() -> done);
    }

    @Override
    public byte[] blob() {
      return data;
    }

    @Override
    public void done() {
      done = true;
    }
  }

  /** A child's input and result. */
  @WorkflowInterface
  public interface Parent {
    @WorkflowMethod
    Result run(long seed, int size);
  }

  public static class ParentImpl implements Parent {
    @Override
    public Result run(long seed, int size) {
      String id = Workflow.getInfo().getWorkflowId() + "-child";
      EchoReversed child =
          Workflow.newChildWorkflowStub(
              EchoReversed.class, ChildWorkflowOptions.newBuilder().setWorkflowId(id).build());
      return digest(child.run(payload(seed, size)));
    }
  }

  /** An activity failure's details. */
  @WorkflowInterface
  public interface FailingDetails {
    @WorkflowMethod
    Result run(long seed, int size);
  }

  @ActivityInterface
  public interface Failing {
    void failWithDetails(long seed, int size);
  }

  public static class FailingImpl implements Failing {
    @Override
    public void failWithDetails(long seed, int size) {
      throw ApplicationFailure.newNonRetryableFailure(
          "fails with the payload as details", "Details", payload(seed, size));
    }
  }

  public static class FailingDetailsImpl implements FailingDetails {
    @Override
    public Result run(long seed, int size) {
      Failing activity =
          Workflow.newActivityStub(
              Failing.class,
              ActivityOptions.newBuilder()
                  .setStartToCloseTimeout(Duration.ofMinutes(1))
                  .setRetryOptions(RetryOptions.newBuilder().setMaximumAttempts(1).build())
                  .build());
      try {
        activity.failWithDetails(seed, size);
      } catch (ActivityFailure failure) {
        if (failure.getCause() instanceof ApplicationFailure details) {
          return digest(details.getDetails().get(byte[].class));
        }
        throw failure;
      }
      throw ApplicationFailure.newFailure("the activity did not fail", "Unexpected");
    }
  }
}
