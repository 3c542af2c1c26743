import type { Command } from "commander";
import { gatherFacts, servedFacts, unloadedServedFacts } from "../doctor/probes.ts";
import { renderReport } from "../doctor/render.ts";
import { doctorReport, type ServedFacts } from "../doctor/report.ts";
import { type Engine, openLlama } from "../inference/engine.ts";
import { loadCatalogue } from "../models/catalogue.ts";
import { type GlobalOptions, resolveConfig, withDatabase } from "./context.ts";
import { openEngine } from "./engine-setup.ts";

export function registerDoctorCommand(program: Command): void {
  program
    .command("doctor")
    .description(
      "what this machine has (CPU, RAM, disk, GPUs) and allows: the model to serve, how to train it, what is missing",
    )
    .option("--json", "print the report as JSON")
    .option("--no-model", "do not load the served model to see where it runs and measure its speed")
    .action(async (options: { json?: boolean; model: boolean }, command: Command) => {
      const config = resolveConfig(command.optsWithGlobals<GlobalOptions>());
      const report = await withDatabase(config, async ({ repositories }) => {
        const registered = await repositories.models.defaultModel();
        const modelPath = config.inference.model ?? registered?.ggufPath;
        const name = config.inference.model ? modelPath?.split("/").at(-1) : registered?.name;
        let engine: Engine | undefined;
        let served: ServedFacts | null = null;
        if (modelPath && options.model) {
          try {
            // Loaded as the bot loads it (TWIN_GPU, gpuLayers "auto", the CPU when the GPU cannot hold it).
            ({ engine } = await openEngine(config, modelPath, {
              sequences: 1,
              log: (line) => process.stderr.write(`twin doctor: ${line}\n`),
            }));
            served = await servedFacts(engine, name ?? modelPath, { measure: true });
          } catch (error) {
            served = unloadedServedFacts(name ?? modelPath, modelPath, error);
          }
        } else if (modelPath) {
          served = unloadedServedFacts(name ?? modelPath, modelPath, undefined);
        }
        let llama = engine?.llama;
        let llamaError: unknown;
        try {
          llama ??= await openLlama(config.inference.gpu);
        } catch (error) {
          llamaError = error;
        }
        try {
          const facts = await gatherFacts({ config, repositories, llama, llamaError, served, trainer: true });
          return doctorReport(facts, loadCatalogue());
        } finally {
          if (engine) await engine.dispose();
          else await llama?.dispose();
        }
      });
      process.stdout.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : renderReport(report));
    });
}
