"""The failover manager of a lab, as a value: the topology's [ha] section.

    [ha]
    manager = "patroni"          # none (manual: you promote), pglab (pglab's monitor), patroni,
                                 # pg_auto_failover (a monitor + one keeper per node), repmgr
                                 # (repmgrd on every node); for these two only `profile` applies
    profile = "fast"             # default: Patroni's own defaults (ttl 30, loop_wait 10, retry_timeout 10)
                                 # fast: the smallest values its code accepts (ttl 20, loop_wait 2, retry_timeout 5)
    ttl = 20                     # any of these overrides the profile
    loop_wait = 2
    retry_timeout = 5
    maximum_lag_on_failover = 1048576
    synchronous_mode = true      # true, false or "quorum"
    synchronous_mode_strict = false
    synchronous_node_count = 1
    failsafe_mode = false
    nosync = ["s2"]              # never chosen as synchronous (default: standbys the [replication]
                                 # synchronous_standby_names does not name, so s1 is the synchronous one)
    etcd_members = 3
    haproxy = true

Patroni's own limits (its code refuses less): loop_wait >= 1, retry_timeout >= 3, ttl >= 20 and
loop_wait + 2 * retry_timeout <= ttl.

With manager = "pg_auto_failover" the profile names the monitor's health-check settings
(lab.ha.pgaf_conf.PROFILES: default = pg_auto_failover's own, fast = the smallest sensible).

With manager = "repmgr" only `profile` applies (PostgreSQL 15: Debian packages repmgr for it only):
default is repmgr's own defaults (monitor_interval_secs 2, reconnect_attempts 6, reconnect_interval
10), fast the smallest sensible values (1, 2, 1); see REPMGR_PROFILES and lab.ha.repmgr_conf.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from lab.errors import InvalidInput, one_of

MANAGERS = ("none", "pglab", "patroni", "pg_auto_failover", "repmgr")
PROFILES: dict[str, dict[str, int]] = {
    "default": {"ttl": 30, "loop_wait": 10, "retry_timeout": 10},
    "fast": {"ttl": 20, "loop_wait": 2, "retry_timeout": 5},
}
# repmgrd's timing per profile (repmgr.conf keys); repmgr's parser refuses monitor_interval_secs < 1
REPMGR_PROFILES: dict[str, dict[str, int]] = {
    "default": {"monitor_interval_secs": 2, "reconnect_attempts": 6, "reconnect_interval": 10},
    "fast": {"monitor_interval_secs": 1, "reconnect_attempts": 2, "reconnect_interval": 1},
}
_KEYS = {"manager", "profile", "ttl", "loop_wait", "retry_timeout", "maximum_lag_on_failover", "synchronous_mode",
         "synchronous_mode_strict", "synchronous_node_count", "failsafe_mode", "nosync", "etcd_members", "haproxy"}


@dataclass(frozen=True)
class HASpec:
    manager: str = "none"
    profile: str = "default"
    ttl: int = 30
    loop_wait: int = 10
    retry_timeout: int = 10
    maximum_lag_on_failover: int = 1048576
    synchronous_mode: str = "on"          # "on", "off" or "quorum"
    synchronous_mode_strict: bool = False
    synchronous_node_count: int = 1
    failsafe_mode: bool = False
    nosync: tuple[str, ...] | None = None  # None: derived from synchronous_standby_names
    etcd_members: int = 3
    haproxy: bool = True
    overrides: tuple[str, ...] = field(default_factory=tuple)   # timing keys set apart from the profile

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"manager": self.manager}
        if self.manager in ("pg_auto_failover", "repmgr"):
            return {**d, "profile": self.profile}
        if self.manager != "patroni":
            return d
        d["profile"] = self.profile
        for k in self.overrides:
            d[k] = getattr(self, k)
        d.update(maximum_lag_on_failover=self.maximum_lag_on_failover,
                 synchronous_mode={"on": True, "off": False}.get(self.synchronous_mode, self.synchronous_mode),
                 synchronous_mode_strict=self.synchronous_mode_strict,
                 synchronous_node_count=self.synchronous_node_count, failsafe_mode=self.failsafe_mode,
                 etcd_members=self.etcd_members, haproxy=self.haproxy)
        if self.nosync is not None:
            d["nosync"] = list(self.nosync)
        return d

    def with_manager(self, manager: str, profile: str | None = None) -> "HASpec":
        """`pglab up --ha MANAGER [--ha-profile P]` over what the topology file says."""
        d = self.to_dict() if manager == self.manager else {}
        return ha_from_dict({**d, "manager": manager, **({"profile": profile} if profile else {})}, "--ha")


def _int(d: dict, key: str, default: int, source: str) -> int:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int):
        raise InvalidInput(f"{source}: [ha] {key} = {v!r} is not an integer", f"e.g. {key} = {default}")
    return v


def ha_from_dict(d: Any, source: str = "topology") -> HASpec:
    if d is None:
        return HASpec()
    if not isinstance(d, dict):
        raise InvalidInput(f"{source}: [ha] must be a table/mapping", f"allowed keys: {', '.join(sorted(_KEYS))}")
    unknown = set(d) - _KEYS
    if unknown:
        raise InvalidInput(f"{source}: unknown key {sorted(unknown)[0]!r} in [ha]", f"allowed keys: {', '.join(sorted(_KEYS))}")
    manager = one_of(str(d.get("manager", "none")), MANAGERS, f"{source}: unknown failover manager")
    profile = one_of(str(d.get("profile", "default")), PROFILES, f"{source}: unknown [ha] profile")
    if manager != "patroni":
        extra = sorted(set(d) - {"manager", "profile"})
        if extra:
            raise InvalidInput(f"{source}: [ha] {extra[0]} applies to manager = \"patroni\" only",
                               f"remove it, or set manager = \"patroni\" (manager is {manager!r})")
        return HASpec(manager=manager, profile=profile)
    base = PROFILES[profile]
    timing = {k: _int(d, k, base[k], source) for k in base}
    overrides = tuple(k for k in base if k in d)
    if timing["loop_wait"] < 1 or timing["retry_timeout"] < 3 or timing["ttl"] < 20:
        raise InvalidInput(f"{source}: [ha] ttl {timing['ttl']} / loop_wait {timing['loop_wait']} / retry_timeout "
                           f"{timing['retry_timeout']} is below Patroni's minimums",
                           "Patroni needs ttl >= 20, loop_wait >= 1, retry_timeout >= 3")
    if timing["loop_wait"] + 2 * timing["retry_timeout"] > timing["ttl"]:
        raise InvalidInput(f"{source}: [ha] loop_wait + 2 * retry_timeout ({timing['loop_wait']} + 2 * "
                           f"{timing['retry_timeout']}) exceeds ttl {timing['ttl']}",
                           "Patroni would silently raise ttl; make loop_wait + 2 * retry_timeout <= ttl")
    sm = d.get("synchronous_mode", True)
    sm_s = {True: "on", False: "off", "on": "on", "off": "off", "quorum": "quorum"}.get(sm) if not isinstance(sm, int) or isinstance(sm, bool) else None
    if sm_s is None:
        raise InvalidInput(f"{source}: [ha] synchronous_mode = {sm!r} is not allowed", "use true, false or \"quorum\"")
    for key in ("synchronous_mode_strict", "failsafe_mode", "haproxy"):
        if key in d and not isinstance(d[key], bool):
            raise InvalidInput(f"{source}: [ha] {key} = {d[key]!r} is not a boolean", f"e.g. {key} = true")
    count = _int(d, "synchronous_node_count", 1, source)
    if count < 1:
        raise InvalidInput(f"{source}: [ha] synchronous_node_count {count} is out of range", "use 1 or more")
    members = _int(d, "etcd_members", 3, source)
    if members not in (1, 3, 5):
        raise InvalidInput(f"{source}: [ha] etcd_members = {members} is not allowed", "use 1, 3 or 5")
    nosync = d.get("nosync")
    if nosync is not None:
        if not isinstance(nosync, list) or not all(isinstance(x, str) for x in nosync):
            raise InvalidInput(f"{source}: [ha] nosync must be a list of node names", "e.g. nosync = [\"s2\"]")
        nosync = tuple(nosync)
    lag = _int(d, "maximum_lag_on_failover", 1048576, source)
    return HASpec(manager="patroni", profile=profile, ttl=timing["ttl"], loop_wait=timing["loop_wait"],
                  retry_timeout=timing["retry_timeout"], maximum_lag_on_failover=lag, synchronous_mode=sm_s,
                  synchronous_mode_strict=bool(d.get("synchronous_mode_strict", False)),
                  synchronous_node_count=count, failsafe_mode=bool(d.get("failsafe_mode", False)),
                  nosync=nosync, etcd_members=members, haproxy=bool(d.get("haproxy", True)), overrides=overrides)


def with_profile(spec: HASpec, profile: str) -> HASpec:
    if profile not in PROFILES:
        raise InvalidInput(f"unknown --ha-profile {profile!r}", f"use one of: {', '.join(PROFILES)}")
    return replace(spec, profile=profile, **{k: v for k, v in PROFILES[profile].items() if k not in spec.overrides})
