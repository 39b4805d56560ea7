// Mentions, the typing line and the unread badge.
// node --test js/tests/

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { completeMention, mentions, mentionsOf, suggestions, typedMention } from "../mentions.js";
import { TYPING_EVERY_MS, TYPING_SHOWN_MS, TypingSender, Typists, typingLine } from "../typing.js";
import { Unread } from "../unread.js";

describe("mentions", () => {
  test("finds @names outside code, once each, without a sentence's dot", () => {
    assert.deepEqual(mentionsOf("hi @alice and @bob.smith, see @alice."), ["alice", "bob.smith"]);
    assert.deepEqual(mentionsOf("mail a@b.c is no mention"), []);
    assert.deepEqual(mentionsOf("`@inline` and\n```\n@fenced\n```\n@after"), ["after"]);
    assert.ok(mentions("ping @ada", "ada"));
    assert.ok(!mentions("ping @adam", "ada"));
    assert.ok(!mentions("ping @ada", null));
  });

  test("the mention being typed", () => {
    assert.deepEqual(typedMention("hello @gr", 9), { start: 6, query: "gr" });
    assert.deepEqual(typedMention("@", 1), { start: 0, query: "" });
    assert.equal(typedMention("mail a@b", 8), null);
    assert.equal(typedMention("hello @gr and", 13), null);
  });

  test("suggests people by username or a word of their name, present first, not me", () => {
    const people = [
      { user: "grace", name: "Grace Hopper" },
      { user: "ada", name: "Ada Lovelace" },
      { user: "alan", name: "Alan Turing" },
      { user: "grace", name: "Grace Hopper" },
    ];
    assert.deepEqual(
      suggestions("", people, "ada").map((p) => p.user),
      ["grace", "alan"],
    );
    assert.deepEqual(
      suggestions("tur", people, null).map((p) => p.user),
      ["alan"],
    );
    assert.deepEqual(
      suggestions("A", people, null).map((p) => p.user),
      ["ada", "alan"],
    );
  });

  test("completes the typed mention", () => {
    assert.deepEqual(completeMention("hi @gr", 6, 3, "grace"), { value: "hi @grace ", caret: 10 });
    assert.deepEqual(completeMention("hi @gr there", 6, 3, "grace"), { value: "hi @grace there", caret: 10 });
  });
});

describe("typing", () => {
  test("a typing frame at most every 2 s, at once after a message went", () => {
    const sender = new TypingSender();
    assert.ok(sender.due(1000));
    assert.ok(!sender.due(1000 + TYPING_EVERY_MS - 1));
    assert.ok(sender.due(1000 + TYPING_EVERY_MS));
    sender.reset();
    assert.ok(sender.due(1000 + TYPING_EVERY_MS + 1));
  });

  test("someone is typing until 5 s after their last frame, or their message", () => {
    const typists = new Typists();
    typists.saw("alice", "Alice", 0);
    typists.saw("bob", "Bob", 1000);
    assert.deepEqual(typists.names(TYPING_SHOWN_MS - 1), ["Alice", "Bob"]);
    assert.equal(typists.next(0), TYPING_SHOWN_MS);
    assert.deepEqual(typists.names(TYPING_SHOWN_MS), ["Bob"]);
    assert.ok(typists.stop("bob"));
    assert.deepEqual(typists.names(TYPING_SHOWN_MS), []);
    assert.equal(typists.next(TYPING_SHOWN_MS), null);
  });

  test("the line under the feed", () => {
    assert.equal(typingLine([]), "");
    assert.equal(typingLine(["Alice"]), "Alice is typing");
    assert.equal(typingLine(["Alice", "Bob"]), "Alice and Bob are typing");
    assert.equal(typingLine(["A", "B", "C", "D", "E"]), "A, B and 3 others are typing");
  });
});

describe("Unread", () => {
  test("counts what arrives while the reader does not look, mentions apart", () => {
    const unread = new Unread();
    assert.ok(!unread.saw({ mine: false, mentionsMe: true, looking: true }));
    assert.ok(!unread.saw({ mine: true, mentionsMe: false, looking: false }));
    assert.equal(unread.label, "");
    unread.saw({ mine: false, mentionsMe: false, looking: false });
    assert.equal(unread.label, "1 new");
    unread.saw({ mine: false, mentionsMe: true, looking: false });
    assert.equal(unread.label, "2 new, 1 mention");
    unread.clear();
    assert.equal(unread.label, "");
  });
});
