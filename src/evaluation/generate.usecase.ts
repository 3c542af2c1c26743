import path from "node:path";
import type { App } from "../app.ts";
import type { Config } from "../config/config.ts";
import { CANARY_QUESTION, canarySentence } from "../dataset/canary.ts";
import { exampleSessionStart } from "../dataset/examples.ts";
import type { Manifest } from "../dataset/manifest.ts";
import { ensureIndexed } from "../dataset/memory-examples.ts";
import type { PlantedCanary } from "../history/memory/canary-plant.ts";
import {
  chatScope,
  type ExcludedSpan,
  type RecalledWindow,
  type Retriever,
} from "../history/memory/retriever.ts";
import { buildConversationContext, contextSettings } from "../inference/conversation-context.ts";
import { Conversations } from "../inference/conversations.ts";
import type { AdapterChoice, Engine } from "../inference/engine.ts";
import { type Prompt, type PromptTurn, promptText } from "../inference/prompt.ts";
import { tunedChoice } from "../inference/serving.ts";
import { EvaluationError } from "./evaluation.errors.ts";
import type { EvaluatedModel } from "./evaluation.tables.ts";
import { type EvalPoint, evalPoints, type ParsedExample, parseExample, pointSeed } from "./points.ts";
import type { EvaluationPlan } from "./summary.ts";

export type GenerateOptions = {
  datasetId?: number | undefined;
  /** Whose turns are generated (a name as the dataset writes it); default: the owner. */
  speaker?: string | undefined;
  /** Whose turns, by person id (`twin eval --speaker` after the person lookup); wins over `speaker`. */
  speakerId?: number | undefined;
  /** Adapters to evaluate (ids); default: the active one, if any. */
  adapterIds?: number[] | undefined;
  /** At most this many held-out turns, a fixed random subset (0: all). */
  maxTurns?: number | undefined;
  seed?: number | undefined;
  signal?: AbortSignal | undefined;
  onProgress?: ((done: number, total: number, model: string) => void) | undefined;
  /** Told once, before the first turn, what is generated (`planLine` words it). */
  onPlan?: ((plan: EvaluationPlan) => void) | undefined;
  /**
   * With memory on: plant a fresh canary in this chat's history, where memory searches, for the
   * evaluation's length (`twin eval --memory-canary`); a dataset's own canary is planted there too.
   */
  memoryCanaryChat?: number | undefined;
  /** Leakage probes per model when there is a canary (default 20). */
  probes?: number | undefined;
};

/**
 * What the history-store canary showed: per probe asked by a model with memory from a session after
 * the canary (earlier ones could not recall it), did the secret reach its prompt, its reply.
 */
export type MemoryCanaryFigures = {
  chatId: number;
  planted: number;
  probes: number;
  promptLeaks: number;
  replyLeaks: number;
};

/** The models compared: the base alone, the base with real history (the prompting baseline), each adapter. */
export function evaluatedModels(adapters: { id: number; name: string }[]): EvaluatedModel[] {
  return [
    { key: "base", label: "base model", adapterId: null, history: false },
    { key: "base+history", label: "base model + real history", adapterId: null, history: true },
    ...adapters.map((a) => ({ key: `adapter:${a.id}`, label: a.name, adapterId: a.id, history: true })),
  ];
}

/**
 * Real turns of the same chat before `before`, oldest first: the history the bot would show too.
 * Only the latest `maxCharacters` of it (the prompt builder then trims to the exact token budget;
 * counting tokens over years of history for every turn would cost more than generating).
 */
export function chatHistory(
  examples: ParsedExample[],
  chatId: number,
  before: string,
  maxCharacters = Number.POSITIVE_INFINITY,
): PromptTurn[] {
  const turns = examples
    .filter((e) => e.chatId === chatId && e.startedAt < before)
    .sort((a, b) => a.startedAt.localeCompare(b.startedAt))
    .flatMap((e) => e.turns.map(({ speaker, messages }) => ({ speaker, messages })));
  let characters = 0;
  let first = turns.length;
  while (first > 0 && characters < maxCharacters) {
    first--;
    characters += (turns[first] as PromptTurn).messages.reduce((sum, m) => sum + m.length + 5, 0);
  }
  return turns.slice(first);
}

/**
 * When the session holding the first of a chat's last `turns` turns before `before` started (pure):
 * with `before`, where the recent history `chatHistory` gives lies in its chat.
 */
export function historyStart(
  examples: ParsedExample[],
  chatId: number,
  before: string,
  turns: number,
): string | undefined {
  if (turns <= 0) return undefined;
  const earlier = examples
    .filter((e) => e.chatId === chatId && e.startedAt < before)
    .sort((a, b) => b.startedAt.localeCompare(a.startedAt));
  let counted = 0;
  for (const example of earlier) {
    counted += example.turns.length;
    if (counted >= turns) return example.startedAt;
  }
  return earlier.at(-1)?.startedAt;
}

/**
 * The canary's messages into the history store and into memory's index (waiting for an indexer
 * already at work); removed again by the caller. Refused when nothing could be planted.
 */
async function plantInHistory(
  repositories: Pick<App["repositories"], "memory">,
  canary: { chatId: number; sentence: string },
  ownerId: number,
) {
  const planted = await repositories.memory.plantCanary({
    chatId: canary.chatId,
    ownerId,
    sentence: canary.sentence,
  });
  try {
    if (planted.messageIds.length === 0)
      throw new EvaluationError(
        `the canary could not be planted: the owner wrote nothing in chat ${canary.chatId}`,
      );
    await ensureIndexed(repositories.memory, {});
  } catch (error) {
    await repositories.memory.removeCanary(planted);
    throw error;
  }
  return planted;
}

/** Whether a probe's session began after the planted canary. */
function after(planted: PlantedCanary | undefined, point: EvalPoint): boolean {
  const start = exampleSessionStart(point.exampleId);
  return planted?.firstAt !== undefined && start !== undefined && start > planted.firstAt.getTime();
}

/** Leakage probes per model, when the dataset has a canary. */
const PROBES = 20;

/** Who asks a probe's question: the last other speaker of the session, as a friend would. */
function asker(point: EvalPoint): string {
  return [...point.context].reverse().find((t) => t.speaker !== point.speaker)?.speaker ?? "Friend";
}

/** A fixed random subset of `limit` points (all when limit is 0), in their original order. */
export function samplePoints(points: EvalPoint[], limit: number, seed: number): EvalPoint[] {
  if (!limit || points.length <= limit) return points;
  const ranked = points.map((point, index) => ({ index, key: pointSeed(point, seed) }));
  ranked.sort((a, b) => a.key - b.key);
  const chosen = new Set(ranked.slice(0, limit).map((r) => r.index));
  return points.filter((_, index) => chosen.has(index));
}

/**
 * Generates every held-out turn of the speaker with each model, from the real preceding context,
 * with a fixed seed per turn; stores real and generated side by side. Returns the evaluation id.
 */
export async function generateSamples(
  deps: Pick<App, "repositories"> & {
    engine: Engine;
    config: Config;
    /** The bot's own, so evaluation shares the sequences fairly with live chats; default: new. */
    conversations?: Conversations | undefined;
    /** Memory, for the models with history when TWIN_MEMORY is on; without it nothing is recalled. */
    retriever?: Retriever | undefined;
  },
  options: GenerateOptions = {},
): Promise<number> {
  const { repositories, engine, config } = deps;
  const seed = options.seed ?? 0;
  const dataset = await repositories.dataset.readyDataset(options.datasetId);
  if (!dataset) {
    throw new EvaluationError(
      options.datasetId
        ? `dataset ${options.datasetId} is not ready`
        : "there is no dataset yet: `twin dataset`",
    );
  }
  const manifest = dataset.manifest as Manifest;
  // The dataset's own gap and the config's budget and memory: the prompts the bot would build.
  const settings = contextSettings(config, manifest, (await repositories.history.getOwner())?.timeZone);
  const named =
    options.speakerId === undefined ? undefined : manifest.speakers.find((s) => s.id === options.speakerId);
  if (options.speakerId !== undefined && !named)
    throw new EvaluationError(`person ${options.speakerId} has no trained turn in dataset ${dataset.id}`);
  const speaker = named?.name ?? options.speaker ?? manifest.owner.name;
  const examples = (await repositories.dataset.examples(dataset.id)).map((e) => ({
    split: e.split,
    parsed: parseExample(e),
  }));
  const all = examples.map((e) => e.parsed);
  const heldOut = examples.filter((e) => e.split === "eval").flatMap((e) => evalPoints(e.parsed, speaker));
  const points = samplePoints(heldOut, options.maxTurns ?? 0, seed);
  // With memory on, the canary is also planted where memory searches: the history store (a dataset's
  // own canary, else a fresh one in --memory-canary's chat). The privacy rule must keep it there.
  const retriever = deps.retriever ?? repositories.memory.retriever;
  const historyCanary =
    settings.memory.enabled && retriever && (manifest.canary || options.memoryCanaryChat !== undefined)
      ? {
          chatId: manifest.canary?.chatId ?? (options.memoryCanaryChat as number),
          ...(manifest.canary ?? canarySentence()),
        }
      : undefined;
  // Leakage probes: in sessions of chats other than the canary's (any split: the question is new
  // either way), someone asks for the secret.
  const canary = manifest.canary ?? historyCanary;
  const probes = canary
    ? samplePoints(
        examples
          .filter((e) => e.parsed.chatId !== canary.chatId)
          .flatMap((e) => evalPoints(e.parsed, speaker)),
        options.probes ?? PROBES,
        seed + 1,
      )
    : [];
  if (points.length === 0) {
    const names = [...new Set(all.flatMap((e) => e.turns.map((t) => t.speaker)))].slice(0, 8);
    throw new EvaluationError(
      `dataset ${dataset.id} has no held-out trained turn of ${speaker} (speakers there include ${names.join(", ")})`,
    );
  }
  const { runs } = repositories;
  const known = await runs.listAdapters();
  const wanted = options.adapterIds ?? known.filter((a) => a.active).map((a) => a.id);
  const adapters = wanted.map((id) => {
    const adapter = known.find((a) => a.id === id);
    if (!adapter) throw new EvaluationError(`there is no adapter ${id} (twin model list shows them)`);
    return adapter;
  });
  const choices = new Map<number, AdapterChoice>();
  for (const adapter of adapters) {
    choices.set(
      adapter.id,
      await tunedChoice(adapter, {
        runs,
        adapterDir: path.join(config.dataDir, "adapters"),
        modelStore: config.training.modelStore,
        scale: config.inference.adapterScale,
        checkAdapter: (file) => engine.checkAdapter(file),
        checkFullModel: (file) => engine.checkFullModel(file),
      }),
    );
  }
  const models = evaluatedModels(adapters);
  options.onPlan?.({
    speaker,
    heldOut: heldOut.length,
    turns: points.length,
    requested: options.maxTurns,
    probes: probes.length,
    models: models.map((m) => m.label),
  });
  const evaluationsRepository = repositories.evaluations;
  const evaluationId = await evaluationsRepository.create({
    datasetId: dataset.id,
    speaker,
    models,
    settings: {
      seed,
      maxTurns: options.maxTurns ?? 0,
      sampling: config.inference.sampling,
      turns: points.length,
    },
    status: "generating",
  });

  const examplesById = new Map(all.map((e) => [e.id, e]));
  // One history per session, cut to fit its longest prompt: every turn of the session then starts
  // with the same prefix, and the sequence evaluates only the turns added since the last one.
  const longest = new Map<string, EvalPoint>();
  for (const point of [...points, ...probes]) {
    const known = longest.get(point.exampleId);
    if (!known || point.context.length > known.context.length) longest.set(point.exampleId, point);
  }
  type Recent = { turns: PromptTurn[]; spans: ExcludedSpan[] };
  const histories = new Map<string, Recent>();
  const historyOf = async (point: EvalPoint): Promise<Recent> => {
    const cached = histories.get(point.exampleId);
    if (cached) return cached;
    const example = examplesById.get(point.exampleId) as ParsedExample;
    // A token rarely spans more than 8 characters: that many per allowed token is enough text.
    const full = chatHistory(all, point.chatId, example.startedAt, settings.maxTokens * 8);
    const widest = longest.get(point.exampleId) ?? point;
    // Fitted without memory: what memory recalls differs from turn to turn, the history must not.
    const fitted = await buildConversationContext(
      { countTokens: engine.countTokens },
      { ...settings, memory: { enabled: false, windows: 0 } },
      {
        header: widest.header,
        recent: full,
        recentSpans: [],
        live: [...widest.context, { speaker: "x", messages: [CANARY_QUESTION] }],
        replyAs: widest.speaker,
        scope: chatScope(point.chatId),
      },
    );
    const start = historyStart(all, point.chatId, example.startedAt, fitted.recent.length);
    const recent = {
      turns: fitted.recent,
      spans: start ? [{ chatId: point.chatId, from: new Date(start), to: new Date(example.startedAt) }] : [],
    };
    histories.set(point.exampleId, recent);
    return recent;
  };
  // Names as the dataset writes them, so recalled messages name people as the sessions do.
  const names = new Map([
    [manifest.owner.id, manifest.owner.name],
    ...manifest.speakers.map((s) => [s.id, s.name] as const),
  ]);
  // What memory recalls for a turn is the same for every model: asked once per turn.
  const recalls = new Map<string, Promise<RecalledWindow[]>>();
  const recallOnce = (key: string): Retriever | undefined =>
    retriever && {
      retrieve: (query) => {
        const known = recalls.get(key) ?? retriever.retrieve(query);
        recalls.set(key, known);
        return known;
      },
    };
  const promptFor = async (point: EvalPoint, probe: boolean, withHistory: boolean): Promise<Prompt> => {
    const example = examplesById.get(point.exampleId) as ParsedExample;
    const recent = withHistory ? await historyOf(point) : { turns: [], spans: [] };
    const { prompt } = await buildConversationContext(
      {
        // The base model alone is the baseline without any context: no history, no memory.
        retriever: withHistory ? recallOnce(`${point.exampleId}#${point.turnIndex}#${probe}`) : undefined,
        countTokens: engine.countTokens,
      },
      settings,
      {
        header: point.header,
        recent: recent.turns,
        recentSpans: recent.spans,
        live: probe
          ? [...point.context, { speaker: asker(point), messages: [CANARY_QUESTION] }]
          : point.context,
        replyAs: point.speaker,
        scope: chatScope(point.chatId),
        before: new Date(example.startedAt),
        names,
      },
    );
    return prompt;
  };
  const conversations = deps.conversations ?? new Conversations(engine);
  let done = 0;
  let planted: PlantedCanary | undefined;
  let figures: MemoryCanaryFigures | undefined;
  try {
    if (historyCanary) {
      planted = await plantInHistory(repositories, historyCanary, manifest.owner.id);
      figures = {
        chatId: planted.chatId,
        planted: planted.messageIds.length,
        probes: 0,
        promptLeaks: 0,
        replyLeaks: 0,
      };
    }
    const jobs = [
      ...points.map((point) => ({ point, probe: false })),
      ...probes.map((point) => ({ point, probe: true })),
    ];
    for (const model of models) {
      const adapter = model.adapterId === null ? undefined : choices.get(model.adapterId);
      // One conversation (one sequence) per model, so live chats keep theirs; consecutive turns of a
      // session reuse its prefix.
      const key = `eval:${model.key}`;
      for (const { point, probe } of jobs) {
        if (options.signal?.aborted) throw new EvaluationError("evaluation cancelled");
        const prompt = await promptFor(point, probe, model.history);
        // A probe asked of a model with history is asked with memory: does the secret reach it? Only
        // probes from sessions after the canary count: memory never recalls what came later.
        const counted =
          probe && model.history && historyCanary && after(planted, point) ? figures : undefined;
        if (counted && historyCanary) {
          counted.probes++;
          if (promptText(prompt.pieces).includes(historyCanary.secret)) counted.promptLeaks++;
        }
        const pointSeedValue = pointSeed(point, seed);
        const reply = await conversations
          .reply(key, prompt, adapter, { sampling: { seed: pointSeedValue } })
          .catch((error: Error) => {
            if (error.name === "EmptyReplyError") return { messages: [] as string[] };
            throw error;
          });
        if (counted && historyCanary && reply.messages.join("\n").includes(historyCanary.secret))
          counted.replyLeaks++;
        await evaluationsRepository.addSample({
          evaluationId,
          model: model.key,
          exampleId: point.exampleId,
          chatId: point.chatId,
          turnIndex: point.turnIndex,
          context: point.context,
          real: point.real,
          generated: reply.messages,
          seed: pointSeedValue,
          probe,
        });
        options.onProgress?.(++done, jobs.length * models.length, model.label);
      }
      await conversations.reset(key);
    }
    if (figures) await evaluationsRepository.addSettings(evaluationId, { memoryCanary: figures });
    await evaluationsRepository.markReporting(evaluationId);
  } catch (error) {
    await evaluationsRepository.markFailed(evaluationId, (error as Error).message);
    throw error;
  } finally {
    if (planted) await repositories.memory.removeCanary(planted);
  }
  return evaluationId;
}
