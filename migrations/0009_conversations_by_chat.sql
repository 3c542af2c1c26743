DROP INDEX "bot_messages_conversation";--> statement-breakpoint
ALTER TABLE "bot_messages" ADD COLUMN "group_id" bigint;--> statement-breakpoint
CREATE INDEX "bot_messages_conversation" ON "bot_messages" USING btree ("person_id","mode","group_id","id");--> statement-breakpoint
-- Sessions and conversation state are keyed by chat and user now: in a private chat both are the
-- user's id, so a private chat's stored state keeps its place; group state (owner flows that no
-- longer run in groups) is dropped.
UPDATE "bot_storage" SET "key" = "key" || ':' || substring("key" from '^(?:session|conversation):(\d+)$')
  WHERE "key" ~ '^(session|conversation):\d+$';--> statement-breakpoint
DELETE FROM "bot_storage" WHERE "key" ~ '^(session|conversation):-\d+$';
