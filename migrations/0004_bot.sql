CREATE TABLE "opt_outs" (
	"person_id" bigint PRIMARY KEY NOT NULL,
	"opted_out_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "bot_messages" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"person_id" bigint NOT NULL,
	"mode" text NOT NULL,
	"from_twin" boolean NOT NULL,
	"text" text NOT NULL,
	"update_id" bigint,
	"telegram_message_id" integer,
	"sent_at" timestamp with time zone DEFAULT now() NOT NULL,
	"answered_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "bot_storage" (
	"key" text PRIMARY KEY NOT NULL,
	"value" jsonb NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE INDEX "bot_messages_conversation" ON "bot_messages" USING btree ("person_id","mode","id");--> statement-breakpoint
CREATE UNIQUE INDEX "bot_messages_update" ON "bot_messages" USING btree ("update_id");