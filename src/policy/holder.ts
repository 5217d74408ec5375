import { toHex } from "../core/hex.js";
import type { LoadedPolicy } from "./load.js";

/** How the last reload (SIGHUP) went: kept for `status`, so an operator sees a refused reload. */
export interface PolicyReload {
  readonly ok: boolean;
  readonly atMs: number;
  /** Why the new policy was refused (the old one stays in force). */
  readonly error?: string;
}

/**
 * The policy in force, replaced whole on a successful reload; readers call `current` each time
 * rather than keeping a copy, so a decision never mixes two policies' parts.
 */
export class PolicyHolder {
  private policy: LoadedPolicy;
  private loadedAtMs: number;
  private reload: PolicyReload | undefined;

  constructor(initial: LoadedPolicy, nowMs: number) {
    this.policy = initial;
    this.loadedAtMs = nowMs;
  }

  get current(): LoadedPolicy {
    return this.policy;
  }

  replaced(next: LoadedPolicy, nowMs: number): void {
    this.policy = next;
    this.loadedAtMs = nowMs;
    this.reload = { ok: true, atMs: nowMs };
  }

  refused(error: string, nowMs: number): void {
    this.reload = { ok: false, atMs: nowMs, error };
  }

  /** For `status`: the digest in force, since when, and the last reload's result (ages in ms). */
  status(
    nowMs: number,
  ): Record<string, string | number | boolean | null | Record<string, string | number | boolean>> {
    const r = this.reload;
    return {
      digest: toHex(this.policy.digest),
      path: this.policy.path,
      loaded_age_ms: Math.max(0, nowMs - this.loadedAtMs),
      last_reload: r
        ? {
            ok: r.ok,
            age_ms: Math.max(0, nowMs - r.atMs),
            ...(r.error === undefined ? {} : { error: r.error }),
          }
        : null,
    };
  }
}
