ALTER TABLE "adapters" ALTER COLUMN "file_id" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "adapters" ADD COLUMN "kind" text DEFAULT 'lora' NOT NULL;--> statement-breakpoint
ALTER TABLE "adapters" ADD COLUMN "store_path" text;--> statement-breakpoint
ALTER TABLE "adapters" ADD COLUMN "sha256" text;--> statement-breakpoint
ALTER TABLE "adapters" ADD COLUMN "bytes" bigint;--> statement-breakpoint
ALTER TABLE "adapters" ADD CONSTRAINT "adapters_kind_has_its_file" CHECK (("adapters"."kind" = 'lora' AND "adapters"."file_id" IS NOT NULL) OR ("adapters"."kind" = 'full' AND "adapters"."store_path" IS NOT NULL AND "adapters"."sha256" IS NOT NULL AND "adapters"."bytes" IS NOT NULL));