import type { ExecgateError } from "./errors.js";

/**
 * `work`'s result, or `expired()`'s error once `ms` have passed; `work`'s signal is aborted with
 * that error then, so work that listens can stop. The timer is cleared either way.
 */
export async function withDeadline<T>(
  work: (signal: AbortSignal) => Promise<T>,
  ms: number,
  expired: () => ExecgateError,
): Promise<T> {
  const abort = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const e = expired();
      abort.abort(e);
      reject(e);
    }, ms);
  });
  try {
    return await Promise.race([work(abort.signal), deadline]);
  } finally {
    clearTimeout(timer);
  }
}
