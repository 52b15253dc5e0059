"""The import direction of docs/architecture.md: errors <- fields, sde <- nn <- checkpoint <- train,
generate <- commands <- cli; diagnostics on fields only; train and generate never on each other.

Read from the source with `ast` (every import statement, at the top or inside a function), so a
lazy import up the layers fails here, not only when its code path runs."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "sciscore"

# package -> the sciscore packages it must not import
COMMAND_LINE = ("sciscore.commands", "sciscore.cli")
FORBIDDEN = {
    "fields": ("sciscore.generate", "sciscore.train", "sciscore.sde", "sciscore.nn", "sciscore.checkpoint",
               "sciscore.diagnostics", "sciscore.simulate", "sciscore.study", *COMMAND_LINE),
    "sde": ("sciscore.nn", "sciscore.checkpoint", "sciscore.train", "sciscore.generate", "sciscore.diagnostics",
            *COMMAND_LINE),
    "nn": ("sciscore.checkpoint", "sciscore.train", "sciscore.generate", "sciscore.diagnostics", *COMMAND_LINE),
    "train": ("sciscore.generate", *COMMAND_LINE),
    "generate": ("sciscore.train", *COMMAND_LINE),
    "diagnostics": ("sciscore.generate", "sciscore.train", "sciscore.sde", "sciscore.nn", "sciscore.checkpoint",
                    "sciscore.simulate", *COMMAND_LINE),
    "simulate": COMMAND_LINE,
    "study": COMMAND_LINE,
}


def imported_modules(source: str, package: tuple[str, ...]) -> list[tuple[int, str]]:
    """(line, dotted name) of every module that `source`, a module of `package` (e.g. ("sciscore",
    "fields")), imports; `from a import b` names both a and a.b (b may be a submodule), relative
    imports resolved."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1]) if node.level else ""
            module = ".".join(name for name in (base, node.module) if name)
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def package_of(path: Path) -> tuple[str, ...]:
    return path.relative_to(PACKAGE.parent).parts[:-1]


def is_under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_import_goes_up_the_layers(layer):
    modules = sorted((PACKAGE / layer).rglob("*.py"))
    assert modules, f"sciscore/{layer} has no modules"
    violations = [f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}"
                  for path in modules for line, module in imported_modules(path.read_text(), package_of(path))
                  if any(is_under(module, banned) for banned in FORBIDDEN[layer])]
    assert not violations, "\n".join(violations)


def test_the_check_sees_lazy_relative_and_from_package_imports():
    """The reader finds an import inside a function, `from sciscore import generate`, relative
    imports and `import a.b as c` (what the layer test relies on)."""
    source = ("def f():\n    from sciscore.generate.sample_store import is_store\n"
              "from sciscore import generate\nfrom ..train import losses\nfrom . import io\n"
              "import sciscore.nn.unet as unet\n")
    names = sorted(module for _, module in imported_modules(source, ("sciscore", "fields")))
    assert names == sorted(["sciscore.generate.sample_store", "sciscore.generate.sample_store.is_store",
                            "sciscore", "sciscore.generate", "sciscore.train", "sciscore.train.losses",
                            "sciscore.fields", "sciscore.fields.io", "sciscore.nn.unet"])
    assert package_of(PACKAGE / "fields" / "io.py") == package_of(PACKAGE / "fields" / "__init__.py") \
        == ("sciscore", "fields")
