CREATE TABLE "dataset_examples" (
	"dataset_id" integer NOT NULL,
	"ordinal" integer NOT NULL,
	"example_id" text NOT NULL,
	"chat_id" bigint NOT NULL,
	"started_at" timestamp with time zone NOT NULL,
	"split" text NOT NULL,
	"speakers" jsonb NOT NULL,
	"segments" jsonb NOT NULL,
	CONSTRAINT "dataset_examples_dataset_id_ordinal_pk" PRIMARY KEY("dataset_id","ordinal")
);
--> statement-breakpoint
CREATE TABLE "datasets" (
	"id" serial PRIMARY KEY NOT NULL,
	"status" text NOT NULL,
	"format_version" integer NOT NULL,
	"settings" jsonb NOT NULL,
	"manifest" jsonb,
	"error" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"finished_at" timestamp with time zone
);
--> statement-breakpoint
ALTER TABLE "dataset_examples" ADD CONSTRAINT "dataset_examples_dataset_id_datasets_id_fk" FOREIGN KEY ("dataset_id") REFERENCES "public"."datasets"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "dataset_examples_split" ON "dataset_examples" USING btree ("dataset_id","split");