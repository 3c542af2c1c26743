ALTER TABLE "training_runs" ADD COLUMN "target" text DEFAULT 'any' NOT NULL;--> statement-breakpoint
ALTER TABLE "training_runs" ADD COLUMN "needs_gpu" boolean DEFAULT false NOT NULL;