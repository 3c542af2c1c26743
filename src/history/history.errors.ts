/** The history store refused an operation; the message says why and what to do. */
export class HistoryError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "HistoryError";
  }
}
