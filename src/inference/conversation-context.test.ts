import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { loadConfig } from "../config/config.ts";
import { headerLine } from "../dataset/examples.ts";
import { memoryTurnText } from "../dataset/memory-turn.ts";
import { SESSION_GAP_MS } from "../dataset/sessions.ts";
import type { RecalledWindow, RetrievalQuery, Retriever } from "../history/memory/retriever.ts";
import {
  buildConversationContext,
  type ContextSettings,
  type ConversationRequest,
  contextSettings,
} from "./conversation-context.ts";
import { buildPrompt, promptText } from "./prompt.ts";

/** About a token per four characters, as the dataset's estimate counts. */
const countTokens = (text: string) => Math.ceil(text.length / 4);

/** A retriever that gives back what it was set up with and keeps the queries it was asked. */
class FakeRetriever implements Retriever {
  readonly queries: RetrievalQuery[] = [];
  constructor(private readonly windows: RecalledWindow[]) {}
  async retrieve(query: RetrievalQuery): Promise<RecalledWindow[]> {
    this.queries.push(query);
    return this.windows.slice(0, query.limit);
  }
}

const settings = (memory: ContextSettings["memory"], maxTokens = 10_000): ContextSettings => ({
  gapMs: SESSION_GAP_MS,
  timeZone: "Europe/Berlin",
  maxTokens,
  memory,
});
const memoryOn = { enabled: true, windows: 2 };
const memoryOff = { enabled: false, windows: 2 };

const chat = { id: 5, type: "personal_chat", title: null };
const request: ConversationRequest = {
  header: { chat, participants: ["Bob", "Alice"], startedAt: Date.UTC(2024, 4, 1, 8, 30) },
  recent: [
    { speaker: "Bob", messages: ["old news"] },
    { speaker: "Alice", messages: ["old reply"] },
  ],
  recentSpans: [{ chatId: 5, from: new Date("2024-04-30T10:00:00Z"), to: new Date("2024-04-30T10:05:00Z") }],
  live: [
    { speaker: "Bob", messages: ["first"] },
    { speaker: "Alice", messages: ["second", "more"] },
    { speaker: "Bob", messages: ["third"] },
    { speaker: "Alice", messages: ["fourth"] },
    { speaker: "Bob", messages: ["do you remember the lake trip?"] },
  ],
  replyAs: "Alice",
  scope: { kind: "friend", personId: 5 },
  before: new Date("2024-05-01T00:00:00Z"),
  names: new Map([[5, "Bob"]]),
};
const lakeTrip: RecalledWindow = {
  chatId: 5,
  chatTitle: null,
  chatType: "personal_chat",
  hitMessageId: 11,
  via: "text",
  score: 0.9,
  messages: [
    {
      messageId: 10,
      senderId: 5,
      senderName: "Robert",
      sentAt: new Date("2023-07-01T16:00:00Z"),
      text: "lake?",
    },
    {
      messageId: 11,
      senderId: 1,
      senderName: "Alice",
      sentAt: new Date("2023-07-01T16:01:00Z"),
      text: "the lake <|im_end|>",
    },
  ],
};

/** The prompt the callers built before memory: header, recent history, live, the open turn. */
const withoutMemoryRequest = () => ({
  header: headerLine(chat, ["Bob", "Alice"], Date.UTC(2024, 4, 1, 8, 30), "Europe/Berlin"),
  history: request.recent,
  live: request.live,
  replyAs: "Alice",
  maxTokens: 10_000,
  countTokens,
});
const withoutMemory = () => buildPrompt(withoutMemoryRequest());

describe("the conversation context", () => {
  it("takes the gap and memory from the ready dataset's manifest, the zone and budget from the config", () => {
    const config = loadConfig({ TWIN_CONTEXT_SIZE: "2048", TWIN_MAX_REPLY_TOKENS: "48", TWIN_MEMORY: "on" });
    assert.deepEqual(
      contextSettings(config, { settings: { maxTokens: 1024, gapMinutes: 30 } }, "Asia/Tokyo"),
      {
        gapMs: 30 * 60_000,
        timeZone: "Asia/Tokyo",
        maxTokens: 2000,
        memory: { enabled: true, windows: 3, maxTokens: 512, queryTurns: 3 },
      },
    );
    // A model trained with memory is served with the memory it was trained with, unless the config says.
    const trained = {
      settings: {
        maxTokens: 1024,
        memory: { enabled: true, windows: 2, queryTurns: 4, maxTokens: 300, recentMessages: 600 },
      },
    };
    assert.deepEqual(contextSettings(loadConfig({}), trained).memory, {
      enabled: true,
      windows: 2,
      maxTokens: 300,
      queryTurns: 4,
    });
    assert.equal(contextSettings(loadConfig({ TWIN_MEMORY: "off" }), trained).memory.enabled, false);
    assert.equal(contextSettings(loadConfig({}), { settings: { maxTokens: 1024 } }).memory.enabled, false);
    assert.equal(
      contextSettings(config, undefined, "UTC").gapMs,
      SESSION_GAP_MS,
      "no dataset: the default gap",
    );
    assert.equal(
      contextSettings(loadConfig({ TWIN_TZ: "Europe/Berlin" }), undefined, "Asia/Tokyo").timeZone,
      "Europe/Berlin",
      "TWIN_TZ wins over the stored zone",
    );
  });

  it("with memory off, or nothing recalled, builds the very prompt the callers built before", async () => {
    const expected = withoutMemory();
    const retriever = new FakeRetriever([lakeTrip]);
    const off = await buildConversationContext({ retriever, countTokens }, settings(memoryOff), request);
    assert.deepEqual(off.prompt, expected, "memory off");
    assert.equal(retriever.queries.length, 0, "off: memory is never asked");
    const none = await buildConversationContext(
      { retriever: new FakeRetriever([]), countTokens },
      settings(memoryOn),
      request,
    );
    assert.deepEqual(none.prompt, expected, "on, nothing recalled");
    const noRetriever = await buildConversationContext({ countTokens }, settings(memoryOn), request);
    assert.deepEqual(noRetriever.prompt, expected, "on, no retriever wired");
    const noWindows = await buildConversationContext(
      { retriever, countTokens },
      settings({ enabled: true, windows: 0 }),
      request,
    );
    assert.deepEqual(noWindows.prompt, expected, "on, no windows wanted");
    assert.equal(retriever.queries.length, 0);
    assert.deepEqual(
      [none.header, none.memory, none.recent, none.live, none.replyAs],
      ["Telegram chat · Bob, Alice · 2024-05-01 Wed 10:30", [], request.recent, request.live, "Alice"],
      "the pieces, the header in the owner's zone",
    );
    const ready = await buildConversationContext({ countTokens }, settings(memoryOff), {
      ...request,
      header: "Telegram chat · Bob, Alice · 2020-01-01 Wed 00:00",
    });
    assert.equal(
      ready.header,
      "Telegram chat · Bob, Alice · 2020-01-01 Wed 00:00",
      "a dataset's own header line",
    );
  });

  it("asks memory with the last three live turns, the scope, the spans and the limit, and shows it after the header", async () => {
    const retriever = new FakeRetriever([lakeTrip]);
    const built = await buildConversationContext({ retriever, countTokens }, settings(memoryOn), request);
    assert.deepEqual(retriever.queries, [
      {
        text: ["third", "fourth", "do you remember the lake trip?"],
        scope: { kind: "friend", personId: 5 },
        exclude: request.recentSpans,
        limit: 2,
        before: request.before,
      },
    ]);
    assert.deepEqual(built.memory, [lakeTrip]);
    const memory = memoryTurnText([lakeTrip], {
      timeZone: "Europe/Berlin",
      nameOf: (id) => request.names?.get(id),
    });
    assert.match(memory, /^Earlier · Telegram chat · Bob, Alice · 2023-07-01 Sat 18:00\nBob: >>> lake\?/);
    const text = promptText(built.prompt.pieces);
    const plain = promptText(withoutMemory().pieces);
    const headerEnd = plain.indexOf("<|im_start|>Bob");
    assert.equal(
      text,
      `${plain.slice(0, headerEnd)}<|im_start|>system\n${memory.replace("<|im_end|>", "<\\|im_end|>")}<|im_end|>\n${plain.slice(headerEnd)}`,
      "header, memory, recent history, live, open turn",
    );
    assert.ok(
      built.prompt.pieces.every((piece) => piece.special || !piece.text.includes("<|")),
      "recalled text never carries a control string",
    );
  });

  it("over budget drops the recent history first, then the memory, then live turns, never the latest", async () => {
    const retriever = new FakeRetriever([lakeTrip]);
    const build = (maxTokens: number) =>
      buildConversationContext({ retriever, countTokens }, settings(memoryOn, maxTokens), request);
    const full = (await build(10_000)).prompt.tokens;
    const noHistory = buildPrompt({ ...withoutMemoryRequest(), history: [] }).tokens;
    const memoryCost = full - withoutMemory().tokens;

    const someHistory = await build(full - 1);
    assert.ok(someHistory.prompt.droppedHistoryTurns > 0, "history goes first");
    assert.equal(someHistory.prompt.droppedMemory, false, "the memory stays while history can go");
    assert.deepEqual(someHistory.memory, [lakeTrip]);
    assert.deepEqual(someHistory.recent, request.recent.slice(someHistory.prompt.droppedHistoryTurns));

    const noMemory = await build(noHistory + memoryCost - 1);
    assert.equal(noMemory.prompt.droppedHistoryTurns, request.recent.length);
    assert.equal(noMemory.prompt.droppedMemory, true, "then the memory");
    assert.equal(noMemory.prompt.droppedLiveTurns, 0, "before any live turn");
    assert.deepEqual([noMemory.memory, noMemory.recent], [[], []]);
    assert.ok(!promptText(noMemory.prompt.pieces).includes("Earlier ·"));

    const latestOnly = buildPrompt({
      ...withoutMemoryRequest(),
      history: [],
      live: request.live.slice(-1),
    }).tokens;
    const tiny = await build(latestOnly);
    assert.equal(tiny.prompt.droppedMemory, true);
    assert.equal(tiny.prompt.droppedLiveTurns, request.live.length - 1, "live turns last, the latest kept");
    assert.deepEqual(tiny.live, request.live.slice(-1));
  });
});
