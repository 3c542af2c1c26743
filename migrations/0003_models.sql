CREATE TABLE "base_models" (
	"id" serial PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"gguf_path" text NOT NULL,
	"hf_source" text,
	"architecture" text NOT NULL,
	"layers" integer NOT NULL,
	"fingerprint" text NOT NULL,
	"size_mb" integer NOT NULL,
	"is_default" boolean DEFAULT false NOT NULL,
	"added_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "base_models_name_unique" UNIQUE("name")
);
