ALTER TABLE "base_models" ADD COLUMN "hf_revision" text;--> statement-breakpoint
ALTER TABLE "base_models" ADD COLUMN "weights_fingerprint" text;