import { plural } from "../plural.ts";
import type { AdapterFacts, ModelFacts } from "./gguf-facts.ts";

const LORA_SUFFIX = /^(.*\.weight)\.lora_(a|b)$/;

/**
 * Why an adapter cannot be used on a base, or [] when it can (pure). llama.cpp applies an adapter
 * whose shapes fit any base of the same family; the fingerprint is what tells a base model from its
 * instruct sibling, so an adapter without one is refused too.
 */
export function adapterProblems(base: ModelFacts, adapter: AdapterFacts): string[] {
  const problems: string[] = [];
  if (adapter.architecture !== base.architecture) {
    problems.push(`architecture ${adapter.architecture}, the base is ${base.architecture}`);
  }
  if (adapter.baseLayers !== undefined && adapter.baseLayers !== base.layers) {
    problems.push(
      `trained on a base with ${plural(adapter.baseLayers, "layer")}, this base has ${base.layers}`,
    );
  }
  for (const [name, dims] of adapter.shapes) {
    const match = LORA_SUFFIX.exec(name);
    const target = match ? base.shapes.get(match[1] as string) : undefined;
    if (!match || !target) {
      problems.push(`tensor ${name} has no counterpart in the base`);
      break;
    }
    // GGUF dims are [in, out]; lora_a is [in, r] and lora_b is [r, out].
    const fits = match[2] === "a" ? dims[0] === target[0] : dims[1] === target[1];
    if (!fits) {
      problems.push(`${name} is ${dims.join("×")}, which does not fit ${match[1]} (${target.join("×")})`);
      break;
    }
  }
  if (adapter.baseFingerprint === undefined) {
    problems.push("it records no base fingerprint (export it with `python -m twin_trainer export-gguf`)");
  } else if (adapter.baseFingerprint !== base.fingerprint) {
    problems.push(
      `it was trained on another base (fingerprint ${adapter.baseFingerprint.slice(0, 12)}…, this base ${base.fingerprint.slice(0, 12)}…)`,
    );
  }
  return problems;
}

/**
 * Why a fully fine-tuned model cannot stand in for a base, or [] when it can (pure): it must be the
 * base's own architecture and tensors, tuned from that very base — the bot keeps tokenizing with
 * the base's vocabulary, and conversations move between the two.
 */
export function fullModelProblems(base: ModelFacts, tuned: ModelFacts): string[] {
  const problems: string[] = [];
  if (tuned.architecture !== base.architecture) {
    problems.push(`architecture ${tuned.architecture}, the base is ${base.architecture}`);
  }
  if (tuned.layers !== base.layers)
    problems.push(`${plural(tuned.layers, "layer")}, the base has ${base.layers}`);
  for (const [name, dims] of base.shapes) {
    const theirs = tuned.shapes.get(name);
    if (!theirs || theirs.join("×") !== dims.join("×")) {
      problems.push(
        `tensor ${name} is ${theirs ? theirs.join("×") : "missing"}, the base's is ${dims.join("×")}`,
      );
      break;
    }
  }
  if (tuned.tunedFrom === undefined) {
    problems.push("it records no base fingerprint (a model the trainer did not export)");
  } else if (tuned.tunedFrom !== base.fingerprint) {
    problems.push(
      `it was tuned from another base (fingerprint ${tuned.tunedFrom.slice(0, 12)}…, this base ${base.fingerprint.slice(0, 12)}…)`,
    );
  }
  return problems;
}
