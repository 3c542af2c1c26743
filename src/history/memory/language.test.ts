import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { chatSearchConfig } from "./language.ts";

describe("a chat's search configuration", () => {
  it("is Russian when a fifth of the messages hold Cyrillic, even beside English", () => {
    assert.equal(chatSearchConfig({ messages: 100, cyrillic: 25, english: 70 }), "russian");
  });
  it("is English when common English words fill a fifth of the messages", () => {
    assert.equal(chatSearchConfig({ messages: 100, cyrillic: 3, english: 40 }), "english");
  });
  it("is simple for other languages and empty chats", () => {
    assert.equal(chatSearchConfig({ messages: 100, cyrillic: 10, english: 5 }), "simple");
    assert.equal(chatSearchConfig({ messages: 0, cyrillic: 0, english: 0 }), "simple");
  });
});
