import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createRepositories } from "../src/app.ts";
import type { ConversationRef } from "../src/bot/bot-messages.repository.ts";
import { Replier, type ReplyTarget } from "../src/bot/replier.ts";
import { loadConfig } from "../src/config/config.ts";
import { buildDataset, defaultDatasetOptions } from "../src/dataset/build.usecase.ts";
import type { Manifest } from "../src/dataset/manifest.ts";
import { SESSION_GAP_MINUTES, SESSION_GAP_MS } from "../src/dataset/sessions.ts";
import { importDesktopExport } from "../src/history/desktop-import/import.usecase.ts";
import { contextSettings } from "../src/inference/conversation-context.ts";
import { Conversations } from "../src/inference/conversations.ts";
import { Engine, type Reply } from "../src/inference/engine.ts";
import { loadConversationContext } from "../src/inference/history-context.ts";
import { EmptyReplyError, RepeatedReplyError } from "../src/inference/inference.errors.ts";
import { buildPrompt } from "../src/inference/prompt.ts";
import {
  CHATML_ROLES,
  closestRepeat,
  imitatedReplyTokens,
  MAX_GENERATIONS,
  MIN_REPLY_TOKENS,
  RECENT_REPLIES,
  REPEAT_THRESHOLD,
} from "../src/inference/reply-shape.ts";
import { backends, stopEmbedded, type TestDatabase } from "./support/databases.ts";
import { fixtures } from "./support/fixtures.ts";
import { testModel } from "./support/models.ts";

/** What a friend types, one message a turn: an Ubuntu question drifting, as the IRC history does. */
const FRIEND_LINES = [
  "hey, you around?",
  "my wifi stopped working after the upgrade",
  "it was fine yesterday",
  "how do I check which driver it uses?",
  "lspci shows a broadcom card",
  "do I need the restricted drivers?",
  "ok where do I find those",
  "it says no proprietary drivers are in use",
  "should I reboot?",
  "rebooted, still nothing",
  "what about ndiswrapper",
  "is that a bad idea",
  "lol ok",
  "can I use a usb dongle instead",
  "which one would you buy",
  "thanks man",
  "also my sound is crackling",
  "pulseaudio I guess?",
  "how do I restart it",
  "cool, thanks, bye",
];
/** TWIN_MAX_REPLY_TOKENS as shipped: the cap the replies ran into. */
const CAP = loadConfig({}).inference.maxReplyTokens;
/**
 * As the bot's default context, halved: the latest history fills the prompt, and once trimmed to fit,
 * every turn evaluates the whole prompt again (~1,800 tokens: most of the test's time).
 */
const CONTEXT = 2048;
const WORD_CHAR = /[\p{L}\p{N}]/u;

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
};

/** A reply the limit stopped ends where a word of the generated text ends (one that ended on its own did). */
function assertWholeWords(reply: Reply): void {
  if (reply.stopReason !== "maxTokens" || reply.messages.length === 0) return;
  // The kept lines are found in the generated text in order, so a short last line ("U") is the
  // one that was kept, not the same letters later inside a word ("JUST").
  let end = 0;
  for (const line of reply.messages.flatMap((message) => message.split("\n"))) {
    const at = reply.text.indexOf(line, end);
    assert.ok(at >= 0, `“${line}” is generated text, in order: ${JSON.stringify(reply.text)}`);
    end = at + line.length;
  }
  const lastLine = (reply.messages.at(-1) as string).split("\n").at(-1) as string;
  const next = reply.text.charAt(end);
  assert.ok(
    !WORD_CHAR.test(next),
    `cut mid-word: “${lastLine}” went on “${next}” in ${JSON.stringify(reply.text)}`,
  );
}

/**
 * The shape of the twin's replies with the base model (no adapter) on the IRC fixture: the owner
 * (ActionParsnip) talks with someone from the channel through the bot's replier, SmolLM2 answering.
 */
describe("reply shape: the base model answering a friend on the IRC fixture", { timeout: 600_000 }, () => {
  let database: TestDatabase;
  let engine: Engine;
  let manifest: Manifest;
  let friend: { id: number; name: string };
  let ownerName: string;

  before(async () => {
    // The external server when there is one (no embedded start), else the embedded one.
    database = await (backends().at(-1) as ReturnType<typeof backends>[number]).fresh();
    const repositories = createRepositories(database);
    await importDesktopExport(
      { historyRepository: repositories.history },
      { input: fixtures.irc, batchSize: 25_000, timeZone: "UTC" },
    );
    manifest = (
      await buildDataset(
        { database, repositories },
        { ...defaultDatasetOptions("UTC"), groups: true, since: null },
      )
    ).manifest;
    const partners = await repositories.history.conversationPartners({
      limit: 5,
      gapMinutes: SESSION_GAP_MINUTES,
    });
    const found = partners.find((p) => p.name === "Dr_Willis"); // a person (the busiest partner is a bot)
    assert.ok(found, `Dr_Willis among ${JSON.stringify(partners)}`);
    friend = { id: found.id, name: found.name as string };
    ownerName = manifest.owner.name;
    engine = await Engine.open({
      modelPath: testModel(),
      contextSize: CONTEXT,
      sequences: 2,
      // One thread: ~6 s a turn whatever else runs; two ran 3 s alone but 15-50 s beside other tests.
      threads: 1,
      // The shipped sampling with a fixed seed (a retry takes the next one); the prompt's header
      // still carries the clock, so runs differ, as real conversations do.
      sampling: { ...loadConfig({}).inference.sampling, seed: 20 },
      maxReplyTokens: CAP,
    });
  });
  after(async () => {
    await engine?.dispose();
    await database?.close();
    await stopEmbedded();
  });

  const replierFor = (conversations: Pick<Conversations, "reply" | "reset">, sent: string[]) => {
    const repositories = createRepositories(database);
    let messageId = 0;
    const api = {
      sendChatAction: async () => true,
      sendMessage: async (_chat: number, text: string) => {
        sent.push(text);
        return { message_id: ++messageId };
      },
    };
    const errors: unknown[] = [];
    const replier = new Replier({
      api: api as never,
      messages: repositories.botMessages,
      conversations: conversations as Conversations,
      prompt: { history: repositories.history, countTokens: engine.countTokens },
      contextSettings: (manifest) =>
        contextSettings(
          loadConfig({ TWIN_CONTEXT_SIZE: String(CONTEXT), TWIN_MAX_REPLY_TOKENS: String(CAP) }),
          manifest,
          "UTC",
        ),
      maxReplyTokens: CAP,
      adapter: () => undefined,
      paused: () => false,
      quietMs: 1,
      typing: { msPerChar: 0, maxMs: 0 },
      onError: (error) => errors.push(error),
      datasets: repositories.dataset,
    });
    return { replier, errors, messages: repositories.botMessages };
  };
  let update = 0;
  /** The friend writes `text`; resolves once the replier has answered (or given up). */
  const say = async (replier: Replier, ref: ConversationRef, text: string) => {
    await createRepositories(database).botMessages.addIncoming(ref, text, ++update);
    const target: ReplyTarget = { ...ref, chatId: ref.personId, name: friend.name };
    replier.schedule(target);
    await new Promise((resolve) => setTimeout(resolve, 10));
    await replier.idle();
  };

  it("keeps 20 turns short, whole, free of role lines and of repeats", async (t) => {
    const conversations = new Conversations(engine);
    const replies: Reply[] = [];
    const reply = conversations.reply.bind(conversations);
    conversations.reply = async (...args) => {
      const generated = await reply(...args);
      replies.push(generated);
      return generated;
    };
    const sent: string[] = [];
    const { replier, errors, messages } = replierFor(conversations, sent);
    const ref: ConversationRef = { personId: friend.id, mode: "friend" };
    const started = Date.now();
    for (const line of FRIEND_LINES) await say(replier, ref, line);
    await replier.stop();
    await conversations.close();
    const seconds = (Date.now() - started) / 1000;

    const stored = await messages.recent(ref, 500);
    const turns: string[] = []; // the twin's replies, one text each, in order
    stored.forEach((message, index) => {
      if (!message.fromTwin) return;
      if (stored[index - 1]?.fromTwin) turns[turns.length - 1] += `\n${message.text}`;
      else turns.push(message.text);
    });
    const lengths = turns.map((text) => text.length);
    t.diagnostic(
      `${turns.length} replies in ${seconds.toFixed(0)} s, ${replies.reduce((n, r) => n + r.generations, 0)} generations, limit ${replies[0]?.maxTokens} tokens; ` +
        `median ${median(lengths)} characters (${JSON.stringify(lengths)}); ${replies.filter((r) => r.stopReason === "maxTokens").length} cut by the limit, ${replies.filter((r) => r.resampled).length} resampled`,
    );
    const silences: unknown[] = errors.filter(
      (e) => e instanceof EmptyReplyError || e instanceof RepeatedReplyError,
    );
    assert.deepEqual(
      errors.filter((e) => !silences.includes(e)),
      [],
      "no failure but silence",
    );
    assert.ok(turns.length >= FRIEND_LINES.length - 2, `the twin answered (${turns.length} of 20)`);
    assert.deepEqual(
      sent,
      stored.filter((m) => m.fromTwin).map((m) => m.text),
      "each stored message was sent",
    );

    // The owner's turns set the limit: their 95th percentile, at least the floor, at most the cap.
    const limit = imitatedReplyTokens(manifest, "owner", CAP);
    assert.equal(typeof manifest.owner.turnTokensP95, "number", "the manifest measured the owner's turns");
    assert.ok(limit >= MIN_REPLY_TOKENS && limit < CAP, `the owner's limit ${limit}`);
    for (const generated of replies)
      assert.equal(generated.maxTokens, limit, "every reply under the owner's limit");

    for (const generated of replies) {
      assert.ok(generated.generations <= MAX_GENERATIONS, "at most three generations a reply");
      assertWholeWords(generated);
    }

    const roles = new Set([ownerName, friend.name, ...CHATML_ROLES].map((name) => name.toLowerCase()));
    for (const text of turns) {
      for (const line of text.split("\n")) {
        assert.ok(!roles.has(line.trim().toLowerCase()), `a role line in ${JSON.stringify(text)}`);
      }
      assert.ok(!/<\|im_(start|end)\|>/.test(text), `a control string in ${JSON.stringify(text)}`);
    }

    turns.forEach((text, index) => {
      const recent = turns.slice(Math.max(0, index - RECENT_REPLIES), index);
      const similarity = closestRepeat(text, recent);
      assert.ok(
        similarity < REPEAT_THRESHOLD,
        `reply ${index + 1} repeats a recent one (${similarity.toFixed(2)}): ${JSON.stringify(text)}`,
      );
    });
  });

  it("resamples a repeat once, cuts at the limit, retries an empty reply three times at most", async () => {
    const repositories = createRepositories(database);
    const context = await loadConversationContext(
      repositories.history,
      friend.id,
      friend.name,
      SESSION_GAP_MS,
    );
    const prompt = buildPrompt({
      header: `Telegram chat · ${friend.name}, ${ownerName} · 2024-01-01 Mon 10:00`,
      history: context.history,
      live: [{ speaker: friend.name, messages: ["my wifi stopped working after the upgrade"] }],
      replyAs: ownerName,
      maxTokens: CONTEXT - CAP,
      countTokens: engine.countTokens,
    });
    const conversations = new Conversations(engine);
    const greedy = { sampling: { temperature: 0 }, maxTokens: MIN_REPLY_TOKENS };
    const first = await conversations.reply("first", prompt, undefined, greedy);
    assert.ok(first.messages.length > 0, "a greedy reply");
    assert.equal(first.resampled, false);
    // Greedy, the first generation repeats it; the resample, its tokens punished, says something else.
    const again = await conversations.reply("again", prompt, undefined, {
      ...greedy,
      recentReplies: ["an older reply", first.messages.join("\n")],
    });
    assert.equal(again.resampled, true, "the repeat was resampled");
    assert.equal(again.generations, 2, "once");
    assert.ok(closestRepeat(again.messages.join("\n"), [first.messages.join("\n")]) < REPEAT_THRESHOLD);

    // Stopped by a limit shorter than it: cut back where a word ends, never inside one.
    const cut = await conversations.reply("first", prompt, undefined, { ...greedy, maxTokens: 12 });
    assert.equal(cut.stopReason, "maxTokens", `the limit stopped it: ${JSON.stringify(cut.text)}`);
    assertWholeWords(cut);

    // One token is never a whole word: every generation comes out empty.
    const meter = conversations.sequenceOf("first")?.tokenMeter;
    const before = meter?.usedOutputTokens ?? 0;
    await assert.rejects(conversations.reply("first", prompt, undefined, { maxTokens: 1 }), EmptyReplyError);
    assert.equal((meter?.usedOutputTokens ?? 0) - before, MAX_GENERATIONS, "three generations of one token");
    await conversations.close();
  });

  it("shows a conversation the model gave no reply, until a reply comes", async () => {
    const ref: ConversationRef = { personId: friend.id, mode: "talk" };
    const outcomes: (Error | string[])[] = [
      new EmptyReplyError(`the model produced an empty reply ${MAX_GENERATIONS} times`),
      new RepeatedReplyError("the model repeated a recent reply even when resampled"),
      ["here now"],
    ];
    const stub = {
      reply: async () => {
        const next = outcomes.shift();
        if (next instanceof Error) throw next;
        return { messages: next } as Reply;
      },
      reset: async () => undefined,
    };
    const sent: string[] = [];
    const { replier, messages } = replierFor(stub, sent);
    const shown = async () => {
      const [outcome, ...others] = await messages.withoutReply();
      assert.equal(others.length, 0, "one conversation");
      const last = (await messages.recent(ref, 1))[0];
      assert.equal(outcome?.messageId, last?.id, "at the message that went unanswered");
      return {
        personId: outcome?.personId,
        mode: outcome?.mode,
        reason: outcome?.reason,
        servedBy: outcome?.servedBy,
      };
    };
    await say(replier, ref, "are you there?");
    assert.deepEqual(sent, [], "the friend got nothing");
    assert.deepEqual(await messages.pending(ref), [], "not asked again and again");
    assert.deepEqual(
      await shown(),
      { personId: friend.id, mode: "talk", reason: "empty", servedBy: "base" },
      "the owner can see it",
    );
    await say(replier, ref, "hello?");
    assert.deepEqual(sent, []);
    assert.equal((await shown()).reason, "repeat", "a repeat resampled into a repeat is no reply either");

    await say(replier, ref, "hello???");
    assert.deepEqual(sent, ["here now"]);
    assert.deepEqual(await messages.withoutReply(), [], "answered: no longer shown");
    await replier.stop();
  });
});
