// llama.cpp's own next-token figures through node-llama-cpp, for parity tests against PyTorch.
import assert from "node:assert/strict";
import type { LlamaModel } from "node-llama-cpp";

/**
 * llama.cpp's next-token distribution (token → probability, whole vocabulary) at every position of
 * `tokens`. `threads`: the context's (node-llama-cpp's default otherwise, which can be more than the
 * cores: on a busy two-core machine one evaluation then took 8 s, against 0.05 s on one thread).
 */
export async function nextTokenProbabilities(
  model: LlamaModel,
  tokens: number[],
  adapter?: string,
  threads?: number,
): Promise<Map<number, number>[]> {
  const context = await model.createContext({
    contextSize: 512,
    ...(adapter ? { lora: { adapters: [{ filePath: adapter }] } } : {}),
    ...(threads ? { threads } : {}),
  });
  try {
    const sequence = context.getSequence();
    // No sampling options: the greedy sampler, which leaves every candidate in place, so the map is
    // the softmax of the raw logits over the whole vocabulary, sorted from the most likely down.
    const steps = await sequence.controlledEvaluate(
      tokens.map(
        (token) =>
          [token, { generateNext: { probabilities: true } }] as [
            number,
            { generateNext: { probabilities: true } },
          ],
      ) as never,
    );
    return steps.map((step) => {
      const probabilities = (step as { next?: { probabilities?: Map<number, number> } })?.next?.probabilities;
      assert.ok(probabilities, "llama.cpp returned probabilities");
      return probabilities;
    });
  } finally {
    await context.dispose();
  }
}

/** llama.cpp's most likely next token at every position of `tokens`, with or without the adapter. */
export async function topTokens(
  model: LlamaModel,
  tokens: number[],
  adapter?: string,
  threads?: number,
): Promise<number[]> {
  return (await nextTokenProbabilities(model, tokens, adapter, threads)).map(
    (probabilities) =>
      [...probabilities.entries()].reduce((best, entry) => (entry[1] > best[1] ? entry : best))[0],
  );
}

/**
 * How often llama.cpp's top-1 is PyTorch's, exactly and within a near tie: where they differ, the
 * gap is PyTorch's log-probability of its own top-1 minus that of llama.cpp's choice (infinite when
 * llama.cpp's choice is outside PyTorch's listed top tokens).
 */
export function topOneAgreement(
  llamaTop: number[][],
  torchTop: number[][],
  torchLikeliest: [number, number][][][],
  nearTieNats: number,
): { positions: number; exact: number; tolerant: number; gaps: number[] } {
  let positions = 0;
  let exact = 0;
  const gaps: number[] = [];
  for (const [i, tokens] of llamaTop.entries()) {
    for (const [p, token] of tokens.entries()) {
      positions++;
      if (token === torchTop[i]?.[p]) {
        exact++;
        continue;
      }
      const top = torchLikeliest[i]?.[p] ?? [];
      const theirs = top.find(([id]) => id === token)?.[1];
      gaps.push(theirs === undefined || !top[0] ? Number.POSITIVE_INFINITY : top[0][1] - theirs);
    }
  }
  return { positions, exact, tolerant: exact + gaps.filter((gap) => gap <= nearTieNats).length, gaps };
}
