CREATE TABLE "chats" (
	"id" bigint PRIMARY KEY NOT NULL,
	"type" text NOT NULL,
	"title" text,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "imports" (
	"id" serial PRIMARY KEY NOT NULL,
	"source" text NOT NULL,
	"file_name" text,
	"file_bytes" bigint,
	"owner_id" bigint,
	"status" text NOT NULL,
	"started_at" timestamp with time zone DEFAULT now() NOT NULL,
	"finished_at" timestamp with time zone,
	"committed_bytes" bigint DEFAULT 0 NOT NULL,
	"counts" jsonb,
	"error" text
);
--> statement-breakpoint
CREATE TABLE "messages" (
	"chat_id" bigint NOT NULL,
	"message_id" bigint NOT NULL,
	"sender_id" bigint,
	"sender_name" text,
	"sent_at" timestamp with time zone NOT NULL,
	"edited_at" timestamp with time zone,
	"kind" text NOT NULL,
	"text" text DEFAULT '' NOT NULL,
	"emoji" text,
	"reply_to_message_id" bigint,
	"forwarded_from_name" text,
	"forwarded_from_id" bigint,
	"via_bot" text,
	"action" text,
	"details" jsonb,
	"source" text NOT NULL,
	"import_id" integer,
	CONSTRAINT "messages_chat_id_message_id_pk" PRIMARY KEY("chat_id","message_id")
);
--> statement-breakpoint
CREATE TABLE "owner" (
	"singleton" boolean PRIMARY KEY DEFAULT true NOT NULL,
	"person_id" bigint NOT NULL,
	"name" text,
	"time_zone" text NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "owner_singleton" CHECK ("owner"."singleton")
);
--> statement-breakpoint
CREATE TABLE "people" (
	"id" bigint PRIMARY KEY NOT NULL,
	"name" text,
	"name_seen_at" timestamp with time zone
);
--> statement-breakpoint
CREATE INDEX "messages_chat_time" ON "messages" USING btree ("chat_id","sent_at");--> statement-breakpoint
CREATE INDEX "messages_sender" ON "messages" USING btree ("sender_id");