import fs from "node:fs";

/** The SmolLM2-135M-Instruct GGUF that scripts/run-tests.mjs puts in the cache and names in TEST_MODEL_GGUF. */
export function testModel(): string {
  const model = process.env.TEST_MODEL_GGUF;
  if (!model || !fs.existsSync(model)) {
    throw new Error("TEST_MODEL_GGUF is not set to an existing GGUF: run the tests through `npm test`");
  }
  return model;
}
