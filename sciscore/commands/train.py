"""`sciscore train`: train a score network on NetCDF fields.

Every option has a key in the TOML config (section.key, shown in --help); the command line wins.
"""

from __future__ import annotations

import argparse
import json
import logging

from sciscore.commands._common import add_device, add_overwrite, add_quiet
from sciscore.validation import NON_NEGATIVE, POSITIVE, SEED, number

log = logging.getLogger(__name__)


def _integers(example: str):
    """An argparse type: comma-separated integers (`example` shows the form in the error)."""
    def parse(text: str) -> list:
        try:
            return [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated integers like {example}, got {text!r}") from None
    return parse


def _sigma_max(text: str):
    """'auto' or a finite number > 0."""
    return "auto" if text.strip() == "auto" else number(0, low_open=True)(text)


AUGMENTATIONS = ("shifts", "flips", "x-flips", "y-flips", "rotations")


def _augment(text: str) -> list:
    names = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in names if v not in AUGMENTATIONS + ("none",)]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown augmentation {bad}; choose from {', '.join(AUGMENTATIONS)} or none")
    return [v for v in names if v != "none"]


# (dest, section, key): command-line options that map onto config keys
OPTION_KEYS = [
    ("data", "data", "paths"), ("variable", "data", "variables"), ("context_variable", "data", "context_variables"),
    ("sample_dim", "data", "sample_dim"), ("spatial_dims", "data", "spatial_dims"),
    ("validation_fraction", "data", "validation_fraction"), ("normalization", "data", "normalization"),
    ("normalizer_from", "data", "normalizer_from"),
    ("channels", "network", "channels"), ("num_residual", "network", "num_residual"),
    ("level_blocks", "network", "level_blocks"), ("attention_blocks", "network", "attention_blocks"),
    ("attention_levels", "network", "attention_levels"),
    ("dropout", "network", "dropout"), ("padding", "network", "padding"), ("mean_bypass", "network", "mean_bypass"),
    ("preconditioning", "network", "preconditioning"),
    ("process", "process", "name"), ("sigma_min", "process", "sigma_min"), ("sigma_max", "process", "sigma_max"),
    ("loss", "loss", "kind"), ("mean_weight", "loss", "mean_weight"),
    ("fluctuation_weight", "loss", "fluctuation_weight"), ("isotropy_weight", "loss", "isotropy_weight"),
    ("context_dropout", "loss", "context_dropout"),
    ("lr", "optimizer", "learning_rate"), ("warmup_steps", "optimizer", "warmup_steps"),
    ("grad_clip", "optimizer", "grad_clip"), ("ema_decay", "optimizer", "ema_decay"),
    ("decay_start", "optimizer", "decay_start"),
    ("steps", "training", "steps"), ("epochs", "training", "epochs"), ("batch_size", "training", "batch_size"),
    ("seed", "training", "seed"), ("log_every", "training", "log_every"),
    ("checkpoint_every", "training", "checkpoint_every"), ("validation_every", "training", "validation_every"),
    ("device", "training", "device"), ("bf16", "training", "bf16"), ("compile", "training", "compile"),
    ("monitor_every", "training", "monitor_every"), ("monitor_samples", "training", "monitor_samples"),
    ("monitor_steps", "training", "monitor_steps"), ("snapshot_every", "training", "snapshot_every"),
    ("channels_last", "training", "channels_last"), ("threads", "training", "threads"), ("quiet", "training", "quiet"),
]


def register(subparsers):
    parser = subparsers.add_parser(
        "train", help="Train a score network on NetCDF fields",
        description="Train a score network (U-Net with mean bypass) on fields from NetCDF files and write a "
                    "checkpoint directory. Every option is also a key of the TOML --config (shown as [section] key); "
                    "the command line wins.",
        epilog="example: sciscore train --data fields.nc --variable supersaturation --variable vorticity "
               "--steps 300 -o runs/first",
    )
    io = parser.add_argument_group("data and output")
    io.add_argument("--data", action="append", metavar="FILE", help="NetCDF/zarr file or glob (repeatable) [data] paths")
    io.add_argument("--variable", action="append", metavar="NAME", help="variable to learn (repeatable) [data] variables")
    io.add_argument("--context-variable", action="append", metavar="NAME",
                    help="conditioning variable (repeatable) [data] context_variables")
    io.add_argument("--sample-dim", metavar="NAME", help="name of the sample dimension [data] sample_dim")
    io.add_argument("--spatial-dims", nargs=2, metavar=("Y", "X"), help="names of the spatial dims [data] spatial_dims")
    io.add_argument("--validation-fraction", type=number(0, 1, high_open=True), metavar="F", help="held-out fraction (default 0.1) [data] validation_fraction")
    io.add_argument("--normalization", choices=("standard", "minmax", "mean-spatial"), help="[data] normalization (default standard)")
    io.add_argument("--normalizer-from", metavar="RUN_DIR",
                    help="use this model's normalization instead of fitting one (e.g. for its autoguidance guide) "
                         "[data] normalizer_from")
    io.add_argument("--augment", type=_augment, metavar="LIST",
                    help="comma list of shifts,flips,x-flips,y-flips,rotations (or none); flips reflect both "
                         "axes, x-flips only x -> -x; reflections change the sign of vorticity "
                         "[data] shifts/flips/rotations")
    io.add_argument("--config", metavar="FILE.toml", help="TOML file with [data] [network] [process] [loss] [optimizer] [training]")
    io.add_argument("-o", "--output", required=True, metavar="RUN_DIR", help="checkpoint directory")
    io.add_argument("--resume", action="store_true", help="continue the checkpoint in RUN_DIR (bit-exact on CPU)")
    add_overwrite(io)
    net = parser.add_argument_group("network")
    net.add_argument("--channels", type=_integers("32,64,128,256"), metavar="LIST", help="U-Net widths (default 32,64,128,256) [network] channels")
    net.add_argument("--num-residual", type=NON_NEGATIVE, metavar="N", help="bottleneck residual blocks (default 8) [network] num_residual")
    net.add_argument("--level-blocks", type=NON_NEGATIVE, metavar="N",
                     help="residual blocks at every finer level, encoder and decoder (default 0) [network] level_blocks")
    net.add_argument("--attention-blocks", type=NON_NEGATIVE, metavar="N",
                     help="self-attention blocks at the bottleneck, after the first N residual blocks (default 0) "
                          "[network] attention_blocks")
    net.add_argument("--attention-levels", type=_integers("2 or 1,2"), metavar="LIST",
                     help="U-Net levels (0: full resolution, 1: half, ...) with a self-attention block after each "
                          "level block, e.g. 2 for 16x16 on a 64x64 grid (default none) [network] attention_levels")
    net.add_argument("--dropout", type=number(0, 1, high_open=True), metavar="P", help="dropout (default 0) [network] dropout")
    net.add_argument("--padding", choices=("zero", "circular"), help="[network] padding (default zero)")
    net.add_argument("--mean-bypass", choices=("none", "independent", "coupled"),
                     help="mean bypass mode (default coupled) [network] mean_bypass")
    net.add_argument("--no-mean-bypass", dest="mean_bypass", action="store_const", const="none",
                     help="same as --mean-bypass none")
    net.add_argument("--preconditioning", choices=("c_in", "edm", "none"), help="[network] preconditioning (default c_in)")
    proc = parser.add_argument_group("forward process and loss")
    proc.add_argument("--process", choices=("ve", "vp", "subvp", "edm"), help="[process] name (default ve)")
    proc.add_argument("--sigma-min", type=number(0, low_open=True), metavar="S", help="[process] sigma_min (VE default 0.01)")
    proc.add_argument("--sigma-max", type=_sigma_max, metavar="S|auto",
                      help="[process] sigma_max; auto = largest distance between training samples (VE default)")
    proc.add_argument("--loss", choices=("dsm", "edm", "v"), help="[loss] kind (default dsm)")
    proc.add_argument("--mean-weight", type=number(0), metavar="W", help="[loss] mean_weight (default 1)")
    proc.add_argument("--fluctuation-weight", type=number(0), metavar="W", help="[loss] fluctuation_weight (default 1)")
    proc.add_argument("--isotropy-weight", type=number(0), metavar="L", help="[loss] isotropy_weight (default 0)")
    proc.add_argument("--context-dropout", type=number(0, 1, high_open=True), metavar="P", help="[loss] context_dropout (default 0)")
    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--steps", type=POSITIVE, metavar="N", help="optimizer steps (default 300) [training] steps")
    opt.add_argument("--epochs", type=POSITIVE, metavar="N", help="passes over the data (overrides --steps) [training] epochs")
    opt.add_argument("--batch-size", type=POSITIVE, metavar="B", help="[training] batch_size (default 16)")
    opt.add_argument("--lr", type=number(0, low_open=True), metavar="LR", help="Adam learning rate (default 2e-4) [optimizer] learning_rate")
    opt.add_argument("--warmup-steps", type=NON_NEGATIVE, metavar="N", help="[optimizer] warmup_steps (default 100)")
    opt.add_argument("--grad-clip", type=number(0), metavar="G", help="global gradient-norm clip, 0 = off (default 1) [optimizer] grad_clip")
    opt.add_argument("--ema-decay", type=number(0, 1), metavar="D", help="[optimizer] ema_decay (default 0.999)")
    opt.add_argument("--decay-start", type=NON_NEGATIVE, metavar="N",
                     help="learning rate / sqrt(step / N) after N optimizer steps; 0 = constant (default 0) "
                          "[optimizer] decay_start")
    opt.add_argument("--seed", type=SEED, metavar="N", help="[training] seed (default 0)")
    opt.add_argument("--log-every", type=POSITIVE, metavar="N", help="[training] log_every (default 10)")
    opt.add_argument("--checkpoint-every", type=POSITIVE, metavar="N", help="[training] checkpoint_every (default 100)")
    opt.add_argument("--validation-every", type=NON_NEGATIVE, metavar="N", help="[training] validation_every (default 100)")
    opt.add_argument("--snapshot-every", type=NON_NEGATIVE, metavar="N",
                     help="keep the raw weights every N optimizer steps in RUN_DIR/snapshots/ for 'sciscore ema' "
                          "(post-hoc EMA profiles); 0 = off (default 0) [training] snapshot_every")
    opt.add_argument("--bf16", action="store_true", default=None, help="bfloat16 autocast (CUDA, or a CPU with bf16 instructions) [training] bf16")
    opt.add_argument("--compile", action="store_true", default=None, help="torch.compile the network [training] compile")
    opt.add_argument("--channels-last", action="store_true", default=None, help="[training] channels_last")
    opt.add_argument("--threads", type=POSITIVE, metavar="N", help="CPU threads [training] threads")
    mon = parser.add_argument_group("quality monitor (samples with the EMA weights, judged against the validation split)")
    mon.add_argument("--monitor-every", type=NON_NEGATIVE, metavar="K",
                     help="judge the EMA model every K steps, 0 = off (default: 500 for runs of 2000+ steps) "
                          "[training] monitor_every")
    mon.add_argument("--monitor-samples", type=POSITIVE, metavar="N", help="fields per judgement (default 32) [training] monitor_samples")
    mon.add_argument("--monitor-steps", type=POSITIVE, metavar="N", help="ode-heun steps (default 18, as generate) [training] monitor_steps")
    opt.add_argument("--dry-run", action="store_true", help="print the resolved config as JSON and exit")
    add_device(parser)
    parser.set_defaults(device=None)
    add_quiet(parser)
    parser.set_defaults(quiet=None, func=run)
    return parser


def resolved_config(args: argparse.Namespace) -> dict:
    """The nested config dict: the TOML file (if any) updated by the options given."""
    from sciscore.train.config import merge, read_toml

    base = read_toml(args.config) if args.config else {}
    overrides: dict = {}
    for dest, section, key in OPTION_KEYS:
        value = getattr(args, dest, None)
        if value is None:
            continue
        overrides.setdefault(section, {})[key] = value
    if args.augment is not None:
        flips = "flips" in args.augment or {"x-flips", "y-flips"} <= set(args.augment)
        if not flips:
            flips = "x" if "x-flips" in args.augment else "y" if "y-flips" in args.augment else False
        overrides.setdefault("data", {}).update({"shifts": "shifts" in args.augment, "flips": flips,
                                                  "rotations": "rotations" in args.augment})
    if "process" in overrides and "name" in overrides["process"] and overrides["process"]["name"] != base.get("process", {}).get("name", "ve"):
        base = {k: v for k, v in base.items() if k != "process"}  # another process: drop the file's parameters
    return merge(base, overrides)


def run(args: argparse.Namespace) -> int:
    from sciscore.train.config import config_from_dict
    from sciscore.train.trainer import train

    data = resolved_config(args)
    config = config_from_dict(data)
    if args.dry_run:
        print(json.dumps(config.to_dict(), indent=2))
        return 0
    if config.training.threads:  # a process setting: the command sets it, the library does not
        import torch

        torch.set_num_threads(config.training.threads)
    rank, world_size = 0, 1
    from sciscore.train.distributed import launched_by_torchrun

    if launched_by_torchrun():  # torchrun --nproc_per_node=N -m sciscore train ...: data-parallel
        import torch.distributed

        from sciscore.devices import resolve_device
        from sciscore.train.distributed import init_from_environment

        group = init_from_environment(resolve_device(config.training.device).type)
        rank, world_size = group.rank, group.world_size
        if not group.main:
            logging.getLogger("sciscore").setLevel(logging.WARNING)
    from sciscore.stopping import stop_on_signals

    try:
        with stop_on_signals() as stop:  # SIGINT/SIGTERM: finish the step, save a checkpoint, exit 130
            result = train(config, args.output, resume=args.resume, overwrite=args.overwrite, stop=stop,
                           rank=rank, world_size=world_size)
        if world_size > 1:
            # rank 0 validates and writes the last checkpoint after the final all-reduce; the other
            # ranks wait for it here, so that no rank tears down its gloo connections while another
            # is still working (a rank that did so aborted once at exit on a loaded 2-core machine)
            torch.distributed.barrier()
    finally:
        if world_size > 1:
            torch.distributed.destroy_process_group()
    if rank != 0:
        return 0
    message = f"trained {result.step} steps; checkpoint in {result.run_dir}"
    if result.validation_loss is not None:
        message += f"; validation loss (EMA) {result.validation_loss:.4g}"
    if result.skipped:
        message += f"; {result.skipped} non-finite steps skipped"
    log.info(message)
    return 0
