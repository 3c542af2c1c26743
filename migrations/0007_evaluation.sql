CREATE TABLE "evaluation_files" (
	"evaluation_id" integer NOT NULL,
	"name" text NOT NULL,
	"data" "bytea" NOT NULL,
	CONSTRAINT "evaluation_files_evaluation_id_name_pk" PRIMARY KEY("evaluation_id","name")
);
--> statement-breakpoint
CREATE TABLE "evaluation_samples" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"evaluation_id" integer NOT NULL,
	"model" text NOT NULL,
	"example_id" text NOT NULL,
	"chat_id" bigint NOT NULL,
	"turn_index" integer NOT NULL,
	"context" jsonb NOT NULL,
	"real" jsonb NOT NULL,
	"generated" jsonb NOT NULL,
	"seed" integer NOT NULL,
	"probe" boolean DEFAULT false NOT NULL
);
--> statement-breakpoint
CREATE TABLE "evaluations" (
	"id" serial PRIMARY KEY NOT NULL,
	"dataset_id" integer NOT NULL,
	"speaker" text NOT NULL,
	"models" jsonb NOT NULL,
	"settings" jsonb NOT NULL,
	"status" text NOT NULL,
	"report" text,
	"summary" jsonb,
	"error" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"finished_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "guess_votes" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"sample_id" bigint NOT NULL,
	"person_id" bigint NOT NULL,
	"real_position" integer NOT NULL,
	"fooled" boolean,
	"voted_at" timestamp with time zone,
	"shown_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "evaluation_files" ADD CONSTRAINT "evaluation_files_evaluation_id_evaluations_id_fk" FOREIGN KEY ("evaluation_id") REFERENCES "public"."evaluations"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "evaluation_samples" ADD CONSTRAINT "evaluation_samples_evaluation_id_evaluations_id_fk" FOREIGN KEY ("evaluation_id") REFERENCES "public"."evaluations"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "evaluations" ADD CONSTRAINT "evaluations_dataset_id_datasets_id_fk" FOREIGN KEY ("dataset_id") REFERENCES "public"."datasets"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "guess_votes" ADD CONSTRAINT "guess_votes_sample_id_evaluation_samples_id_fk" FOREIGN KEY ("sample_id") REFERENCES "public"."evaluation_samples"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "evaluation_samples_point" ON "evaluation_samples" USING btree ("evaluation_id","model","example_id","turn_index","probe");--> statement-breakpoint
CREATE INDEX "guess_votes_person" ON "guess_votes" USING btree ("person_id");--> statement-breakpoint
CREATE UNIQUE INDEX "guess_votes_once" ON "guess_votes" USING btree ("sample_id","person_id");