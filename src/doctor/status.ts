import type { Repositories } from "../app.ts";
import type { Config } from "../config/config.ts";
import type { Engine } from "../inference/engine.ts";
import { describePlacement } from "../inference/placement.ts";
import { describeSpeed } from "../inference/speed.ts";
import { loadCatalogue } from "../models/catalogue.ts";
import { bandwidthOnce, gatherFacts } from "./probes.ts";
import { recommendServing } from "./report.ts";

/**
 * `twin doctor` in two lines, for the bot's /status: where the served model runs and how fast its
 * recent replies came, and the catalogue entry this machine serves best. The trainer is not asked
 * (that takes a Python process); the memory bandwidth is measured once per process.
 */
export async function doctorStatusLines(input: {
  config: Config;
  repositories: Pick<Repositories, "history" | "dataset">;
  engine: Engine | undefined;
}): Promise<string[]> {
  const { engine } = input;
  const lines = engine
    ? [`Runs on: ${describePlacement(engine.placement)} · ${describeSpeed(engine.speed.rate())}`]
    : [];
  try {
    const facts = await gatherFacts(
      { ...input, llama: engine?.llama, served: null, trainer: false },
      bandwidthOnce,
    );
    const serve = recommendServing(facts, loadCatalogue());
    lines.push(
      serve.entry
        ? `Recommended here: ${serve.entry} (~${serve.tokensPerSecond} tokens/s on the ${serve.device === "gpu" ? "GPU" : "CPU"}, estimated) · \`twin doctor\` says why`
        : "Recommended here: nothing in the catalogue fits · `twin doctor` says why",
    );
  } catch (error) {
    // The rest of /status stands without it.
    lines.push(`Recommended here: unknown (${(error as Error).message})`);
  }
  return lines;
}
