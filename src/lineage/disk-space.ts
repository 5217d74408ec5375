import { statfs } from "node:fs/promises";
import { asExecgateError } from "../core/errors.js";

/** Free and total bytes of the filesystem holding the lineage, as an unprivileged writer sees it. */
export interface DiskSpace {
  readonly freeBytes: number;
  readonly sizeBytes: number;
}

/** Below this share of free space the lineage's filesystem is "low" (docs/operations.md §7). */
export const LOW_FREE_RATIO = 0.1;

/** How often the daemon samples the lineage's free space. */
export const DISK_SAMPLE_MS = 10_000;

/** Whether a filesystem is low on space: under LOW_FREE_RATIO of its size free. */
export function isLow(s: DiskSpace): boolean {
  return s.freeBytes < s.sizeBytes * LOW_FREE_RATIO;
}

/** The space statfs(2) reports for `dir`'s filesystem (bavail: what a non-root writer may use). */
export async function readDiskSpace(dir: string): Promise<DiskSpace> {
  const f = await statfs(dir);
  return { freeBytes: f.bavail * f.bsize, sizeBytes: f.blocks * f.bsize };
}

interface Log {
  warn(o: object, msg: string): void;
  info(o: object, msg: string): void;
}

/**
 * Samples the free space of the lineage's filesystem every `intervalMs` for metrics and status,
 * and logs `lineage_disk_low` when it falls under LOW_FREE_RATIO (`lineage_disk_ok` when it
 * recovers): the log grows with every token and a full disk denies everything
 * (lineage_unavailable), so the operator hears of it first. Informative only: the journal's own
 * write errors, not this, decide whether anything is allowed.
 */
export class DiskSpaceWatch {
  private last: DiskSpace | undefined;
  private level: "ok" | "low" | "unreadable" = "ok";
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly dir: string,
    private readonly intervalMs: number,
    private readonly log: Log,
    private readonly read: (dir: string) => Promise<DiskSpace> = readDiskSpace,
  ) {}

  latest(): DiskSpace | undefined {
    return this.last;
  }

  /** Takes the first sample now, then one every interval. */
  async start(): Promise<void> {
    await this.sample();
    this.timer = setInterval(() => void this.sample(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One sample; logs only when the level changes. */
  async sample(): Promise<void> {
    try {
      this.last = await this.read(this.dir);
    } catch (e) {
      // Unknown from now on: metrics and status leave it out rather than show an old number.
      this.last = undefined;
      if (this.level !== "unreadable")
        this.log.warn({ dir: this.dir, err: asExecgateError(e).message }, "lineage_disk_unreadable");
      this.level = "unreadable";
      return;
    }
    const level = isLow(this.last) ? "low" : "ok";
    const fields = { dir: this.dir, freeBytes: this.last.freeBytes, sizeBytes: this.last.sizeBytes };
    if (level === "low" && this.level !== "low") this.log.warn(fields, "lineage_disk_low");
    else if (level === "ok" && this.level !== "ok") this.log.info(fields, "lineage_disk_ok");
    this.level = level;
  }
}
