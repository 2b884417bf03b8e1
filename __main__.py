"""Deploys one stack of a small team's production.

Reads the stack's configuration (config.load()), then declares:
- Host: the Hetzner VM (firewall, primary IPs, data volume, cloud-init, readiness) and the
  Docker provider over SSH, or the local Docker engine in swarm mode on dev;
and exports the addresses, the SSH command, the Docker host, the estimated monthly cost and
the memory budget.
"""

import pulumi

import config
from components.host import Host, monthly_cost
from config import capacity
from config.catalogue import PRICES_RECORDED_ON

stack = config.load()
cfg = stack.config

host = Host("host", spec=cfg.host, server_name=f"{cfg.name_prefix}-{stack.name}")

pulumi.export("ipv4", host.ipv4)
pulumi.export("ipv6", host.ipv6)
pulumi.export("ssh_command", host.ssh_command)
pulumi.export("docker_host", host.docker_host)
pulumi.export("known_hosts", host.known_hosts)
pulumi.export("estimated_monthly_cost_eur", monthly_cost(cfg.host))
pulumi.export("prices_recorded_on", PRICES_RECORDED_ON)
pulumi.export("memory_budget", capacity.budget(cfg).as_output())
