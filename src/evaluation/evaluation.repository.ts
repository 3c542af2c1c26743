import { eq, sql } from "drizzle-orm";
import type { Database } from "../db/client.ts";
import { evaluationFiles, evaluationSamples, evaluations } from "./evaluation.tables.ts";

type NewEvaluation = typeof evaluations.$inferInsert;
type NewSample = typeof evaluationSamples.$inferInsert;

/** Evaluations, their generated samples and the report's files (written by the trainer's report). */
export function createEvaluationRepository({ db }: Pick<Database, "db">) {
  return {
    async create(evaluation: NewEvaluation): Promise<number> {
      const [row] = await db.insert(evaluations).values(evaluation).returning({ id: evaluations.id });
      return (row as { id: number }).id;
    },
    async addSample(sample: NewSample): Promise<void> {
      await db.insert(evaluationSamples).values(sample);
    },
    /** Figures generation measured on the way (the history-store canary's), kept with the settings. */
    async addSettings(id: number, added: Record<string, unknown>): Promise<void> {
      await db
        .update(evaluations)
        .set({ settings: sql`${evaluations.settings} || ${JSON.stringify(added)}::jsonb` })
        .where(eq(evaluations.id, id));
    },
    /** Generation is done: the report (Python) takes it from here. */
    async markReporting(id: number): Promise<void> {
      await db.update(evaluations).set({ status: "reporting" }).where(eq(evaluations.id, id));
    },
    async markFailed(id: number, error: string): Promise<void> {
      await db
        .update(evaluations)
        .set({ status: "failed", error, finishedAt: new Date() })
        .where(eq(evaluations.id, id));
    },
    /** The report's summary figures ({} before the report ran). */
    async summary(id: number): Promise<Record<string, unknown>> {
      const [row] = await db
        .select({ summary: evaluations.summary })
        .from(evaluations)
        .where(eq(evaluations.id, id));
      return (row?.summary as Record<string, unknown> | null | undefined) ?? {};
    },
    /** The report's pictures, as stored. */
    async files(id: number) {
      return db.select().from(evaluationFiles).where(eq(evaluationFiles.evaluationId, id));
    },
  };
}

export type EvaluationRepository = ReturnType<typeof createEvaluationRepository>;
