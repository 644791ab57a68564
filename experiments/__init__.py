"""The studies: one registry of names, the built-in ones (a module each) and a user's own.

`STUDIES` maps a name to a built-in study's module path or to a `Study` a user registered
(`register`). `get` takes a name or the path of a study file (a module-level
`STUDY = sigjax.study.Study(...)`); `import_user` imports a user's module or file so that
what it registers (activations, optimizers, studies) is in place.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from sigjax.errors import UserError, first_line

BUILTIN = {
    "sigmoid_convergence": "experiments.sigmoid_convergence",
    "glorot2010": "experiments.glorot2010",
    "dynamical_isometry": "experiments.dynamical_isometry",
    "phase_diagram": "experiments.phase_diagram",
    "gradient_propagation": "experiments.gradient_propagation",
    "trainability": "experiments.trainability",
    "remedies": "experiments.remedies",
    "convergence_rates": "experiments.convergence_rates",
}
STUDIES: dict = dict(BUILTIN)  # name -> module path (built in) or Study (registered)
DEFAULT = "sigmoid_convergence"


def is_file(spec: str) -> bool:
    """Whether a study or --import argument names a file (a path) rather than a name."""
    return spec.endswith(".py") or "/" in spec or os.sep in spec


def get(name: str):
    """The Study called `name`, or defined by the study file at path `name`."""
    if isinstance(name, str) and is_file(name):
        return from_file(name)
    if name not in STUDIES:
        raise UserError(f"unknown study {name!r}; choose from {', '.join(STUDIES)}")
    entry = STUDIES[name]
    return importlib.import_module(entry).STUDY if isinstance(entry, str) else entry


def register(study, *, replace: bool = False):
    """Make `study` (a `sigjax.study.Study`) runnable by its name: `sigjax run NAME` (after
    `--import` of the file that registers it) and `sigjax list`. Returns the study.

    UserError for what is not a Study, a name that is no plain word (it names the default run
    directory runs/NAME), a built-in study's name, or a name registered with another study
    unless replace=True. Registering the same study again changes nothing."""
    from sigjax.study import Study

    if not isinstance(study, Study):
        raise UserError(f"register takes a sigjax.study.Study, got {type(study).__name__}")
    name = study.name
    if not (isinstance(name, str) and name.replace("-", "_").isidentifier()):
        raise UserError(f"a study's name must be a word like 'my_study', got {name!r}")
    if name in BUILTIN:
        raise UserError(f"study {name!r} is built in; give yours another name")
    old = STUDIES.get(name)
    if old is not None and old != study and not replace:
        raise UserError(
            f"study {name!r} is already registered with another study; "
            "pass replace=True to replace it"
        )
    STUDIES[name] = study
    return study


def from_file(path: str | os.PathLike):
    """The `STUDY` of the study file at `path` (imported once per process)."""
    from sigjax.study import Study

    module = import_user(os.fspath(path), what="study file")
    study = getattr(module, "STUDY", None)
    if study is None:
        raise UserError(
            f"study file {path} defines no STUDY; add a module-level "
            "STUDY = sigjax.study.Study(...)"
        )
    if not isinstance(study, Study):
        raise UserError(
            f"study file {path}: STUDY must be a sigjax.study.Study, got {type(study).__name__}"
        )
    return study


def import_user(spec: str, what: str = "--import") -> ModuleType:
    """Import a user's module: a file (a path ending in .py, its directory appended to
    sys.path for its own imports) or a dotted module name. A file is imported once per process
    however often it is named. UserError (naming `what` and spec) for a file that does not
    exist, or a module that fails to import (its exception's first line)."""
    if not isinstance(spec, str) or not spec:
        raise UserError(f"{what} takes a module name or a .py file, got {spec!r}")
    if not is_file(spec):
        try:
            return importlib.import_module(spec)
        except Exception as e:
            raise UserError(f"{what} {spec}: {_why(e)}") from None
    path = Path(spec).expanduser().resolve()
    if not path.is_file():
        raise UserError(f"{what} {spec}: {'not a file' if path.exists() else 'no such file'}")
    tag = hashlib.sha256(str(path).encode()).hexdigest()[:8]
    name = f"sigjax_user_{''.join(c if c.isalnum() else '_' for c in path.stem)}_{tag}"
    if name in sys.modules:
        return sys.modules[name]
    spec_obj = importlib.util.spec_from_file_location(name, path)
    if spec_obj is None or spec_obj.loader is None:
        raise UserError(f"{what} {spec}: not a Python file")
    module = importlib.util.module_from_spec(spec_obj)
    if str(path.parent) not in sys.path:
        sys.path.append(str(path.parent))
    sys.modules[name] = module  # before it runs: its dataclasses look their module up
    try:
        spec_obj.loader.exec_module(module)
    except (Exception, SystemExit) as e:
        del sys.modules[name]
        raise UserError(f"{what} {spec}: {_why(e)}") from None
    return module


def _why(e: BaseException) -> str:
    return first_line(e) if isinstance(e, UserError) else f"{type(e).__name__}: {first_line(e)}"
