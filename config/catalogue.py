"""What Hetzner Cloud offers: current server types, their sizes, where they run, and list prices.

Prices are monthly list prices in EUR excluding VAT for the EU locations, recorded after
Hetzner's price adjustment of 2026-04-01 (PRICES_RECORDED_ON). They are an estimate for the
stack output `estimated_monthly_cost_eur`, not a bill: check https://www.hetzner.com/cloud
before budgeting. The types deprecated on 2025-10-16 (cx22..cx52, cpx11..cpx51) are absent
on purpose: Hetzner no longer sells them, so a config naming one is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

PRICES_RECORDED_ON = "2026-04-01"

EU_LOCATIONS = ("fsn1", "nbg1", "hel1")
ALL_LOCATIONS = ("fsn1", "nbg1", "hel1", "ash", "hil", "sin")


@dataclass(frozen=True)
class ServerType:
    name: str
    vcpus: int
    memory_mib: int
    disk_gib: int
    arch: str  # "x86" or "arm"
    locations: tuple[str, ...]
    eur_per_month: float


def _t(name: str, vcpus: int, gib: int, disk: int, arch: str, locs: tuple[str, ...], eur: float) -> ServerType:
    return ServerType(name, vcpus, gib * 1024, disk, arch, locs, eur)


SERVER_TYPES: dict[str, ServerType] = {
    t.name: t
    for t in (
        # Cost-optimised shared x86 (Intel/AMD), EU only.
        _t("cx23", 2, 4, 40, "x86", EU_LOCATIONS, 3.99),
        _t("cx33", 4, 8, 80, "x86", EU_LOCATIONS, 6.49),
        _t("cx43", 8, 16, 160, "x86", EU_LOCATIONS, 11.99),
        _t("cx53", 16, 32, 320, "x86", EU_LOCATIONS, 22.49),
        # Shared Ampere ARM64, EU only.
        _t("cax11", 2, 4, 40, "arm", EU_LOCATIONS, 4.49),
        _t("cax21", 4, 8, 80, "arm", EU_LOCATIONS, 7.99),
        _t("cax31", 8, 16, 160, "arm", EU_LOCATIONS, 15.99),
        _t("cax41", 16, 32, 320, "arm", EU_LOCATIONS, 31.49),
        # Regular-performance shared AMD, every location.
        _t("cpx12", 1, 2, 40, "x86", ALL_LOCATIONS, 5.49),
        _t("cpx22", 2, 4, 80, "x86", ALL_LOCATIONS, 7.99),
        _t("cpx32", 4, 8, 160, "x86", ALL_LOCATIONS, 13.99),
        _t("cpx42", 8, 16, 320, "x86", ALL_LOCATIONS, 25.49),
        _t("cpx52", 12, 24, 480, "x86", ALL_LOCATIONS, 36.49),
        _t("cpx62", 16, 32, 640, "x86", ALL_LOCATIONS, 49.99),
        # Dedicated vCPU AMD, every location.
        _t("ccx13", 2, 8, 80, "x86", ALL_LOCATIONS, 15.99),
        _t("ccx23", 4, 16, 160, "x86", ALL_LOCATIONS, 31.49),
        _t("ccx33", 8, 32, 240, "x86", ALL_LOCATIONS, 62.49),
    )
}

# Hetzner system images (GET /v1/images?type=system) the cloud-init is written for: it installs
# docker.io, ufw and unattended-upgrades with apt and reloads the `ssh` unit, so Ubuntu and Debian
# only. Other distributions Hetzner offers (Fedora, Rocky, Alma, CentOS Stream, openSUSE) would
# boot without Docker.
IMAGES = ("ubuntu-24.04", "ubuntu-22.04", "debian-12")

# Users the image already has, which a deploy user must not be: Debian's static system users
# (base-passwd 3.6.1, /usr/share/base-passwd/passwd.master), the users Ubuntu 24.04's base
# packages create (systemd, dbus, rsyslog, openssh-server, ...), and `docker`, the group the
# docker.io package creates (a user of that name would collide with it).
SYSTEM_USERS = frozenset(
    """root daemon bin sys sync games man lp mail news uucp proxy www-data backup list irc _apt nobody
    systemd-network systemd-resolve systemd-timesync messagebus syslog sshd uuidd tcpdump tss landscape
    fwupd-refresh polkitd dhcpcd pollinate lxd usbmux dnsmasq ubuntu debian docker""".split()
)

# Add-ons priced per month.
PRIMARY_IPV4_EUR = 0.60
VOLUME_EUR_PER_GIB = 0.0572
BACKUPS_SHARE = 0.20  # Hetzner's server backups cost 20% of the server price.

DEPRECATED_TYPES = {
    "cx11", "cx21", "cx31", "cx41", "cx51",
    "cx22", "cx32", "cx42", "cx52",
    "cpx11", "cpx21", "cpx31", "cpx41", "cpx51",
}  # fmt: skip


def node_monthly_cost_eur(server_type: str) -> float:
    """A pool node: the server and the IPv4 address Hetzner gives it (no volume, no backups)."""
    return round(SERVER_TYPES[server_type].eur_per_month + PRIMARY_IPV4_EUR, 2)


def monthly_cost_eur(server_type: str, data_volume_gib: int, backups: bool) -> float:
    server = SERVER_TYPES[server_type]
    total = server.eur_per_month + PRIMARY_IPV4_EUR + data_volume_gib * VOLUME_EUR_PER_GIB
    if backups:
        total += server.eur_per_month * BACKUPS_SHARE
    return round(total, 2)
