import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { plural } from "./plural.ts";

describe("plural", () => {
  it("says 1 chat, 0 chats and 2 chats", () => {
    assert.equal(plural(1, "chat"), "1 chat");
    assert.equal(plural(0, "chat"), "0 chats");
    assert.equal(plural(2, "chat"), "2 chats");
  });
  it("takes an irregular plural and groups thousands when asked", () => {
    assert.equal(plural(1, "person", { many: "people" }), "1 person");
    assert.equal(plural(3, "person", { many: "people" }), "3 people");
    assert.equal(plural(15789, "session", { grouped: true }), "15,789 sessions");
    assert.equal(plural(1, "held-out turn"), "1 held-out turn");
  });
});
