"""Model bundle: one directory holding a complete model, written atomically.

    <bundle>/manifest.json   schema version, model version, kind, nominal, kinematic
                             parameters, single-track parameters (nominal "single_track"),
                             residual architecture and fields, data digest, fit metrics,
                             SHA-256 of every weight file
    <bundle>/residual.pt     residual weights and normalisers (a state dict; loaded with
                             ``weights_only=True``, so nothing is unpickled)

A bundle is written to a temporary sibling directory and renamed into place, so a reader
(the daemon watching a model directory) never sees a half-written bundle. Loading checks
everything and raises ``BundleError`` naming the problem.

``nominal`` names the parametric core (``vehicle_models.dynamic_nominal.NOMINALS``):
"kinematic" (5 fields; what a manifest without the key holds, so older bundles load as
before), "kinematic_dynamic_state" or "single_track" (7 fields, yaw_rate and slip included).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, ValidationError

from vehicle_models.dynamic_nominal import KinematicDynamicState, SingleTrackNominal
from vehicle_models.kinematic import Integrator, KinematicBicycle
from vehicle_models.layout import DYNAMIC_STATE_DIM, KINEMATIC_STATE_DIM, State
from vehicle_models.params import BicycleParams
from vehicle_models.residual import ResidualConfig, ResidualEnsemble
from vehicle_models.semi_parametric import (
    DEFAULT_INPUT_FIELDS,
    DEFAULT_OUTPUT_FIELDS,
    SemiParametricModel,
)
from vehicle_models.single_track import SingleTrackParams

Nominal = Literal["kinematic", "kinematic_dynamic_state", "single_track"]

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "residual.pt"


class BundleError(RuntimeError):
    """A model bundle is missing, corrupt or does not match what was expected."""


class ResidualManifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    config: ResidualConfig
    input_fields: tuple[str, ...]
    output_fields: tuple[str, ...]
    weights_file: str = WEIGHTS
    sha256: str


class Manifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int
    version: str
    kind: Literal["kinematic", "semi"]
    created: str
    kinematic: BicycleParams
    nominal: Nominal = "kinematic"
    single_track: SingleTrackParams | None = None
    residual: ResidualManifest | None = None
    data_digest: str | None = None
    fit_metrics: dict[str, Any] = {}
    parent_version: str | None = None
    notes: str = ""


@dataclass
class ModelBundle:
    """A loaded (or about to be saved) model: parameters, optional residual, metadata."""

    version: str
    params: BicycleParams
    residual: ResidualEnsemble | None = None
    nominal: Nominal = "kinematic"
    single_track: SingleTrackParams | None = None  #: the single-track nominal's parameters
    input_fields: tuple[State, ...] = DEFAULT_INPUT_FIELDS
    output_fields: tuple[State, ...] = DEFAULT_OUTPUT_FIELDS
    data_digest: str | None = None
    fit_metrics: dict[str, Any] = field(default_factory=dict)
    parent_version: str | None = None
    notes: str = ""
    path: Path | None = None

    @property
    def kind(self) -> Literal["kinematic", "semi"]:
        """Whether a residual is present ("semi") or not; ``nominal`` says which core."""
        return "kinematic" if self.residual is None else "semi"

    @property
    def state_dim(self) -> int:
        return KINEMATIC_STATE_DIM if self.nominal == "kinematic" else DYNAMIC_STATE_DIM

    def build_nominal(
        self, dt: float, integrator: Integrator = "exact"
    ) -> KinematicBicycle | KinematicDynamicState | SingleTrackNominal:
        """The parametric core alone, stepping by ``dt``."""
        if self.nominal == "kinematic":
            return KinematicBicycle(self.params, dt, integrator)
        if self.nominal == "kinematic_dynamic_state":
            return KinematicDynamicState(self.params, dt, integrator)
        if self.single_track is None:
            raise BundleError("a single_track nominal needs its single_track parameters")
        return SingleTrackNominal(self.single_track, dt)

    def build(
        self,
        dt: float,
        integrator: Integrator = "exact",
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> KinematicBicycle | KinematicDynamicState | SingleTrackNominal | SemiParametricModel:
        """The ``Dynamics`` this bundle describes, stepping by ``dt``."""
        nominal = self.build_nominal(dt, integrator)
        if self.residual is None:
            return nominal
        return SemiParametricModel(
            nominal, self.residual, self.input_fields, self.output_fields, dtype, device
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_bundle(bundle: ModelBundle, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``bundle`` as a directory at ``path`` atomically; returns the path."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise BundleError(f"{path} exists; refusing to overwrite a model bundle")
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        residual_manifest = None
        if bundle.residual is not None:
            weights = staging / WEIGHTS
            torch.save(bundle.residual.state_dict(), weights)
            residual_manifest = ResidualManifest(
                config=bundle.residual.config,
                input_fields=tuple(State(f).name.lower() for f in bundle.input_fields),
                output_fields=tuple(State(f).name.lower() for f in bundle.output_fields),
                sha256=_sha256(weights),
            )
        manifest = Manifest(
            schema_version=SCHEMA_VERSION,
            version=bundle.version,
            kind=bundle.kind,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            kinematic=bundle.params,
            nominal=bundle.nominal,
            single_track=bundle.single_track,
            residual=residual_manifest,
            data_digest=bundle.data_digest,
            fit_metrics=bundle.fit_metrics,
            parent_version=bundle.parent_version,
            notes=bundle.notes,
        )
        # A kinematic bundle's manifest is what it was before nominals existed (older readers load it).
        legacy = {"nominal", "single_track"} if bundle.nominal == "kinematic" else None
        (staging / MANIFEST).write_text(manifest.model_dump_json(indent=2, exclude=legacy) + "\n")
        for item in staging.iterdir():
            with open(item, "rb") as f:
                os.fsync(f.fileno())
        if path.exists():
            shutil.rmtree(path)
        os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    bundle.path = path
    return path


def _fields(names: tuple[str, ...], where: str) -> tuple[State, ...]:
    try:
        return tuple(State[n.upper()] for n in names)
    except KeyError as exc:
        raise BundleError(f"{where}: unknown state field {exc.args[0].lower()!r}") from None


def read_manifest(path: str | Path) -> Manifest:
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"model bundle {path} does not exist or is not a directory")
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"model bundle {path} has no {MANIFEST}")
    try:
        raw = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{manifest_path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise BundleError(f"{manifest_path} must hold a JSON object")
    found = raw.get("schema_version")
    if found != SCHEMA_VERSION:
        raise BundleError(
            f"{manifest_path}: schema version {found!r}, this program reads {SCHEMA_VERSION}"
        )
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        raise BundleError(f"{manifest_path} is malformed: {exc}") from None


def load_bundle(path: str | Path) -> ModelBundle:
    """Load and check a bundle; every failure is a ``BundleError`` naming the problem."""
    path = Path(path)
    manifest = read_manifest(path)
    residual = None
    input_fields, output_fields = DEFAULT_INPUT_FIELDS, DEFAULT_OUTPUT_FIELDS
    if manifest.kind == "semi" and manifest.residual is None:
        raise BundleError(f"{path}: kind 'semi' but the manifest describes no residual")
    if manifest.nominal == "single_track" and manifest.single_track is None:
        raise BundleError(f"{path}: nominal 'single_track' but the manifest has no single_track parameters")
    state_dim = KINEMATIC_STATE_DIM if manifest.nominal == "kinematic" else DYNAMIC_STATE_DIM
    if manifest.residual is not None:
        rm = manifest.residual
        weights = path / rm.weights_file
        if not weights.is_file():
            raise BundleError(f"{path}: weight file {rm.weights_file} is missing")
        if _sha256(weights) != rm.sha256:
            raise BundleError(f"{weights}: checksum mismatch (the file is corrupt or was altered)")
        input_fields = _fields(rm.input_fields, str(path))
        output_fields = _fields(rm.output_fields, str(path))
        beyond = [f.name.lower() for f in (*input_fields, *output_fields) if int(f) >= state_dim]
        if beyond:
            raise BundleError(
                f"{path}: the residual uses {beyond}, which the {manifest.nominal} nominal "
                f"({state_dim} fields) does not have"
            )
        residual = ResidualEnsemble(len(input_fields) + 2, len(output_fields), rm.config)
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            residual.load_state_dict(state)
        except pickle.UnpicklingError as exc:
            raise BundleError(_refused_objects(weights, exc)) from None
        except (RuntimeError, ValueError, KeyError, EOFError) as exc:
            raise BundleError(f"{weights}: weights do not match the manifest: {exc}") from None
        for name, tensor in residual.state_dict().items():
            if not torch.isfinite(tensor).all():
                raise BundleError(f"{weights}: {name} holds NaN or infinite values")
    return ModelBundle(
        version=manifest.version,
        params=manifest.kinematic,
        residual=residual,
        nominal=manifest.nominal,
        single_track=manifest.single_track,
        input_fields=input_fields,
        output_fields=output_fields,
        data_digest=manifest.data_digest,
        fit_metrics=dict(manifest.fit_metrics),
        parent_version=manifest.parent_version,
        notes=manifest.notes,
        path=path,
    )


def _refused_objects(weights: Path, error: Exception) -> str:
    """The refusal of a weight file holding more than tensors: the file, and torch's reason
    without its advice to load with ``weights_only=False`` (which would run the file's code)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reason = next((line for line in lines if "GLOBAL" in line or "Unsupported" in line), lines[-1] if lines else "")
    return (f"{weights}: refused: the weight file holds Python objects, not only tensors, and a bundle is "
            f"never unpickled ({reason.rstrip('.')})")
