"""The pretraining loop, in the shape of Accelerate's complete examples.

One ``prepare()``; ``accumulate`` for gradient accumulation; mixed precision, clipping, trackers,
``save_state``/``load_state`` and ``skip_first_batches`` all through Accelerate, so the same loop
runs on one CPU, one GPU, many GPUs and many nodes (``accelerate launch``), and under FSDP or
DeepSpeed when Accelerate's config asks for them. Nothing here is home-made distribution.
Setup is here; the step's parts (AdamW, attention, ``skip_unused_rows``) are in
:mod:`pretrain.step`, the running loop in :mod:`pretrain.loop`.

    from pretrain.config import resolve
    from pretrain.train import train
    result = train(resolve(overrides=["train.output_dir=runs/x", "train.max_steps=200"]))
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch

from cwm.errors import ConfigError
from cwm.model import build_model
from pretrain import checkpointing as ckpts
from pretrain import skips
from pretrain.config import PretrainConfig, cosine_factor, lr_for, save_yaml
from pretrain.data import build_data, eval_batch
from pretrain.evaluate import Evaluator
from pretrain.launch import single_process_warning
from pretrain.loop import WARMUP_TIMING_STEPS, TrainingLoop, TrainResult  # noqa: F401 (re-exported)
from pretrain.step import adamw, attention_for, param_groups, resolve_precision, setup_for_training  # noqa: F401 (re-exported)

def _plain_data_parallel(acc) -> bool:
    """True unless FSDP or DeepSpeed owns the optimizer's tensors (they get torch's default)."""
    return acc.distributed_type.name in ("NO", "MULTI_GPU", "MULTI_CPU")


def _accelerator(cfg: PretrainConfig):
    from accelerate import Accelerator

    t = cfg.train
    # Launched as one of several processes on a host without an accelerator (e.g. `accelerate
    # launch --multi_gpu --num_processes 2` on CPUs): Accelerate only forms the gloo group when
    # told it is on CPU; without this every process would silently train alone.
    launched = os.environ.get("LOCAL_RANK") is not None
    cpu = t.cpu or (launched and not _has_accelerator())
    if (warning := single_process_warning()) is not None:  # `accelerate launch --cpu --num_processes 2`
        print(warning, file=sys.stderr, flush=True)
    return Accelerator(cpu=cpu, mixed_precision=resolve_precision(t.mixed_precision, cpu),
                       gradient_accumulation_steps=t.grad_accum, log_with=t.log_with,
                       project_dir=str(t.output_dir), step_scheduler_with_optimizer=False)


def _has_accelerator() -> bool:
    acc = getattr(torch, "accelerator", None)
    if acc is not None and hasattr(acc, "is_available"):
        return bool(acc.is_available())
    return torch.cuda.is_available()


def _reset_accelerate() -> None:
    """Forget Accelerate's process-wide state, so train() can run again in the same process
    (tests, benchmarks) with other settings. The process group, if any, is kept."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def _dataloader(cfg: PretrainConfig, bundle, pin: bool):
    d = cfg.data
    return torch.utils.data.DataLoader(
        bundle.dataset, batch_size=cfg.train.batch_size, sampler=bundle.sampler, drop_last=True,
        num_workers=d.num_workers, persistent_workers=d.num_workers > 0, pin_memory=pin,
        prefetch_factor=4 if d.num_workers > 0 else None)


def _start_message(cfg, model_cfg, acc, lr: float, params: int, summary: str, start: int) -> str:
    t = cfg.train
    eff = t.batch_size * t.grad_accum * acc.num_processes
    lo, hi = cfg.mask_range()
    n = model_cfg.tokens_per_frame
    tokens = eff * model_cfg.num_tokens
    vis = eff * (model_cfg.num_tokens - n + (1 - (lo + hi) / 2) * n)
    return "\n".join([
        f"cwm pretrain: {cfg.model.variant} {model_cfg.input_size[0]}x{model_cfg.input_size[1]} p{model_cfg.patch_size}, "
        f"{params / 1e6:.2f} M parameters, {acc.num_processes} process(es) on {acc.device}, "
        f"precision {acc.mixed_precision}, torch threads {torch.get_num_threads()}",
        f"  data: {summary}",
        f"  effective batch {eff} = {t.batch_size} per process x {t.grad_accum} accumulation x "
        f"{acc.num_processes} process(es); lr {lr:.3g}"
        + (f" (= {cfg.optim.base_lr:g} x {eff}/256)" if cfg.optim.lr is None else " (set)"),
        f"  tokens per step {tokens} ({vis:.0f} seen by the encoder at mask ratio {lo:g}..{hi:g})",
        f"  steps {start} -> {t.max_steps}, run folder {t.output_dir}"])


def _resume_from(cfg: PretrainConfig, resume: Any) -> Path | None:
    run = Path(cfg.train.output_dir)
    if resume in (None, False):
        if ckpts.latest_checkpoint(run) is not None:
            raise ConfigError(f"'{run}' already holds checkpoints; pass resume=True (--resume on the command "
                              "line) to continue that run, or choose another train.output_dir")
        return None
    if resume in (True, "latest"):
        return ckpts.latest_checkpoint(run)  # None: nothing yet, start fresh
    return ckpts.resolve_checkpoint(resume)


def init_weights(model: torch.nn.Module, weights: str) -> None:
    """Copy the weights of ``weights`` (any name or path ``cwm.load`` takes) into ``model``.

    Raises:
        ConfigError: the weights' architecture differs from the configured model's (naming the
            first field that differs).
    """
    from cwm.checkpoints import load_model

    source = load_model(str(weights))
    mine, theirs = model.cfg.to_dict(), source.cfg.to_dict()
    arch = ("patch_size", "num_frames", "enc_dim", "enc_depth", "enc_heads", "dec_dim", "dec_depth",
            "dec_heads", "k_bias", "mlp_ratio")
    for name in arch:
        if name in mine and mine[name] != theirs.get(name):
            raise ConfigError(f"train.init={weights!r}: its {name} is {theirs.get(name)!r}, the configured "
                              f"model's is {mine[name]!r}; choose model.variant/model.arch to match")
    model.load_state_dict(source.state_dict(), strict=True)


# ----------------------------------------------------------------------------------- loop
def train(cfg: PretrainConfig, resume: Any = None) -> TrainResult:
    """Run (or resume) pretraining as configured; returns the final figures.

    Args:
        cfg: a validated config; ``train.output_dir`` is required.
        resume: None (fresh run; refuses a folder that already holds checkpoints), True or
            ``"latest"`` (continue from the newest checkpoint if any), or a checkpoint/run path.
    Raises:
        TrainingError: a non-finite loss (naming the step), or a failed checkpoint write.
    """
    t = cfg.train
    if not t.output_dir:
        raise ConfigError("set the run folder: --output-dir DIR (or train.output_dir=DIR)")
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    run = Path(t.output_dir)
    start_ckpt = _resume_from(cfg, resume)
    acc = _accelerator(cfg)
    if t.log_with and not acc.log_with:  # Accelerate drops trackers whose package is missing, logging only
        _reset_accelerate()
        raise ConfigError(f"train.log_with={t.log_with!r}: tracker not available (is its package, "
                          "e.g. tensorboard, installed?)")
    from accelerate.utils import set_seed

    set_seed(t.seed)  # before building the model: the initial weights depend on it
    model_cfg = cfg.model_config()
    model = build_model(model_cfg)
    if t.init is not None and start_ckpt is None:
        init_weights(model, t.init)
    unit = t.batch_size * acc.num_processes * t.grad_accum
    bundle = build_data(cfg, model_cfg, unit, warn=acc.is_main_process)
    skip_log = skips.start(bundle.dataset, run, bundle.skipped, start_ckpt is None, acc.is_main_process)
    acc.wait_for_everyone()  # a stale log is gone before any process records into it
    loader = _dataloader(cfg, bundle, pin=acc.device.type == "cuda")
    lr = lr_for(cfg, unit)
    o = cfg.optim
    optimizer = adamw(param_groups(model, o.weight_decay), lr, tuple(o.betas), fused=_plain_data_parallel(acc))
    setup_for_training(model, acc.device.type, acc.mixed_precision)
    if t.compile:
        model.compile()  # in place: the state dict (checkpoints, export) keeps its names
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: cosine_factor(s, o.warmup_steps, t.max_steps, o.min_lr_ratio))
    evaluator = Evaluator(eval_batch(bundle.dataset, t.eval_batch), model_cfg, cfg.eval_mask_ratio(), acc.device)
    model, optimizer, loader, scheduler = acc.prepare(model, optimizer, loader, scheduler)

    step = 0
    if start_ckpt is not None:
        acc.load_state(str(start_ckpt))
        step = ckpts.read_meta(start_ckpt)["step"]
    if acc.is_main_process:
        run.mkdir(parents=True, exist_ok=True)
        ckpts.clean_partial(run)
        save_yaml(cfg, run / "config.yaml")
    params = sum(p.numel() for p in model.parameters())
    acc.print(_start_message(cfg, model_cfg, acc, lr, params, bundle.summary, step)
              + (f"\n  resumed from {start_ckpt}" if start_ckpt else ""))
    if t.log_with:
        acc.init_trackers("cwm-pretrain", config=_flat(cfg.to_dict()))
    state = TrainingLoop(cfg, model_cfg, acc, model, optimizer, scheduler, evaluator, run, unit)
    if start_ckpt is not None:
        state.saved_step = step  # that checkpoint exists: finish() need not write it again
    state.emit({"step": step, "event": "resume" if start_ckpt else "start", "num_processes": acc.num_processes,
                "effective_batch": unit, "lr": lr, "parameters": params, "skipped_videos": len(bundle.skipped)},
               None)
    try:
        result = state.run(loader, step)
    finally:
        if state.bar is not None:
            state.bar.close()
        _reset_accelerate()
    result.skipped_videos = skips.read(skip_log)  # the scan's and those that failed mid-run, all processes
    return result


#: The former name of :class:`pretrain.loop.TrainingLoop`.
_LoopState = TrainingLoop


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested config for trackers (which take scalars)."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return out
