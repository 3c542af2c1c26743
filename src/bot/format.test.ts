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

  it("turns ``` blocks into pre entities, one cut off at the reply's end included, and never sends a backtick pair", () => {
    assert.deepEqual(codeEntities("try:\n```python\nprint(1)\n```\nok?"), {
      text: "try:\nprint(1)\nok?",
      entities: [{ type: "pre", offset: 5, length: 8, language: "python" }],
    });
    // A twin's reply cut at its token cap, in the middle of a block (seen from SmolLM2).
    assert.deepEqual(codeEntities("The code is not working.\n\n```python\nimport os"), {
      text: "The code is not working.\n\nimport os",
      entities: [{ type: "pre", offset: 26, length: 9, language: "python" }],
    });
    assert.deepEqual(codeEntities("The code is not working.\n\n```python"), {
      text: "The code is not working.\n\n",
      entities: [],
    });
    assert.deepEqual(codeEntities("a `b` then ```\nc``` and ``"), {
      text: "a b then c and ",
      entities: [
        { type: "code", offset: 2, length: 1 },
        { type: "pre", offset: 9, length: 1 },
      ],
    });
    assert.equal(codeEntities("```"), undefined, "nothing but marks: Telegram refuses an empty text");
    for (const text of ["``x``", "x ``` y ``` z ```", "`` ``` `"]) {
      const sent = codeEntities(text)?.text ?? text;
      assert.doesNotMatch(sent, /``/, `${JSON.stringify(text)} → ${JSON.stringify(sent)}`);
    }
  });
});
