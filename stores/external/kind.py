"""The external store kind: a managed database outside the host (Neon, Supabase, RDS). Apps get
its URL from a configured secret; nothing runs on the host, and its provider backs it up."""

from __future__ import annotations

from stores.base import Backup, ContainerPlan, Credentials, Exporter, KeyProblem, SecretUrl, StoreKind
from stores.external.model import ExternalSpec


class ExternalKind(StoreKind[ExternalSpec]):
    name = "external"
    spec_type = ExternalSpec
    summary = "a managed database outside the host: a secret URL, no container"

    def credentials(self, spec: ExternalSpec) -> Credentials:
        return SecretUrl(spec.url_secret)

    def clients(self, spec: ExternalSpec) -> dict[str, str]:
        return {}

    def mountable(self) -> bool:
        return False

    def images(self, spec: ExternalSpec) -> dict[str, str]:
        return {}

    def problems(self, spec: ExternalSpec) -> list[KeyProblem]:
        return []

    def data_volume(self, spec: ExternalSpec) -> bool:
        return False

    def container(self, name: str, spec: ExternalSpec) -> ContainerPlan | None:
        return None

    def exporter(self) -> Exporter[ExternalSpec] | None:
        return None

    def backup(self) -> Backup[ExternalSpec] | None:
        return None
