package claimcheck;

import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.SplittableRandom;

/** The test payload and what is said of it: SHA-256 and size, small whatever the size. */
public final class Payloads {
  private Payloads() {}

  /** What a workflow or the checker says of some bytes. */
  public record Result(String SHA256, int Size) {}

  /** size pseudo-random bytes fixed by seed, so the checker derives them without the worker. */
  public static byte[] payload(long seed, int size) {
    byte[] data = new byte[size];
    new SplittableRandom(seed).nextBytes(data);
    return data;
  }

  public static byte[] reversed(byte[] data) {
    byte[] out = new byte[data.length];
    for (int i = 0; i < data.length; i++) {
      out[i] = data[data.length - 1 - i];
    }
    return out;
  }

  public static Result digest(byte[] data) {
    try {
      byte[] sum = MessageDigest.getInstance("SHA-256").digest(data);
      return new Result(HexFormat.of().formatHex(sum), data.length);
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException("every JVM has SHA-256", e);
    }
  }
}
