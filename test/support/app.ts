import { createRepositories } from "../../src/app.ts";
import type { Database } from "../../src/db/client.ts";

/** A test database with its repositories, as the app's composition root builds them. */
export function appOf(database: Database) {
  return { database, repositories: createRepositories(database) };
}
