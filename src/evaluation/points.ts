import { IM_END, IM_START, type Segment, SYSTEM_ROLE, unescapeControl } from "../dataset/chatml.ts";
import type { Example } from "../dataset/examples.ts";
import type { PromptTurn } from "../inference/prompt.ts";
import { splitReply } from "../inference/prompt.ts";
import { ExampleFormatError } from "./evaluation.errors.ts";

/** An example read back into what the prompt builder takes: its header line and its turns. */
export type ParsedExample = {
  id: string;
  chatId: number;
  startedAt: string;
  header: string | undefined;
  turns: (PromptTurn & { trained: boolean })[];
};

/** One held-out turn to generate: the session before it, who speaks, and what they really wrote. */
export type EvalPoint = {
  exampleId: string;
  chatId: number;
  turnIndex: number;
  header: string;
  context: PromptTurn[];
  speaker: string;
  real: string[];
};

/** Reads an example's segments back into header and turns (pure; the inverse of renderSegments). */
export function parseExample(example: Example): ParsedExample {
  let header: string | undefined;
  const turns: ParsedExample["turns"] = [];
  let speaker: string | undefined;
  // A trained turn with context lines (markers) comes in several segments; its last ends in IM_END.
  let body = "";
  let trained = false;
  for (const segment of example.segments as Segment[]) {
    const text = segment.text;
    if (speaker === undefined && text === "\n") continue;
    if (speaker === undefined && text.startsWith(`${IM_START}${SYSTEM_ROLE}\n`)) {
      header = unescapeControl(text.slice(`${IM_START}${SYSTEM_ROLE}\n`.length, -IM_END.length));
    } else if (speaker === undefined && text.startsWith(IM_START) && text.endsWith("\n")) {
      speaker = text.slice(IM_START.length, -1);
    } else if (speaker !== undefined && !text.startsWith(IM_START)) {
      body += text;
      trained ||= segment.train;
      if (!text.endsWith(IM_END)) continue;
      turns.push({ speaker, messages: splitReply(body), trained });
      speaker = undefined;
      body = "";
      trained = false;
    } else {
      throw new ExampleFormatError(
        `example ${example.id}: unexpected segment ${JSON.stringify(text.slice(0, 40))}`,
      );
    }
  }
  return { id: example.id, chatId: example.chat_id, startedAt: example.started_at, header, turns };
}

/**
 * Every trained turn of `speaker` in a held-out example, with the turns before it as context.
 * Context-only turns (carried over when a long session was split) were evaluated in the part before.
 */
export function evalPoints(example: ParsedExample, speaker: string): EvalPoint[] {
  const points: EvalPoint[] = [];
  example.turns.forEach((turn, index) => {
    if (turn.speaker !== speaker || !turn.trained || index === 0) return;
    points.push({
      exampleId: example.id,
      chatId: example.chatId,
      turnIndex: index,
      header: example.header ?? "",
      context: example.turns.slice(0, index).map(({ speaker, messages }) => ({ speaker, messages })),
      speaker,
      real: turn.messages,
    });
  });
  return points;
}

/** A fixed seed per point, the same for every model, so their samples differ only by the model. */
export function pointSeed(point: Pick<EvalPoint, "exampleId" | "turnIndex">, seed: number): number {
  let hash = 2166136261 ^ seed;
  for (const char of `${point.exampleId}#${point.turnIndex}`) {
    hash = Math.imul(hash ^ char.charCodeAt(0), 16777619);
  }
  return (hash >>> 0) % 2_147_483_647;
}
