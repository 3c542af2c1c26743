CREATE TABLE "pull_cursors" (
	"chat_id" bigint PRIMARY KEY NOT NULL,
	"last_message_id" bigint NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "userbot_sessions" (
	"owner_id" bigint PRIMARY KEY NOT NULL,
	"sealed" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
