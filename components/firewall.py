"""Hetzner firewall rules the host and the pool nodes share."""

from __future__ import annotations

import pulumi_hcloud as hcloud

from config.models import HcloudHostSpec

WORLD = ("0.0.0.0/0", "::/0")


def ssh_rule(spec: HcloudHostSpec) -> hcloud.FirewallRuleArgs:
    """SSH from the admins' networks (CI's runners come in through the CI firewall)."""
    return hcloud.FirewallRuleArgs(
        direction="in", protocol="tcp", port="22", source_ips=list(spec.admin_cidrs), description="ssh from admins"
    )


def ping_rule() -> hcloud.FirewallRuleArgs:
    return hcloud.FirewallRuleArgs(direction="in", protocol="icmp", source_ips=list(WORLD), description="ping")
