"""Training configuration: sections [data], [network], [process], [loss], [optimizer], [training]
of a TOML file; command-line options override the file. Unknown keys are named in the error."""

from __future__ import annotations

import difflib
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from sciscore.errors import UserError
from sciscore.fields.normalize import METHODS as NORMALIZATIONS
from sciscore.nn.network import NetworkConfig
from sciscore.sde.processes import process_from_dict
from sciscore.train.losses import LossConfig
from sciscore.validation import check_names, check_types, require

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
    spectral_whitening: float = 0.0                   # alpha in [0, 1]: partial whitening of the fluctuation spectrum
    pseudoscalars: list | None = None                 # change sign under flips; default: parity attribute / names
    normalizer_from: str | None = None                # a run directory whose normalization to use instead of fitting one

    def __post_init__(self):
        check_types(self, "data")
        for name in ("paths", "variables", "context_variables"):
            check_names(getattr(self, name), f"data.{name}")
        if self.spatial_dims is not None:
            check_names(self.spatial_dims, "data.spatial_dims")
        if self.pseudoscalars is not None:
            check_names(self.pseudoscalars, "data.pseudoscalars")
        require([
            (0 <= self.validation_fraction < 1, f"validation_fraction must be in [0, 1), got {self.validation_fraction}"),
            (self.normalization in NORMALIZATIONS,
             f"normalization must be one of {list(NORMALIZATIONS)}, got {self.normalization!r}"),
            (0 <= self.spectral_whitening <= 1, f"spectral_whitening must be in [0, 1], got {self.spectral_whitening}"),
            (self.flips in (True, False, "x", "y"), f"flips must be true, false, 'x' or 'y', got {self.flips!r}"),
            (self.spatial_dims is None or len(self.spatial_dims) == 2,
             f"spatial_dims must name two dimensions [y, x], got {self.spatial_dims!r}"),
        ], "config [data]")


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
        check_types(self, "optimizer")
        require([
            (self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}"),
            (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, f"beta1 and beta2 must be in [0, 1), got {self.beta1}, {self.beta2}"),
            (self.eps > 0, f"eps must be > 0, got {self.eps}"),
            (self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}"),
            (self.grad_clip >= 0, f"grad_clip must be >= 0 (0: off), got {self.grad_clip}"),
            (0 <= self.ema_decay <= 1, f"ema_decay must be in [0, 1], got {self.ema_decay}"),
            (self.decay_start >= 0, f"decay_start must be >= 0 (0: constant), got {self.decay_start}"),
        ], "config [optimizer]")


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
    snapshot_every: int = 0       # raw weights every N optimizer steps in RUN_DIR/snapshots/, for post-hoc EMA (0: off)

    def __post_init__(self):
        check_types(self, "training")
        positive = ("batch_size", "log_every", "checkpoint_every", "validation_batches", "max_nonfinite",
                    "monitor_samples", "monitor_steps")
        require([(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}") for name in positive] + [
            (self.steps is None or self.steps >= 1, f"steps must be >= 1, got {self.steps}"),
            (self.epochs is None or self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.steps is not None or self.epochs is not None, "set steps or epochs"),
            (self.validation_every >= 0, f"validation_every must be >= 0 (0: off), got {self.validation_every}"),
            (self.snapshot_every >= 0, f"snapshot_every must be >= 0 (0: off), got {self.snapshot_every}"),
            (self.monitor_every is None or self.monitor_every >= 0,
             f"monitor_every must be >= 0 (0: off), got {self.monitor_every}"),
            (self.threads is None or self.threads >= 1, f"threads must be >= 1, got {self.threads}"),
            (0 <= self.seed < 2**63, f"seed must be in [0, 2**63), got {self.seed}"),
        ], "config [training]")


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
        raise UserError(f"config section [{name}] must be a table ([{name}] with keys below it), got {values!r}")
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
    for name in ("network", "process"):  # the other sections are checked by `_section`
        if not isinstance(data.get(name, {}), dict):
            raise UserError(f"config section [{name}] must be a table ([{name}] with keys below it), "
                            f"got {data[name]!r}")
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
    _check_process(process)
    return TrainConfig(process=process, **made)


def _check_process(process: dict) -> None:
    """Check the [process] section (name, types, ranges) now, not after the data are loaded."""
    probe = dict(process)
    if probe.get("sigma_max") == "auto":  # estimated from the data later; any value above sigma_min stands in
        probe["sigma_max"] = sys.float_info.max
    try:
        process_from_dict(probe)
    except UserError as error:
        raise UserError(f"config [process]: {error}") from None


def read_toml(path) -> dict:
    """The nested dict of a TOML config file, with a clear error for a missing or bad file."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"config file {path} is a directory; give the path of a .toml file")
    if not path.is_file():
        raise UserError(f"config file {path} not found")
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"config file {path} is not valid TOML: {error}") from None
    except OSError as error:
        raise UserError(f"config file {path} cannot be read: {error.strerror}") from None


def merge(base: dict, overrides: dict) -> dict:
    """Nested dict update: values in `overrides` (e.g. from the command line) win."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for section, values in overrides.items():
        if isinstance(values, dict):
            out.setdefault(section, {})
            if not isinstance(out[section], dict):
                raise UserError(f"config section [{section}] must be a table ([{section}] with keys below it), "
                                f"got {out[section]!r}")
            out[section].update(values)
        else:
            out[section] = values
    return out
