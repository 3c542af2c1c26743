/**
 * The training format — the one source of truth for prompts (pure). ChatML with the speaker's
 * name as the role, each message on its own line after `>>> `, turns joined by one newline:
 *
 *   <|im_start|>Alexander Smirnov
 *   >>> yeah same
 *   >>> you still going with the same idea?<|im_end|>
 *
 * An example is a list of segments; joined they give the rendered text. The role header is never
 * trained; a turn's text and its `<|im_end|>` are trained when the loss policy selects the speaker;
 * the newline between turns never is.
 */

export const FORMAT_VERSION = 1;
export const IM_START = "<|im_start|>";
export const IM_END = "<|im_end|>";
export const MESSAGE_PREFIX = ">>> ";
export const SYSTEM_ROLE = "system";

export type Segment = { text: string; train: boolean; speaker?: string };

export type RenderTurn = { speaker: string; messages: string[]; train: boolean };

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
    segments.push({ text: turnBody(turn.messages), train: turn.train, speaker: turn.speaker });
  }
  return segments;
}

export function joinSegments(segments: Segment[]): string {
  let text = "";
  for (const segment of segments) text += segment.text;
  return text;
}
