import { MESSAGE_PREFIX } from "../dataset/chatml.ts";

/**
 * Prints a reply as it streams in (pure but for `write`): each generated message (a `>>> ` line)
 * as `Name: text`, continuation lines under the same name, and a message that stays empty never
 * printed at all (a base model sometimes opens `>>> ` lines it does not fill). A prefix split
 * across chunks is recognised, and `>>> ` inside a line is text.
 */
export function replyPrinter(name: string, write: (text: string) => void) {
  let lineStart = true;
  /** Characters at a line start that may still turn out to be the prefix. */
  let pending = "";
  /** This line's text has started (its leading blanks are dropped until it does). */
  let lineOpen = false;
  let printedAny = false;

  const text = (char: string) => {
    if (char === "\n") {
      lineStart = true;
      lineOpen = false;
      return;
    }
    if (!lineOpen) {
      if (/\s/.test(char)) return;
      write(`${printedAny ? "\n" : ""}${name}: `);
      printedAny = true;
      lineOpen = true;
    }
    write(char);
  };

  return {
    push(chunk: string) {
      for (const char of chunk) {
        if (!lineStart) {
          text(char);
          continue;
        }
        pending += char;
        if (MESSAGE_PREFIX.startsWith(pending)) {
          if (pending === MESSAGE_PREFIX) {
            pending = "";
            lineStart = false;
          }
          continue;
        }
        // Not a prefix after all: what was held is the line's text.
        const held = pending;
        pending = "";
        lineStart = false;
        for (const c of held) text(c);
      }
    },
    /** Flushes what was held back; true when anything was printed. */
    end(): boolean {
      const held = pending;
      pending = "";
      if (held !== MESSAGE_PREFIX.trimEnd()) for (const c of held) text(c);
      return printedAny;
    },
  };
}
