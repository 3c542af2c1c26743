import { InvalidArgumentError } from "commander";
import { isTimeZone } from "../config/config.ts";
import { parseRunTarget, type RunTarget } from "../training/train.usecase.ts";

/**
 * Parsers of command-line values, each refusing a bad value when it is parsed with a message that
 * names the option and the form it expects (commander prints it as `error: option '…' argument …`).
 */

export const integer = (name: string, min: number) => (value: string) => {
  const parsed = Number(value);
  if (!/^\s*-?\d+\s*$/.test(value) || !Number.isSafeInteger(parsed) || parsed < min)
    throw new InvalidArgumentError(`${name} must be an integer ≥ ${min}, not “${value}”`);
  return parsed;
};

/** A Telegram chat or person id as the Bot API writes them (negative for groups). */
export const telegramId = (name: string) => (value: string) => {
  if (!/^-?\d{1,19}$/.test(value.trim()) || !Number.isSafeInteger(Number(value)))
    throw new InvalidArgumentError(
      `${name} must be a chat or person id such as 123456789 or -1001234567890, not “${value}”`,
    );
  return Number(value);
};

/** A repeatable option collecting parsed values. */
export const many =
  <T>(parse: (value: string) => T) =>
  (value: string, previous: T[] = []) => [...previous, parse(value)];

/** A share in [0, 1). */
export const fraction = (name: string) => (value: string) => {
  const parsed = Number(value);
  if (value.trim() === "" || !Number.isFinite(parsed) || parsed < 0 || parsed >= 1)
    throw new InvalidArgumentError(
      `${name} must be a number from 0 up to (not including) 1, such as 0.05, not “${value}”`,
    );
  return parsed;
};

/** A date (YYYY-MM-DD, or an ISO time) as an ISO string, or "all" (commander turns a parsed null into ""). */
export const dateOrAll = (name: string) => (value: string) => {
  if (value === "all") return "all";
  const parsed = /^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(value)
    ? new Date(value)
    : undefined;
  if (!parsed || Number.isNaN(parsed.getTime()))
    throw new InvalidArgumentError(`${name} must be a date such as 2023-01-31, or "all", not “${value}”`);
  return parsed.toISOString();
};

/** An IANA time zone such as Europe/Berlin. */
export const timeZone = (name: string) => (value: string) => {
  if (!isTimeZone(value))
    throw new InvalidArgumentError(`${name} must be an IANA time zone such as Europe/Berlin, not “${value}”`);
  return value;
};

/** `key=value` (the value may hold "=" itself), as a pair. */
export const keyValue =
  (name: string, form = "key=value") =>
  (value: string): [string, string] => {
    const at = value.indexOf("=");
    if (at <= 0 || at === value.length - 1)
      throw new InvalidArgumentError(`${name} must be ${form}, not “${value}”`);
    return [value.slice(0, at).trim(), value.slice(at + 1)];
  };

/** `<person id>=<name>`, as the pair [id, name]. */
export const personName = (name: string) => (value: string) => {
  const match = /^(-?\d{1,19})=(.+)$/.exec(value);
  if (!match || !Number.isSafeInteger(Number(match[1])))
    throw new InvalidArgumentError(`${name} must be <person id>=<name>, such as 12345=Sasha, not “${value}”`);
  return [Number(match[1]), match[2] as string] as [number, string];
};

/** Which worker may train a run: local, remote:<host> or any. */
export const runTarget =
  (name: string) =>
  (value: string): RunTarget => {
    const target = parseRunTarget(value.trim());
    if (!target)
      throw new InvalidArgumentError(
        `${name} must be local, remote:<host> (a host \`twin worker remote\` trains on) or any, not “${value}”`,
      );
    return target;
  };

/** A number above zero (hours, minutes). */
export const positiveNumber = (name: string) => (value: string) => {
  const parsed = Number(value);
  if (value.trim() === "" || !Number.isFinite(parsed) || parsed <= 0)
    throw new InvalidArgumentError(`${name} must be a number above 0, such as 2 or 0.5, not “${value}”`);
  return parsed;
};
