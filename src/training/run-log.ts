import type { TrainingEvent } from "./runs.repository.ts";

/** Lines of a run's log a failure message quotes, and how much of each. */
export const FAILURE_TAIL_LINES = 12;
const QUOTED_CHARS = 300;

const cut = (text: string, length: number) => (text.length > length ? `${text.slice(0, length)} …` : text);

/**
 * A run's log as `twin train log` prints it (pure): the lines the run printed (its `log_line`
 * events), each attempt headed by its claim, and how it ended.
 */
export function formatRunLog(events: Pick<TrainingEvent, "event" | "data" | "at">[]): string[] {
  const lines: string[] = [];
  const when = (at: Date) => at.toISOString().slice(0, 19).replace("T", " ");
  let attempt = 0;
  for (const { event, data, at } of events) {
    if (event === "log_line") lines.push(String(data.line ?? ""));
    else if (event === "claimed") {
      attempt += 1;
      lines.push(`── attempt ${data.attempt ?? attempt} on worker ${data.worker ?? "?"}, ${when(at)} UTC ──`);
    } else if (event === "requeued") lines.push(`── back in the queue: ${data.reason ?? "requeued"} ──`);
    else if (event === "failed") lines.push(`── failed: ${data.reason ?? "no reason given"} ──`);
    else lines.push(`── ${event} ──`);
  }
  return lines;
}

/**
 * Why a run failed, for `twin train` and the bot (pure): the worker's reason, the last lines of
 * the run's log (the traceback, the warnings before it), and the command that prints all of it.
 */
export function describeFailure(runId: number, error: string | null, tail: string[]): string {
  const reason = cut(error?.trim() || "the worker gave no reason", 1_000);
  const quoted = tail.slice(-FAILURE_TAIL_LINES).map((line) => `  ${cut(line, QUOTED_CHARS)}`);
  return [
    reason,
    ...(quoted.length ? ["The last lines of its log:", ...quoted] : []),
    `The whole log: twin train log ${runId}`,
  ].join("\n");
}

/** A failed run's note in `twin train list` (pure): the reason's first line and where its log is. */
export function failureNote(runId: number, error: string | null): string {
  const first = (error ?? "").trim().split("\n")[0] ?? "";
  return `${cut(first, 80)}${first ? " " : ""}(log: twin train log ${runId})`;
}
