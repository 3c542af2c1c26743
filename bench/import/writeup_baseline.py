"""The original write-up's data preparation, as issue 32 specifies it: the baseline that
`twin import` + `twin dataset --groups` is measured against (bench/import/pipeline.bench.ts).

Nothing more and nothing less than the write-up's script does:
- `json.load` the whole export;
- for each message, a small object: its author, its text (flattened) and
  `datetime.fromisoformat(date)`;
- per chat, a new session where the elapsed gap exceeds 10 minutes;
- each speaker's consecutive messages merged into one turn;
- the sessions where the owner speaks after the first turn kept;
- `json.dump` of the result, `ensure_ascii=False`, indent 4.

    python3 bench/import/writeup_baseline.py <result.json> <sessions.json>

Prints one JSON line: sessions and turns written, and its own CPU seconds and peak RSS.
"""

from __future__ import annotations

import json
import resource
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta

GAP = timedelta(minutes=10)


@dataclass
class Message:
    author: str
    text: str
    date: datetime


def flatten(text: str | list) -> str:
    """An export's text: a string, or a list of strings and entities with their own text."""
    if isinstance(text, str):
        return text
    return "".join(part if isinstance(part, str) else part.get("text", "") for part in text)


def messages_of(chat: dict) -> list[Message]:
    # Service messages (a pin, a join) have an actor, not an author: they are not said by anyone.
    return [
        Message(m["from_id"], flatten(m.get("text", "")), datetime.fromisoformat(m["date"]))
        for m in chat.get("messages", [])
        if m.get("type") == "message" and m.get("from_id")
    ]


def sessions_of(messages: list[Message]) -> list[list[Message]]:
    sessions: list[list[Message]] = []
    for message in messages:
        if not sessions or message.date - sessions[-1][-1].date > GAP:
            sessions.append([])
        sessions[-1].append(message)
    return sessions


def turns_of(session: list[Message]) -> list[dict]:
    turns: list[dict] = []
    for message in session:
        if turns and turns[-1]["author"] == message.author:
            turns[-1]["text"] += "\n" + message.text
        else:
            turns.append({"author": message.author, "text": message.text})
    return turns


def main() -> None:
    source, target = sys.argv[1], sys.argv[2]
    with open(source, encoding="utf-8") as file:
        export = json.load(file)
    owner = f"user{export['personal_information']['user_id']}"
    chats = export["chats"]["list"] + export.get("left_chats", {}).get("list", [])
    kept: list[list[dict]] = []
    for chat in chats:
        for session in sessions_of(messages_of(chat)):
            turns = turns_of(session)
            if any(turn["author"] == owner for turn in turns[1:]):
                kept.append(turns)
    with open(target, "w", encoding="utf-8") as file:
        json.dump(kept, file, ensure_ascii=False, indent=4)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "sessions": len(kept),
        "turns": sum(len(turns) for turns in kept),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
    }))


if __name__ == "__main__":
    main()
