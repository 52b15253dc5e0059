"""Training configuration: sections [data], [network], [process], [loss], [optimizer], [training]
of a TOML file; command-line options override the file. Unknown keys are named in the error."""

from __future__ import annotations

import difflib
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from sciscore.errors import UserError
from sciscore.nn.network import NetworkConfig
from sciscore.train.losses import LossConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# Network keys the trainer derives from the data; a config file must not set them.
DERIVED_NETWORK_KEYS = ("in_channels", "context_channels", "sigma_data", "sigma_data_mean", "constant_means")


@dataclass
class DataConfig:
    paths: list = field(default_factory=list)         # NetCDF/zarr files or globs
    variables: list = field(default_factory=list)     # the fields to learn (channels)
    context_variables: list = field(default_factory=list)  # conditioning fields (not generated)
    sample_dim: str | None = None
    spatial_dims: list | None = None                  # [y, x] when not recognised
    validation_fraction: float = 0.1
    normalization: str = "standard"                   # "standard", "minmax" or "mean-spatial"
    shifts: bool = False                              # random periodic shifts
    flips: bool | str = False                         # reflections: true (x and y), "x" or "y"; pseudoscalars change sign
    rotations: bool = False                           # 90-degree rotations (square grids)
    positive_stretch: dict = field(default_factory=dict)  # {variable: A}: x + (A - 1) max(x, 0) before normalizing


@dataclass
class OptimizerConfig:
    learning_rate: float = 2e-4
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    warmup_steps: int = 100       # linear learning-rate warm-up, in optimizer steps
    grad_clip: float = 1.0        # global gradient-norm clipping (0: off)
    ema_decay: float = 0.999
    ema_warmup: bool = True       # d = min(decay, (1 + k)/(10 + k))
    decay_start: int = 0          # inverse-square-root decay after this many optimizer steps (0: constant)

    def __post_init__(self):
        if not isinstance(self.decay_start, int) or isinstance(self.decay_start, bool) or self.decay_start < 0:
            raise UserError(f"optimizer.decay_start must be an integer >= 0, got {self.decay_start!r}")


@dataclass
class TrainingConfig:
    steps: int | None = 300       # optimizer steps (ignored when epochs is set)
    epochs: int | None = None     # whole passes over the training split
    batch_size: int = 16
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 100
    validation_every: int = 100
    validation_batches: int = 4
    max_nonfinite: int = 10       # stop after this many non-finite losses in a row
    device: str = "auto"
    bf16: bool = False            # bfloat16 autocast (CUDA, or CPUs with bf16 instructions)
    compile: bool = False         # torch.compile the network
    channels_last: bool = False
    threads: int | None = None    # torch CPU threads (default: torch's choice)
    quiet: bool = False
    monitor_every: int | None = None  # quality monitor interval in steps; None: 500 for runs >= 2000 steps; 0: off
    monitor_samples: int = 32     # fields the monitor draws each time
    monitor_steps: int = 18       # ode-heun steps of the monitor's sampler (generate's default)

    def __post_init__(self):
        for name in ("monitor_samples", "monitor_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"training.{name} must be an integer >= 1, got {value!r}")
        every = self.monitor_every
        if every is not None and (not isinstance(every, int) or isinstance(every, bool) or every < 0):
            raise UserError(f"training.monitor_every must be an integer >= 0, got {every!r}")


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    process: dict = field(default_factory=lambda: {"name": "ve", "sigma_min": 0.01, "sigma_max": "auto"})
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)

    def to_dict(self) -> dict:
        return {"data": asdict(self.data), "network": self.network.to_dict(), "process": dict(self.process),
                "loss": asdict(self.loss), "optimizer": asdict(self.optimizer), "training": asdict(self.training)}


SECTIONS = {"data": DataConfig, "network": NetworkConfig, "loss": LossConfig,
            "optimizer": OptimizerConfig, "training": TrainingConfig}


def _unknown(keys, known, where: str) -> str:
    parts = []
    for key in keys:
        close = difflib.get_close_matches(key, known, n=1)
        parts.append(f"'{where}{key}'" + (f" (did you mean '{where}{close[0]}'?)" if close else ""))
    return f"unknown config key(s) {', '.join(parts)}; known keys in [{where.rstrip('.') or 'top level'}]: {', '.join(sorted(known))}"


def _section(cls, values: dict, name: str):
    if not isinstance(values, dict):
        raise UserError(f"config section [{name}] must be a table, got {values!r}")
    known = [f.name for f in fields(cls)]
    unknown = [k for k in values if k not in known]
    if unknown:
        raise UserError(_unknown(unknown, known, f"{name}."))
    try:
        return cls(**values)
    except TypeError as error:
        raise UserError(f"config section [{name}]: {error}") from None


def config_from_dict(data: dict, allow_derived: bool = False) -> TrainConfig:
    """A TrainConfig from nested dicts (TOML layout); unknown sections or keys raise UserError."""
    unknown = [k for k in data if k not in (*SECTIONS, "process")]
    if unknown:
        raise UserError(_unknown(unknown, [*SECTIONS, "process"], ""))
    network = dict(data.get("network", {}))
    if not allow_derived:
        derived = [k for k in network if k in DERIVED_NETWORK_KEYS]
        if derived:
            raise UserError(f"config keys {['network.' + k for k in derived]} are derived from the data; remove them")
    made = {name: _section(cls, network if name == "network" else data.get(name, {}), name)
            for name, cls in SECTIONS.items()}
    process = {"name": "ve", "sigma_min": 0.01, "sigma_max": "auto"}
    user_process = dict(data.get("process", {}))
    if "name" in user_process and user_process["name"] != "ve":
        process = {}
    process.update(user_process)
    return TrainConfig(process=process, **made)


def read_toml(path) -> dict:
    """The nested dict of a TOML config file, with a clear error for a missing or bad file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} not found")
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"config file {path} is not valid TOML: {error}") from None


def merge(base: dict, overrides: dict) -> dict:
    """Nested dict update: values in `overrides` (e.g. from the command line) win."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for section, values in overrides.items():
        if isinstance(values, dict):
            out.setdefault(section, {})
            out[section].update(values)
        else:
            out[section] = values
    return out
