"""The training loop: Adam with linear warm-up, global gradient-norm clipping, EMA, per-term and
per-sigma logging (metrics.jsonl), validation loss, atomic checkpoints and bit-exact resume.

Reproducibility without saved generator state: the random draws of step k (batch order,
augmentation, t, noise, context dropout) come from generators seeded by (seed, k), and the batch
order of an epoch from (seed, epoch). Weight initialisation and dropout draw from torch's default
generator, forked for the duration of `train` (`torch.random.fork_rng`) and seeded with the run
seed, so the caller's random state is left as it was; its state at each checkpoint and the
optimizer go into training_state.pt. So an interrupted and resumed run repeats the uninterrupted
loss trace bit for bit on the CPU. `train` sets no thread count: `sciscore train` applies
training.threads.

Data-parallel training (torchrun, `sciscore.train.distributed`): `batch_size` is the global batch;
rank r of N takes the r-th of N equal shares of each step's batch. Every draw is a function of the
run seed, the step and the sample, never of the rank: the batch order as above, each sample's
augmentation from a generator seeded by (seed, step, sample index), and t, noise and context
dropout drawn for the whole global batch (from the (seed, step) generator) of which each rank keeps
its share. Gradients are averaged over the ranks before clipping, so N ranks take the steps of one
process with the same global batch, up to the order of floating-point summation (the batch-mean
isotropy regularizer is the exception: each rank takes the batch mean over its share). Rank 0
alone validates, runs the quality monitor and writes checkpoints, metrics and progress.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from sciscore import checkpoint as ckpt
from sciscore.devices import resolve_device
from sciscore.errors import UserError
from sciscore.fields.io import check_writable_dir
from sciscore.nn.network import ScoreNetwork
from sciscore.sde.processes import estimate_sigma_max, process_from_dict
from sciscore.train.config import TrainConfig, config_from_dict
from sciscore.train.data import TrainingData, augment_batch, data_statistics, load_training_data
from sciscore.train.distributed import average, average_gradients
from sciscore.train.ema import ExponentialMovingAverage
from sciscore.train.losses import SigmaBinnedLoss, denoising_loss, draw_times, drop_context
from sciscore.train.monitor import MonitorSettings, QualityMonitor, monitor_interval

log = logging.getLogger(__name__)
METRICS = "metrics.jsonl"
BEST = "best"  # RUN_DIR/best: the EMA checkpoint the quality monitor ranked highest


@dataclass
class TrainResult:
    run_dir: Path
    step: int                  # steps done (including skipped non-finite ones)
    skipped: int               # steps skipped for a non-finite loss or gradient
    last_loss: float           # mean training loss of the last logging interval
    validation_loss: float | None  # EMA network, last validation
    history: list              # the metrics records written by this call


def _step_seed(seed: int, step: int, stream: int = 0) -> int:
    return (seed * 1_000_003 + step * 7_919 + stream * 104_729 + 12_345) % (2**62)


def _batch_indices(step: int, n: int, batch: int, seed: int) -> torch.Tensor:
    """Indices of the global batch of step `step`: epoch-wise permutations seeded by (seed, epoch),
    no partial batches."""
    steps_per_epoch = max(1, n // batch)
    epoch, position = divmod(step, steps_per_epoch)
    generator = torch.Generator().manual_seed(_step_seed(seed, epoch, stream=1))
    order = torch.randperm(n, generator=generator)
    return order[position * batch:(position + 1) * batch]


def _sample_generator(seed: int, step: int, sample: int) -> torch.Generator:
    """The augmentation generator of training sample `sample` (a data index) at step `step`."""
    return torch.Generator().manual_seed(_step_seed(seed, step, stream=4) ^ (int(sample) * 2_654_435_761 % (2**61)))


def _resolve_process(config: TrainConfig, train: torch.Tensor):
    process = dict(config.process)
    if process.get("sigma_max") == "auto":
        # Song & Ermon's rule on at most 4096 samples (the cost is quadratic)
        sample = train if len(train) <= 4096 else train[torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:4096]]
        process["sigma_max"] = estimate_sigma_max(sample) if len(sample) > 1 else 1.0
    return process_from_dict(process)


def _optimizer(network, c) -> torch.optim.Adam:
    return torch.optim.Adam(network.parameters(), lr=c.learning_rate, betas=(c.beta1, c.beta2), eps=c.eps)


def _learning_rate(c, optimizer_step: int) -> float:
    """Linear warm-up, then constant or, from `decay_start` on, alpha_ref / sqrt(k / k_ref) (Karras et
    al. 2024, EDM2, eq. 16): a function of the step alone, so --resume with more steps keeps it."""
    rate = c.learning_rate * min(1.0, (optimizer_step + 1) / max(1, c.warmup_steps))
    if c.decay_start:
        rate /= math.sqrt(max(1.0, (optimizer_step + 1) / c.decay_start))
    return rate


@torch.no_grad()
def validation_loss(network, process, data: TrainingData, config: TrainConfig, device) -> float | None:
    """Mean loss over the first `validation_batches` batches of the validation split, with fixed
    draws (seeded by the run seed), so values are comparable across steps."""
    if len(data.validation) == 0:
        return None
    t_cfg = config.training
    was_training = network.training
    network.eval()
    total, count = 0.0, 0
    for i in range(t_cfg.validation_batches):
        x0 = data.validation[i * t_cfg.batch_size:(i + 1) * t_cfg.batch_size]
        if len(x0) == 0:
            break
        context = None if data.context_validation is None else data.context_validation[i * t_cfg.batch_size:(i + 1) * t_cfg.batch_size].to(device)
        generator = torch.Generator(device=device).manual_seed(_step_seed(t_cfg.seed, i, stream=3))
        x0 = x0.to(device)
        t = draw_times(process, len(x0), config.loss, generator, device)
        noise = torch.randn(x0.shape, generator=generator, device=device)
        terms = denoising_loss(network, process, x0, t, noise, config.loss, context, network.config.sigma_data)
        total += float(terms["loss"]) * len(x0)
        count += len(x0)
    network.train(was_training)
    return total / count


def _checkpoint_record(config: TrainConfig, network: ScoreNetwork, process, data: TrainingData, step: int,
                       optimizer_steps: int) -> ckpt.Checkpoint:
    ds = data.dataset
    training = {k: v for k, v in config.to_dict().items() if k not in ("network", "process")}  # kept once, below
    # absolute data paths, so that --resume works from any directory
    training["data"]["paths"] = [os.path.abspath(os.path.expanduser(p)) for p in training["data"]["paths"]]
    if training["data"].get("normalizer_from"):
        training["data"]["normalizer_from"] = os.path.abspath(os.path.expanduser(training["data"]["normalizer_from"]))
    return ckpt.Checkpoint(
        network=network.config, process=process, normalizer=data.normalizer, variables=list(data.variables),
        grid=ckpt.grid_of(ds), step=step, optimizer_steps=optimizer_steps,
        context_normalizer=data.context_normalizer, context_variables=list(data.context_variables),
        constant_means={v: m for v, m in zip(data.variables, network.config.constant_means or []) if m is not None},
        variable_attrs={v: {k: ckpt.plain(a) for k, a in ds[v].attrs.items()} for v in data.variables + data.context_variables},
        samples={"train": len(data.train), "validation": len(data.validation)},
        training_config=training)


def _saved_train_config(saved: ckpt.Checkpoint, run_dir: Path) -> TrainConfig:
    """The TrainConfig a checkpoint was trained with (network and process as trained)."""
    if not saved.training_config:
        raise UserError(f"{run_dir / ckpt.CONFIG} has no training_config, so the run cannot be resumed "
                        "(it was not written by 'sciscore train'); start a new run instead")
    try:
        return config_from_dict({**saved.training_config, "network": saved.network.to_dict(),
                                 "process": saved.process.to_dict()}, allow_derived=True)
    except UserError as error:
        raise UserError(f"{run_dir / ckpt.CONFIG}: training_config is invalid ({error}); restore the checkpoint") from None


def _same_paths(given: list, saved: list) -> bool:
    def resolved(paths):
        return [str(Path(p).expanduser().resolve()) for p in paths]

    return list(given) == list(saved) or resolved(given) == resolved(saved)


def _total_steps(config: TrainConfig, n: int) -> int:
    t = config.training
    if t.epochs is not None:
        return t.epochs * max(1, n // t.batch_size)
    if t.steps is None or t.steps < 0:
        raise UserError("set training.steps (--steps) or training.epochs (--epochs)")
    return t.steps


def _read_metrics(path: Path, up_to_step: int) -> list:
    """The records of metrics.jsonl up to the checkpoint's step; a torn last line (the process was
    killed while writing it) is dropped, a corrupt earlier line is an error."""
    if not path.is_file():
        return []
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                log.warning("%s: dropped its torn last line (an interrupted write)", path)
                break
            raise UserError(f"{path} line {number} is corrupt; delete the line (or the file) and resume again") from None
        if not isinstance(record, dict):
            raise UserError(f"{path} line {number} is not a metrics record; delete the line and resume again")
        records.append(record)
    return [r for r in records if isinstance(r.get("step", 0), int) and r.get("step", 0) <= up_to_step]


def train(config: TrainConfig | dict, run_dir, *, resume: bool = False, overwrite: bool = False,
          dataset=None, rank: int = 0, world_size: int = 1, stop=None) -> TrainResult:
    """Train a score network as `config` says and write checkpoints to `run_dir`.

    `dataset`: an xarray Dataset to train on instead of `config.data.paths`. With `resume`, the
    run continues from the checkpoint in `run_dir` (its saved config wins except for the step
    count, device, threads and quiet). torch's default random generator is forked for the
    run (see the module docstring): the caller's random state is unchanged afterwards. `stop`: a
    `sciscore.stopping.StopRequest`; once it is set, training saves a checkpoint after the
    current step and raises KeyboardInterrupt."""
    if isinstance(config, dict):
        config = config_from_dict(config)
    device = resolve_device(config.training.device)
    devices = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        return _train(config, Path(run_dir), resume, overwrite, dataset, rank, world_size, stop=stop)


def _train(config: TrainConfig, run_dir: Path, resume: bool, overwrite: bool, dataset, rank: int,
           world_size: int, stop=None) -> TrainResult:
    if resume:
        if ckpt.recover(run_dir):
            log.warning("%s: the last checkpoint save was interrupted; resuming from the previous checkpoint", run_dir)
        saved = ckpt.read_checkpoint(run_dir)
        if config.data.variables:
            ckpt.check_compatible(saved, variables=config.data.variables)
        saved_config = _saved_train_config(saved, run_dir)
        if config.data.paths and dataset is None and not _same_paths(config.data.paths, saved_config.data.paths):
            raise UserError(f"--resume continues on the data the run was trained on ({', '.join(saved_config.data.paths)}), "
                            f"not on {', '.join(config.data.paths)}; drop --data, or start a new run with -o")
        saved_config.training = replace(saved_config.training, steps=config.training.steps, epochs=config.training.epochs,
                                        device=config.training.device, quiet=config.training.quiet,
                                        threads=config.training.threads)
        config = saved_config
    elif (run_dir / ckpt.CONFIG).exists() and not overwrite:
        raise UserError(f"{run_dir} already holds a checkpoint; pass --resume to continue it or --overwrite to start over")
    if rank == 0:
        check_writable_dir(run_dir)  # fail before loading data and building the network
    t_cfg, o_cfg = config.training, config.optimizer
    if t_cfg.batch_size < 1:
        raise UserError(f"batch size must be >= 1, got {t_cfg.batch_size}")
    device = resolve_device(t_cfg.device)
    main_rank = rank == 0

    data = load_training_data(config.data, t_cfg.seed, dataset)
    if resume:
        ckpt.check_compatible(saved, variables=data.variables, grid=data.dataset)
    n = len(data.train)
    batch = min(t_cfg.batch_size, n)  # the global batch
    if batch % world_size:
        raise UserError(f"the batch size {batch} is not a multiple of the {world_size} processes; "
                        f"choose --batch-size divisible by {world_size}")
    share = slice(rank * (batch // world_size), (rank + 1) * (batch // world_size))
    if resume:
        process, network_config = saved.process, saved.network
    else:
        process = _resolve_process(config, data.train)
        stats = data_statistics(data.train)
        network_config = replace(config.network, in_channels=data.train.shape[1],
                                 context_channels=0 if data.context_train is None else data.context_train.shape[1], **stats)
    torch.manual_seed(t_cfg.seed)  # weight initialisation and dropout (the generator forked in `train`)
    network = ScoreNetwork(network_config, process).to(device)
    if t_cfg.channels_last:
        network = network.to(memory_format=torch.channels_last)
    ema = ExponentialMovingAverage(network, o_cfg.ema_decay, o_cfg.ema_warmup)
    optimizer = _optimizer(network, o_cfg)
    start, optimizer_steps, skipped = 0, 0, 0
    if resume:
        start = saved.step
        network.load_state_dict(ckpt.read_weights(run_dir, start, ema=False))
        ema.network.load_state_dict(ckpt.read_weights(run_dir, start, ema=True))
        state = ckpt.load_training_state(run_dir, start)
        optimizer.load_state_dict(state["optimizer"])
        optimizer_steps, skipped = int(state["optimizer_steps"]), int(state["skipped"])
        torch.set_rng_state(state["rng_cpu"])
        if device.type == "cuda" and "rng_cuda" in state:
            torch.cuda.set_rng_state(state["rng_cuda"], device)
    forward = torch.compile(network) if t_cfg.compile else network
    total = _total_steps(config, n)
    if main_rank:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(f"cannot create the run directory {run_dir}: {error.strerror}; choose another -o") from None
        history = _read_metrics(run_dir / METRICS, start) if resume else []
        (run_dir / METRICS).write_text("".join(json.dumps(r) + "\n" for r in history))
        if t_cfg.snapshot_every and optimizer_steps == 0:  # the initial weights, the EMA's starting point
            ckpt.save_snapshot(run_dir, network, 0)
    every = monitor_interval(t_cfg.monitor_every, total)
    if every and getattr(process, "zero_terminal_snr", False):
        # the monitor samples net.score on the Karras grid, which starts at sigma(T) = inf here
        if t_cfg.monitor_every:
            raise UserError("the quality monitor cannot sample a zero-terminal-SNR process (sigma(T) is infinite "
                            "on its Karras grid); set training.monitor_every = 0")
        every = 0
    monitor, best_rank = None, None
    if every and main_rank:  # the monitor samples on rank 0 alone
        settings = MonitorSettings(every, t_cfg.monitor_samples, t_cfg.monitor_steps, t_cfg.seed)
        monitor = QualityMonitor.for_training(data, process, settings, device)
        if resume and (run_dir / BEST / ckpt.CONFIG).is_file():
            best_rank = tuple((ckpt.read_checkpoint(run_dir / BEST).monitor or {}).get("monitor_rank", ())) or None
    params = [p for p in network.parameters()]
    binned = SigmaBinnedLoss(process, config.loss.sigma_bins, device)
    sums = torch.zeros(4, device=device, dtype=torch.float64)  # loss, mean, fluctuation, isotropy
    interval_steps, consecutive, written = 0, 0, []
    last_loss, last_validation = math.nan, None
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=t_cfg.bf16)
    clock = time.perf_counter()

    def save(step: int) -> None:
        if not main_rank:
            return
        record = _checkpoint_record(config, network, process, data, step, optimizer_steps)
        state = {"optimizer": optimizer.state_dict(), "optimizer_steps": optimizer_steps, "skipped": skipped,
                 "rng_cpu": torch.get_rng_state()}
        if device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state(device)
        ckpt.save_checkpoint(run_dir, network, ema.network, record, state)

    def write(record: dict) -> None:
        if main_rank:
            written.append(record)
            with open(run_dir / METRICS, "a") as f:
                f.write(json.dumps(record) + "\n")

    network.train()
    postfix = {}
    progress = tqdm(range(start, total), initial=start, total=total, disable=t_cfg.quiet or not main_rank,
                    desc="train", unit="step")
    for step in progress:
        cpu_generator = torch.Generator().manual_seed(_step_seed(t_cfg.seed, step, stream=0))
        generator = cpu_generator if device.type == "cpu" else torch.Generator(device=device).manual_seed(_step_seed(t_cfg.seed, step, stream=2))
        index = _batch_indices(step, n, batch, t_cfg.seed)[share]
        x0 = data.train[index]
        context = None if data.context_train is None else data.context_train[index]
        x0, context = augment_batch(x0, context, data, lambda b: _sample_generator(t_cfg.seed, step, index[b]))
        x0 = x0.to(device, non_blocking=True)
        if t_cfg.channels_last:
            x0 = x0.contiguous(memory_format=torch.channels_last)
        if context is not None:  # the draws of the global batch, of which this rank keeps its share
            context = drop_context(context.to(device), config.loss.context_dropout, generator, batch, share)
        t = draw_times(process, batch, config.loss, generator, device)[share]
        noise = torch.randn((batch, *x0.shape[1:]), generator=generator, device=device)[share]
        with autocast:
            terms = denoising_loss(forward, process, x0, t, noise, config.loss, context, network_config.sigma_data)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        average_gradients(params, world_size)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, o_cfg.grad_clip if o_cfg.grad_clip > 0 else math.inf)
        logged = average(torch.stack([terms[k].detach().to(torch.float64)
                                      for k in ("loss", "mean", "fluctuation", "isotropy")]), world_size)
        finite = bool(torch.isfinite(logged[0]) & torch.isfinite(grad_norm))  # the one host sync per step
        if finite:
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(o_cfg, optimizer_steps)
            optimizer.step()
            ema.update(network, optimizer_steps)
            optimizer_steps += 1
            if main_rank and t_cfg.snapshot_every and optimizer_steps % t_cfg.snapshot_every == 0:
                ckpt.save_snapshot(run_dir, network, optimizer_steps)
            consecutive = 0
            sums += logged
            binned.add(t, terms["per_sample"])
            interval_steps += 1
        else:
            skipped += 1
            consecutive += 1
            if consecutive >= t_cfg.max_nonfinite:
                raise UserError(f"training diverged: {consecutive} non-finite losses in a row at step {step + 1}; "
                                f"lower the learning rate (--lr) or check the data. The last good checkpoint is in {run_dir}")
        done = step + 1
        if done % t_cfg.log_every == 0 or done == total:
            values = (sums / max(1, interval_steps)).tolist()
            elapsed = time.perf_counter() - clock
            record = {"step": done, "loss": values[0], "mean": values[1], "fluctuation": values[2],
                      "isotropy": values[3], "lr": _learning_rate(o_cfg, max(0, optimizer_steps - 1)),
                      "grad_norm": float(grad_norm), "skipped": skipped, "per_sigma": binned.read(),
                      "samples_per_second": interval_steps * batch / max(elapsed, 1e-9)}
            last_loss = values[0]
            write(record)
            postfix["loss"] = f"{values[0]:.4f}"
            progress.set_postfix(postfix)
            sums.zero_()
            interval_steps = 0
            clock = time.perf_counter()
        if main_rank and t_cfg.validation_every and (done % t_cfg.validation_every == 0 or done == total):
            raw = validation_loss(network, process, data, config, device)
            averaged = validation_loss(ema.network, process, data, config, device)
            if averaged is not None:
                last_validation = averaged
                write({"step": done, "validation_loss": raw, "validation_loss_ema": averaged})
            clock = time.perf_counter()
        if monitor is not None and (done % every == 0 or done == total):
            record = {"step": done, **monitor.evaluate(ema.network)}
            write(record)
            postfix["quality"] = f"{record['monitor_passed']}/{record['monitor_checks']}"
            progress.set_postfix(postfix)
            if main_rank and (best_rank is None or tuple(record["monitor_rank"]) > best_rank):
                best_rank = tuple(record["monitor_rank"])
                best = _checkpoint_record(config, network, process, data, done, optimizer_steps)
                best.monitor = record
                ckpt.save_checkpoint(run_dir / BEST, network, ema.network, best)
            clock = time.perf_counter()
        if done % t_cfg.checkpoint_every == 0 or done == total:
            save(done)
        elif stop is not None and stop.requested:
            save(done)
        if stop is not None and stop.requested and done < total:
            progress.close()
            if main_rank:
                log.warning("stopped at step %d of %d; checkpoint saved in %s: continue with --resume",
                            done, total, run_dir)
            raise KeyboardInterrupt
    progress.close()
    if start >= total and main_rank:
        log.info("nothing to do: the checkpoint in %s is already at step %d", run_dir, start)
    return TrainResult(run_dir, max(start, total), skipped, last_loss, last_validation, written)
