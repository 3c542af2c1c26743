CREATE TABLE "adapters" (
	"id" serial PRIMARY KEY NOT NULL,
	"run_id" integer NOT NULL,
	"base_model_id" integer NOT NULL,
	"file_id" integer NOT NULL,
	"name" text NOT NULL,
	"metrics" jsonb,
	"active" boolean DEFAULT false NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "adapters_run_id_unique" UNIQUE("run_id")
);
--> statement-breakpoint
CREATE TABLE "training_events" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"run_id" integer NOT NULL,
	"at" timestamp with time zone DEFAULT now() NOT NULL,
	"event" text NOT NULL,
	"data" jsonb NOT NULL
);
--> statement-breakpoint
CREATE TABLE "training_file_chunks" (
	"file_id" integer NOT NULL,
	"ordinal" integer NOT NULL,
	"data" "bytea" NOT NULL,
	CONSTRAINT "training_file_chunks_file_id_ordinal_pk" PRIMARY KEY("file_id","ordinal")
);
--> statement-breakpoint
CREATE TABLE "training_files" (
	"id" serial PRIMARY KEY NOT NULL,
	"run_id" integer NOT NULL,
	"kind" text NOT NULL,
	"step" integer,
	"bytes" bigint NOT NULL,
	"sha256" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "training_runs" (
	"id" serial PRIMARY KEY NOT NULL,
	"status" text DEFAULT 'queued' NOT NULL,
	"dataset_id" integer NOT NULL,
	"base_model_id" integer NOT NULL,
	"method" text DEFAULT 'lora' NOT NULL,
	"config" jsonb NOT NULL,
	"estimate" jsonb,
	"chat_id" bigint,
	"worker" text,
	"attempts" integer DEFAULT 0 NOT NULL,
	"step" integer DEFAULT 0 NOT NULL,
	"max_steps" integer,
	"metrics" jsonb,
	"error" text,
	"cancel_requested_at" timestamp with time zone,
	"heartbeat_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"started_at" timestamp with time zone,
	"finished_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "training_workers" (
	"id" text PRIMARY KEY NOT NULL,
	"host" text NOT NULL,
	"pid" integer NOT NULL,
	"hardware" jsonb NOT NULL,
	"started_at" timestamp with time zone DEFAULT now() NOT NULL,
	"heartbeat_at" timestamp with time zone DEFAULT now() NOT NULL,
	"stopped_at" timestamp with time zone
);
--> statement-breakpoint
ALTER TABLE "bot_messages" ADD COLUMN "served_by" text;--> statement-breakpoint
ALTER TABLE "adapters" ADD CONSTRAINT "adapters_run_id_training_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."training_runs"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "adapters" ADD CONSTRAINT "adapters_base_model_id_base_models_id_fk" FOREIGN KEY ("base_model_id") REFERENCES "public"."base_models"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "adapters" ADD CONSTRAINT "adapters_file_id_training_files_id_fk" FOREIGN KEY ("file_id") REFERENCES "public"."training_files"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "training_events" ADD CONSTRAINT "training_events_run_id_training_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."training_runs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "training_file_chunks" ADD CONSTRAINT "training_file_chunks_file_id_training_files_id_fk" FOREIGN KEY ("file_id") REFERENCES "public"."training_files"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "training_files" ADD CONSTRAINT "training_files_run_id_training_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."training_runs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "training_runs" ADD CONSTRAINT "training_runs_dataset_id_datasets_id_fk" FOREIGN KEY ("dataset_id") REFERENCES "public"."datasets"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "training_runs" ADD CONSTRAINT "training_runs_base_model_id_base_models_id_fk" FOREIGN KEY ("base_model_id") REFERENCES "public"."base_models"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "adapters_one_active" ON "adapters" USING btree ("active") WHERE "adapters"."active";--> statement-breakpoint
CREATE INDEX "training_events_run" ON "training_events" USING btree ("run_id","id");--> statement-breakpoint
CREATE INDEX "training_files_run" ON "training_files" USING btree ("run_id","kind");--> statement-breakpoint
CREATE INDEX "training_runs_status" ON "training_runs" USING btree ("status","id");