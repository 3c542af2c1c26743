import type { EventEmitter } from "node:events";

/**
 * The lines typed into the chat, in order: `next` waits for one (undefined once the input ends),
 * `takeQueued` takes those already typed (while the twin answered) without waiting.
 */
export function typedLines(input: Pick<EventEmitter, "on">) {
  const queued: string[] = [];
  let waiting: ((line: string | undefined) => void) | undefined;
  let closed = false;
  input.on("line", (line) => {
    if (waiting) {
      const resolve = waiting;
      waiting = undefined;
      resolve(line);
    } else queued.push(line);
  });
  input.on("close", () => {
    closed = true;
    waiting?.(undefined);
  });
  return {
    next(): Promise<string | undefined> {
      if (queued.length > 0) return Promise.resolve(queued.shift());
      if (closed) return Promise.resolve(undefined);
      return new Promise((resolve) => {
        waiting = resolve;
      });
    },
    /** Queued lines up to the next command (a command waits for its own turn). */
    takeQueued(): string[] {
      const end = queued.findIndex((line) => line.trim().startsWith("/"));
      return queued.splice(0, end === -1 ? queued.length : end);
    },
  };
}
