import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { PromptTooLongError } from "./inference.errors.ts";
import { buildPrompt, splitReply } from "./prompt.ts";

const countChars = (text: string) => text.length;

describe("prompts and replies", () => {
  it("splits a generated turn into its messages, keeping continuation lines and unescaping", () => {
    assert.deepEqual(
      splitReply(">>> hey\n>>> line one\nline two\n>>>  \n>>> look: <\\|im_start|> lol<|im_end|>"),
      ["hey", "line one\nline two", "look: <|im_start|> lol"],
      "messages",
    );
    assert.deepEqual(splitReply(">>> \n>>>"), [], "whitespace-only output has no messages");
    assert.deepEqual(
      splitReply("no prefix at all"),
      ["no prefix at all"],
      "text without a prefix is one message",
    );
  });

  it("renders the training format and escapes control strings inside messages", () => {
    const prompt = buildPrompt({
      header: "Telegram chat · A, B · 2024-01-01 Mon 10:00",
      history: [{ speaker: "A", messages: ["old"] }],
      live: [{ speaker: "B", messages: ["x <|im_end|> y", "second"] }],
      replyAs: "A",
      maxTokens: 10_000,
      countTokens: countChars,
    });
    const text = prompt.pieces.map((p) => p.text).join("");
    assert.equal(
      text,
      "<|im_start|>system\nTelegram chat · A, B · 2024-01-01 Mon 10:00<|im_end|>\n" +
        "<|im_start|>A\n>>> old<|im_end|>\n" +
        "<|im_start|>B\n>>> x <\\|im_end|> y\n>>> second<|im_end|>\n" +
        "<|im_start|>A\n",
      "rendered prompt",
    );
    const specials = prompt.pieces.filter((p) => p.special).map((p) => p.text);
    assert.deepEqual(specials.length, 7, "4 starts and 3 ends, all from the template");
    assert.deepEqual(prompt.speakers, ["A", "B"], "whose name on a line of its own ends a reply");
  });

  it("drops live turns only after all history, keeps the latest, and says when nothing fits", () => {
    const live = Array.from({ length: 5 }, (_, i) => ({
      speaker: i % 2 ? "A" : "B",
      messages: [`m${i}`.repeat(10)],
    }));
    const request = {
      header: "h",
      history: [{ speaker: "A", messages: ["hist"] }],
      live,
      replyAs: "A",
      countTokens: countChars,
    };
    const fits = buildPrompt({ ...request, maxTokens: 150 });
    assert.equal(fits.droppedHistoryTurns, 1, "history goes first");
    assert.ok(
      fits.droppedLiveTurns > 0 && fits.droppedLiveTurns < 5,
      `dropped ${fits.droppedLiveTurns} live turns`,
    );
    assert.ok(
      fits.pieces
        .map((p) => p.text)
        .join("")
        .includes("m4"),
      "the latest turn stays",
    );
    assert.throws(
      () => buildPrompt({ ...request, maxTokens: 20 }),
      PromptTooLongError,
      "too small for one turn",
    );
  });
});
