/**
 * Milliseconds per step of a long job, summed over its batches: what `DEBUG=twin:import` and
 * `DEBUG=twin:dataset` print at the end, and what the pipeline bench's breakdown is made of.
 */
export type StepTimings = Record<string, number>;

export function addTime(timings: StepTimings, step: string, since: number): void {
  timings[step] = (timings[step] ?? 0) + performance.now() - since;
}

/** Runs `work`, adding its wall time to `step`. */
export async function timed<T>(timings: StepTimings, step: string, work: () => Promise<T>): Promise<T> {
  const started = performance.now();
  try {
    return await work();
  } finally {
    addTime(timings, step, started);
  }
}

/** "parse 7028 ms, copy 4688 ms" (pure). */
export function describeTimings(timings: StepTimings): string {
  return Object.entries(timings)
    .map(([step, ms]) => `${step} ${Math.round(ms)} ms`)
    .join(", ");
}
