import { plural } from "../plural.ts";

type ModelSummary = {
  label: string;
  turns: number;
  discriminator: { auc: number | null };
  length_distance: number | null;
  closer_than_baselines?: { closer: number; compared: number };
};

/** One line per model: discriminator AUC, reply-length distance, and for adapters how often closer than both baselines. */
export function summaryLines(summary: Record<string, unknown>): string[] {
  const models = (summary.models ?? {}) as Record<string, ModelSummary>;
  // PostgreSQL's jsonb does not keep key order: baselines first, then the adapters by id.
  const rank = (key: string) =>
    key === "base" ? -2 : key === "base+history" ? -1 : Number(key.split(":")[1]);
  const ordered = Object.entries(models)
    .sort(([a], [b]) => rank(a) - rank(b))
    .map(([, m]) => m);
  return ordered.map((m) => {
    const auc = m.discriminator.auc === null ? "—" : m.discriminator.auc.toFixed(3);
    const length = m.length_distance === null ? "—" : m.length_distance.toFixed(1);
    const closer = m.closer_than_baselines
      ? `; closer to you than both baselines on ${m.closer_than_baselines.closer} of ${plural(m.closer_than_baselines.compared, "measure")}`
      : "";
    return `${m.label}: ${plural(m.turns, "turn")}, discriminator AUC ${auc} (0.5 = like you), reply-length distance ${length} chars${closer}`;
  });
}

/** What an evaluation is about to generate, said before it starts (`GenerateOptions.onPlan`). */
export type EvaluationPlan = {
  speaker: string;
  /** Held-out turns of the speaker in the dataset. */
  heldOut: number;
  /** The turns generated: all held-out ones, or the subset asked for. */
  turns: number;
  /** The subset asked for (--turns, /eval N); undefined or 0: all. */
  requested: number | undefined;
  probes: number;
  models: string[];
};

/**
 * One line before the generation starts: how many turns with how many models, and when fewer
 * held-out turns exist than were asked for, that they do ("14 held-out turns exist").
 */
export function planLine(plan: EvaluationPlan): string {
  const each =
    plan.models.length === 1
      ? `with the ${plan.models[0]}`
      : `with each of ${plural(plan.models.length, "model")} (${plan.models.join(", ")})`;
  const probes = plan.probes ? `, plus ${plural(plan.probes, "leakage probe")} per model` : "";
  if (plan.requested && plan.requested > plan.heldOut) {
    const exist = plan.heldOut === 1 ? "exists" : "exist";
    return `only ${plural(plan.heldOut, "held-out turn")} of ${plan.speaker} ${exist}, not the ${plan.requested} asked for: generating all of them ${each}${probes}`;
  }
  const which =
    plan.turns === plan.heldOut
      ? `all ${plural(plan.heldOut, "held-out turn")}`
      : `${plan.turns} of ${plural(plan.heldOut, "held-out turn")}`;
  return `generating ${which} of ${plan.speaker} ${each}${probes}`;
}
