import { describePlacement } from "../inference/placement.ts";
import { formatDuration, formatRange } from "../training/plan.ts";
import {
  type DoctorReport,
  type EpochEstimate,
  type ServeRecommendation,
  type TrainRecommendation,
  USABLE_TOKENS_PER_SECOND,
} from "./report.ts";

/**
 * `twin doctor`'s report in words (pure): the machine, the served model, the recommendations with
 * what each is based on, every catalogue entry's verdict, and what is missing.
 */

const gb = (value: number) => `${(Math.round(value * 10) / 10).toFixed(1)} GB`;
const rate = (value: number) => (value >= 10 ? value.toFixed(0) : value.toFixed(1));

export function renderReport(report: DoctorReport): string {
  const lines: string[] = [];
  const row = (label: string, text: string) => lines.push(`  ${label.padEnd(17)}${text}`);

  lines.push("This machine");
  row(
    "CPU",
    `${report.cpu.model}, ${report.cpu.cores} cores${report.cpu.features.length > 0 ? ` (${report.cpu.features.join(" ")})` : ""}`,
  );
  row("RAM", `${gb(report.ram.totalGb)}, ${gb(report.ram.availableGb)} available`);
  row("Disk", report.disk ? `${gb(report.disk.freeGb)} free in ${report.disk.path}` : "unknown");
  row(
    "Memory speed",
    report.memoryBandwidth
      ? `${gb(report.memoryBandwidth.gbPerSecond).replace(" GB", " GB/s")} (${report.memoryBandwidth.basis})`
      : "not measured",
  );
  const serving = report.gpus.serving;
  row(
    "GPU for serving",
    serving.backend === false
      ? `none (TWIN_GPU=${serving.setting}${serving.error ? `: ${serving.error}` : ": node-llama-cpp found no CUDA, Vulkan or Metal GPU"})`
      : `${serving.devices.join(", ") || serving.backend} (${serving.backend}), ${gb(serving.vramFreeGb)} free of ${gb(serving.vramTotalGb)}`,
  );
  const training = report.gpus.training;
  row(
    "GPU for training",
    !training.available
      ? `unknown: ${training.reason}`
      : training.gpus.length === 0
        ? `none (PyTorch ${training.torch} sees no GPU)`
        : `${training.gpus.map((g) => `${g.name} ${g.memoryGb} GiB`).join(", ")} (PyTorch ${training.torch}${training.bitsandbytes ? ", bitsandbytes" : ""})`,
  );
  const history = report.history;
  row(
    "History",
    history.ownerMessages === 0
      ? "nothing of yours imported yet"
      : history.cyrillicShare === null
        ? `${history.ownerMessages.toLocaleString("en-US")} messages of yours, none with letters`
        : `${history.ownerMessages.toLocaleString("en-US")} messages of yours, ${Math.round(history.cyrillicShare * 100)}% of their letters Cyrillic`,
  );
  row(
    "Dataset",
    report.dataset
      ? `${report.dataset.id}: ${report.dataset.tokensEstimate.toLocaleString("en-US")} tokens, ${report.dataset.trainExamples.toLocaleString("en-US")} training examples`
      : "none yet",
  );

  lines.push("", "Served model");
  const served = report.served;
  if (!served) lines.push("  none registered");
  else {
    row("Model", `${served.name}${served.sizeGb !== null ? ` (${gb(served.sizeGb)})` : ""}`);
    row(
      "Runs on",
      served.placement
        ? describePlacement(served.placement)
        : served.error
          ? `not loaded: ${served.error}`
          : "not loaded (--no-model)",
    );
    if (served.placement?.fallback) row("", served.placement.fallback);
    row(
      "Speed",
      [
        served.measured
          ? `${rate(served.measured.tokensPerSecond)} tokens/s measured (${served.measured.tokens} tokens)`
          : "",
        served.estimate
          ? `~${rate(served.estimate.tokensPerSecond)} estimated (${served.estimate.basis})`
          : "",
      ]
        .filter(Boolean)
        .join("; ") || "not measured",
    );
  }

  lines.push("", "Recommended");
  lines.push(...serveLines(report.recommendation.serve));
  if (report.recommendation.train) lines.push(...trainLines(report.recommendation.train));

  lines.push("", `Catalogue (src/models/catalogue.yaml), usable from ${USABLE_TOKENS_PER_SECOND} tokens/s`);
  const entries = report.recommendation.serve.entries;
  const width = Math.max(...entries.map((e) => e.name.length)) + 2;
  lines.push(`  ${"entry".padEnd(width)}${"memory".padStart(8)}  verdict`);
  for (const entry of entries)
    lines.push(`  ${entry.name.padEnd(width)}${gb(entry.memoryGb).padStart(8)}  ${entry.verdict}`);

  lines.push("", "Missing");
  if (report.missing.length === 0) lines.push("  nothing");
  for (const item of report.missing) lines.push(`  - ${item}`);
  return `${lines.join("\n")}\n`;
}

function serveLines(serve: ServeRecommendation): string[] {
  if (!serve.entry) return [`  Serve: nothing fits — ${serve.why}`];
  return [
    `  Serve: ${serve.entry} (Q4_K_M, ${gb(serve.memoryGb ?? 0)} with the bot's context) on the ${serve.device === "gpu" ? "GPU" : "CPU"}, ~${rate(serve.tokensPerSecond ?? 0)} tokens/s estimated`,
    `    why: ${serve.why}`,
    `    estimate: ${serve.basis}`,
    `    get it: twin model pull ${serve.entry}`,
  ];
}

function epochText(epoch: EpochEstimate): string {
  return `${formatDuration(epoch.seconds)} (${formatRange(epoch.low, epoch.high)}) for ${epoch.tokensFrom}`;
}

function trainLines(train: TrainRecommendation): string[] {
  const where =
    train.where === "gpu"
      ? "on the trainer's GPU"
      : train.where === "cpu"
        ? "on this CPU"
        : "on a rented GPU";
  const lines = [
    `  Train: ${train.method === "qlora" ? "QLoRA" : "LoRA"} of ${train.entry} ${where}${train.config ? ` with trainer/configs/${train.config}` : ""}${train.needsGb ? ` (~${gb(train.needsGb)} of GPU memory)` : ""}`,
    `    why: ${train.note}`,
  ];
  if (train.epoch)
    lines.push(
      `    one epoch: ${epochText(train.epoch)}${train.where === "rented-gpu" ? " on such a GPU" : ""}`,
      `    estimate: ${train.epoch.basis}`,
    );
  if (train.cpuEpoch) lines.push(`    on this CPU instead: ${epochText(train.cpuEpoch)}`);
  return lines;
}
