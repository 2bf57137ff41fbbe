"""Build the whole hotshard deployment into a CDK App: one line per stack.

`app.py` at the repository root calls `main()`; tests call `build()` with their own
context. Stacks get explicit keyword arguments (the stacks they depend on), so every
cross-stack reference is visible here and in the templates' exports.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk

from infra.api import ApiStack
from infra.cache import CacheStack
from infra.config import InfraConfig
from infra.constructs.nag import add_checks
from infra.fleet import FleetStack
from infra.messaging import MessagingStack
from infra.migration import MigrationStack
from infra.network import NetworkStack
from infra.storage import StorageStack

CDK_JSON = Path(__file__).resolve().parent.parent / "cdk.json"


@dataclass(frozen=True)
class Deployment:
    app: cdk.App
    config: InfraConfig
    network: NetworkStack
    storage: StorageStack
    messaging: MessagingStack
    cache: CacheStack
    fleet: FleetStack
    api: ApiStack
    migration: MigrationStack

    @property
    def stacks(self) -> list[cdk.Stack]:
        return [
            self.network,
            self.storage,
            self.messaging,
            self.cache,
            self.fleet,
            self.api,
            self.migration,
        ]


def cdk_json_context() -> dict[str, Any]:
    """cdk.json's context, so `python app.py` synthesizes what `cdk synth` does."""
    context: dict[str, Any] = json.loads(CDK_JSON.read_text())["context"]
    return context


def build(context: dict[str, Any], *, outdir: str | None = None) -> Deployment:
    """An App with every hotshard stack; `context` is cdk.json's, the CLI's wins over it."""
    app = cdk.App(context=context, outdir=outdir, analytics_reporting=False)
    config = InfraConfig.from_context(app.node.get_all_context())
    account = config.account or os.environ.get("CDK_DEFAULT_ACCOUNT")
    if account:
        # Synth asks AWS for a concrete account's AZs unless context already has them.
        key = f"availability-zones:account={account}:region={config.region}"
        if app.node.try_get_context(key) is None:
            app.node.set_context(key, list(config.availability_zones))
    else:
        # Environment-agnostic: what Stack.availability_zones returns instead of Fn::GetAZs.
        app.node.set_context("aws:cdk:availability-zones:fallback", list(config.availability_zones))
    env = cdk.Environment(account=account, region=config.region)

    network = NetworkStack(app, "HotshardNetwork", config=config, env=env)
    storage = StorageStack(app, "HotshardStorage", config=config, env=env)
    messaging = MessagingStack(app, "HotshardMessaging", config=config, env=env, network=network)
    cache = CacheStack(app, "HotshardCache", config=config, env=env, network=network)
    fleet = FleetStack(
        app,
        "HotshardFleet",
        config=config,
        env=env,
        network=network,
        messaging=messaging,
        cache=cache,
        storage=storage,
    )
    api = ApiStack(
        app,
        "HotshardApi",
        config=config,
        env=env,
        network=network,
        messaging=messaging,
        cache=cache,
    )
    migration = MigrationStack(
        app,
        "HotshardMigration",
        config=config,
        env=env,
        network=network,
        messaging=messaging,
        cache=cache,
        storage=storage,
        fleet=fleet,
    )
    for stack in (network, storage, messaging, cache, fleet, api, migration):
        cdk.Tags.of(stack).add("project", "hotshard")
    if config.nag:
        add_checks(app)
    return Deployment(app, config, network, storage, messaging, cache, fleet, api, migration)


def main() -> None:
    outdir = None if os.environ.get("CDK_OUTDIR") else "cdk.out"
    build(cdk_json_context(), outdir=outdir).app.synth()
