import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Message } from "grammy/types";
import { incomingMarker, incomingText } from "./incoming-text.ts";

const base = { message_id: 1, date: 0, chat: { id: 5, type: "private", first_name: "A" } } as const;
const message = (fields: Partial<Message>) => ({ ...base, ...fields }) as Message;

describe("a friend's message as prompt text", () => {
  it("keeps text, turns a sticker into its emoji and media into the dataset's tags", () => {
    assert.equal(incomingText(message({ text: "hi there" })), "hi there");
    assert.equal(
      incomingText(message({ sticker: { emoji: "😂" } as Message["sticker"] })),
      "😂",
      "a sticker is its emoji",
    );
    assert.equal(incomingText(message({ photo: [], caption: "look" })), "[photo] look");
    assert.equal(incomingText(message({ voice: {} as Message["voice"] })), "[voice message]");
    assert.equal(incomingText(message({ video_note: {} as Message["video_note"] })), "[video message]");
    assert.equal(
      incomingText(message({ animation: {} as Message["animation"], document: {} as Message["document"] })),
      "[GIF]",
      "a GIF is not a file",
    );
    assert.equal(incomingText(message({ document: {} as Message["document"] })), "[file]");
    assert.equal(
      incomingText(message({ sticker: {} as Message["sticker"] })),
      "[sticker]",
      "no emoji: a tag",
    );
  });
});

describe("a poll as prompt text", () => {
  it("is its question and options, as the dataset writes it", () => {
    const poll = {
      question: "Pizza tonight?",
      options: [{ text: "yes" }, { text: "no" }],
    } as Message["poll"];
    assert.equal(incomingText(message({ poll })), "[poll] Pizza tonight? — yes / no");
  });
});

describe("the marker line before a live message", () => {
  const bot = { id: 900, is_bot: true, first_name: "Twin" };
  const fay = { id: 6001, is_bot: false, first_name: "Fay", last_name: "Lee" };
  const context = {
    names: new Map([
      [bot.id, "Alexander Smirnov"],
      [fay.id, "Fay L."],
    ]),
    previousTurn: new Set([41, 42]),
  };
  const twinSaid = (message_id: number, text: string) =>
    ({ ...base, message_id, from: bot, text }) as Message["reply_to_message"];

  it("names a forward's author, whatever kind of origin Telegram gives", () => {
    const forwarded = (forward_origin: Message["forward_origin"]) =>
      incomingMarker(message({ text: "the forwarded text", forward_origin }), context);
    assert.equal(
      forwarded({
        type: "user",
        date: 0,
        sender_user: { id: 7, is_bot: false, first_name: "Zoe", last_name: "Quinn" },
      }),
      "[forwarded from Zoe Quinn]",
    );
    assert.equal(
      forwarded({ type: "user", date: 0, sender_user: bot }),
      "[forwarded from Alexander Smirnov]",
      "someone the prompt names goes by that name",
    );
    assert.equal(
      forwarded({ type: "hidden_user", date: 0, sender_user_name: "Hidden Person" }),
      "[forwarded from Hidden Person]",
    );
    assert.equal(
      forwarded({ type: "chat", date: 0, sender_chat: { id: -5, type: "group", title: "Book club" } }),
      "[forwarded from Book club]",
    );
    assert.equal(
      forwarded({
        type: "channel",
        date: 0,
        message_id: 3,
        chat: { id: -1005, type: "channel", title: "News" },
      }),
      "[forwarded from News]",
    );
    assert.equal(
      forwarded({ type: "hidden_user", date: 0, sender_user_name: " " }),
      "[forwarded from someone]",
    );
  });

  it("quotes a reply to anything but the twin's previous turn, with the twin's name for the bot's messages", () => {
    assert.equal(
      incomingMarker(
        message({ text: "about that", reply_to_message: twinSaid(12, "an older message") }),
        context,
      ),
      '[reply to Alexander Smirnov: "an older message"]',
    );
    assert.equal(
      incomingMarker(message({ text: "sure", reply_to_message: twinSaid(42, "the latest one") }), context),
      null,
      "a reply to the previous turn needs no marker",
    );
    const own = { ...base, message_id: 43, from: fay, text: "x".repeat(70) } as Message["reply_to_message"];
    assert.equal(
      incomingMarker(message({ text: "as I said", reply_to_message: own }), context),
      `[reply to Fay L.: "${"x".repeat(60)}…"]`,
      "a reply to one's own words is not to the previous turn; the quote is cut at 60 characters",
    );
    const stranger = {
      ...base,
      message_id: 44,
      from: { id: 8, is_bot: false, first_name: "Gus" },
      poll: { question: "Q?", options: [{ text: "a" }] },
    } as Message["reply_to_message"];
    assert.equal(
      incomingMarker(message({ text: "voted", reply_to_message: stranger }), context),
      '[reply to Gus: "[poll] Q? — a"]',
      "the quote is the replied message's own prompt text",
    );
  });

  it("gives a forward that is also a reply the forward marker only, and plain messages none", () => {
    const both = message({
      text: "fwd",
      forward_origin: { type: "hidden_user", date: 0, sender_user_name: "Ann" },
      reply_to_message: twinSaid(12, "older"),
    });
    assert.equal(incomingMarker(both, context), "[forwarded from Ann]");
    assert.equal(incomingMarker(message({ text: "hi" }), context), null);
  });

  it("quotes a reply to another chat's message by its origin and the quoted part", () => {
    const external = message({
      text: "lol",
      external_reply: {
        origin: {
          type: "channel",
          date: 0,
          message_id: 9,
          chat: { id: -1009, type: "channel", title: "Memes" },
        },
        photo: [],
      },
      quote: { text: "best one", position: 0 },
    });
    assert.equal(incomingMarker(external, context), '[reply to Memes: "best one"]');
    const unquoted = message({
      text: "lol",
      external_reply: { origin: { type: "hidden_user", date: 0, sender_user_name: "Kim" }, photo: [] },
    });
    assert.equal(incomingMarker(unquoted, context), '[reply to Kim: "[photo]"]');
  });
});
