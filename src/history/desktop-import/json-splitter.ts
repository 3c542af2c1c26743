import { isUtf8 } from "node:buffer";
import { JsonSyntaxError } from "./import.errors.ts";

/**
 * A streaming JSON splitter: walks the outline of a document byte by byte and hands whole
 * values at chosen places to `JSON.parse`, one at a time. Exports are one huge object whose bulk is
 * millions of small message objects; cutting each message out and parsing it natively is several
 * times faster than a token-by-token streaming parser, and memory stays at one chunk plus one value.
 *
 * The caller decides, for each value, whether to descend into it (an object or array whose
 * children are decided again), capture it (parse it and pass it on) or skip it (scan past it).
 */

export type Decision<Role extends string> =
  | { action: "descend"; role: Role; expect: "object" | "array" }
  | { action: "capture" }
  | { action: "skip" };

export type SplitterHandlers<Role extends string> = {
  /** Decide what to do with the value at `key` (an object key or array index) inside `parent`. */
  decide(parent: Role | undefined, key: string | number): Decision<Role>;
  onEnter?(role: Role, offset: number): void;
  onExit?(role: Role, offset: number): void;
  /** A captured value, parsed. `offset` is the byte where it starts in the whole input. */
  onValue(parent: Role | undefined, key: string | number, value: unknown, offset: number): void;
};

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;

function isSpace(byte: number): boolean {
  return byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09;
}

type Frame<Role> = { kind: "object" | "array"; role: Role; key: string | number; index: number };

/** Where an unfinished container scan stopped, so the next chunk resumes there (no allocation per call). */
const nestedScan = { resumeAt: 0, depth: 0 };

/**
 * End (exclusive) of the object or array whose scan is at `from` with `depth` brackets open, or -1
 * when it does not end within `buf` (then `nestedScan` says where to resume). Strings are jumped
 * over with indexOf, so only the bytes between them are visited one by one.
 */
function containerEnd(buf: Buffer, from: number, depth: number): number {
  const length = buf.length;
  let i = from;
  while (i < length) {
    const byte = buf[i] as number;
    if (byte === QUOTE) {
      const quote = closingQuote(buf, i + 1);
      if (quote < 0) break; // resume at this string's opening quote
      i = quote + 1;
      continue;
    }
    if (byte === OPEN_BRACE || byte === OPEN_BRACKET) depth++;
    else if ((byte === CLOSE_BRACE || byte === CLOSE_BRACKET) && --depth === 0) return i + 1;
    i++;
  }
  nestedScan.resumeAt = i;
  nestedScan.depth = depth;
  return -1;
}

enum State {
  Value,
  ObjectFirst,
  ObjectKey,
  Colon,
  AfterValue,
  ArrayFirst,
  Capture,
  Done,
}

/** Index of the closing quote of the string whose body starts at `from`, or -1 if not in `buf` yet. */
function closingQuote(buf: Buffer, from: number): number {
  let at = from;
  for (;;) {
    const quote = buf.indexOf(QUOTE, at);
    if (quote < 0) return -1;
    if (buf[quote - 1] !== BACKSLASH) return quote;
    let backslashes = 0;
    for (let i = quote - 1; i >= from && buf[i] === BACKSLASH; i--) backslashes++;
    if (backslashes % 2 === 0) return quote;
    at = quote + 1;
  }
}

export class JsonSplitter<Role extends string> {
  /** Where the bytes not yet handled live; reused chunk after chunk, so a push allocates nothing. */
  private storage: Buffer = Buffer.alloc(0);
  /** The bytes not yet handled: the start of `storage`. */
  private buf: Buffer = Buffer.alloc(0);
  /** Absolute offset of buf[0] in the whole input. */
  private base = 0;
  private pos = 0;
  private state: State = State.Value;
  private readonly stack: Frame<Role>[] = [];
  private key: string | number = "";
  // The value being captured or skipped.
  private captureStart = -1;
  private captureScan = 0;
  private captureDepth = 0;
  private captureKeep = false;

  constructor(private readonly handlers: SplitterHandlers<Role>) {}

  /** Bytes consumed and fully handled so far (everything before the value in progress). */
  get offset(): number {
    return this.base + (this.state === State.Capture ? this.captureStart : this.pos);
  }

  /** `chats.list[3].messages[120]`: where the splitter is, for error messages. */
  get path(): string {
    let text = "";
    for (const [depth, frame] of this.stack.entries()) {
      if (depth > 0) text += typeof frame.key === "number" ? `[${frame.key}]` : `.${frame.key}`;
    }
    const top = this.stack.at(-1);
    if (top && this.state !== State.AfterValue && this.state !== State.ObjectFirst) {
      text += typeof this.key === "number" ? `[${this.key}]` : `.${this.key}`;
    }
    return text.replace(/^\./, "");
  }

  /**
   * What was repaired in the values captured so far: NULs (`\u0000` escapes, which PostgreSQL
   * text cannot hold) removed, and invalid UTF-8 sequences read as U+FFFD; each with the byte
   * offset of the value where it first occurred. `lastRepaired` says whether the value just handed
   * to `onValue` had any.
   */
  readonly repairs = { nul: 0, firstNulAt: -1, invalidUtf8: 0, firstInvalidUtf8At: -1 };
  lastRepaired = false;

  push(chunk: Buffer): void {
    if (
      this.base === 0 &&
      this.pos === 0 &&
      this.buf.length === 0 &&
      chunk[0] === 0xef &&
      chunk[1] === 0xbb &&
      chunk[2] === 0xbf
    ) {
      chunk = chunk.subarray(3); // a UTF-8 byte order mark, as some editors write: not part of the JSON
      this.base = 3;
    }
    const keepFrom = this.state === State.Capture ? this.captureStart : this.pos;
    // The unfinished tail moves to the front and the chunk is copied after it: the caller may
    // reuse its chunk's memory, and no buffer is allocated per chunk (which glibc keeps as RSS).
    const rest = this.buf.length - keepFrom;
    const needed = rest + chunk.length;
    if (needed > this.storage.length) {
      const grown = Buffer.allocUnsafe(Math.max(needed, this.storage.length * 2));
      this.storage.copy(grown, 0, keepFrom, this.buf.length);
      this.storage = grown;
    } else if (rest > 0 && keepFrom > 0) {
      this.storage.copyWithin(0, keepFrom, this.buf.length);
    }
    chunk.copy(this.storage, rest);
    this.buf = this.storage.subarray(0, needed);
    this.base += keepFrom;
    if (this.state === State.Capture) {
      this.captureScan -= this.captureStart;
      this.captureStart = 0;
    }
    this.pos -= keepFrom;
    this.run(false);
  }

  /** The input is complete: anything unfinished is a truncated document. */
  end(): void {
    this.run(true);
    if (this.state !== State.Done) {
      throw this.error(this.expectation(), "the input ends here (truncated file?)");
    }
  }

  private error(expected: string, detail?: string, at = this.pos): JsonSyntaxError {
    return new JsonSyntaxError(this.base + at, this.path, expected, detail);
  }

  private expectation(): string {
    switch (this.state) {
      case State.Value:
      case State.ArrayFirst:
        return "a value";
      case State.ObjectFirst:
        return 'a key or "}"';
      case State.ObjectKey:
        return "a key";
      case State.Colon:
        return '":"';
      case State.AfterValue:
        return this.stack.at(-1)?.kind === "array" ? '"," or "]"' : '"," or "}"';
      case State.Capture:
        return "the rest of the value";
      default:
        return "the end of the input";
    }
  }

  private run(atEnd: boolean): void {
    const buf = this.buf;
    const length = buf.length;
    while (this.pos < length || this.state === State.Capture) {
      if (this.state === State.Capture) {
        if (!this.scanCapture(atEnd)) return;
        continue;
      }
      const byte = buf[this.pos] as number;
      if (isSpace(byte)) {
        this.pos++;
        continue;
      }
      switch (this.state) {
        case State.Value:
        case State.ArrayFirst:
          if (this.state === State.ArrayFirst && byte === CLOSE_BRACKET) {
            this.close();
            break;
          }
          this.beginValue(byte);
          break;
        case State.ObjectFirst:
        case State.ObjectKey: {
          if (this.state === State.ObjectFirst && byte === CLOSE_BRACE) {
            this.close();
            break;
          }
          if (byte !== QUOTE) throw this.error(this.expectation());
          const end = closingQuote(buf, this.pos + 1);
          if (end < 0) return; // the key continues in the next chunk
          const raw = buf.toString("utf8", this.pos + 1, end);
          this.key = raw.includes("\\") ? (JSON.parse(`"${raw}"`) as string) : raw;
          this.pos = end + 1;
          this.state = State.Colon;
          break;
        }
        case State.Colon:
          if (byte !== COLON) throw this.error('":"');
          this.pos++;
          this.state = State.Value;
          break;
        case State.AfterValue: {
          const top = this.stack.at(-1);
          if (!top) throw this.error("the end of the input");
          if (byte === COMMA) {
            this.pos++;
            if (top.kind === "object") this.state = State.ObjectKey;
            else {
              this.key = ++top.index;
              this.state = State.Value;
            }
          } else if (byte === (top.kind === "object" ? CLOSE_BRACE : CLOSE_BRACKET)) {
            this.close();
          } else {
            throw this.error(this.expectation());
          }
          break;
        }
        case State.Done:
          throw this.error("the end of the input", "extra data after the document");
      }
    }
  }

  private beginValue(byte: number): void {
    const top = this.stack.at(-1);
    const decision = this.handlers.decide(top?.role, this.key);
    if (decision.action === "descend") {
      const kind = byte === OPEN_BRACE ? "object" : byte === OPEN_BRACKET ? "array" : undefined;
      if (kind !== decision.expect) throw this.error(`an ${decision.expect}`);
      this.stack.push({ kind, role: decision.role, key: this.key, index: 0 });
      this.handlers.onEnter?.(decision.role, this.base + this.pos);
      this.pos++;
      if (kind === "array") {
        this.key = 0;
        this.state = State.ArrayFirst;
      } else {
        this.state = State.ObjectFirst;
      }
      return;
    }
    this.captureStart = this.pos;
    this.captureScan = this.pos;
    this.captureDepth = 0;
    this.captureKeep = decision.action === "capture";
    this.state = State.Capture;
  }

  private close(): void {
    const frame = this.stack.pop() as Frame<Role>;
    this.handlers.onExit?.(frame.role, this.base + this.pos);
    this.pos++;
    this.key = frame.key;
    this.state = this.stack.length === 0 ? State.Done : State.AfterValue;
  }

  /** Advances over the captured value; true when it is complete. */
  private scanCapture(atEnd: boolean): boolean {
    const buf = this.buf;
    const length = buf.length;
    let i = this.captureScan;
    const first = buf[this.captureStart];
    if (first === undefined) return false;
    let end = -1;
    if (first === QUOTE) {
      const quote = closingQuote(buf, this.captureStart + 1);
      if (quote >= 0) end = quote + 1;
    } else if (first === OPEN_BRACE || first === OPEN_BRACKET) {
      const found = containerEnd(buf, i, this.captureDepth);
      if (found >= 0) end = found;
      else {
        i = nestedScan.resumeAt;
        this.captureDepth = nestedScan.depth;
      }
    } else {
      // A number or literal: it ends at the next delimiter (or at the end of the input).
      while (i < length) {
        const byte = buf[i] as number;
        if (byte === COMMA || byte === CLOSE_BRACE || byte === CLOSE_BRACKET || isSpace(byte)) break;
        i++;
      }
      if (i < length || atEnd) end = i;
    }
    if (end < 0) {
      this.captureScan = i;
      return false;
    }
    const start = this.captureStart;
    if (this.captureKeep) {
      const text = this.repaired(buf.subarray(start, end), this.base + start);
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (cause) {
        this.pos = start;
        this.state = State.Value;
        throw this.error("a valid JSON value", (cause as Error).message, start);
      }
      this.handlers.onValue(this.stack.at(-1)?.role, this.key, value, this.base + start);
    }
    this.pos = end;
    this.state = this.stack.length === 0 ? State.Done : State.AfterValue;
    return true;
  }

  /** The value's text, with NUL escapes removed and invalid UTF-8 counted (see `repairs`). */
  private repaired(bytes: Buffer, offset: number): string {
    this.lastRepaired = false;
    let text = bytes.toString("utf8");
    if (!isUtf8(bytes)) {
      const replaced = countOf(text, "\uFFFD") - countOf(bytes.toString("latin1"), "\xEF\xBF\xBD");
      this.repairs.invalidUtf8 += Math.max(1, replaced);
      if (this.repairs.firstInvalidUtf8At < 0) this.repairs.firstInvalidUtf8At = offset;
      this.lastRepaired = true;
    }
    if (text.includes("\\u0000")) {
      let removed = 0;
      // An escaped backslash before "u0000" is text, not a NUL: only an odd run of backslashes escapes.
      text = text.replace(/(?<!\\)((?:\\\\)*)\\u0000/g, (_match, evenBackslashes: string) => {
        removed++;
        return evenBackslashes;
      });
      if (removed > 0) {
        this.repairs.nul += removed;
        if (this.repairs.firstNulAt < 0) this.repairs.firstNulAt = offset;
        this.lastRepaired = true;
      }
    }
    return text;
  }
}

function countOf(text: string, part: string): number {
  let count = 0;
  for (let at = text.indexOf(part); at >= 0; at = text.indexOf(part, at + part.length)) count++;
  return count;
}
