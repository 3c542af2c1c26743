import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { replyPrinter } from "./reply-printer.ts";

const printed = (chunks: string[]) => {
  let out = "";
  const printer = replyPrinter("Ann", (text) => {
    out += text;
  });
  for (const chunk of chunks) printer.push(chunk);
  const any = printer.end();
  return { out, any };
};

describe("replyPrinter", () => {
  it("prints each message under the name, prefixes hidden even split across chunks", () => {
    assert.equal(
      printed([">", ">> hel", "lo\n>>", "> wor", "ld >>> not a prefix"]).out,
      "Ann: hello\nAnn: world >>> not a prefix",
    );
  });

  it("never prints a message that stays empty", () => {
    const { out, any } = printed([">>> hi\n>>> \n>>>  \n>>> there\n>>>"]);
    assert.equal(out, "Ann: hi\nAnn: there");
    assert.equal(any, true);
    assert.deepEqual(printed([">>> ", "\n>>>   \n"]), { out: "", any: false }, "nothing at all");
  });

  it("keeps continuation lines and text without a prefix", () => {
    assert.equal(
      printed(["no prefix\n", ">>> a\nsecond line\n\n"]).out,
      "Ann: no prefix\nAnn: a\nAnn: second line",
    );
    assert.equal(printed([">"]).out, "Ann: >", "a lone > at the end is text");
  });
});
