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
    // The keyword as a whole word; the secret runs to the next space, without trailing punctuation.
    pattern:
      /((?<!\p{L})(?:password|passwd|pass|pwd|пароль|пасс)(?!\p{L})\s*(?:is|это|[:=—-])?\s*)(\S+?)(?=[,;.!?]*(?:\s|$))/giu,
    keepPrefix: true,
  },
  {
    kind: "code",
    pattern: /((?<!\p{L})(?:code|код|pin)(?!\p{L})\s*(?:is|[:=—-])?\s*)(\d{4,8})(?!\d)/giu,
    keepPrefix: true,
  },
  {
    kind: "card",
    pattern: /\b(?:\d[ -]?){12,18}\d\b/g,
    accept: (match) => luhn(match.replace(/\D/g, "")),
  },
  {
    kind: "phone",
    // International numbers (+…), or Russian-style 8 9xx …: bare digit runs are too often something else.
    pattern: /(?<![\w+])(?:\+\d|8[ (-]*9)[\d ()-]{7,16}\d(?!\d)/g,
    accept: (m) => {
      const digits = m.replace(/\D/g, "").length;
      return digits >= 10 && digits <= 15;
    },
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
