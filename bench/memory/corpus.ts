import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

/**
 * Realistic message text for bench/memory, built at bench time from real sources (never copied
 * into the repository):
 * - English: a second-order word chain over the IRC fixture's 42,904 real messages, so the
 *   vocabulary, word frequencies and phrasing are real people's, but messages are not verbatim
 *   copies repeated many times over (which would make every query hit its own duplicates);
 * - Russian: words drawn Zipf-wise from wordfreq's 30,000 most frequent Russian words (inflected
 *   forms included), in messages as long as the IRC ones.
 */

export const IRC_FIXTURE = "/work/shared/fixtures/irc/ubuntu_irc_as_telegram_export.json";
/** Outside the repository; kept between runs (installing wordfreq takes a minute). */
export const CACHE_DIR = process.env.TWIN_BENCH_CACHE ?? "/tmp/twin-bench-memory-cache";

export type Rand = () => number;

/** Cumulative weights, for drawing an index in O(log n). */
function sampler(weights: number[]): (rand: Rand) => number {
  const cumulative = new Float64Array(weights.length);
  let sum = 0;
  for (let i = 0; i < weights.length; i++) {
    sum += weights[i] as number;
    cumulative[i] = sum;
  }
  return (rand) => {
    const target = rand() * sum;
    let lo = 0;
    let hi = cumulative.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((cumulative[mid] as number) < target) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

/** The IRC fixture's message texts (plain strings there), read at bench time. */
function ircMessages(file = process.env.TWIN_BENCH_IRC ?? IRC_FIXTURE): string[] {
  const root = JSON.parse(fs.readFileSync(file, "utf8"));
  const texts: string[] = [];
  for (const chat of root.chats.list)
    for (const message of chat.messages) {
      const text = typeof message.text === "string" ? message.text : "";
      if (message.type === "message" && text.trim()) texts.push(text.trim());
    }
  return texts;
}

/**
 * wordfreq's top Russian words with their frequencies, as "word\tfrequency" lines; dumped once
 * through a throwaway venv under the cache folder (PyPI is needed the first time only).
 */
export function russianWordList(count = 30_000): { words: string[]; frequencies: number[] } {
  const file = path.join(CACHE_DIR, `wordfreq-ru-${count}.tsv`);
  if (!fs.existsSync(file)) {
    fs.mkdirSync(CACHE_DIR, { recursive: true });
    const venv = path.join(CACHE_DIR, "venv");
    const python = path.join(venv, "bin", "python");
    const run = (command: string, args: string[]) => {
      const result = spawnSync(command, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
      if (result.status !== 0) throw new Error(`${command} ${args.join(" ")} failed: ${result.stderr}`);
      return result.stdout;
    };
    if (!fs.existsSync(python)) {
      process.stdout.write(`installing wordfreq into ${venv} (once)\n`);
      run("python3", ["-m", "venv", venv]);
      run(python, ["-m", "pip", "install", "--quiet", "wordfreq==3.1.1"]);
    }
    const dump = run(python, [
      "-c",
      `import wordfreq\nfor w in wordfreq.top_n_list("ru", ${count}):\n    print(f"{w}\\t{wordfreq.word_frequency(w, 'ru')}")`,
    ]);
    fs.writeFileSync(`${file}.tmp`, dump);
    fs.renameSync(`${file}.tmp`, file);
  }
  const words: string[] = [];
  const frequencies: number[] = [];
  for (const line of fs.readFileSync(file, "utf8").split("\n")) {
    const [word, frequency] = line.split("\t");
    // wordfreq's list holds a few digits and Latin tokens; a Russian chat's words are Cyrillic.
    if (word && frequency && /\p{Script=Cyrillic}/u.test(word)) {
      words.push(word);
      frequencies.push(Number(frequency));
    }
  }
  return { words, frequencies };
}

const START = "\u0002";
const END = "\u0003";
const MAX_WORDS = 40;

export type TextSource = {
  /** One English message, from the IRC word chain. */
  english(rand: Rand): string;
  /** One Russian message of wordfreq words. */
  russian(rand: Rand): string;
  stats: { ircMessages: number; chainStates: number; russianWords: number };
};

export function textSource(): TextSource {
  const irc = ircMessages();
  // Second-order chain: the next word given the two before it. A successor list keeps repeats,
  // so a uniform pick from it follows the real frequencies.
  const chain = new Map<string, string[]>();
  const lengths: number[] = [];
  for (const text of irc) {
    const words = text.split(/\s+/);
    lengths.push(words.length);
    let a = START;
    let b = START;
    for (const word of [...words, END]) {
      const key = `${a} ${b}`;
      let next = chain.get(key);
      if (!next) {
        next = [];
        chain.set(key, next);
      }
      next.push(word);
      a = b;
      b = word;
    }
  }
  const shortLengths = lengths.filter((n) => n <= MAX_WORDS);
  const pickLength = (rand: Rand) => shortLengths[Math.floor(rand() * shortLengths.length)] as number;

  const { words: ruWords, frequencies } = russianWordList();
  const drawRussian = sampler(frequencies);
  const emoji = ["😂", "👍", "❤️", "🔥", "😅", "🙈", "🎉", "🤔", "😭", "👌"];

  return {
    english(rand) {
      const words: string[] = [];
      let a = START;
      let b = START;
      while (words.length < MAX_WORDS) {
        const next = chain.get(`${a} ${b}`) as string[];
        const word = next[Math.floor(rand() * next.length)] as string;
        if (word === END) break;
        words.push(word);
        a = b;
        b = word;
      }
      return words.join(" ");
    },
    russian(rand) {
      const n = pickLength(rand);
      const words: string[] = [];
      for (let i = 0; i < n; i++) words.push(ruWords[drawRussian(rand)] as string);
      // Chat habits: mostly lower case, a comma now and then, ")" for a smile, an emoji.
      if (n > 4 && rand() < 0.3) {
        const at = 1 + Math.floor(rand() * (n - 2));
        words[at] = `${words[at]},`;
      }
      let text = words.join(" ");
      if (rand() < 0.25) text = text[0]?.toUpperCase() + text.slice(1);
      const end = rand();
      if (end < 0.12) text += "?";
      else if (end < 0.18) text += "!";
      else if (end < 0.26) text += ")";
      else if (end < 0.3) text += "))";
      if (rand() < 0.1) text += ` ${emoji[Math.floor(rand() * emoji.length)]}`;
      return text;
    },
    stats: { ircMessages: irc.length, chainStates: chain.size, russianWords: ruWords.length },
  };
}
