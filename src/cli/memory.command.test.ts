import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { indexOutcomeLine, memoryIndexLine } from "./memory.command.ts";

describe("twin memory's lines", () => {
  it("show progress rounded down, complete, or the refusal", () => {
    assert.equal(
      memoryIndexLine({ indexed: 640_000, total: 1_000_000 }),
      "memory index: 640,000 of 1,000,000 messages (64%)",
    );
    assert.equal(memoryIndexLine({ indexed: 999, total: 1000 }), "memory index: 999 of 1,000 messages (99%)");
    assert.equal(memoryIndexLine({ indexed: 218, total: 218 }), "memory index: complete (218 messages)");
    assert.equal(memoryIndexLine({ indexed: 0, total: 0 }), "memory index: complete (0 messages)");
    assert.equal(
      memoryIndexLine({ indexed: 0, total: 5, refusal: "The database is SQL_ASCII." }),
      "memory index: refused: The database is SQL_ASCII.",
    );
  });

  it("say whether a run found the index complete already", () => {
    const before = { indexed: 100, total: 218 };
    assert.equal(
      indexOutcomeLine({ status: "done", indexed: 218, total: 218 }, before),
      "memory index: complete, 218 messages (118 newly indexed)",
    );
    assert.equal(
      indexOutcomeLine({ status: "done", indexed: 218, total: 218 }, { indexed: 218, total: 218 }),
      "memory index: already complete (218 messages)",
    );
    assert.match(
      indexOutcomeLine({ status: "busy", indexed: 150, total: 218 }, before),
      /another twin process/,
    );
    assert.match(
      indexOutcomeLine({ status: "cancelled", indexed: 150, total: 218 }, before),
      /stopped at 150 of 218 messages/,
    );
  });
});
