import { describe, expect, it } from "vitest";
import { type EvidenceState, epochKeepsWatchdog } from "../../src/attest/evidence.js";
import { ExecgateError } from "../../src/core/errors.js";
import {
  LISTEN_FDS_START,
  listenFdsFromEnv,
  ServiceNotifier,
  unsetActivationEnv,
  watchdogUsecFromEnv,
} from "../../src/server/activation.js";

function code(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof ExecgateError) return e.code;
    throw e;
  }
  return "no error";
}

describe("listenFdsFromEnv (sd_listen_fds)", () => {
  it("takes LISTEN_FDS descriptors from fd 3 when LISTEN_PID is this process", () => {
    expect(listenFdsFromEnv({ LISTEN_PID: "42", LISTEN_FDS: "1" }, 42)).toEqual({
      fds: [LISTEN_FDS_START],
      names: ["unknown"],
    });
    expect(
      listenFdsFromEnv({ LISTEN_PID: "42", LISTEN_FDS: "2", LISTEN_FDNAMES: "execgate.socket:metrics" }, 42),
    ).toEqual({ fds: [3, 4], names: ["execgate.socket", "metrics"] });
  });

  it("is not activated without LISTEN_PID, or when LISTEN_PID names another process (an inherited environment)", () => {
    expect(listenFdsFromEnv({}, 42)).toBeUndefined();
    expect(listenFdsFromEnv({ LISTEN_FDS: "1" }, 42)).toBeUndefined();
    expect(listenFdsFromEnv({ LISTEN_PID: "41", LISTEN_FDS: "1" }, 42)).toBeUndefined();
  });

  it("refuses malformed values instead of guessing", () => {
    expect(code(() => listenFdsFromEnv({ LISTEN_PID: "4x", LISTEN_FDS: "1" }, 42))).toBe("config_invalid");
    expect(code(() => listenFdsFromEnv({ LISTEN_PID: "42" }, 42))).toBe("config_invalid");
    expect(code(() => listenFdsFromEnv({ LISTEN_PID: "42", LISTEN_FDS: "-1" }, 42))).toBe("config_invalid");
    expect(code(() => listenFdsFromEnv({ LISTEN_PID: "42", LISTEN_FDS: "1000" }, 42))).toBe("config_invalid");
  });

  it("unsetActivationEnv removes the variables so children never see them", () => {
    const env: NodeJS.ProcessEnv = { LISTEN_PID: "1", LISTEN_FDS: "1", LISTEN_FDNAMES: "x", PATH: "/bin" };
    unsetActivationEnv(env);
    expect(env).toEqual({ PATH: "/bin" });
  });
});

describe("watchdogUsecFromEnv (sd_watchdog_enabled)", () => {
  it("reads WATCHDOG_USEC for this process", () => {
    expect(watchdogUsecFromEnv({ WATCHDOG_USEC: "30000000" }, 7)).toBe(30_000_000);
    expect(watchdogUsecFromEnv({ WATCHDOG_USEC: "30000000", WATCHDOG_PID: "7" }, 7)).toBe(30_000_000);
    expect(watchdogUsecFromEnv({ WATCHDOG_USEC: "30000000", WATCHDOG_PID: "8" }, 7)).toBeUndefined();
    expect(watchdogUsecFromEnv({}, 7)).toBeUndefined();
    expect(code(() => watchdogUsecFromEnv({ WATCHDOG_USEC: "0" }, 7))).toBe("config_invalid");
    expect(code(() => watchdogUsecFromEnv({ WATCHDOG_USEC: "soon" }, 7))).toBe("config_invalid");
  });
});

function epoch(
  seq: number,
  verifiedAtMs: number,
  reason?: "pcr_mismatch" | "hardware_unavailable",
): EvidenceState {
  return {
    epochSeq: seq,
    startedAtMs: verifiedAtMs - 10,
    verifiedAtMs,
    integrity: reason ? { ok: false, reason, detail: "test" } : { ok: true },
  } as unknown as EvidenceState;
}

describe("ServiceNotifier", () => {
  function notifier(watchdogUsec?: number) {
    let now = 0;
    const sent: string[] = [];
    const n = new ServiceNotifier({
      send: (m) => {
        sent.push(m);
        return true;
      },
      ...(watchdogUsec !== undefined ? { watchdogUsec } : {}),
      now: () => now,
      onError: () => undefined,
    });
    return { n, sent, at: (t: number) => (now = t) };
  }

  it("READY=1 once, with the first verified epoch after the socket is open", () => {
    const { n, sent, at } = notifier();
    at(1000);
    n.onEpoch(epoch(0, 1000)); // verified, but not serving yet
    expect(sent[0]).toBe("STATUS=epoch 0 verified; evidence 0 ms old");
    at(1100);
    n.serve(epoch(1, 1000, "pcr_mismatch"));
    expect(sent[1]).not.toContain("READY=1");
    at(1500);
    n.onEpoch(epoch(2, 1400));
    expect(sent[2]).toBe("READY=1\nSTATUS=epoch 2 verified; evidence 100 ms old");
    n.onEpoch(epoch(3, 1500));
    expect(sent.filter((m) => m.includes("READY=1"))).toHaveLength(1);
    expect(n.isReady).toBe(true);
  });

  it("STATUS names a failure and the age of the newest verified evidence", () => {
    const { n, sent, at } = notifier();
    at(500);
    n.serve(epoch(0, 500, "hardware_unavailable"));
    expect(sent[0]).toBe("STATUS=epoch 0 failed: hardware_unavailable; no verified evidence yet");
    n.onEpoch(epoch(1, 500));
    at(4700);
    n.onEpoch(epoch(2, 4700, "pcr_mismatch"));
    expect(sent[2]).toBe("STATUS=epoch 2 failed: pcr_mismatch; evidence 4200 ms old");
  });

  it("WATCHDOG=1 at most every WATCHDOG_USEC/2, only from epochs whose TPM answered", () => {
    const { n, sent, at } = notifier(2_000_000);
    n.serve(undefined);
    at(0);
    n.onEpoch(epoch(0, 0));
    at(500);
    n.onEpoch(epoch(1, 500));
    at(1000);
    n.onEpoch(epoch(2, 1000, "hardware_unavailable"));
    at(1200);
    n.onEpoch(epoch(3, 1200, "pcr_mismatch"));
    at(2000);
    n.onEpoch(epoch(4, 2000));
    const pings = sent.map((m) => m.split("\n").includes("WATCHDOG=1"));
    expect(pings).toEqual([true, false, false, true, false]);
    expect(epochKeepsWatchdog(epoch(9, 0, "pcr_mismatch"))).toBe(true);
    expect(epochKeepsWatchdog(epoch(9, 0, "hardware_unavailable"))).toBe(false);
  });

  it("no watchdog, no pings; a failing send is reported, never thrown into the loop", () => {
    const errors: unknown[] = [];
    const n = new ServiceNotifier({
      send: () => {
        throw new ExecgateError("io_error", "ECONNREFUSED");
      },
      now: () => 0,
      onError: (e) => errors.push(e),
    });
    n.serve(epoch(0, 0));
    n.stopping();
    expect(errors).toHaveLength(2);
    expect(n.sent.watchdog).toBe(0);
  });
});
