"""The pretraining loop, in the shape of Accelerate's complete examples.

One ``prepare()``; ``accumulate`` for gradient accumulation; mixed precision, clipping, trackers,
``save_state``/``load_state`` and ``skip_first_batches`` all through Accelerate, so the same loop
runs on one CPU, one GPU, many GPUs and many nodes (``accelerate launch``), and under FSDP or
DeepSpeed when Accelerate's config asks for them. Nothing here is home-made distribution.

    from pretrain.config import resolve
    from pretrain.train import train
    result = train(resolve(overrides=["train.output_dir=runs/x", "train.max_steps=200"]))
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cwm.errors import ConfigError
from cwm.model import build_model
from pretrain import checkpointing as ckpts
from pretrain import skips
from pretrain.config import PretrainConfig, cosine_factor, lr_for, save_yaml
from pretrain.data import build_data, eval_batch
from pretrain.evaluate import Evaluator, Meter
from pretrain.launch import single_process_warning
from pretrain.objective import masked_mse, masked_targets, mask_from_noise, step_ratio, to_model_input

#: Steps left out of the throughput figures (worker start-up, first allocations).
WARMUP_TIMING_STEPS = 2


@dataclass
class TrainResult:
    """What a finished run reports (also printed and written to ``metrics.jsonl``)."""

    step: int
    loss: float                      # mean training loss over the last log window
    eval: dict[str, float] = field(default_factory=dict)
    samples_per_s: float = 0.0
    tokens_per_s: float = 0.0
    data_fraction: float = 0.0       # share of step time spent waiting for the next batch
    export_dir: str | None = None
    skipped_videos: list = field(default_factory=list)  # (path, reason): the scan's and mid-run failures
    is_main_process: bool = True


def resolve_precision(name: str, cpu: bool = False) -> str:
    """``"auto"``: bf16 on GPUs that support it, fp32 elsewhere; other names pass through."""
    if name != "auto":
        return name
    return "bf16" if not cpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on tensors with >= 2 dimensions only (not biases or norms)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# ----------------------------------------------------------------------------------- setup
def adamw(groups: list[dict[str, Any]], lr: float, betas: tuple[float, float], fused: bool = True):
    """AdamW, fused (one kernel for all tensors, CPU and CUDA; about 3x faster than the default
    per-tensor loop on a CPU, the same update to rounding) where ``fused`` and torch has it."""
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused or None)
    except (RuntimeError, TypeError, ValueError):  # a torch or device without the fused kernel
        return torch.optim.AdamW(groups, lr=lr, betas=betas)


def attention_for(model: torch.nn.Module, device_type: str, precision: str) -> None:
    """On a CPU under bf16, attention as explicit matmuls: PyTorch's fused CPU attention kernel is
    slower in bf16 than the bf16 matmuls (a 64 px step: 548 vs 381 ms forward+backward). fp32 and
    GPUs keep the fused kernel; the model's values are unchanged either way (to rounding)."""
    if device_type == "cpu" and precision == "bf16":
        for m in model.modules():
            if hasattr(m, "fused_attn"):
                m.fused_attn = False


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
    attention_for(model, acc.device.type, acc.mixed_precision)
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
    state = _LoopState(cfg, model_cfg, acc, model, optimizer, scheduler, evaluator, run, unit)
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


class _LoopState:
    """The loop's moving parts, so that each phase (step, log, eval, save) is a short method."""

    def __init__(self, cfg, model_cfg, acc, model, optimizer, scheduler, evaluator, run: Path, unit: int):
        self.cfg, self.model_cfg, self.acc = cfg, model_cfg, acc
        self.model, self.optimizer, self.scheduler, self.evaluator = model, optimizer, scheduler, evaluator
        self.run_dir, self.unit = run, unit
        self.mean, self.std = torch.tensor(model_cfg.mean), torch.tensor(model_cfg.std)
        self.mask_range = cfg.mask_range()
        self.meter, self.last_eval = Meter(), {}
        self.bar = None
        self.saved_step, self.last_loss = -1, float("nan")

    # ------------------------------------------------------------------ one optimizer step
    def forward_loss(self, batch: dict[str, torch.Tensor], step: int, micro: int) -> torch.Tensor:
        x, rgb = to_model_input(batch["video"], self.mean.to(batch["video"].device), self.std.to(batch["video"].device))
        ratio = step_ratio(self.mask_range, self.cfg.train.seed, step, micro)
        mask = mask_from_noise(batch["noise"], self.model_cfg.num_frames, ratio)
        pred = self.model(x, mask)  # (B, N_masked, 3pp), autocast applied by Accelerate
        return masked_mse(pred, masked_targets(rgb[:, :, -1], mask, self.model_cfg.patch_size))

    def check_finite(self, loss: torch.Tensor, step: int) -> float:
        value = self.acc.reduce(loss.detach().float(), reduction="mean").item()
        if not math.isfinite(value):
            last = ckpts.latest_checkpoint(self.run_dir)
            raise ckpts.TrainingError(
                f"the loss is {value} at step {step + 1}; stopping before the optimizer step, so no "
                f"non-finite weights are saved (last checkpoint: {last or 'none'}). Lower optim.lr, raise "
                "optim.warmup_steps, or try train.mixed_precision=no")
        return value

    def run(self, loader, step: int) -> TrainResult:
        t, acc = self.cfg.train, self.acc
        steps_per_epoch = len(loader) // t.grad_accum
        if steps_per_epoch < 1:
            raise ConfigError(f"one epoch holds fewer batches than one optimizer step "
                              f"(batch {t.batch_size} x accumulation {t.grad_accum})")
        self.bar = self._progress(step)
        if step == 0 and t.eval_every:
            self.evaluate(0)
        start_step, micro, losses = step, 0, []
        tick = time.perf_counter()
        data_time = 0.0
        while step < t.max_steps:
            epoch, skip = divmod(step, steps_per_epoch)
            loader.set_epoch(epoch)
            it = acc.skip_first_batches(loader, skip * t.grad_accum) if skip else loader
            fetch = time.perf_counter()
            for batch in it:
                data_time += time.perf_counter() - fetch
                with acc.accumulate(self.model):
                    loss = self.forward_loss(batch, step, micro)
                    losses.append(self.check_finite(loss, step))
                    acc.backward(loss)
                    if acc.sync_gradients and self.cfg.optim.clip_grad > 0:
                        acc.clip_grad_norm_(self.model.parameters(), self.cfg.optim.clip_grad)
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                micro += 1
                if acc.sync_gradients:
                    self.scheduler.step()
                    step, micro = step + 1, 0
                    now = time.perf_counter()
                    self.meter.add(sum(losses) / len(losses), now - tick, data_time,
                                   timed=step - start_step > WARMUP_TIMING_STEPS)
                    losses, data_time = [], 0.0
                    self.after_step(step)
                    tick = time.perf_counter()
                    if step >= t.max_steps:
                        break
                fetch = time.perf_counter()
        return self.finish(step)

    # ------------------------------------------------------------------ periodic work
    def after_step(self, step: int) -> None:
        t = self.cfg.train
        if self.bar is not None:
            self.bar.update(1)
        if step % t.log_every == 0 or step == t.max_steps:
            self.log(step)
        if t.eval_every and (step % t.eval_every == 0 or step == t.max_steps):
            self.evaluate(step)
        if t.checkpoint_every and step % t.checkpoint_every == 0:
            self.save(step)

    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def log(self, step: int) -> None:
        m = self.meter
        sps = self.unit / t_step if (t_step := m.time / max(1, m.steps)) > 0 else 0.0
        record = {"step": step, "loss": m.loss, "lr": self.lr(), "samples_per_s": sps,
                  "data_fraction": m.data / m.time if m.time > 0 else 0.0}
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{m.loss:.4f}", lr=f"{record['lr']:.2e}", sps=f"{sps:.0f}")
        self.emit(record, f"step {step}/{self.cfg.train.max_steps} loss {m.loss:.5f} lr {record['lr']:.3g} "
                          f"samples/s {sps:.1f} data {100 * record['data_fraction']:.0f}%"
                          + self._eta(step, t_step))
        self.last_loss = m.loss
        m.reset()

    def _eta(self, step: int, t_step: float) -> str:
        left = (self.cfg.train.max_steps - step) * t_step
        return f" eta {int(left // 3600)}:{int(left % 3600 // 60):02d}:{int(left % 60):02d}"

    def evaluate(self, step: int) -> None:
        ev = self.evaluator(self.model)
        self.last_eval = ev
        self.emit({"step": step, **ev},
                  f"eval step {step}: loss {ev['eval/loss_visible']:.5f} with visible patches, "
                  f"{ev['eval/loss_no_visible']:.5f} without; copy frame 0 {ev['eval/copy_frame0']:.5f}")

    def emit(self, record: dict[str, Any], line: str | None) -> None:
        acc = self.acc
        if self.cfg.train.log_with and line is not None:
            acc.log({k: v for k, v in record.items() if k != "step"}, step=record["step"])
        if not acc.is_main_process:
            return
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if line is None:
            return
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line, flush=True)

    def save(self, step: int) -> None:
        meta = {"model": self.model_cfg.to_dict(), "config": self.cfg.to_dict(),
                "num_processes": self.acc.num_processes}
        path = ckpts.save_checkpoint(self.acc, self.run_dir, step, meta, self.cfg.train.keep_checkpoints)
        self.saved_step = step
        self.acc.print(f"saved checkpoint {path}")

    def finish(self, step: int) -> TrainResult:
        acc, t = self.acc, self.cfg.train
        if self.saved_step != step:
            self.save(step)
        export_dir = None
        if t.export_at_end:
            state_dict = acc.get_state_dict(self.model)  # gathers FSDP shards: every process calls it
            if acc.is_main_process:
                from pretrain.export import export_state_dict, training_meta

                export_dir = str(export_state_dict(state_dict, self.model_cfg, self.run_dir / "export",
                                                   training_meta(self.cfg.to_dict(), step, self.run_dir)))
                acc.print(f"exported weights to {export_dir} (cwm.load('{export_dir}'))")
        acc.wait_for_everyone()
        if t.log_with:
            acc.end_training()
        m = self.meter
        sps = self.unit * m.total_steps / m.total_time if m.total_time > 0 else 0.0
        return TrainResult(step=step, loss=self.last_loss, eval=self.last_eval,
                           samples_per_s=sps, tokens_per_s=sps * self.model_cfg.num_tokens,
                           data_fraction=m.total_data / m.total_time if m.total_time > 0 else 0.0,
                           export_dir=export_dir, is_main_process=acc.is_main_process)

    def _progress(self, step: int):
        mode = self.cfg.train.progress
        if not self.acc.is_main_process or mode == "off" or (mode == "auto" and not sys.stderr.isatty()):
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.cfg.train.max_steps, initial=step, unit="step", dynamic_ncols=True)


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested config for trackers (which take scalars)."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return out
