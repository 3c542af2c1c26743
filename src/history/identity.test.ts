import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { exportChatKind, markExportPeer, markPeer, peerKindOf } from "./identity.ts";

describe("marked ids", () => {
  it("marks users, basic groups and channels as the Bot API does", () => {
    assert.equal(markPeer("user", 42), 42);
    assert.equal(markPeer("chat", 42), -42);
    assert.equal(markPeer("channel", 1479192468), -1001479192468);
    assert.throws(() => markPeer("user", 0), RangeError);
  });

  it("recovers the kind from a marked id", () => {
    assert.equal(peerKindOf(42), "user");
    assert.equal(peerKindOf(-42), "chat");
    assert.equal(peerKindOf(-1001479192468), "channel");
  });

  it("reads export sender ids in every form", () => {
    assert.equal(markExportPeer("user121569222"), 121569222);
    assert.equal(markExportPeer("channel2482670091"), -1002482670091);
    assert.equal(markExportPeer("chat777"), -777);
    assert.equal(markExportPeer(5766110), 5766110);
    assert.equal(markExportPeer("user121569222"), 121569222); // cached path
    assert.equal(markExportPeer("bot12"), undefined);
  });

  it("maps export chat types to peer kinds", () => {
    assert.equal(exportChatKind("personal_chat"), "user");
    assert.equal(exportChatKind("private_group"), "chat");
    assert.equal(exportChatKind("public_channel"), "channel");
    assert.equal(exportChatKind("private_supergroup"), "channel");
    assert.equal(exportChatKind("martian_chat"), undefined);
  });
});
