import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { loadCatalogue } from "../models/catalogue.ts";
import { TRAIN_CONFIGS } from "../training/config-choice.ts";
import { readTrainerConfigs } from "./probes.ts";
import { renderReport } from "./render.ts";
import {
  type DoctorFacts,
  doctorReport,
  estimateSpeed,
  recommendServing,
  recommendTraining,
  USABLE_TOKENS_PER_SECOND,
} from "./report.ts";

const catalogue = loadCatalogue();
const trainerConfigs = readTrainerConfigs();
const entry = (name: string) => {
  const found = catalogue.models.find((m) => m.name === name);
  assert.ok(found, `${name} is in the catalogue`);
  return found;
};

/** A 2-core box with 24 GB of RAM, no GPU, a Russian-speaking owner and a built dataset. */
function cpuBox(overrides: Partial<DoctorFacts> = {}): DoctorFacts {
  return {
    cpu: { model: "Intel Xeon", cores: 2, features: ["avx2", "fma"] },
    ram: { totalGb: 24, availableGb: 21 },
    disk: { path: "/data", freeGb: 60, totalGb: 100 },
    bandwidth: { gbPerSecond: 12, basis: "injected" },
    servingGpu: { setting: "auto", backend: false, devices: [], vramTotalGb: 0, vramFreeGb: 0 },
    trainer: {
      available: true,
      python: "/venv/bin/python",
      torch: "2.5.0+cpu",
      device: "cpu",
      gpus: [],
      cpus: 2,
    },
    history: { ownerMessages: 40_000, cyrillicShare: 0.93 },
    dataset: { id: 3, tokensEstimate: 2_000_000, examples: 2_100, trainExamples: 2_000, evalExamples: 100 },
    served: null,
    contextTokens: 4096 * 8,
    trainerConfigs,
    ...overrides,
  };
}

/** The same box with one 24 GB card, which both node-llama-cpp and PyTorch see. */
function gpuBox(memoryGib = 23.6): DoctorFacts {
  return cpuBox({
    servingGpu: {
      setting: "auto",
      backend: "cuda",
      devices: ["NVIDIA GeForce RTX 4090"],
      vramTotalGb: memoryGib * 1.0737,
      vramFreeGb: memoryGib * 1.0737 - 0.5,
    },
    trainer: {
      available: true,
      python: "/venv/bin/python",
      torch: "2.5.0+cu124",
      device: "cuda",
      gpus: [{ name: "NVIDIA GeForce RTX 4090", memoryGb: memoryGib }],
      cpus: 2,
      bitsandbytes: true,
    },
  });
}

describe("twin doctor's recommendations", () => {
  it("recommends a Qwen entry, never SmolLM2, on a 2-core 24 GB CPU box with a Cyrillic history", () => {
    for (const gbPerSecond of [4, 8, 12, 20, 40]) {
      const serve = recommendServing(cpuBox({ bandwidth: { gbPerSecond, basis: "injected" } }), catalogue);
      assert.match(serve.entry ?? "", /^qwen2\.5-/, `at ${gbPerSecond} GB/s: ${serve.entry}`);
      assert.equal(serve.device, "cpu");
      for (const smol of serve.entries.filter((e) => e.name.startsWith("smollm2"))) {
        assert.equal(smol.language, false, `${smol.name} is English only`);
        assert.match(smol.verdict, /English only, and your history is Cyrillic/);
      }
    }
    const serve = recommendServing(cpuBox(), catalogue);
    assert.ok((serve.tokensPerSecond ?? 0) >= USABLE_TOKENS_PER_SECOND, `usable: ${serve.tokensPerSecond}`);
    assert.match(serve.basis, /measured 12 GB\/s/, "the estimate says what it is based on");
    assert.match(serve.why, /93% Cyrillic/);
    const seven = serve.entries.find((e) => e.name === "qwen2.5-7b");
    assert.match(seven?.verdict ?? "", /too slow here/, "a 7B on 2 cores is below a usable speed");
  });

  it("picks the largest usable entry, and English-only ones stay open to a Latin-script history", () => {
    const latin = recommendServing(
      cpuBox({ history: { ownerMessages: 900, cyrillicShare: 0.02 } }),
      catalogue,
    );
    assert.ok(
      latin.entries.every((e) => e.language),
      "every entry writes English",
    );
    const usable = latin.entries.filter((e) => e.usable && e.trainable && e.device);
    const largest = Math.max(...usable.map((e) => e.parameters));
    assert.equal(latin.entries.find((e) => e.name === latin.entry)?.parameters, largest);
  });

  it("never recommends what does not fit in memory", () => {
    const small = recommendServing(cpuBox({ ram: { totalGb: 4, availableGb: 2.5 } }), catalogue);
    for (const e of small.entries) if (e.memoryGb > 2.5 * 0.8) assert.equal(e.device, null, e.name);
    const chosen = small.entries.find((e) => e.name === small.entry);
    assert.ok(chosen && chosen.memoryGb <= 2, `${small.entry} needs ${chosen?.memoryGb} GB`);
    assert.match(small.entries.find((e) => e.name === "qwen2.5-7b")?.verdict ?? "", /^needs \d/);
  });

  it("recommends serving the 7B on a 24 GB GPU and training it with the 7B LoRA config", () => {
    const report = doctorReport(gpuBox(), catalogue);
    const { serve, train } = report.recommendation;
    assert.equal(serve.entry, "qwen2.5-7b", "the 14B serves too, but trainer/configs cannot train it");
    assert.equal(serve.device, "gpu");
    assert.match(serve.basis, /assumed 300 GB\/s/, "a GPU's speed is an assumption, and says so");
    assert.match(serve.entries.find((e) => e.name === "qwen2.5-14b")?.verdict ?? "", /no config for 14\.8B/);
    assert.equal(train?.config, TRAIN_CONFIGS.lora24);
    assert.equal(train?.method, "lora");
    assert.equal(train?.where, "gpu");
    assert.ok(
      train?.epoch && train.epoch.seconds > 0 && train.epoch.seconds < 86_400,
      "an epoch within a day",
    );
    assert.match(train?.epoch?.tokensFrom ?? "", /^dataset 3's 1,904,762 training tokens$/);
    assert.ok(!report.missing.some((line) => /no GPU/.test(line)), report.missing.join("\n"));
  });

  it("falls back to QLoRA on a 16 GB card", () => {
    const train = recommendTraining(entry("qwen2.5-7b"), gpuBox(15.6));
    assert.equal(train.method, "qlora");
    assert.equal(train.config, TRAIN_CONFIGS.qlora16);
  });

  it("with no GPU, says how long a 7B LoRA would take on this CPU and to rent a GPU", () => {
    const report = doctorReport(cpuBox(), catalogue);
    const line = report.missing.find((m) => m.startsWith("no GPU:"));
    assert.ok(line, report.missing.join("\n"));
    assert.match(line, /a 7B LoRA ~\d+ days/);
    assert.match(line, /train on a rented GPU with ≥ \d+ GB/);
    const seven = recommendTraining(entry("qwen2.5-7b"), cpuBox());
    assert.equal(seven.where, "rented-gpu");
    assert.equal(seven.config, TRAIN_CONFIGS.lora24);
    assert.ok((seven.cpuEpoch?.seconds ?? 0) > 2 * 86_400, `days on 2 cores: ${seven.cpuEpoch?.seconds}`);
    assert.ok(
      (seven.epoch?.seconds ?? Infinity) < (seven.cpuEpoch?.seconds ?? 0) / 50,
      "a GPU is far faster",
    );
    assert.match(report.recommendation.train?.note ?? "", /PyTorch sees no GPU/);
  });

  it("says what is missing: the trainer's environment, the history, the dataset, a model", () => {
    const report = doctorReport(
      cpuBox({
        trainer: {
          available: false,
          python: undefined,
          reason: "the trainer's Python environment is missing",
        },
        history: { ownerMessages: 0, cyrillicShare: null },
        dataset: null,
      }),
      catalogue,
    );
    const missing = report.missing.join("\n");
    assert.match(missing, /trainer's Python environment is missing/);
    assert.match(missing, /no history of yours yet/);
    assert.match(missing, /no dataset yet/);
    assert.match(missing, new RegExp(`twin model pull ${report.recommendation.serve.entry}`));
    assert.match(report.recommendation.train?.cpuEpoch?.tokensFrom ?? "", /nominal/);
    const text = renderReport(report);
    assert.match(text, /Recommended\n {2}Serve: qwen2\.5-/);
    assert.match(text, /Missing\n/);
  });

  it("bounds a CPU's speed by memory or by arithmetic, and says which", () => {
    const facts = cpuBox();
    const big = estimateSpeed({ weightsGb: 4.66, parameters: 7.6e9 }, "cpu", facts);
    assert.equal(big.bound, "memory");
    assert.ok(Math.abs(big.tokensPerSecond - (0.8 * 12) / 4.66) < 1e-9);
    const fast = cpuBox({ bandwidth: { gbPerSecond: 40, basis: "injected" } });
    const tiny = estimateSpeed({ weightsGb: 0.08, parameters: 1.35e8 }, "cpu", fast);
    assert.equal(tiny.bound, "compute");
    assert.match(tiny.basis, /2 cores/);
  });
});
