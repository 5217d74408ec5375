/** The monotonic clock the lineage and the gate stamp entries with (µs). */
export const monoUs = (): number => Number(process.hrtime.bigint() / 1000n);

/** An entry's time: wall clock and monotonic clock read together. */
export const entryTime = (): { wallMs: number; monoUs: number } => ({ wallMs: Date.now(), monoUs: monoUs() });
