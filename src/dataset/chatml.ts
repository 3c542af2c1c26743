/**
 * The training format — the one source of truth for prompts (pure). ChatML with the speaker's
 * name as the role, each message on its own line after `>>> `, turns joined by one newline:
 *
 *   <|im_start|>Alexander Smirnov
 *   >>> yeah same
 *   >>> you still going with the same idea?<|im_end|>
 *
 * An example is a list of segments; joined they give the rendered text. The role header is never
 * trained; a turn's text and its `<|im_end|>` are trained when the loss policy selects the speaker,
 * less its context lines (markers, forwarded text); the newline between turns never is.
 */

/** 2: markers (markers.ts) and trained turns split into segments around their context lines. */
export const FORMAT_VERSION = 2;
export const IM_START = "<|im_start|>";
export const IM_END = "<|im_end|>";
export const MESSAGE_PREFIX = ">>> ";
export const SYSTEM_ROLE = "system";

export type Segment = { text: string; train: boolean; speaker?: string };

export type RenderTurn = {
  speaker: string;
  messages: string[];
  train: boolean;
  /** Lines never trained, even in a trained turn: markers and forwarded text (see markers.ts). */
  contextLines?: ReadonlySet<number> | undefined;
};

/**
 * Keeps message text from ever containing a control string: every `<|` (also `<\|`, `<\\|`, …)
 * gets one more backslash after the `<`. Visible, and undone exactly by `unescapeControl`.
 */
export function escapeControl(text: string): string {
  return text.includes("<") ? text.replace(/<(\\*)\|/g, "<\\$1|") : text;
}

export function unescapeControl(text: string): string {
  return text.replace(/<\\(\\*)\|/g, "<$1|");
}

/** The text of one turn after its role header: its messages, each after `>>> `, then `<|im_end|>`. */
export function turnBody(messages: string[]): string {
  return `${messages.map((m) => MESSAGE_PREFIX + escapeControl(m)).join("\n")}${IM_END}`;
}

/** Renders turns (and an optional header line for the untrained system turn) into segments. */
export function renderSegments(turns: RenderTurn[], header?: string): Segment[] {
  const segments: Segment[] = [];
  if (header !== undefined) {
    segments.push({
      text: `${IM_START}${SYSTEM_ROLE}\n${escapeControl(header)}${IM_END}`,
      train: false,
      speaker: SYSTEM_ROLE,
    });
  }
  for (const turn of turns) {
    if (segments.length > 0) segments.push({ text: "\n", train: false });
    segments.push({ text: `${IM_START}${turn.speaker}\n`, train: false, speaker: turn.speaker });
    segments.push(...bodySegments(turn));
  }
  return segments;
}

/**
 * A turn's body as segments: one, unless a trained turn has context lines; then one per run of
 * lines trained alike, each cut right after a line's newline. A segment after a newline starts
 * at `>>> `, as the body after a role header does, so no token straddles a trained and an untrained
 * segment and the trainer's check (labelled tokens decode to the trained text) still holds.
 */
function bodySegments(turn: RenderTurn): Segment[] {
  const body = turnBody(turn.messages);
  const context = turn.contextLines;
  if (!turn.train || !context || context.size === 0) {
    return [{ text: body, train: turn.train, speaker: turn.speaker }];
  }
  const segments: Segment[] = [];
  turn.messages.forEach((message, index) => {
    const last = index === turn.messages.length - 1;
    const text = `${MESSAGE_PREFIX}${escapeControl(message)}${last ? IM_END : "\n"}`;
    const train = !context.has(index);
    const previous = segments.at(-1);
    if (previous && previous.train === train) previous.text += text;
    else segments.push({ text, train, speaker: turn.speaker });
  });
  return segments;
}

export function joinSegments(segments: Segment[]): string {
  let text = "";
  for (const segment of segments) text += segment.text;
  return text;
}
