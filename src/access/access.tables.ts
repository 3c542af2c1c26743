import { bigint, pgTable, timestamp } from "drizzle-orm/pg-core";

/**
 * The people the owner allowed to talk to the twin (the bot's `/allow` and `/revoke` write here).
 * The dataset builder can limit training to chats with them: the owner decides what is learnt.
 */
export const friends = pgTable("friends", {
  personId: bigint("person_id", { mode: "number" }).primaryKey(),
  allowedAt: timestamp("allowed_at", { withTimezone: true }).notNull().defaultNow(),
  /** Set by /revoke; the row stays so the history of consent is kept. */
  revokedAt: timestamp("revoked_at", { withTimezone: true }),
  /**
   * When the bot introduced itself to them (once per friend); the owner's /forget, or allowing
   * them again after a /revoke, clears it.
   */
  introducedAt: timestamp("introduced_at", { withTimezone: true }),
});

/**
 * People who asked (`/optout` in the bot) not to be simulated: they are not offered to `/talk`,
 * and datasets built afterwards never train on their turns. `/optin` deletes the row.
 */
export const optOuts = pgTable("opt_outs", {
  personId: bigint("person_id", { mode: "number" }).primaryKey(),
  optedOutAt: timestamp("opted_out_at", { withTimezone: true }).notNull().defaultNow(),
});
