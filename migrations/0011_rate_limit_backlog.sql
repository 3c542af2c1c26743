ALTER TABLE "friends" ADD COLUMN "introduced_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "bot_messages" ADD COLUMN "held" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "bot_messages" ADD COLUMN "skipped" boolean DEFAULT false NOT NULL;