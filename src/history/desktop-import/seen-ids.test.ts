import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SeenIds } from "./export-reader.ts";

describe("SeenIds", () => {
  it("tells a repeated id from a new one as a Set would, in order or not", () => {
    let seed = 11;
    const random = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    for (let round = 0; round < 20; round++) {
      const seen = new SeenIds();
      const reference = new Set<number>();
      let next = 1;
      for (let i = 0; i < 2000; i++) {
        // Mostly increasing ids, some repeated, some earlier ones out of order.
        const roll = random();
        const id =
          roll < 0.8
            ? next++
            : roll < 0.9
              ? Math.max(1, next - 1 - Math.floor(random() * 50))
              : Math.floor(random() * next * 2);
        assert.equal(seen.add(id), !reference.has(id), `id ${id} in round ${round}`);
        reference.add(id);
      }
    }
  });
});
