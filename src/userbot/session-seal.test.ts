import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import { openSession, parseSessionKey, sealSession } from "./session-seal.ts";
import { SealedSessionError } from "./userbot.errors.ts";

describe("the sealed userbot session", () => {
  const session = "1BAAOMTQ5LjE1NC4xNjcuOTEAUF9rZWVwX3RoaXNfc2VjcmV0X3BsZWFzZQ==";
  const key = randomBytes(32);

  it("round-trips and hides the session", () => {
    const sealed = sealSession(session, key, 42);
    assert.ok(
      !sealed.includes(session) && !sealed.includes("keep_this"),
      "the sealed text does not show the session",
    );
    assert.equal(openSession(sealed, key, 42), session);
    assert.notEqual(sealSession(session, key, 42), sealed, "a fresh IV each time");
  });

  it("fails with another key, another owner, or a changed byte — and never says the secret", () => {
    const sealed = sealSession(session, key, 42);
    const refuses = (run: () => unknown, why: string) =>
      assert.throws(
        run,
        (error: Error) => error instanceof SealedSessionError && !error.message.includes(session),
        why,
      );
    refuses(() => openSession(sealed, randomBytes(32), 42), "another key");
    refuses(() => openSession(sealed, key, 43), "another owner");
    const flipped = `${sealed.slice(0, -2)}${sealed.at(-2) === "A" ? "B" : "A"}${sealed.at(-1)}`;
    refuses(() => openSession(flipped, key, 42), "a changed byte");
  });

  it("reads keys as hex or base64, and refuses other lengths without echoing them", () => {
    assert.deepEqual(parseSessionKey(key.toString("hex")), key);
    assert.deepEqual(parseSessionKey(key.toString("base64")), key);
    assert.throws(
      () => parseSessionKey("c2hvcnQta2V5"),
      (error: Error) => /32 bytes/.test(error.message) && !error.message.includes("c2hvcnQta2V5"),
    );
  });
});
