"""Model pieces shared by the stack's sections and by every store kind's spec (stores/<kind>/model.py).

Apart from config.models so that a store kind's spec can be declared next to its kind without an
import cycle: config.models builds the services union from the store-kind registry, whose kinds
import their specs, which import from here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from config import grammar
from config.errors import KeyPathError, unknown_key
from config.grammar import image_is_pinned

__all__ = ["image_is_pinned"]

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,30}$"
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
# A secret is named in the topology and its value lives in the stack config under that key,
# set with `pulumi config set --secret <name> <value>`.
SECRET_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,62}$"
SecretName = Annotated[str, Field(pattern=SECRET_NAME_PATTERN)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: object) -> object:
        # Named before any other problem of the mapping, with the key it was probably meant to be:
        # a misspelt key would otherwise show up only as a follow-on error (a default taken).
        if isinstance(data, dict):
            for key in data:
                if key not in cls.model_fields:
                    raise KeyPathError((str(key),), unknown_key(key, cls.model_fields))
        return data


def checked(problem_of: Callable[[str], str | None]) -> AfterValidator:
    """A validator from a grammar function (config.grammar) that returns the problem, or None."""

    def check(value: str) -> str:
        problem = problem_of(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    return AfterValidator(check)


Image = Annotated[str, checked(grammar.image_problem)]
"""A Docker image reference (distribution/reference's grammar); pinning is enforced in crossref."""


def check_image(value: str) -> str:
    problem = grammar.image_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def image_major_version(image: str) -> int | None:
    """The leading number of an image's tag (16 for postgres:16.6-alpine), or None when the tag
    does not start with one (latest, alpine, a digest only)."""
    tag = image.split("@", 1)[0].rsplit("/", 1)[-1].partition(":")[2]
    major = re.match(r"^([0-9]+)", tag)
    return int(major.group(1)) if major else None


class Resources(Model):
    """Memory and CPU for one task (one replica)."""

    memory_mb: int = Field(ge=16)
    """Hard memory limit; the capacity check sums these."""
    memory_reservation_mb: int | None = Field(default=None, ge=8)
    """Reserved memory; default half the limit."""
    cpus: float | None = Field(default=None, gt=0, le=64)
    cpu_reservation: float | None = Field(default=None, gt=0, le=64)

    @model_validator(mode="after")
    def _reservation_below_limit(self) -> Resources:
        if self.memory_reservation_mb is not None and self.memory_reservation_mb > self.memory_mb:
            raise KeyPathError(
                "memory_reservation_mb",
                f"found {self.memory_reservation_mb}; expected at most the limit memory_mb ({self.memory_mb})",
            )
        if self.cpus is not None and self.cpu_reservation is not None and self.cpu_reservation > self.cpus:
            raise KeyPathError("cpu_reservation", f"found {self.cpu_reservation}; expected at most cpus ({self.cpus})")
        return self

    @property
    def reservation_mb(self) -> int:
        return self.memory_reservation_mb if self.memory_reservation_mb is not None else self.memory_mb // 2


class Logging(Model):
    """json-file log rotation for a service's containers."""

    max_size: Annotated[str, Field(pattern=r"^[0-9]+[kmg]$")] = "10m"
    max_file: int = Field(default=3, ge=1, le=100)


class StoreSpec(Model):
    """What every store kind's spec is: a service whose ``kind`` names its kind in the registry
    (stores/registry.py), which knows everything else about it."""

    kind: str
