import { config as loadDotenv } from "dotenv";
import { type Config, loadConfig } from "./config.ts";

/** The one reader of process.env: `.env` in the working directory first, real variables win. */
export function configFromEnvironment(): Config {
  loadDotenv({ quiet: true });
  return loadConfig(process.env);
}
