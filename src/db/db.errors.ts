import { TwinError } from "../errors.ts";

/** The database could not be reached, started or migrated. Messages never include passwords. */
export class DatabaseError extends TwinError {}
