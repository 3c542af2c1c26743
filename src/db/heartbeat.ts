import { sql } from "drizzle-orm";
import type { Db } from "./client.ts";

/**
 * Long work that another process may need to tell from dead work (an import, a dataset build)
 * beats a heartbeat in its row; a row still marked running whose heartbeat is older than the
 * staleness limit (TWIN_WORKER_STALE_S, as for training runs) has lost its process. Several
 * processes or hosts on one database thus never mark each other's live work.
 */
export type Heartbeat = { stop(): void };

/** How often to beat for a staleness limit: six beats fit in it, as the training worker does. */
export function beatEveryMs(staleSeconds: number): number {
  return Math.max(500, (staleSeconds * 1000) / 6);
}

export function startHeartbeat(
  db: Db,
  table: "imports" | "datasets",
  id: number,
  staleSeconds: number,
): Heartbeat {
  const timer = setInterval(() => {
    // A missed beat is harmless; a dead database fails the work itself.
    db.execute(sql`UPDATE ${sql.identifier(table)} SET heartbeat_at = now() WHERE id = ${id}`).catch(
      () => undefined,
    );
  }, beatEveryMs(staleSeconds));
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
