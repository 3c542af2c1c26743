import { customType } from "drizzle-orm/pg-core";

/** Binary data (PostgreSQL bytea), read and written as a Buffer; drizzle has no built-in for it. */
export const bytea = customType<{ data: Buffer }>({ dataType: () => "bytea" });
