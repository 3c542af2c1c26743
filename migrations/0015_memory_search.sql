CREATE TABLE "message_search" (
	"chat_id" bigint NOT NULL,
	"message_id" bigint NOT NULL,
	"sent_at" timestamp with time zone NOT NULL,
	"sender_id" bigint,
	"config" "regconfig" NOT NULL,
	"document" "tsvector" NOT NULL,
	"text" text NOT NULL,
	CONSTRAINT "message_search_chat_id_message_id_pk" PRIMARY KEY("chat_id","message_id")
);
--> statement-breakpoint
CREATE TABLE "search_terms" (
	"config" "regconfig" NOT NULL,
	"lexeme" text NOT NULL,
	"documents" integer NOT NULL,
	CONSTRAINT "search_terms_config_lexeme_pk" PRIMARY KEY("config","lexeme")
);
--> statement-breakpoint
DROP INDEX "messages_sender";--> statement-breakpoint
CREATE INDEX "messages_members" ON "messages" USING gin (("details" -> 'members')) WHERE "messages"."kind" = 'service' AND "messages"."details" ? 'members';--> statement-breakpoint
CREATE INDEX "messages_sender" ON "messages" USING btree ("sender_id","chat_id");--> statement-breakpoint
-- Memory's index follows the messages: a deleted message (a forget) leaves it at once, a message
-- whose text changed leaves it and is indexed again. One statement-level delete per statement, so a
-- forget of a million messages is one join, not a million triggers.
CREATE FUNCTION message_search_forget() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM message_search s USING gone g WHERE s.chat_id = g.chat_id AND s.message_id = g.message_id;
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER messages_forget_search AFTER DELETE ON messages
  REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION message_search_forget();
--> statement-breakpoint
CREATE FUNCTION message_search_stale() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM message_search WHERE chat_id = OLD.chat_id AND message_id = OLD.message_id;
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER messages_stale_search AFTER UPDATE OF text ON messages
  FOR EACH ROW WHEN (OLD.text IS DISTINCT FROM NEW.text) EXECUTE FUNCTION message_search_stale();
--> statement-breakpoint
-- Trigram similarity for short, slangy or misspelt messages, where the server has pg_trgm (a
-- trusted extension: the database's owner may create it). Without it memory searches words only.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') THEN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
  END IF;
EXCEPTION WHEN insufficient_privilege THEN
  RAISE NOTICE 'pg_trgm is not installed (%): memory searches words only', SQLERRM;
END $$;
