import { TwinError } from "../errors.ts";

/** A configuration variable is unknown or malformed; the message names the variable, never its value. */
export class ConfigError extends TwinError {
  readonly variable: string;
  constructor(variable: string, problem: string) {
    super(`Configuration error in ${variable}: ${problem}`);
    this.variable = variable;
  }
}
