import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { codeEntities } from "./format.ts";

describe("code in the bot's texts", () => {
  it("turns `…` spans into code entities, counting UTF-16 units as Telegram does", () => {
    assert.equal(codeEntities("no code here"), undefined);
    assert.deepEqual(codeEntities("run `twin import result.json` → then `twin stats`."), {
      text: "run twin import result.json → then twin stats.",
      entities: [
        { type: "code", offset: 4, length: 23 },
        { type: "code", offset: 35, length: 10 },
      ],
    });
    const emoji = codeEntities("😂 `a`");
    assert.deepEqual(emoji?.entities, [{ type: "code", offset: 3, length: 1 }], "an emoji is two units");
    assert.equal(codeEntities("one ` alone"), undefined);
  });
});
