import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { RecalledWindow, RetrievalQuery, Retriever } from "../history/memory/retriever.ts";
import { buildConversationContext } from "../inference/conversation-context.ts";
import { promptText } from "../inference/prompt.ts";
import { joinSegments } from "./chatml.ts";
import {
  type ChatStats,
  chatExamples,
  type ExampleSettings,
  emptyChatStats,
  type RecallPlan,
} from "./examples.ts";
import { estimateTokens } from "./length.ts";
import { addMemory, type MemoryCounts } from "./memory-examples.ts";
import { memoryQuery } from "./memory-query.ts";
import { defaultMemorySettings, fitWindows, memoryTurnText, withMemoryTurn } from "./memory-turn.ts";
import type { DatasetMessage } from "./sessions.ts";

const OWNER = 1;
const FRIEND = 2;
const names = new Map([
  [OWNER, "Olga"],
  [FRIEND, "Pavel"],
]);
const chat = { id: FRIEND, type: "personal_chat", title: null };

/** Two sessions a day apart; every message's text is unique, so a query's origin is plain. */
function history(): DatasetMessage[] {
  const lines: [number, string, string][] = [
    [FRIEND, "2024-03-01T18:00:00Z", "f1 is the cat still sick"],
    [FRIEND, "2024-03-01T18:01:00Z", "f2 barsik I mean"],
    [OWNER, "2024-03-01T18:02:00Z", "o1 yes the vet said tomorrow"],
    [FRIEND, "2024-03-01T18:03:00Z", "f3 poor thing"],
    [OWNER, "2024-03-01T18:04:00Z", "o2 he will be fine"],
    [FRIEND, "2024-03-02T18:00:00Z", "f4 how did the vet go"],
    [OWNER, "2024-03-02T18:01:00Z", "o3 antibiotics for a week"],
    [FRIEND, "2024-03-02T18:02:00Z", "f5 good"],
    [OWNER, "2024-03-02T18:03:00Z", "o4 yeah"],
  ];
  return lines.map(([senderId, iso, text], i) => ({
    chatId: chat.id,
    messageId: i + 1,
    senderId,
    sentAt: Date.parse(iso),
    kind: "text",
    text,
    emoji: null,
  }));
}

const settings = (overrides: Partial<ExampleSettings> = {}): ExampleSettings => ({
  gapMinutes: 10,
  media: "tag",
  header: true,
  loss: { kind: "owner" },
  minTurns: 2,
  maxTokens: 1024,
  evalFraction: 0,
  redact: false,
  timeZone: "UTC",
  ...overrides,
});

function build(exampleSettings: ExampleSettings) {
  const plans = new Map<string, RecallPlan>();
  const stats: ChatStats = emptyChatStats();
  const examples = chatExamples(
    chat,
    history(),
    { settings: exampleSettings, names, ownerId: OWNER, recall: { queryTurns: 3, plans } },
    stats,
  );
  return { examples, plans };
}

/** The text of every trained segment's messages, one entry per line. */
const trainedLines = (segments: { text: string; train: boolean }[]) =>
  segments
    .filter((s) => s.train)
    .flatMap((s) => s.text.replace(/<\|im_end\|>$/, "").split("\n"))
    .map((line) => line.replace(/^>>> /, ""));

/** A retriever that records its queries and recalls one window from the day before. */
class RecordingRetriever implements Retriever {
  readonly queries: RetrievalQuery[] = [];
  async retrieve(query: RetrievalQuery): Promise<RecalledWindow[]> {
    this.queries.push(query);
    return [
      {
        chatId: chat.id,
        chatTitle: null,
        chatType: "personal_chat",
        hitMessageId: 1,
        via: "text",
        score: 2,
        messages: [
          {
            messageId: 1,
            senderId: FRIEND,
            senderName: "Pavel",
            sentAt: new Date("2024-03-01T18:00:00Z"),
            text: "f1 is the cat still sick",
          },
          {
            messageId: 3,
            senderId: OWNER,
            senderName: "Olga",
            sentAt: new Date("2024-03-01T18:02:00Z"),
            text: "o1 yes the vet said tomorrow",
          },
        ],
      },
    ];
  }
}

describe("memory in a dataset", () => {
  it("searches only with the turns before an example's first trained turn, never with what it trains", () => {
    for (const loss of [{ kind: "owner" }, { kind: "all" }] as const) {
      const { examples, plans } = build(settings({ loss }));
      assert.ok(examples.length >= 2);
      for (const example of examples) {
        const plan = plans.get(example.id);
        assert.ok(plan, `a plan for ${example.id}`);
        const trained = new Set(trainedLines(example.segments));
        for (const text of plan.query) assert.ok(!trained.has(text), `${example.id}: “${text}” is trained`);
      }
      const [first, second] = examples;
      if (loss.kind === "owner") {
        // Pavel's two turns before Olga's first are the query; nothing of Olga's.
        assert.deepEqual(plans.get(first?.id ?? "")?.query, ["f1 is the cat still sick", "f2 barsik I mean"]);
        assert.deepEqual(plans.get(second?.id ?? "")?.query, ["f4 how did the vet go"]);
      } else {
        // Every turn is trained, the first included: nothing comes before it to search with.
        assert.deepEqual(plans.get(first?.id ?? "")?.query, []);
      }
    }
  });

  it("takes at most the last `queryTurns` turns before the trained one", () => {
    const turns = [["a"], ["b", "c"], ["d"], ["e"], ["f"]].map((messages) => ({ messages }));
    assert.deepEqual(memoryQuery(turns, 4, 3), ["b", "c", "d", "e"]);
    assert.deepEqual(memoryQuery(turns, 1, 3), ["a"]);
    assert.deepEqual(memoryQuery(turns, 0, 3), []);
  });

  it("recalls only from before the session and outside the recent history, in the chat's scope", async () => {
    const { examples, plans } = build(settings());
    const retriever = new RecordingRetriever();
    const recentAsked: [number, string, number][] = [];
    const counts: MemoryCounts = { examples: 0, windows: 0, tokens: 0 };
    const memory = defaultMemorySettings({ enabled: true, windows: 3, maxTokens: 512 });
    const withMemory = await addMemory(examples, plans, {
      chat,
      memory,
      retriever,
      recentSince: async (chatId, before, count) => {
        recentAsked.push([chatId, before.toISOString(), count]);
        return new Date("2024-03-01T17:00:00Z");
      },
      names,
      timeZone: "UTC",
      counts,
    });
    assert.equal(retriever.queries.length, examples.length);
    retriever.queries.forEach((query, i) => {
      const plan = plans.get(examples[i]?.id ?? "") as RecallPlan;
      assert.equal(query.before?.getTime(), plan.sessionStartedAt, "nothing from the session on");
      assert.deepEqual(query.scope, { kind: "friend", personId: FRIEND });
      assert.deepEqual(query.exclude, [
        { chatId: FRIEND, from: new Date("2024-03-01T17:00:00Z"), to: new Date(plan.sessionEndedAt) },
      ]);
      assert.equal(query.limit, 3);
    });
    assert.deepEqual(
      recentAsked.map(([, , count]) => count),
      examples.map(() => 600),
      "the recent history a prompt shows: the latest 600 messages",
    );
    assert.deepEqual(counts, {
      examples: examples.length,
      windows: examples.length,
      tokens: counts.tokens,
    });
    // The trained segments are untouched: the memory arm learns exactly the same tokens.
    withMemory.forEach((example, i) => {
      const plain = examples[i];
      assert.deepEqual(
        example.segments.filter((s) => s.train),
        plain?.segments.filter((s) => s.train),
      );
      assert.equal(example.id, plain?.id);
    });
  });

  it("renders the memory turn the server renders, where the prompt has it", async () => {
    const { examples, plans } = build(settings());
    const retriever = new RecordingRetriever();
    const [example] = await addMemory(examples.slice(1), plans, {
      chat,
      memory: defaultMemorySettings({ enabled: true, windows: 3, maxTokens: 512 }),
      retriever,
      recentSince: async () => undefined,
      names,
      timeZone: "UTC",
      counts: { examples: 0, windows: 0, tokens: 0 },
    });
    const [header, newline, memory] = example?.segments ?? [];
    assert.equal(header?.speaker, "system");
    assert.equal(newline?.text, "\n");
    assert.equal(memory?.train, false);
    // The server's prompt for the same turn, header and recalled window: the same text up to the reply.
    const { prompt } = await buildConversationContext(
      { retriever, countTokens: estimateTokens },
      {
        gapMs: 600_000,
        timeZone: "UTC",
        maxTokens: 4096,
        memory: { enabled: true, windows: 3, maxTokens: 512 },
      },
      {
        header: header?.text.replace(/^<\|im_start\|>system\n/, "").replace(/<\|im_end\|>$/, "") ?? "",
        recent: [],
        recentSpans: [],
        live: [{ speaker: "Pavel", messages: ["f4 how did the vet go"] }],
        replyAs: "Olga",
        scope: { kind: "friend", personId: FRIEND },
        names,
      },
    );
    const served = promptText(prompt.pieces);
    const trainedOn = joinSegments(example?.segments ?? []);
    assert.ok(trainedOn.startsWith(served.slice(0, served.lastIndexOf("<|im_start|>Olga"))), served);
  });

  it("keeps the memory turn within its budget, the best windows first", () => {
    const window = (score: number, text: string): RecalledWindow => ({
      chatId: 5,
      chatTitle: null,
      chatType: "personal_chat",
      hitMessageId: score,
      via: "text",
      score,
      messages: [
        { messageId: score, senderId: 5, senderName: "Pavel", sentAt: new Date(score * 1000), text },
      ],
    });
    const windows = [window(1, "weak ".repeat(40)), window(3, "strong"), window(2, "middle ".repeat(10))];
    const cost = (kept: readonly RecalledWindow[]) =>
      estimateTokens(memoryTurnText(kept, { timeZone: "UTC" }));
    const all = cost(windows);
    assert.deepEqual(fitWindows(windows, all, cost), windows, "everything fits: nothing goes, order kept");
    const two = cost([windows[1] as RecalledWindow, windows[2] as RecalledWindow]);
    assert.deepEqual(
      fitWindows(windows, two, cost).map((w) => w.score),
      [3, 2],
    );
    assert.deepEqual(fitWindows(windows, 1, cost), []);
  });

  it("puts the memory turn after the header, or first without one", () => {
    const { examples } = build(settings());
    const segments = examples[0]?.segments ?? [];
    const withIt = withMemoryTurn(segments, "Earlier · x");
    assert.equal(
      joinSegments(withIt),
      joinSegments(segments).replace(
        "<|im_end|>\n",
        "<|im_end|>\n<|im_start|>system\nEarlier · x<|im_end|>\n",
      ),
    );
    const { examples: bare } = build(settings({ header: false }));
    const first = withMemoryTurn(bare[0]?.segments ?? [], "Earlier · y");
    assert.ok(
      joinSegments(first).startsWith("<|im_start|>system\nEarlier · y<|im_end|>\n<|im_start|>Pavel\n"),
    );
    assert.deepEqual(withMemoryTurn(segments, ""), segments, "nothing recalled: the example as it was");
  });
});
