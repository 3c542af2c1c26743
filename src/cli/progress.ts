import cliProgress from "cli-progress";

/** What a command drives: a terminal bar, or plain lines when stderr is not a terminal. */
export type Progress = {
  start(total: number, value: number, payload?: Record<string, unknown>): void;
  setTotal(total: number): void;
  update(value: number, payload?: Record<string, unknown>): void;
  stop(): void;
};

type Output = { isTTY?: boolean; write(text: string): unknown };

export type ProgressOptions = {
  /** cli-progress's format: `{bar}`, `{value}`, `{total}`, `{percentage}` and payload keys. */
  format: string;
  /** The payload key whose change is a new stage (the model evaluated, the training phase): a line each time. */
  stage?: string;
  /** Within a stage, at most one plain line this often (default 30 s). */
  everyMs?: number;
  etaBuffer?: number;
  stream?: Output;
  now?: () => number;
};

/** The bar's format as one plain line: the bar itself left out, the values filled in (pure). */
export function plainLine(
  format: string,
  value: number,
  total: number,
  payload: Record<string, unknown>,
): string {
  const fields: Record<string, unknown> = {
    ...payload,
    value,
    total,
    percentage: Math.round((100 * value) / Math.max(total, 1)),
  };
  return format
    .replace(/\s*\|?\{bar\}\|?\s*/, " ")
    .replace(/\{(\w+)\}/g, (_, key: string) => String(fields[key] ?? ""))
    .replace(/(\s*\|\s*)+$/, "")
    .trim();
}

/**
 * A progress bar on a terminal (stderr, as cli-progress draws it). Elsewhere — piped, redirected,
 * in `docker compose logs` — cli-progress stays silent, so plain lines go there instead: the first
 * update (or the start, when it names a stage), each new stage, one line every `everyMs` within a stage, and where it stopped.
 */
export function progressBar(options: ProgressOptions): Progress {
  const stream = options.stream ?? process.stderr;
  if (stream.isTTY) {
    return new cliProgress.SingleBar(
      {
        format: options.format,
        hideCursor: true,
        ...(options.etaBuffer ? { etaBuffer: options.etaBuffer } : {}),
        stream: stream as NodeJS.WritableStream,
      },
      cliProgress.Presets.shades_classic,
    );
  }
  const now = options.now ?? (() => Date.now());
  const everyMs = options.everyMs ?? 30_000;
  let value = 0;
  let total = 0;
  let payload: Record<string, unknown> = {};
  let running = false;
  let printed: string | undefined;
  let printedAt = 0;
  let stage: unknown;
  const print = () => {
    const line = plainLine(options.format, value, total, payload);
    if (line === printed) return;
    stream.write(`${line}\n`);
    printed = line;
    printedAt = now();
  };
  return {
    start(startTotal, startValue, startPayload = {}) {
      running = true;
      total = startTotal;
      value = startValue;
      payload = { ...startPayload };
      printed = undefined;
      printedAt = now();
      stage = options.stage ? payload[options.stage] : undefined;
      if (stage !== undefined && stage !== "") print();
    },
    setTotal(newTotal) {
      total = newTotal;
    },
    update(newValue, newPayload = {}) {
      if (!running) return;
      value = newValue;
      payload = { ...payload, ...newPayload };
      const current = options.stage ? payload[options.stage] : undefined;
      const newStage = current !== stage && current !== "" && current !== undefined;
      stage = current;
      if (printed === undefined || newStage || now() - printedAt >= everyMs) print();
    },
    stop() {
      if (!running) return;
      running = false;
      if (printed !== undefined) print();
    },
  };
}
