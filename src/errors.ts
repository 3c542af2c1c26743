/**
 * The base of twin's errors: each carries its class name, so logs and the CLI say
 * "OwnerUnknownError: …", not "Error: …". The message alone is complete and free of secrets.
 */
export class TwinError extends Error {
  constructor(message?: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}
