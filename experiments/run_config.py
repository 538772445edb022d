"""Checks of a training run's configuration, made before anything expensive, and its records.

Every error names the gin binding or macro to fix and what was expected. Also: the MODEL_DIR lock
(one run per MODEL_DIR), the comparison of a resumed run with its checkpoint's record, the resolved
config written to MODEL_DIR/config.gin, the model's description, tokens and FLOPs per step.
"""

from __future__ import annotations

import dataclasses
import datetime
import errno
import fcntl
import inspect
import json
import logging
import os
import socket
import sys
from typing import Any, Mapping, Sequence

import gin
import numpy as np

from arch import accounting
from arch import config as config_lib
from arch import converters
from arch import registry as arch_registry
import objectives
from experiments.runtime import checkpoints as ckpt_lib
from experiments import data as data_lib
from experiments import optimizers as optimizers_lib
from experiments.runtime import errors
from experiments.runtime import storage

_MODEL_API = ("loss_fn", "input_shapes", "get_initial_variables", "feature_converter_cls")
LOCK_FILE = "LOCK"


class ConfigError(errors.ConfigError):
  """A training configuration that cannot run, with the binding to fix."""


class ModelDirInUseError(ConfigError):
  """Another live run holds MODEL_DIR's lock."""


class ResumeMismatchError(ConfigError):
  """MODEL_DIR's checkpoints were written by a run with another task, lengths, batch or model."""


@dataclasses.dataclass(frozen=True)
class Prepared:
  model_dir: str  # as given: a local path or a URI
  raw_length: int | None  # corpus tokens per example ('{corpus}_{objective}' tasks), else None


def check_train_bindings(train_fn) -> None:
  """Every argument train() requires is bound in gin (the run files bind them); lists all."""
  missing = []
  for arg, param in inspect.signature(train_fn).parameters.items():
    if param.default is not gin.REQUIRED:
      continue
    try:
      gin.query_parameter(f"experiments.train.train.{arg}")
    except ValueError:
      missing.append(f"train.{arg}")
  if missing:
    raise ConfigError(f"The gin bindings {', '.join(missing)} are not set: add a run file such as "
                      f"gin_configs/runs/pretrain.gin to the stack.")


def _positive_int(name: str, value: Any, extra: str = "") -> None:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
    raise ConfigError(f"{name} must be a positive integer{extra}, got {value!r}.")


def check_model_dir(model_dir: Any) -> storage.Path:
  """MODEL_DIR exists (created if needed) and is writable, on a filesystem orbax can checkpoint
  to (a local folder or gs://, experiments/runtime/storage.py)."""
  try:
    return storage.check_dir(model_dir, "MODEL_DIR", create=True, writable=True, checkpoints=True)
  except storage.StorageError as e:
    raise ConfigError(str(e)) from e.__cause__


def check_checkpoint_policy(keep: Any, keep_period: Any, minutes: Any) -> None:
  """train.keep_checkpoints, keep_period (positive ints or None), checkpoint_minutes (> 0, None)."""
  for name, value in (("train.keep_checkpoints", keep), ("train.keep_period", keep_period)):
    if value is not None:
      _positive_int(name, value, " or None")
  if minutes is not None and (isinstance(minutes, bool) or not isinstance(minutes, (int, float))
                              or not minutes > 0):
    raise ConfigError(f"train.checkpoint_minutes must be a positive number of minutes or None, "
                      f"got {minutes!r}.")
  if keep_period is not None and keep is None:
    raise ConfigError(f"train.keep_period = {keep_period} with train.keep_checkpoints = None: "
                      f"every checkpoint is kept already; set keep_checkpoints (the last K) too.")


def check_and_prepare(*, model, model_dir, task_name, task_feature_lengths, train_steps,
                      batch_size, optimizer, num_microbatches, checkpoint_period, log_period,
                      initial_checkpoint_path) -> Prepared:
  """All cheap checks of a run; raises ConfigError naming the binding to fix."""
  missing = [a for a in _MODEL_API if not hasattr(model, a)]
  if missing:
    raise ConfigError(f"MODEL = {model!r} lacks the model API {missing} (expected "
                      f"@arch.models.get_model()).")
  if not isinstance(optimizer, optimizers_lib.Optimizer):
    raise ConfigError(f"train.optimizer must be an experiments.optimizers optimizer (e.g. "
                      f"@experiments.optimizers.adafactor()), got {optimizer!r}.")
  _positive_int("TRAIN_STEPS", train_steps)
  _positive_int("BATCH_SIZE", batch_size)
  _positive_int("train.num_microbatches", num_microbatches)
  _positive_int("train.checkpoint_period", checkpoint_period)
  _positive_int("train.log_period", log_period)
  if batch_size % num_microbatches:
    raise ConfigError(f"BATCH_SIZE {batch_size} is not divisible by train.num_microbatches "
                      f"{num_microbatches}.")
  if not isinstance(task_feature_lengths, Mapping):
    raise ConfigError(f"TASK_FEATURE_LENGTHS must be a dict like {{'inputs': 512, 'targets': "
                      f"114}}, got {task_feature_lengths!r}.")
  if not isinstance(task_name, str):
    raise ConfigError(f"MIXTURE_OR_TASK_NAME must be a string, got {task_name!r}.")
  try:
    task = data_lib.get_task(task_name)
    data_lib.check_feature_lengths(task, task_feature_lengths)
  except ValueError as e:
    raise ConfigError(str(e)) from e
  check_converter_lengths(model, task, task_feature_lengths)
  _check_vocab(model, task)
  raw_length = objectives_validation(model, task_name, task_feature_lengths)
  try:  # the scheme now, the filesystem in check_model_dir (before compilation)
    storage.check_scheme(model_dir, "MODEL_DIR", checkpoints=True)
    if initial_checkpoint_path:
      storage.check_dir(initial_checkpoint_path, "INITIAL_CHECKPOINT_PATH", checkpoints=True)
  except storage.StorageError as e:
    raise ConfigError(str(e)) from e.__cause__
  if initial_checkpoint_path:
    try:
      ckpt_lib.resolve_step_dir(initial_checkpoint_path)
    except ckpt_lib.CheckpointError as e:
      raise ConfigError(f"INITIAL_CHECKPOINT_PATH: {e}") from e
  return Prepared(model_dir=os.fspath(model_dir), raw_length=raw_length)


def _check_vocab(model, task) -> None:
  """The model's embedding rows fit the task's vocabulary (arch.config's rule, any task)."""
  feature = max(task.output_features.values(), key=lambda f: int(f.vocabulary.vocab_size))
  try:
    config_lib.check_vocabulary(model.config, feature.vocabulary,
                                source=f"the vocabulary of task {task.name!r}")
  except config_lib.ConfigError as e:
    raise ConfigError(str(e)) from None


def task_lengths(model, task_feature_lengths: Mapping[str, int]) -> dict[str, int]:
  """TASK_FEATURE_LENGTHS without the keys the model's converter reads ('decoder_length')."""
  keys = converters.row_length_keys(model.feature_converter_cls)
  return {k: v for k, v in dict(task_feature_lengths).items() if k not in keys}


def check_converter_lengths(model, task, task_feature_lengths: Mapping[str, int]) -> None:
  """Every TASK_FEATURE_LENGTHS key is a feature of the task or read by the model's converter."""
  keys = converters.row_length_keys(model.feature_converter_cls)
  extra = sorted(set(task_feature_lengths) - set(task.output_features) - set(keys))
  if extra:
    converter = model.feature_converter_cls.__name__
    raise ConfigError(
        f"TASK_FEATURE_LENGTHS = {dict(task_feature_lengths)}: {extra} is neither a feature of "
        f"task {task.name!r} ({sorted(task.output_features)}) nor a length the feature converter "
        f"of {model.name!r} ({converter}) reads ({', '.join(map(repr, keys)) or 'none'}).")
  try:
    model.feature_converter_cls(pack=True).get_model_feature_lengths(dict(task_feature_lengths))
  except (ValueError, KeyError) as e:
    raise ConfigError(f"TASK_FEATURE_LENGTHS = {dict(task_feature_lengths)} on {model.name!r}: "
                      f"{e}") from None


def objectives_validation(model, task_name: str, task_feature_lengths: Mapping[str, int],
                          check_corpus: bool = True) -> int | None:
  """objectives.validate(...) for '{corpus}_{objective}' tasks (mixtures are checked above);
  returns the corpus tokens one example takes (None for a mixture). check_corpus=False skips
  opening the corpus (the grid's dry run: no TFDS access)."""
  try:
    objectives.parse_task_name(task_name)
  except ValueError:
    return None  # a mixture (e.g. the MTF mixtures): registered and checked by its own package
  # The converter's own keys (a decoder row length) are the architecture's, not the objective's.
  info = objectives.validate(task_name, task_lengths(model, task_feature_lengths),
                             architecture=arch_registry.get(model.name),
                             vocab_size=model.config.vocab_size, check_corpus=check_corpus)
  return int(info["raw_length"])


class ModelDirLock:
  """MODEL_DIR/LOCK, held for a run's life: a second run on the same MODEL_DIR stops at once.

  The file names the holder (host, process id, command). The kernel's lock on it (flock) is
  released when the holder exits in any way, kill -9 included, so a lock left by a dead process of
  this host is taken over; one naming another host is refused (its process cannot be checked
  from here) with the file to delete. Only process 0 of a multi-host run takes it.
  """

  def __init__(self, model_dir: str | os.PathLike):
    self.uri = storage.is_uri(model_dir)
    self.path = storage.as_path(model_dir) / LOCK_FILE
    self._fd: int | None = None
    self._record: str | None = None

  def __enter__(self) -> "ModelDirLock":
    import jax  # pylint: disable=g-import-not-at-top
    if jax.process_index() != 0:
      return self
    if self.uri:
      return self._enter_uri()
    while True:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except OSError as e:
        os.close(fd)
        if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
          raise
        raise ModelDirInUseError(
            f"MODEL_DIR {self.path.parent} is in use by another run ({self._holder()}); two runs "
            f"on one MODEL_DIR would overwrite each other's checkpoints. Wait for it or stop it, "
            f"or choose another MODEL_DIR.") from None
      try:  # a holder that released (and removed) the file between our open and flock
        same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
      except FileNotFoundError:
        same = False
      if same:
        break
      os.close(fd)
    previous = self._read()
    here = socket.gethostname()
    if previous and previous.get("host") != here:
      os.close(fd)
      raise ModelDirInUseError(
          f"MODEL_DIR {self.path.parent} is locked by a run on another host ({self._holder()}); "
          f"if that run is no longer running, delete {self.path} and start again.")
    if previous:
      logging.warning("Taking over the lock of %s: its process %s is gone.", self.path.parent,
                      previous.get("pid"))
    record = self._new_record()
    os.ftruncate(fd, 0)
    os.write(fd, (json.dumps(record) + "\n").encode())
    os.fsync(fd)
    self._fd = fd
    return self

  def _enter_uri(self) -> "ModelDirLock":
    """An object store has no flock: the LOCK object names its holder; one of this host whose
    process is gone is taken over, any other refused. Two runs starting within the same moment
    can both pass (no atomic create-if-absent through epath); the lock guards against the
    common mistake, a second launch of a running command."""
    previous = self._read() if self.path.exists() else {}
    here = socket.gethostname()
    if previous:
      alive = previous.get("host") == here and _pid_alive(previous.get("pid"))
      if previous.get("host") != here or alive:
        raise ModelDirInUseError(
            f"MODEL_DIR {self.path.parent} is locked by another run ({self._holder()}); if that "
            f"run is no longer running, delete {self.path} and start again.")
      logging.warning("Taking over the lock of %s: its process %s is gone.", self.path.parent,
                      previous.get("pid"))
    self._record = json.dumps(self._new_record()) + "\n"
    self.path.write_text(self._record)
    return self

  def _new_record(self) -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "command": " ".join(sys.argv)[:500]}

  def _read(self) -> dict:
    try:
      record = json.loads(self.path.read_text() or "{}")
    except (OSError, ValueError):
      return {}
    return record if isinstance(record, dict) else {}

  def _holder(self) -> str:
    r = self._read()
    if not r:
      return f"see {self.path}"
    return (f"host {r.get('host')}, process {r.get('pid')}, started {r.get('started')}; lock file "
            f"{self.path}")

  def __exit__(self, *exc) -> bool:
    if self._record is not None:
      try:
        if self.path.read_text() == self._record:
          self.path.unlink()
      except (OSError, ValueError):
        pass
      self._record = None
    if self._fd is not None:
      try:
        if os.fstat(self._fd).st_ino == os.stat(self.path).st_ino:
          os.remove(self.path)
      except FileNotFoundError:
        pass
      os.close(self._fd)
      self._fd = None
    return False


def _pid_alive(pid: Any) -> bool:
  try:
    os.kill(int(pid), 0)
  except (TypeError, ValueError, ProcessLookupError):
    return False
  except PermissionError:
    return True
  return True


def check_resume(step_dir: storage.Path, *, task_name: str,
                 task_feature_lengths: Mapping[str, int], batch_size: int,
                 model_description: str) -> None:
  """The run resuming from `step_dir` has its task, lengths, batch and model (its meta record)."""
  meta = ckpt_lib.read_meta(step_dir)
  model_dir = step_dir.parent.parent
  ours = {"MIXTURE_OR_TASK_NAME": task_name,
          "TASK_FEATURE_LENGTHS": dict(task_feature_lengths),
          "BATCH_SIZE": int(batch_size), "MODEL": model_description}
  recorded = {"MIXTURE_OR_TASK_NAME": meta.get("task"),
              "TASK_FEATURE_LENGTHS": meta.get("task_feature_lengths"),
              "BATCH_SIZE": meta.get("batch_size"), "MODEL": meta.get("model")}
  diffs = [f"{k}: checkpoint {recorded[k]!r}, this configuration {ours[k]!r}"
           for k in ours if recorded[k] is not None and recorded[k] != ours[k]]
  if diffs:
    raise ResumeMismatchError(
        f"MODEL_DIR {model_dir} holds a run that differs from this configuration (its latest "
        f"checkpoint, step {step_dir.name}): " + "; ".join(diffs) + f". To start a new run from "
        f"that checkpoint, set INITIAL_CHECKPOINT_PATH = '{step_dir}' and a new MODEL_DIR.")


def describe_model(model) -> str:
  """'causal_decoder emb_dim=..., ...' for logs and checkpoint metadata."""
  name = getattr(model, "name", type(model).__name__)
  config = getattr(model, "config", None)
  if config is None or not dataclasses.is_dataclass(config):
    return str(name)
  keys = ("vocab_size", "emb_dim", "num_heads", "head_dim", "mlp_dim", "num_layers",
          "num_encoder_layers", "num_decoder_layers", "activations", "position_scheme",
          "tie_embeddings")
  fields = dataclasses.asdict(config)
  if not arch_registry.get(name).encoder_decoder:
    fields.pop("num_encoder_layers", None)
    fields.pop("num_decoder_layers", None)
  else:
    fields.pop("num_layers", None)
  return f"{name} " + ", ".join(f"{k}={fields[k]}" for k in keys if k in fields)


def tokens_per_step(input_shapes: Mapping[str, tuple[int, ...]]) -> int:
  """Token positions processed per step (encoder inputs plus decoder inputs)."""
  return int(sum(np.prod(input_shapes[k]) for k in ("encoder_input_tokens",
                                                     "decoder_input_tokens")
                 if k in input_shapes))


def flops_per_step(model, task_feature_lengths, batch_size) -> dict:
  """Training FLOPs per step by arch.accounting's rule for the model's architecture."""
  counts = accounting.account(model, dict(task_feature_lengths))
  return {"flops_per_step": float(counts["train_flops_per_example"]) * batch_size,
          "weight_flops_per_step": float(counts["weight_flops_per_example"]) * batch_size,
          "attention_flops_per_step": float(counts["attention_flops_per_example"]) * batch_size,
          "convention": counts["flop_convention"]}


def write_config(model_dir: str | os.PathLike, start_step: int) -> None:
  """MODEL_DIR/config.gin: the operative config; a different earlier one is kept aside."""
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_index() != 0:
    return
  text = ("# The resolved gin config of this run (written after its first step).\n"
          + gin.operative_config_str())
  path = storage.as_path(model_dir) / "config.gin"
  if path.is_file():
    old = path.read_text()
    if old == text:
      return
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path.replace(path.with_name(f"config.before_step{start_step}.{stamp}.gin"))
  storage.write_text(path, text)
