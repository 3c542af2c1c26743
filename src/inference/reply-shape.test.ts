import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { splitReply } from "./prompt.ts";
import {
  closestRepeat,
  copyingTokens,
  cutAtTurnEnd,
  cutToComplete,
  imitatedReplyTokens,
  MIN_REPLY_TOKENS,
  repeatsRecent,
  replyTokenLimit,
  roleLines,
  trigramSimilarity,
} from "./reply-shape.ts";

describe("reply limits", () => {
  it("follow the imitated speaker's 95th percentile, with a floor, under the cap", () => {
    assert.equal(replyTokenLimit(120, 256), 120, "the speaker's own length");
    assert.equal(replyTokenLimit(12, 256), MIN_REPLY_TOKENS, "never under the floor");
    assert.equal(replyTokenLimit(900, 256), 256, "never over the cap");
    assert.equal(replyTokenLimit(30, 24), 24, "a cap under the floor still caps");
    assert.equal(replyTokenLimit(undefined, 256), 256, "no measurement: the cap alone");
    assert.equal(replyTokenLimit(null, 256), 256);
  });

  it("take the owner's turns for a friend's conversation and the friend's in /talk", () => {
    const manifest = {
      owner: { id: 1, name: "Owner", turnTokensP95: 70 },
      speakers: [
        { id: 1, name: "Owner", messages: 9, messageShare: 0.5, tokenShare: 0.5, turnTokensP95: 70 },
        { id: 2, name: "Friend", messages: 9, messageShare: 0.5, tokenShare: 0.5, turnTokensP95: 150 },
      ],
    };
    assert.equal(imitatedReplyTokens(manifest, "owner", 256), 70);
    assert.equal(imitatedReplyTokens(manifest, 2, 256), 150);
    assert.equal(imitatedReplyTokens(manifest, 3, 256), 256, "a speaker the manifest does not list");
    assert.equal(imitatedReplyTokens(undefined, "owner", 256), 256, "no dataset: the cap alone");
    const older = { owner: { id: 1, name: "Owner" }, speakers: [] } as unknown as typeof manifest;
    assert.equal(imitatedReplyTokens(older, "owner", 256), 256, "a manifest from before the measurement");
  });
});

describe("where a generated turn ends", () => {
  const speakers = ["Anna Petrova", "Hamid"];

  it("cuts at a role line: a speaker's name or a ChatML role on a line of its own", () => {
    assert.deepEqual(cutAtTurnEnd("user\ni have two questions", speakers), { body: "", cut: true });
    assert.equal(
      cutAtTurnEnd(">>> sure\n>>> why not\nAnna Petrova\n>>> great", speakers).body,
      ">>> sure\n>>> why not\n",
    );
    assert.equal(cutAtTurnEnd(">>> ok\n  Assistant \nhello", speakers).body, ">>> ok\n", "roles in any case");
    assert.equal(cutAtTurnEnd(">>> ok\nanna petrova\nhi", speakers).cut, false, "names exactly");
    assert.equal(
      cutAtTurnEnd(">>> hi\nHamid", speakers).cut,
      false,
      "a name with no newline after it is text",
    );
    assert.equal(
      cutAtTurnEnd(">>> user\n>>> Hamid\n", speakers).cut,
      false,
      "message lines are never role lines",
    );
  });

  it("cuts at a control string written as text, never at an escaped one", () => {
    assert.equal(cutAtTurnEnd(">>> hi<|im_end|>\n<|im_start|>Anna", speakers).body, ">>> hi");
    assert.equal(cutAtTurnEnd(">>> a <|im_start|>user", speakers).body, ">>> a ");
    assert.equal(cutAtTurnEnd(">>> look: <\\|im_start|> lol", speakers).cut, false);
  });

  it("leaves no role line in the messages", () => {
    assert.deepEqual(splitReply("user\n>>> i have two questions", speakers), []);
    assert.deepEqual(splitReply(">>> yes\nHamid\n>>> and you?", speakers), ["yes"]);
    assert.deepEqual(roleLines([" Anna ", "", "Anna"]), ["Anna", "user", "assistant", "system"]);
  });
});

describe("a turn the token limit stopped", () => {
  it("ends at its last complete sentence", () => {
    assert.equal(
      cutToComplete(">>> It works. Use only the latest models that support"),
      ">>> It works.",
      "the issue's reply",
    );
    assert.equal(cutToComplete(">>> ok\n>>> really? (yes!) and then"), ">>> ok\n>>> really? (yes!)");
    assert.equal(cutToComplete(">>> he said “go.” then"), ">>> he said “go.”");
    assert.equal(
      cutToComplete(">>> version 3.5 is out and"),
      ">>> version 3.5 is out",
      "a decimal point ends nothing",
    );
  });

  it("else at its last complete message or line", () => {
    assert.equal(cutToComplete(">>> sure\n>>> why not, we could go to the"), ">>> sure");
    assert.equal(cutToComplete(">>> first line\nsecond li"), ">>> first line");
    assert.equal(
      cutToComplete(">>> what is wrong?\n\nS\nYES\n\nU\nJUST"),
      ">>> what is wrong?\n\nS\nYES\n\nU",
      "a one-letter line is whole; the cut word after it goes",
    );
    assert.equal(cutToComplete(">>> done.\n\n"), ">>> done.", "trailing blank lines");
  });

  it("else at its last whole word, never mid-word, without punctuation left hanging", () => {
    assert.equal(
      cutToComplete(">>> use only the latest models that supp"),
      ">>> use only the latest models that",
    );
    assert.equal(cutToComplete(">>> well, maybe, if"), ">>> well, maybe");
    assert.equal(cutToComplete(">>> supercalifragilistic"), "", "one cut word: nothing complete");
    assert.equal(cutToComplete(""), "");
  });
});

describe("repeats", () => {
  it("measure character-3-gram Jaccard similarity", () => {
    assert.equal(trigramSimilarity("hello there", "hello there"), 1);
    assert.equal(trigramSimilarity("Hello   there", "hello there"), 1, "case and spacing do not count");
    assert.equal(trigramSimilarity("abcd", "bcde"), 1 / 3, "{abc,bcd} and {bcd,cde}");
    assert.equal(trigramSimilarity("", "anything"), 0);
    assert.equal(trigramSimilarity("ok", "ok"), 1, "short texts compare whole");
    assert.ok(trigramSimilarity("see you at 8 then", "pizza again?") < 0.1);
  });

  it("flag a reply as close as 0.8 to one of the latest five", () => {
    const earlier = "they have a bug that makes it impossible to use a usb dongle";
    assert.ok(repeatsRecent(`${earlier}.`, [earlier]), "almost verbatim");
    assert.ok(!repeatsRecent("no idea, try a newer kernel", [earlier]));
    const older = [earlier, "a", "b", "c", "d", "e"];
    assert.ok(!repeatsRecent(earlier, older), "only the latest five count");
    assert.ok(repeatsRecent(earlier, older.slice(0, 5)));
    assert.equal(closestRepeat("x", []), 0);
  });

  it("are kept from being copied again: a resample may not go on with a run of one", () => {
    const sources = [
      [1, 2, 3, 4, 5],
      [7, 1, 2, 3, 8],
    ];
    // The next token of the run, and the one after it (the sampler reads the context a token late).
    assert.deepEqual(copyingTokens([9, 1, 2, 3], sources), [4, 5, 8]);
    assert.deepEqual(copyingTokens([2, 3, 4], sources), [5]);
    assert.deepEqual(copyingTokens([3, 4, 5], sources), [], "a run at a source's end: nothing follows");
    assert.deepEqual(copyingTokens([1, 2, 9], sources), [], "no copied run");
    assert.deepEqual(copyingTokens([2, 3], sources), [], "fewer tokens than a run");
  });
});
