"""Stub resources for tests (no tests here)."""
from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any, ClassVar

from churn_assets.defs.resources import ModelRegistry


class StubRegistry(ModelRegistry):
    """A model registry without MLflow: production is `version`, serving the given model (and,
    for the monitoring assets, the given TrainingEvidence). Dagster rebuilds a resource from its
    config fields, so the Python objects live in a class-level table under `key`.

        StubRegistry.serving(StubModel(), "12")   # production v12
        StubRegistry()                            # no production model yet (LookupError, like MLflow)
    """

    tracking_uri: str = "stub://registry"
    version: str | None = None
    key: str = ""

    _objects: ClassVar[dict[str, dict[str, Any]]] = {}
    _keys: ClassVar[Iterator[int]] = itertools.count()

    @classmethod
    def serving(cls, model: Any, version: str = "1", evidence: Any = None) -> StubRegistry:
        key = str(next(cls._keys))
        cls._objects[key] = {"model": model, "evidence": evidence}
        return cls(version=str(version), key=key)

    def _object(self, name: str) -> Any:
        return self._objects.get(self.key, {}).get(name)

    def load_production(self):
        if self.version is None:
            raise LookupError("registered model 'churn_model' has no 'production' alias yet: "
                              "train and promote a model first")
        return self._object("model"), self.version

    def production_version(self) -> str | None:
        return self.version

    def alias_version(self, alias: str) -> str | None:
        return self.version

    def version_tags(self, version: str) -> dict[str, str]:
        return dict(getattr(self._object("evidence"), "tags", None) or {})

    def production_params(self) -> dict | None:
        return None

    def training_evidence(self, version: str):
        evidence = self._object("evidence")
        if evidence is None:
            raise LookupError(f"the stub registry has no training evidence for version {version}")
        return evidence

    def validation_scores(self, version: str):
        return self.training_evidence(version).validation_predictions
