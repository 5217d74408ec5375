import pino from "pino";
import { describe, expect, it } from "vitest";
import { EXIT } from "../../daemon/exit.js";
import { runStopSteps } from "../../daemon/stop.js";

function capture() {
  const logged: { msg: string; step?: string; err?: string }[] = [];
  const log = pino({ level: "info" }, { write: (line: string) => void logged.push(JSON.parse(line)) });
  return { logged, log };
}

describe("the daemon's stop sequence", () => {
  it("runs every step in order and exits 0 when all succeed", async () => {
    const { logged, log } = capture();
    const ran: string[] = [];
    const code = await runStopSteps(
      [
        ["attest", async () => void ran.push("attest")],
        ["skipped", () => undefined],
        ["lineage", async () => void ran.push("lineage")],
      ],
      log,
    );
    expect(code).toBe(EXIT.ok);
    expect(ran).toEqual(["attest", "lineage"]);
    expect(logged).toEqual([]);
  });

  it("a failed step is logged, the later ones still run (the lineage is closed), and the exit code says so", async () => {
    const { logged, log } = capture();
    const ran: string[] = [];
    const code = await runStopSteps(
      [
        ["attest", () => Promise.reject(new Error("epoch crashed"))],
        [
          "metrics",
          () => {
            throw new Error("not a promise");
          },
        ],
        ["daemon_stop", async () => void ran.push("daemon_stop")],
        ["lineage", async () => void ran.push("lineage")],
      ],
      log,
    );
    expect(code).toBe(EXIT.io);
    expect(ran).toEqual(["daemon_stop", "lineage"]);
    expect(logged).toEqual([
      expect.objectContaining({ msg: "stop_step_failed", step: "attest", err: "epoch crashed" }),
      expect.objectContaining({ msg: "stop_step_failed", step: "metrics", err: "not a promise" }),
    ]);
  });
});
