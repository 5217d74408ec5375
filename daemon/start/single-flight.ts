/**
 * `f` run at most once at a time: a call while one is in progress shares its result (or its
 * failure), a call after it settled starts another.
 */
export function singleFlight<T>(f: () => Promise<T>): () => Promise<T> {
  let inFlight: Promise<T> | undefined;
  return () =>
    (inFlight ??= f().finally(() => {
      inFlight = undefined;
    }));
}
