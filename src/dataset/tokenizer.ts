import path from "node:path";
import type { Tokenize } from "./length.ts";

/**
 * A real token counter: the vocabulary of a GGUF model (the base that will be trained and served),
 * loaded without its weights. Template tokens such as <|im_start|> count as the single special
 * tokens they are. Slower than the estimate (a native call per turn), so it is opt-in.
 */
export async function loadGgufTokenizer(
  modelPath: string,
): Promise<{ name: string; tokenize: Tokenize; close(): Promise<void> }> {
  // Loaded here: a build with the estimate (the default) starts without the engine.
  const { getLlama } = await import("node-llama-cpp");
  const llama = await getLlama({ gpu: false, build: "never" });
  try {
    const model = await llama.loadModel({ modelPath, vocabOnly: true });
    return {
      name: path.basename(modelPath),
      tokenize: (text) => model.tokenize(text, true).length,
      close: async () => {
        await model.dispose();
        await llama.dispose();
      },
    };
  } catch (error) {
    await llama.dispose();
    throw new Error(`--tokenizer ${modelPath}: cannot load its vocabulary (${(error as Error).message})`);
  }
}
