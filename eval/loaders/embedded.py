"""Held-out task families generated from the held-out plays of the embedded corpus.

Every family is generated deterministically (a seeded random.Random per family and play, plays
and speeches in their fixed order), so every model sees the same examples and options. Nothing here
comes from the training plays, and multitask finetuning uses other families (objectives/multitask).

Families (random baseline = mean of 1 / number of options; the gold position is drawn uniformly):
- next_line: the context of the previous speeches and the next speaker; the true first line of the
  next speech against 3 first lines of other speeches of the same play (baseline 1/4).
- cloze: a verse line with one word blanked, Children's Book Test style; the answer and 3
  distractors are words that occur in the preceding context (baseline 1/4).
- word_order: a verse line against the same words shuffled (baseline 1/2).
- same_speaker: two speeches of one scene; are they spoken by the same character (balanced yes/no,
  baseline 1/2).
"""

from __future__ import annotations

import random
import re
from typing import Callable

from objectives import plays as plays_lib

FAMILIES = ("next_line", "cloze", "word_order", "same_speaker")
DEFAULT_EXAMPLES = 200  # per family; ~equal shares from each held-out play
_WORD_RE = re.compile(r"^[A-Za-z][a-z]{3,}$")
_CONTEXT_SPEECHES = 3
_CONTEXT_WORDS = 50


def _fmt(speech: plays_lib.Speech) -> str:
  return f"{speech.speaker}: {speech.text}"


def _tail_words(text: str, n: int) -> str:
  return " ".join(text.split()[-n:])


def _tail(lines: list[tuple[str, str]], n: int = _CONTEXT_WORDS) -> str:
  """(speaker, text) lines as training text, keeping only their last n words."""
  kept, budget = [], n
  for speaker, text in reversed(lines):
    if budget <= 0:
      break
    words = text.split()
    kept.append(f"{speaker}: " + " ".join(words[-budget:]))
    budget -= len(words)
  return "\n".join(reversed(kept))


def _context(speeches, i: int) -> str:
  """Up to 3 speeches before index i, as training text, keeping only their last 50 words."""
  return _tail([(s.speaker, s.text) for s in speeches[max(0, i - _CONTEXT_SPEECHES):i]])


def _place(rng: random.Random, gold_item, others: list) -> tuple[list, int]:
  gold = rng.randrange(len(others) + 1)
  return others[:gold] + [gold_item] + others[gold:], gold


def _next_line(play: plays_lib.Play, rng: random.Random, n: int) -> list[dict]:
  out = []
  for scene in play.scenes:
    sp = scene.speeches
    for i in range(_CONTEXT_SPEECHES, len(sp)):
      out.append((scene, i))
  rng.shuffle(out)
  firsts = sorted({s.lines[0] for s in play.speeches if len(s.lines[0].split()) >= 3})
  examples = []
  for scene, i in out:
    if len(examples) == n:
      break
    true = scene.speeches[i].lines[0]
    if len(true.split()) < 3:
      continue
    distractors = rng.sample([f for f in firsts if f != true], 3)
    choices, gold = _place(rng, true, distractors)
    examples.append({"context": _context(scene.speeches, i), "speaker": scene.speeches[i].speaker,
                     "choices": choices, "label": gold, "play": play.title})
  return examples


def _cloze(play: plays_lib.Play, rng: random.Random, n: int) -> list[dict]:
  sites = [(scene, i, j) for scene in play.scenes for i, s in enumerate(scene.speeches)
           if i >= 1 for j in range(len(s.lines))]
  rng.shuffle(sites)
  examples = []
  for scene, i, j in sites:
    if len(examples) == n:
      break
    speech = scene.speeches[i]
    words = speech.lines[j].split()
    if len(words) < 5:
      continue
    # The last 50 words before the line: earlier speeches, then this speech's earlier lines.
    lines = [(s.speaker, s.text) for s in scene.speeches[max(0, i - _CONTEXT_SPEECHES):i]]
    before = _tail(lines + [(speech.speaker, " ".join(speech.lines[:j]))]).rstrip()
    pool = sorted({w.lower(): w for w in before.split() if _WORD_RE.match(w)}.values())
    targets = [k for k, w in enumerate(words) if w in pool and k >= 1]
    if not targets or len(pool) < 4:
      continue
    k = rng.choice(targets)
    answer = words[k]
    distractors = rng.sample([w for w in pool if w.lower() != answer.lower()], 3)
    candidates, gold = _place(rng, answer, distractors)
    prefix, suffix = " ".join(words[:k]), " ".join(words[k + 1:])
    examples.append({
        "context": before, "lead": f"{before} {prefix}", "prefix": prefix, "suffix": suffix, "candidates": candidates,
        "options": [f"{c} {suffix}".rstrip() for c in candidates],
        "blanked": f"{prefix} ___ {suffix}".strip(), "speaker": speech.speaker, "label": gold,
        "play": play.title})
  return examples


def _word_order(play: plays_lib.Play, rng: random.Random, n: int) -> list[dict]:
  lines = [(s.speaker, line) for s in play.speeches for line in s.lines
           if 6 <= len(line.split()) <= 14]
  rng.shuffle(lines)
  examples = []
  for speaker, line in lines[:n]:
    words = line.split()
    shuffled = words[:]
    while shuffled == words:
      rng.shuffle(shuffled)
    choices, gold = _place(rng, line, [" ".join(shuffled)])
    examples.append({"speaker": speaker, "choices": choices, "label": gold, "play": play.title})
  return examples


def _same_speaker(play: plays_lib.Play, rng: random.Random, n: int) -> list[dict]:
  examples = []
  scenes = [sc for sc in play.scenes if len({s.speaker for s in sc.speeches}) >= 2]
  attempts = 0
  while len(examples) < n and attempts < 50 * n:
    attempts += 1
    scene = rng.choice(scenes)
    sp = [s for s in scene.speeches if len(s.text.split()) >= 4]
    if len(sp) < 2:
      continue
    a = rng.choice(sp)
    want_same = len(examples) % 2 == 0  # balanced labels
    pool = [s for s in sp if s is not a and (s.speaker == a.speaker) == want_same]
    if not pool:
      continue
    b = rng.choice(pool)
    examples.append({"line1": _tail_words(a.text, 25), "line2": _tail_words(b.text, 25),
                     "label": 0 if want_same else 1, "play": play.title})
  return examples


_GENERATORS: dict[str, Callable] = {
    "next_line": _next_line, "cloze": _cloze, "word_order": _word_order,
    "same_speaker": _same_speaker,
}


def family_examples(family: str, n: int = DEFAULT_EXAMPLES, seed: int = 0) -> list[dict]:
  """n examples of a family, drawn in near-equal shares from each held-out play."""
  if family not in _GENERATORS:
    raise KeyError(f"Unknown embedded family {family!r}; known: {', '.join(FAMILIES)}.")
  heldout = plays_lib.load_plays("heldout")
  out = []
  for k, play in enumerate(heldout):
    share = n // len(heldout) + (1 if k < n % len(heldout) else 0)
    rng = random.Random(f"embedded/{family}/{play.slug}/{seed}")
    out.extend(_GENERATORS[family](play, rng, share))
  return out
