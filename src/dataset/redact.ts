/**
 * Redaction of secrets before anything is written (pure). Each kind is replaced by a tag and
 * counted, so the manifest can say what was removed.
 */
export type RedactionKind = "code" | "password" | "card" | "phone" | "email";
export type RedactionCounts = Record<RedactionKind, number>;

export const emptyRedactionCounts = (): RedactionCounts => ({
  code: 0,
  password: 0,
  card: 0,
  phone: 0,
  email: 0,
});

function luhn(digits: string): boolean {
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = Number(digits[digits.length - 1 - i]);
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}

const rules: {
  kind: RedactionKind;
  pattern: RegExp;
  accept?: (match: string) => boolean;
  keepPrefix?: boolean;
}[] = [
  { kind: "email", pattern: /[\p{L}\p{N}._%+-]+@[\p{L}\p{N}.-]+\.\p{L}{2,}/gu },
  {
    kind: "password",
    pattern: /((?:password|passwd|pass|pwd|пароль|пасс)\s*(?:is|это|[:=—-])?\s*)(\S+)/giu,
    keepPrefix: true,
  },
  { kind: "code", pattern: /((?:code|код|pin)\s*(?:is|[:=—-])?\s*)(\d{4,8})\b/giu, keepPrefix: true },
  {
    kind: "card",
    pattern: /\b(?:\d[ -]?){12,18}\d\b/g,
    accept: (match) => luhn(match.replace(/\D/g, "")),
  },
  {
    kind: "phone",
    pattern: /(?<![\w+])\+?\d[\d ()-]{8,16}\d\b/g,
    accept: (m) => m.replace(/\D/g, "").length >= 10,
  },
];

export function redact(text: string, counts: RedactionCounts): string {
  let result = text;
  for (const rule of rules) {
    result = result.replace(rule.pattern, (match: string, prefix?: string) => {
      if (rule.accept && !rule.accept(match)) return match;
      counts[rule.kind]++;
      return rule.keepPrefix && typeof prefix === "string" ? `${prefix}[${rule.kind}]` : `[${rule.kind}]`;
    });
  }
  return result;
}
