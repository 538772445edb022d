"""Prompted training families built from the TRAINING plays of the embedded corpus (for MTF).

Each family turns the training plays into example dicts whose fields the YAML templates in
templates/embedded_mtf.yaml read. They are chosen to be disjoint from the held-out evaluation
families of eval/ (next-line choice, cloze, word order, same speaker), which are built from the
held-out plays: nothing here ever reads a held-out play, and no family asks those questions.

- speaker_attribution: who speaks this speech (candidates: speakers of the same scene).
- which_play: which play a speech comes from (candidates: four training play titles).
- genre: the genre of a scene excerpt (the six genre folders of the corpus).
- continuation: write the next speech given the previous ones (generation: one choice, the truth).
- scene_order: which of two speeches of a scene comes first.

Every family is deterministic: a fixed seed per family and a fixed order over plays and scenes.
"""

from __future__ import annotations

import random
import zlib
from typing import Any, Callable, Iterable

from objectives import plays as plays_lib

GENRE_NAMES = {
    "comedies": "comedy",
    "histories": "history",
    "problems": "problem play",
    "roman": "Roman play",
    "romances": "romance",
    "tragedies": "tragedy",
}
# Speeches shorter than this carry too little to attribute; longer ones are cut to the word limit.
_MIN_CHARS = 40
_MAX_WORDS = 60

Example = dict[str, Any]


def play_title(play: plays_lib.Play) -> str:
  """A display title: the slug's words when the parsed title is a trailing section heading."""
  if play.title.isupper() or not play.title.strip():
    return " ".join(w.capitalize() for w in play.slug.replace("-s-", "'s-").split("-"))
  return play.title


def _clip(text: str, max_words: int = _MAX_WORDS) -> str:
  words = text.split()
  return " ".join(words[:max_words]) + (" ..." if len(words) > max_words else "")


def _rng(family: str, seed: int) -> random.Random:
  return random.Random(zlib.crc32(family.encode()) ^ seed)


def speaker_attribution(plays: Iterable[plays_lib.Play], seed: int = 0) -> list[Example]:
  """Who says this speech? Candidates: up to four distinct speakers of the same scene."""
  rng, out = _rng("speaker_attribution", seed), []
  for play in plays:
    title = play_title(play)
    for scene in play.scenes:
      speakers = sorted({s.speaker for s in scene.speeches})
      if len(speakers) < 2:
        continue
      for speech in scene.speeches:
        if len(speech.text) < _MIN_CHARS:
          continue
        others = [s for s in speakers if s != speech.speaker]
        cands = rng.sample(others, min(3, len(others))) + [speech.speaker]
        rng.shuffle(cands)
        out.append(dict(play=play.slug, title=title, speech=_clip(speech.text),
                        candidates=cands, label=cands.index(speech.speaker)))
  return out


def which_play(plays: Iterable[plays_lib.Play], seed: int = 0) -> list[Example]:
  """Which play is this speech from? Candidates: the true title and three other training plays."""
  plays = list(plays)
  titles = [play_title(p) for p in plays]
  rng, out = _rng("which_play", seed), []
  for play, title in zip(plays, titles):
    for speech in play.speeches:
      if len(speech.text) < 2 * _MIN_CHARS:
        continue
      cands = rng.sample([t for t in titles if t != title], 3) + [title]
      rng.shuffle(cands)
      out.append(dict(play=play.slug, speech=_clip(speech.text), candidates=cands,
                      label=cands.index(title)))
  return out


def genre(plays: Iterable[plays_lib.Play], seed: int = 0, window: int = 4) -> list[Example]:
  """The genre of a scene excerpt of `window` consecutive speeches (one excerpt per window)."""
  del seed  # Fixed windows; nothing is sampled.
  names = sorted(GENRE_NAMES.values())
  out = []
  for play in plays:
    for scene in play.scenes:
      for start in range(0, len(scene.speeches) - window + 1, window):
        part = scene.speeches[start:start + window]
        excerpt = "\n".join(f"{s.speaker}: {_clip(s.text, 30)}" for s in part)
        out.append(dict(play=play.slug, excerpt=excerpt, candidates=names,
                        label=names.index(GENRE_NAMES[play.genre])))
  return out


def continuation(plays: Iterable[plays_lib.Play], seed: int = 0, context: int = 3) -> list[Example]:
  """Given `context` speeches, the next speaker's speech is the target (generation)."""
  del seed
  out = []
  for play in plays:
    title = play_title(play)
    for scene in play.scenes:
      sp = scene.speeches
      for i in range(context, len(sp), context + 1):
        if len(sp[i].text) < _MIN_CHARS:
          continue
        ctx = "\n".join(f"{s.speaker}: {_clip(s.text, 40)}" for s in sp[i - context:i])
        out.append(dict(play=play.slug, title=title, context=ctx, speaker=sp[i].speaker,
                        next_speech=_clip(sp[i].text, 40)))
  return out


def scene_order(plays: Iterable[plays_lib.Play], seed: int = 0) -> list[Example]:
  """Two speeches of one scene, in random order: which is spoken first?"""
  rng, out = _rng("scene_order", seed), []
  for play in plays:
    title = play_title(play)
    for scene in play.scenes:
      long = [s for s in scene.speeches if len(s.text) >= _MIN_CHARS]
      for k in range(len(long) // 4):
        i, j = sorted(rng.sample(range(len(long)), 2))
        first, second = long[i], long[j]
        swap = rng.random() < 0.5
        a, b = (second, first) if swap else (first, second)
        out.append(dict(play=play.slug, title=title, speech_a=_clip(a.text, 40),
                        speech_b=_clip(b.text, 40), label=1 if swap else 0))
  return out


FAMILIES: dict[str, Callable[..., list[Example]]] = {
    "speaker_attribution": speaker_attribution,
    "which_play": which_play,
    "genre": genre,
    "continuation": continuation,
    "scene_order": scene_order,
}


def build(family: str, seed: int = 0, max_examples: int | None = None) -> list[Example]:
  """The examples of one family from the training plays, in a fixed (seeded) order."""
  if family not in FAMILIES:
    raise ValueError(f"Unknown embedded MTF family {family!r}; valid: {', '.join(FAMILIES)}.")
  examples = FAMILIES[family](plays_lib.load_plays("train"), seed=seed)
  _rng(family + "/order", seed).shuffle(examples)
  return examples[:max_examples] if max_examples else examples
