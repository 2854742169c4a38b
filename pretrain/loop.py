"""The loop's moving parts after setup: one optimizer step, logging, evaluation, checkpoints,
the final export and figures (:class:`TrainingLoop`, run by :func:`pretrain.train.train`).
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cwm.errors import ConfigError
from pretrain import checkpointing as ckpts
from pretrain.evaluate import Meter
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


class TrainingLoop:
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
