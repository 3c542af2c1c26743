import { IM_END, MESSAGE_PREFIX, unescapeControl } from "../dataset/chatml.ts";
import { type Example, exampleSessionStart } from "../dataset/examples.ts";
import { chatScope } from "../history/memory/retriever.ts";
import type { SaidBeforeQuery } from "../history/memory/said-before.ts";

/**
 * The "knows the context" probe of `twin eval --compare-memory`: the held-out turns of the owner
 * whose content words the owner had written before, where memory could find them (in the chat's
 * scope, before the session, outside the recent history a prompt already shows). On these turns a
 * model that recalls should gain most; the loss is compared on them alone (trainer: compare_memory.py).
 *
 * The result names turns as the trainer reads them: per example id, ordinals among the example's
 * trained segments (the same in a dataset with memory and without).
 */
export type RecallProbe = { examples: Record<string, number[]>; turns: number; probed: number };

export type RecallProbeDeps = {
  saidBefore: (query: SaidBeforeQuery) => Promise<boolean>;
  recentSince: (chatId: number, before: Date, count: number) => Promise<Date | undefined>;
};

/** A trained segment's message text (pure): its lines without `>>> ` and the closing `<|im_end|>`. */
export function segmentMessages(text: string): string {
  const body = text.endsWith(IM_END) ? text.slice(0, -IM_END.length) : text;
  return body
    .split("\n")
    .map((line) =>
      unescapeControl(line.startsWith(MESSAGE_PREFIX) ? line.slice(MESSAGE_PREFIX.length) : line),
    )
    .join("\n")
    .trim();
}

/** When an example's session began (its id says; else its own start). */
export function sessionStart(example: Pick<Example, "id" | "started_at">): Date {
  return new Date(exampleSessionStart(example.id) ?? example.started_at);
}

export async function recallProbe(
  examples: Example[],
  deps: RecallProbeDeps,
  owner: { id: number; name: string },
  recentMessages: number,
): Promise<RecallProbe> {
  const probe: RecallProbe = { examples: {}, turns: 0, probed: 0 };
  for (const example of examples) {
    if (example.split !== "eval") continue;
    const before = sessionStart(example);
    const from = (await deps.recentSince(example.chat_id, before, recentMessages)) ?? before;
    const chosen: number[] = [];
    let ordinal = -1;
    for (const segment of example.segments) {
      if (!segment.train) continue;
      ordinal++;
      if (segment.speaker !== owner.name) continue;
      const text = segmentMessages(segment.text);
      if (!text) continue;
      probe.turns++;
      const known = await deps.saidBefore({
        senderId: owner.id,
        text,
        chatId: example.chat_id,
        scope: chatScope(example.chat_id),
        before,
        exclude: [{ chatId: example.chat_id, from, to: before }],
      });
      if (known) chosen.push(ordinal);
    }
    if (chosen.length > 0) {
      probe.examples[example.id] = chosen;
      probe.probed += chosen.length;
    }
  }
  return probe;
}
