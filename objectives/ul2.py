"""UL2's mixture of denoisers (Tay et al. 2022), beyond the paper.

Denoisers (mean span mu, noise density r) and paradigm tokens, from the UL2 paper:
  R: (3, 0.15), (8, 0.15)                       [NLU]
  X: (3, 0.5), (8, 0.5), (64, 0.15), (64, 0.5)   [NLG]
  S: prefix LM, split uniform in [1, n)          [S2S]
Each example draws a family with probabilities `rates` (default R 0.4, X 0.4, S 0.2: a third-party
reading of the paper, which does not state them; unverified) and then a denoiser of that family
uniformly. The paradigm token is the first input token (`paradigm_ids`: a piece spelled [NLU] /
[NLG] / [S2S], else an unused embedding row past the vocabulary's ids, 32,100-32,102 on T5's). R and
X are span corruption (objectives/noise.py) with EOS after inputs and targets; S splits the piece at
a uniform point and adds no EOS (the stream UL2 cuts has no document EOS, unlike
objectives/prefix_lm.py). Every example consumes the same `raw` tokens of the stream; by default the
most that fits TASK_FEATURE_LENGTHS for every denoiser, so the feature lengths are the maximum over
denoisers (`feature_lengths(raw)` computes them; gin_configs/objectives/ul2.gin uses raw = 568).
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import gin
import seqio
import tensorflow as tf

from objectives import common
from objectives import noise
from objectives import registry
from objectives import vocab as vocab_lib

# (family, mean span, density); S has no span settings.
DENOISERS = (
    ("R", 3.0, 0.15),
    ("R", 8.0, 0.15),
    ("X", 3.0, 0.5),
    ("X", 8.0, 0.5),
    ("X", 64.0, 0.15),
    ("X", 64.0, 0.5),
    ("S", None, None),
)
FAMILIES = ("R", "X", "S")
PARADIGM = {"R": "[NLU]", "X": "[NLG]", "S": "[S2S]"}


def denoiser_lengths(raw: int, denoiser) -> tuple[int, int, int]:
  """(inputs, targets, sentinels) needed by one denoiser on `raw` tokens (paradigm token included)."""
  family, mean_span, density = denoiser
  if family == "S":
    return raw, raw - 1, 0  # inputs: paradigm + up to raw - 1 tokens
  lengths = noise.corrupted_lengths(raw, density, mean_span, extra_inputs=1)
  return lengths.inputs, lengths.targets, lengths.noise_spans


def feature_lengths(raw: int, denoisers: Sequence = DENOISERS) -> dict[str, int]:
  """TASK_FEATURE_LENGTHS covering every denoiser on `raw` tokens (568 -> inputs 568, targets 567)."""
  needs = [denoiser_lengths(raw, d) for d in denoisers]
  return {"inputs": max(n[0] for n in needs), "targets": max(n[1] for n in needs)}


def raw_length(task_feature_lengths: Mapping[str, int], denoisers: Sequence = DENOISERS) -> int:
  """The most raw tokens per example for which every denoiser fits the task feature lengths."""
  for key in ("inputs", "targets"):
    if key not in task_feature_lengths:
      raise ValueError(f"ul2 needs TASK_FEATURE_LENGTHS[{key!r}].")
  fits = lambda raw: all(
      i <= task_feature_lengths["inputs"] and t <= task_feature_lengths["targets"]
      for i, t, _ in (denoiser_lengths(raw, d) for d in denoisers)
  )
  if not fits(2):
    raise ValueError(
        f"TASK_FEATURE_LENGTHS={dict(task_feature_lengths)} is too short for UL2: even 2 raw tokens "
        f"need {feature_lengths(2, denoisers)}."
    )
  raw = 2
  while fits(raw + 1):
    raw += 1
  return raw


@gin.configurable(module="objectives.ul2")
def settings(
    rates: Mapping[str, float] = (("R", 0.4), ("X", 0.4), ("S", 0.2)),
    denoisers: Sequence = DENOISERS,
    paradigm_ids: Optional[Mapping[str, int]] = None,
) -> dict:
  """UL2 mixing rates per family, the denoisers, and optional explicit paradigm-token ids."""
  rates = dict(rates)
  denoisers = tuple(tuple(d) for d in denoisers)
  bad = [f for f in rates if f not in FAMILIES] + [d[0] for d in denoisers if d[0] not in FAMILIES]
  if bad:
    raise ValueError(f"objectives.ul2.settings: unknown families {bad}; valid: {FAMILIES}.")
  used = {d[0] for d in denoisers}
  if any(rates.get(f, 0.0) < 0 for f in rates) or sum(rates.get(f, 0.0) for f in used) <= 0:
    raise ValueError(f"objectives.ul2.settings.rates={rates}: need non-negative rates summing > 0.")
  return {"rates": rates, "denoisers": denoisers, "paradigm_ids": paradigm_ids}


def denoiser_probabilities(config: Mapping) -> list[float]:
  """Per-denoiser sampling probability: family rate split evenly within the family."""
  denoisers, rates = config["denoisers"], config["rates"]
  counts = {f: sum(d[0] == f for d in denoisers) for f in FAMILIES}
  probs = [rates.get(d[0], 0.0) / counts[d[0]] for d in denoisers]
  total = sum(probs)
  return [p / total for p in probs]


def paradigm_ids(vocabulary: seqio.Vocabulary, config: Mapping) -> dict[str, int]:
  """The id of each family's paradigm token: bound, a dedicated piece, or an unused embedding row.

  Without `paradigm_ids` bound, a token spelled as a piece of the vocabulary (the embedded one's
  3-5) keeps that id; one the vocabulary lacks (T5's 32,100 ids) takes the next embedding row past
  the ids, which no piece and no sentinel uses: T5's 32,128 rows leave 28 (32,100-32,127), so
  [NLU] [NLG] [S2S] get 32,100, 32,101, 32,102. Sentinels count down from the last id (32,099).
  """
  ids = vocabulary.vocab_size
  rows = vocab_lib.embedding_rows(ids)
  if config["paradigm_ids"]:
    return _bound_paradigm_ids(vocabulary, config["paradigm_ids"], rows)
  out, spare = {}, ids
  for family in FAMILIES:
    piece = vocab_lib.dedicated_piece_id(vocabulary, PARADIGM[family])
    if piece is None:
      if spare >= rows:
        raise registry.ConfigError(
            f"UL2 paradigm token {PARADIGM[family]!r} has no piece in the vocabulary ({ids} ids) "
            f"and its {rows} embedding rows leave no unused row for it (rows {ids}-{rows - 1} are "
            "all taken); bind objectives.ul2.settings.paradigm_ids = {'R': id, 'X': id, 'S': id} "
            "to ids of pieces spelled [NLU] [NLG] [S2S].")
      piece, spare = spare, spare + 1
    out[family] = piece
  return out


def _bound_paradigm_ids(vocabulary: seqio.Vocabulary, bound: Mapping, rows: int) -> dict[str, int]:
  """objectives.ul2.settings.paradigm_ids, checked: each a dedicated piece or an unused row."""
  where = "objectives.ul2.settings.paradigm_ids"
  if not isinstance(bound, Mapping) or set(bound) != set(FAMILIES):
    raise registry.ConfigError(
        f"{where} = {bound!r}: expected one id per family, {{'R': id, 'X': id, 'S': id}}.")
  ids, extra = vocabulary.vocab_size, vocabulary.extra_ids
  out = {}
  for family in FAMILIES:
    value, token = bound[family], PARADIGM[family]
    if isinstance(value, bool) or not isinstance(value, int):
      raise registry.ConfigError(f"{where}[{family!r}] = {value!r}: expected an integer id.")
    if not 0 <= value < rows:
      raise registry.ConfigError(
          f"{where}[{family!r}] = {value} ({token}) is beyond the model's embedding: the "
          f"vocabulary's {ids} ids give {rows} rows (0-{rows - 1}).")
    if ids - extra <= value < ids:
      raise registry.ConfigError(
          f"{where}[{family!r}] = {value} ({token}) is the sentinel <extra_id_{ids - 1 - value}> "
          f"(sentinels are ids {ids - extra}-{ids - 1}); use an id from {ids}-{rows - 1} (unused "
          "embedding rows) or a piece spelled " + token + ".")
    if value < ids - extra and value != vocab_lib.dedicated_piece_id(vocabulary, token):
      raise registry.ConfigError(
          f"{where}[{family!r}] = {value} ({token}) is the vocabulary's piece "
          f"{vocab_lib.piece_name(vocabulary, value)}: text would be read as a paradigm token. Use "
          f"an id from {ids}-{rows - 1} (unused embedding rows) or a piece spelled {token}.")
    out[family] = value
  if len(set(out.values())) != len(out):
    raise registry.ConfigError(f"{where} = {dict(bound)!r}: the three ids must differ.")
  return out


def validate_lengths(task_feature_lengths: Mapping[str, int], extra_ids: int) -> int:
  """The raw length for these task lengths; raises if sentinels would exceed the extra ids."""
  config = settings()
  raw = raw_length(task_feature_lengths, config["denoisers"])
  for d in config["denoisers"]:
    spans = denoiser_lengths(raw, d)[2]
    if spans > extra_ids:
      raise ValueError(
          f"UL2 denoiser {d} on {raw} raw tokens needs {spans} sentinels but the vocabulary has "
          f"only {extra_ids} extra ids; shorten TASK_FEATURE_LENGTHS or add extra ids."
      )
  return raw


def _raw_length(task_feature_lengths: Mapping[str, int], vocabulary: seqio.Vocabulary) -> int:
  """The raw length (validate_lengths), once the vocabulary is known to hold the paradigm tokens."""
  raw = validate_lengths(task_feature_lengths, vocabulary.extra_ids)
  paradigm_ids(vocabulary, settings())
  return raw


@gin.configurable(module="objectives.ul2")
def ul2(
    ds: tf.data.Dataset,
    sequence_length: Mapping[str, int],
    output_features: Mapping[str, seqio.Feature],
) -> tf.data.Dataset:
  """Tokenized documents {'targets'} -> {'inputs', 'targets'} from a sampled UL2 denoiser."""
  vocab = output_features["targets"].vocabulary
  config = settings()
  raw = validate_lengths(sequence_length, vocab.extra_ids)
  ids = paradigm_ids(vocab, config)
  vocab_size, eos_id = vocab.vocab_size, vocab.eos_id
  logits = tf.math.log(tf.constant([denoiser_probabilities(config)], tf.float32))

  def branch(denoiser, tokens, seeds):
    family, mean_span, density = denoiser
    lead = tf.constant([ids[family]], tf.int32)

    def fn():
      if family == "S":
        s = tf.random.stateless_uniform(
            [], seed=seeds[1], minval=1, maxval=tf.size(tokens), dtype=tf.int32
        )
        return tf.concat([lead, tokens[:s]], 0), tokens[s:]
      inputs, targets = noise.corrupt(tokens, density, mean_span, vocab_size, eos_id, seeds[1:])
      return tf.concat([lead, inputs], 0), targets

    return fn

  @seqio.map_over_dataset(num_seeds=3)
  def denoise(tokens, seeds):
    choice = tf.random.stateless_categorical(logits, 1, seed=seeds[0], dtype=tf.int32)[0, 0]
    branches = [branch(d, tokens, seeds) for d in config["denoisers"]]
    inputs, targets = tf.switch_case(choice, branches)
    return {"inputs": inputs, "targets": targets}

  pieces = common.chunk_stream(ds, raw, min_length=2)
  return common.shuffle(denoise(pieces))


# eos: what the task's seqio features declare. The preprocessor adds EOS itself: R and X end inputs
# and targets with it, S (prefix LM) does not.
registry.register(registry.Objective(
    name="ul2", short="UL2", preprocessor=ul2, features=("inputs", "targets"),
    raw_length=_raw_length, eos={"inputs": True, "targets": True},
    tiny_lengths={"inputs": 64, "targets": 64},
))
