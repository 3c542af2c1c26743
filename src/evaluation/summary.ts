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
      ? `; closer to you than both baselines on ${m.closer_than_baselines.closer} of ${m.closer_than_baselines.compared} measures`
      : "";
    return `${m.label}: ${m.turns} turns, discriminator AUC ${auc} (0.5 = like you), reply-length distance ${length} chars${closer}`;
  });
}
