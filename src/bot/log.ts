/**
 * Bot logging: errors go to stderr with every secret the bot knows replaced, whatever library
 * produced the message (a URL with the token in it, a header echoed back).
 */
export type Log = { error(scope: string, error: unknown): void; info(message: string): void };

export function createLog(
  secrets: (string | undefined)[],
  write: (line: string) => unknown = (line) => process.stderr.write(line),
): Log {
  const known = secrets.filter((s): s is string => Boolean(s && s.length >= 8));
  const redact = (text: string) => known.reduce((out, secret) => out.split(secret).join("[secret]"), text);
  return {
    error(scope, error) {
      const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      write(`twin bot: ${scope}: ${redact(text)}\n`);
    },
    info(message) {
      write(`twin bot: ${redact(message)}\n`);
    },
  };
}
