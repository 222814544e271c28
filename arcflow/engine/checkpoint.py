"""Training checkpoints: trainable tensors only, written atomically, resumed automatically.

Layout of ``checkpoints/<run>/``::

    iter_000500/trainable.safetensors   trainable tensors of the model (no frozen base)
    iter_000500/ema.safetensors         EMA of those tensors, float32
    iter_000500/state.pt                optimiser, schedulers, iteration, every rank's RNG state
    iter_000500/manifest.json           size and SHA-256 of the files above, written last
    latest                              name of the newest checkpoint

Tensors are whole and named as in the unsharded model, the optimiser state included (keyed by
parameter name): under FSDP every rank gathers them and rank 0 writes, and on resume each rank
keeps its shard. So a checkpoint resumes in a single process, under DDP or under FSDP, whichever
wrote it.

A checkpoint is written into a temporary folder and renamed into place, and ``latest`` is
replaced atomically after that (``checkpoint_files.write_checkpoint``). A failed write removes its
temporary folder and leaves the previous checkpoints as they were. On resume, the newest
checkpoint whose files match its manifest is loaded; a truncated, corrupt or incomplete newer one
is named in the log and skipped. ``state.pt`` holds tensors and plain Python values only and loads
with ``torch.load(weights_only=True)``.

When the job is told to stop (SIGTERM, SIGINT, or the early-warning signal, SIGUSR1 by default:
``preemption.py``), the current iteration finishes, every rank takes part in writing its
checkpoint, and ``tools/train.py`` exits with ``EXIT_RESUME`` (75): rerunning the same command
continues from there.

The data stream resumes too: mmengine advances the data iterator once per finished iteration,
loading every skipped batch; a batch sampler with ``resume_at(batches)`` (``BucketBatchSampler``)
instead starts at the right batch by replaying indices only, and those advances become no-ops.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from mmengine.dist import (
    all_gather_object,
    broadcast_object_list,
    get_rank,
    get_world_size,
    is_main_process,
)
from mmengine.hooks import Hook
from safetensors.torch import load_file, save_file
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)

from arcflow.engine.checkpoint_files import (
    CheckpointError,
    CheckpointWriteError,
    checkpoint_iteration,
    find_checkpoint,
    list_checkpoints,
    verify_checkpoint,
    write_checkpoint,
)
from arcflow.engine.ema import trainable_parameters
from arcflow.engine.preemption import PreemptionGuard
from arcflow.engine.sharding import gather_to_main, shard_like
from arcflow.models.state_match import match_state
from arcflow.registry import HOOKS


def _rng_state() -> dict:
    np_state = np.random.get_state()  # noqa: NPY002 (the global state is what we restore)
    return dict(
        torch=torch.get_rng_state(),
        cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        numpy=[np_state[0], np_state[1].tolist(), *np_state[2:]],
        python=list(random.getstate()[1]),
        python_version=random.getstate()[0],
        python_gauss=random.getstate()[2],
    )


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))  # noqa: NPY002
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))


def latest_checkpoint(root: str | Path) -> Path | None:
    """The newest complete checkpoint under ``root`` (see ``find_checkpoint``), else None."""
    return find_checkpoint(root)


def _nbytes(value) -> int:
    """Bytes of the tensors in a nest of dicts and lists: the size a checkpoint needs on disk."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_nbytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_nbytes(v) for v in value)
    return 0


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


class _SkipAdvances:
    """The loop's data iterator, with its first ``skip`` advances answered without data: the batch
    sampler already starts after the batches they would have loaded and dropped."""

    def __init__(self, iterator, skip: int) -> None:
        self.iterator = iterator
        self.skip = skip

    def __iter__(self):
        return self

    def __next__(self):
        if self.skip:
            self.skip -= 1
            return None
        return next(self.iterator)


def _resume_data_stream(runner, iteration: int) -> None:
    """Continue the data stream after ``iteration`` batches, if the batch sampler can seek."""
    loop = runner.train_loop
    batch_sampler = getattr(loop.dataloader, "batch_sampler", None)
    if not hasattr(batch_sampler, "resume_at"):
        return  # mmengine's loop skips the batches by loading them
    batch_sampler.resume_at(iteration)
    # The loop started iterating (and its workers prefetching) before this hook ran: start over
    # from the sampler's new position with a fresh iterator of the same kind.
    loop.dataloader_iterator = _SkipAdvances(
        type(loop.dataloader_iterator)(loop.dataloader), iteration
    )


def _optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The optimiser state keyed by parameter name, whole CPU tensors, on the main rank (``{}`` on
    the others); every rank must call it (under FSDP the shards are gathered)."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_optimizer_state_dict(model, optimizer, options=options)


def _load_optimizer_state(runner, state: dict) -> None:
    """Load a state of :func:`_optimizer_state` (each rank keeps its shard), or one keyed by
    parameter index as written before optimiser states were keyed by name."""
    groups = state["param_groups"]
    if groups and groups[0]["params"] and isinstance(groups[0]["params"][0], int):
        runner.optim_wrapper.load_state_dict(state)
        return
    model = getattr(runner.model, "module", runner.model)
    # Not strict: a trainable tensor that never had a gradient (a layer the forward skips, such as
    # the temporal convolutions of a video VAE on single frames) has no optimiser state to save.
    # Which tensors are trainable is checked against trainable.safetensors before this.
    optimizer = runner.optim_wrapper.optimizer
    options = StateDictOptions(full_state_dict=True, strict=False)
    set_optimizer_state_dict(model, optimizer, state, options=options)
    # Loading initialises every state with a zero-gradient step; stateless tensors must stay
    # stateless, or their first real step would be bias-corrected as a second one.
    for name, param in model.named_parameters():
        if name not in state["state"]:
            optimizer.state.pop(param, None)


def _shared(value, failure: BaseException | None = None):
    """Rank 0's ``(value, failure)`` on every rank."""
    message = [(value, failure)]
    if get_world_size() > 1:
        broadcast_object_list(message)
    return message[0]


@HOOKS.register_module()
class ArcFlowCheckpointHook(Hook):
    """Saves every ``interval`` iterations, at the end and when the job is told to stop; resumes
    from the run's newest complete checkpoint.

    Args:
        out_dir: the run's checkpoint folder (``tools/train.py`` sets ``checkpoints/<run>``).
        interval: iterations between checkpoints.
        keep_last: how many of the newest checkpoints to keep.
        keep_every: also keep every checkpoint whose iteration is a multiple of this (0: none).
        resume: resume from ``out_dir``'s newest complete checkpoint when there is one.
        resume_from: resume from this checkpoint folder (or the newest complete one of this run
            folder) instead; it must be complete.
        preempt_signal: the early-warning signal that, like SIGTERM and SIGINT, checkpoints and
            stops the run (``"SIGUSR1"``, as SLURM's ``--signal`` sends; None: only those two).
    """

    priority = "LOW"

    def __init__(
        self,
        out_dir: str,
        interval: int = 500,
        keep_last: int = 2,
        keep_every: int = 0,
        resume: bool = True,
        resume_from: str | None = None,
        preempt_signal: str | None = "SIGUSR1",
    ) -> None:
        if interval < 1 or keep_last < 1:
            raise ValueError("interval and keep_last must be >= 1")
        self.out_dir = Path(out_dir)
        self.interval = interval
        self.keep_last = keep_last
        self.keep_every = keep_every
        self.resume = resume
        self.resume_from = resume_from
        self.guard = PreemptionGuard(preempt_signal)
        self.preempted = False

    @staticmethod
    def _ema_hook(runner):
        return next((h for h in runner.hooks if type(h).__name__ == "ArcFlowEMAHook"), None)

    def before_run(self, runner) -> None:
        self.guard.install()

    def after_run(self, runner) -> None:
        self.guard.uninstall()

    # ------------------------------------------------------------------ save
    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        done = runner.iter + 1
        saved = self.every_n_train_iters(runner, self.interval)
        if saved:
            self.save(runner, done)
        # Every rank asks every iteration, so all of them stop after the same one even when the
        # signal reached them at different times.
        received = self.guard.received_on_any_rank()
        if received is None or done >= runner.max_iters:
            return
        runner.logger.warning(
            f"{received}: stopping after iteration {done} with a checkpoint; rerun the "
            "same command to resume"
        )
        if not saved:
            self.save(runner, done)
        self.preempted = True
        runner.train_loop.stop_training = True

    def after_train(self, runner) -> None:
        done = runner.iter
        if done > 0 and not (self.out_dir / f"iter_{done:06d}").is_dir():
            self.save(runner, done)

    def save(self, runner, done: int) -> Path:
        """Write the checkpoint after ``done`` iterations and prune old ones. Every rank calls it
        (under FSDP each takes part in gathering the tensors); rank 0 writes, and a failed write
        raises CheckpointWriteError on every rank."""
        final = self.out_dir / f"iter_{done:06d}"
        model = getattr(runner.model, "module", runner.model)
        trainable = gather_to_main(trainable_parameters(model))
        ema_hook = self._ema_hook(runner)
        ema = ema_hook.state_dict() if ema_hook is not None else None
        optimizer = _optimizer_state(model, runner.optim_wrapper.optimizer)
        # Every rank's own RNG state: ranks draw different amounts (their batches differ in
        # shape), so rank 0's state would replay other numbers on the other ranks.
        rng = all_gather_object(_rng_state()) if get_world_size() > 1 else [_rng_state()]
        failure = None
        if is_main_process():
            state = dict(
                iteration=done,
                optimizer=optimizer,
                schedulers=[s.state_dict() for s in runner.param_schedulers or []],
                rng=rng[0],
                rng_ranks=rng,
            )
            writers = [("trainable.safetensors", lambda p: save_file(trainable, str(p)))]
            if ema is not None:
                writers.append(("ema.safetensors", lambda p: save_file(ema, str(p))))
            writers.append(("state.pt", lambda p: torch.save(state, p)))
            try:
                write_checkpoint(final, writers, _nbytes([trainable, ema, state]))
                _write_text_atomic(self.out_dir / "latest", final.name)
            except CheckpointWriteError as error:
                failure = error
            else:
                self._prune()
                runner.logger.info(f"checkpoint saved: {final}")
        _, failure = _shared(None, failure)
        if failure is not None:
            raise failure
        return final

    def _prune(self) -> None:
        found = list_checkpoints(self.out_dir)
        for path in found[: -self.keep_last]:
            if self.keep_every and checkpoint_iteration(path) % self.keep_every == 0:
                continue
            shutil.rmtree(path, ignore_errors=True)

    # ------------------------------------------------------------------ resume
    def _choose(self, runner) -> Path | None:
        """The checkpoint to resume from (rank 0 reads the files, every rank gets the answer)."""
        if self.resume_from is not None:
            chosen = Path(self.resume_from)
            if checkpoint_iteration(chosen) is None and list_checkpoints(chosen):
                return find_checkpoint(chosen, runner.logger.warning)  # a run's checkpoint folder
            return verify_checkpoint(chosen)
        if not self.resume:
            return None
        return find_checkpoint(self.out_dir, runner.logger.warning)

    def before_train(self, runner) -> None:
        path, failure = None, None
        if is_main_process():
            try:
                path = self._choose(runner)
            except CheckpointError as error:
                failure = error
        path, failure = _shared(path, failure)
        if failure is not None:
            raise failure
        if path is not None:
            self.load(runner, path)

    def load(self, runner, path: Path) -> None:
        """Restore model, EMA, optimiser, schedulers, iteration and RNG from ``path``."""
        params = trainable_parameters(runner.model)
        saved = load_file(str(path / "trainable.safetensors"))
        problems = match_state(params, saved, "checkpoint", "model").problems()
        if problems:
            raise CheckpointError(
                f"checkpoint {path} does not match this model's trainable tensors ("
                + "; ".join(problems)
                + "). Resume with the config that wrote it, or start afresh with --no-resume / "
                "another work dir."
            )
        with torch.no_grad():
            for name, param in params.items():
                param.copy_(shard_like(saved[name], param))
        ema_hook = self._ema_hook(runner)
        if ema_hook is not None and (path / "ema.safetensors").is_file():
            ema_hook.load_state_dict(load_file(str(path / "ema.safetensors")), params)
        state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
        _load_optimizer_state(runner, state["optimizer"])
        for scheduler, sched_state in zip(runner.param_schedulers or [], state["schedulers"]):
            scheduler.load_state_dict(sched_state)
        # Before the RNG is restored: a new data iterator draws its base seed from torch's RNG.
        _resume_data_stream(runner, state["iteration"])
        ranks = state.get("rng_ranks") or []
        _set_rng_state(ranks[get_rank()] if len(ranks) == get_world_size() else state["rng"])
        runner.train_loop._iter = state["iteration"]
        runner.message_hub.update_info("iter", state["iteration"])
        runner.logger.info(f"resumed from {path} at iteration {state['iteration']}")
