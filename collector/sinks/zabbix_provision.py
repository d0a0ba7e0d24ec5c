"""Zabbix API side of the sink: hosts (group, template, tags, inventory), item lookups, extra items, health checks."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import aiohttp

from collector.sinks.zabbix_keys import TEMPLATE_HOST

log = logging.getLogger("collector.sinks.zabbix")


class ApiUnavailable(Exception):
    """The Zabbix API could not be used right now (network, HTTP, auth or API error); try later."""


@dataclass
class HostState:
    hostid: str | None = None  # None: not provisioned (yet)
    keys: set[str] = field(default_factory=set)  # item keys that exist on the host (from item.get)
    keys_at: float = 0.0  # monotonic time of the last item.get
    next_attempt: float = 0.0  # provisioning back-off
    unsupported: dict[str, str] = field(default_factory=dict)  # key → error of items Zabbix marked unsupported
    unsupported_new: dict[str, str] = field(default_factory=dict)  # those that became unsupported at the last refresh


class Provisioner:
    """Creates hosts and items through the JSON-RPC API (zabbix_utils.AsyncZabbixAPI), retrying later when down."""

    def __init__(self, cfg: Any, host_tls: dict[str, Any] | None = None) -> None:  # cfg: ZabbixApiConfig
        self.cfg = cfg
        self.host_tls = host_tls or {}  # tls_accept/psk fields a created host needs to accept our sender
        self._api: Any = None
        self._session: aiohttp.ClientSession | None = None
        self._lock = asyncio.Lock()
        self._down_until = 0.0
        self._backoff = 1.0
        self._group_ids: list[str] | None = None
        self._template_ids: list[str] | None = None
        self.hosts: dict[str, HostState] = {}

    # ------------------------------------------------------------------ connection

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    async def _client(self) -> Any:
        if self._api is not None:
            return self._api
        from zabbix_utils import AsyncZabbixAPI
        from zabbix_utils.types import APIVersion

        cfg = self.cfg
        if self._session is None or self._session.closed:
            ctx: ssl.SSLContext | bool = True
            if cfg.url.startswith("https"):
                if not cfg.verify_tls:
                    ctx = False
                elif cfg.ca_file:
                    ctx = ssl.create_default_context(cafile=cfg.ca_file)
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx))
        # AsyncZabbixAPI's constructor asks the version with a *blocking* request; ask it here
        # asynchronously and hand it over, so an unreachable API never stalls the event loop.
        async with asyncio.timeout(cfg.timeout):
            async with self._session.post(
                cfg.url, json={"jsonrpc": "2.0", "method": "apiinfo.version", "params": {}, "id": 1},
                headers={"Content-Type": "application/json-rpc"},
            ) as r:
                r.raise_for_status()
                version = (await r.json(content_type=None))["result"]

        class _API(AsyncZabbixAPI):  # type: ignore[misc, valid-type]
            def __init__(self, **kw: Any) -> None:
                self._AsyncZabbixAPI__version = APIVersion(version)
                super().__init__(**kw)

        api = _API(url=cfg.url, client_session=self._session, timeout=int(cfg.timeout), skip_version_check=True,
                   validate_certs=cfg.verify_tls)
        if cfg.token:
            await api.login(token=cfg.token)
        else:
            await api.login(user=cfg.user, password=cfg.password_value())
        self._api = api
        return api

    async def call(self, method: str, **params: Any) -> Any:
        """One API call; any failure marks the API down for a while and raises ApiUnavailable."""
        if not self.available:
            raise ApiUnavailable(f"Zabbix API marked unavailable for {self._down_until - time.monotonic():.0f}s more")
        try:
            async with asyncio.timeout(self.cfg.timeout):
                api = await self._client()
                obj, _, meth = method.partition(".")
                result = await getattr(getattr(api, obj), meth)(**params)
        except Exception as e:  # noqa: BLE001 - every failure means "try later", API errors excepted
            err = f"{type(e).__name__}: {e}"
            if self._api is not None and _is_api_error(e):  # the API answered this call with an error
                raise ApiError(method, err) from e
            self._api = None
            if self._down_until <= time.monotonic():
                log.warning("zabbix API unavailable", extra={"url": self.cfg.url, "method": method, "error": err[:300],
                                                             "retry_in_s": round(self._backoff, 1)})
            self._down_until = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, self.cfg.retry_interval)
            raise ApiUnavailable(err) from e
        self._backoff = 1.0
        return result

    async def close(self) -> None:
        api, self._api = self._api, None
        if api is not None and not self.cfg.token:
            try:
                async with asyncio.timeout(5):
                    await api.logout()
            except Exception:  # noqa: BLE001
                pass
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ hosts

    async def _ensure_groups(self) -> list[str]:
        if self._group_ids is None:
            ids = []
            for name in self.cfg.host_groups:
                found = await self.call("hostgroup.get", filter={"name": [name]}, output=["groupid"])
                if found:
                    ids.append(found[0]["groupid"])
                else:
                    try:
                        ids.append((await self.call("hostgroup.create", name=name))["groupids"][0])
                    except ApiError:  # created concurrently
                        ids.append((await self.call("hostgroup.get", filter={"name": [name]}, output=["groupid"]))[0]["groupid"])
            self._group_ids = ids
        return self._group_ids

    async def _ensure_templates(self) -> list[str]:
        if self._template_ids is None:
            names = list(self.cfg.templates)
            found = await self.call("template.get", filter={"host": names}, output=["templateid", "host"])
            have = {t["host"]: t["templateid"] for t in found}
            missing = [n for n in names if n not in have]
            if missing and self.cfg.template_file and TEMPLATE_HOST in missing:
                await self.import_template(Path(self.cfg.template_file))
                found = await self.call("template.get", filter={"host": names}, output=["templateid", "host"])
                have = {t["host"]: t["templateid"] for t in found}
                missing = [n for n in names if n not in have]
            if missing:
                log.error("zabbix templates not found; hosts are created without them",
                          extra={"templates": ",".join(missing), "hint": "import config/zabbix/infrawatch_template.yaml"})
            self._template_ids = [have[n] for n in names if n in have]
        return self._template_ids

    async def import_template(self, path: Path) -> None:
        source = path.read_text(encoding="utf-8")
        rules = {
            "groups": {"createMissing": True, "updateExisting": True},  # template groups in 6.2+: the API maps it
            "templates": {"createMissing": True, "updateExisting": True},
            "items": {"createMissing": True, "updateExisting": True},
            "triggers": {"createMissing": True, "updateExisting": True},
            "graphs": {"createMissing": True, "updateExisting": True},
            "discoveryRules": {"createMissing": True, "updateExisting": True},
            "templateDashboards": {"createMissing": True, "updateExisting": True},
            "valueMaps": {"createMissing": True, "updateExisting": True},
        }
        version = self._api.version if self._api is not None else None
        if version is not None and version >= 6.2:
            rules["template_groups"] = rules.pop("groups")
        await self.call("configuration.import_", format="yaml", source=source, rules=rules)
        log.info("zabbix template imported", extra={"file": str(path)})

    async def ensure_host(self, name: str, agent: str) -> HostState:
        """Create the host if missing (idempotent); link the templates to an existing one if needed."""
        st = self.hosts.setdefault(name, HostState())
        if st.hostid is not None:
            return st
        found = await self.call("host.get", filter={"host": [name]}, output=["hostid"], selectParentTemplates=["templateid"])
        templates = await self._ensure_templates()
        if found:
            st.hostid = found[0]["hostid"]
            linked = {t["templateid"] for t in found[0].get("parentTemplates", [])}
            missing = [t for t in templates if t not in linked]
            if missing and self.cfg.link_templates_to_existing:
                await self.call("host.massadd", hosts=[{"hostid": st.hostid}], templates=[{"templateid": t} for t in missing])
            return st
        groups = await self._ensure_groups()
        params: dict[str, Any] = {
            "host": name,
            "groups": [{"groupid": g} for g in groups],
            "templates": [{"templateid": t} for t in templates],
            "tags": [{"tag": "source", "value": "infrawatch"}, *({"tag": k, "value": v} for k, v in self.cfg.host_tags.items())],
            "macros": [{"macro": k, "value": v} for k, v in self.cfg.host_macros.items()],
            "description": f"Created by the infrawatch collector for agent {agent!r}.",
        }
        if self.cfg.inventory:
            params["inventory_mode"] = 0  # manual
            params["inventory"] = {"alias": agent[:128], "notes": "Monitored by infrawatch (values pushed by the collector).",
                                   "tag": "infrawatch"}
        params.update(self.host_tls)
        try:
            st.hostid = (await self.call("host.create", **params))["hostids"][0]
            log.info("zabbix host created", extra={"host": name, "agent": agent, "hostid": st.hostid})
        except ApiError as e:
            found = await self.call("host.get", filter={"host": [name]}, output=["hostid"])
            if not found:
                raise
            st.hostid = found[0]["hostid"]
            log.debug("zabbix host created concurrently", extra={"host": name, "error": str(e)})
        return st

    # ------------------------------------------------------------------ items

    async def refresh_keys(self, names: Iterable[str]) -> None:
        """Reload the item keys of these (provisioned) hosts with one item.get."""
        by_id = {st.hostid: (n, st) for n in names if (st := self.hosts.get(n)) and st.hostid}
        if not by_id:
            return
        items = await self.call("item.get", hostids=list(by_id), output=["key_", "hostid"], filter={"status": 0},
                                webitems=False)
        now = time.monotonic()
        fresh: dict[str, set[str]] = {hid: set() for hid in by_id}
        for it in items:
            fresh[it["hostid"]].add(it["key_"])
        for hid, (_name, st) in by_id.items():
            st.keys = fresh[hid]
            st.keys_at = now

    async def check_unsupported(self) -> None:
        """Find items Zabbix marked unsupported (a value it could not store, e.g. wrong value type)."""
        by_id = {st.hostid: st for st in self.hosts.values() if st.hostid}
        if not by_id:
            return
        items = await self.call("item.get", hostids=list(by_id), output=["key_", "hostid", "error"],
                                filter={"state": 1, "status": 0}, webitems=False)
        found: dict[str, dict[str, str]] = {hid: {} for hid in by_id}
        for it in items:
            found[it["hostid"]][it["key_"]] = it.get("error", "")
        for hid, st in by_id.items():
            st.unsupported_new = {k: e for k, e in found[hid].items() if k not in st.unsupported}
            st.unsupported = found[hid]

    async def create_item(self, host: str, key: str, metric: str) -> bool:
        """A plain trapper item for a key the template does not define; False if the host is unknown."""
        st = self.hosts.get(host)
        if st is None or st.hostid is None:
            return False
        try:
            await self.call("item.create", hostid=st.hostid, name=f"infrawatch {metric}", key_=key, type=2, value_type=0,
                            history="31d", tags=[{"tag": "source", "value": "infrawatch"}],
                            description="Created by the infrawatch collector for a metric the template does not define.")
            log.info("zabbix item created", extra={"host": host, "key": key})
        except ApiError as e:
            if "already exists" not in str(e):
                log.warning("zabbix item.create failed", extra={"host": host, "key": key, "error": str(e)[:300]})
                return False
        st.keys.add(key)
        return True


class ApiError(Exception):
    """The API answered a call with an error (bad params, already exists, no permission)."""

    def __init__(self, method: str, message: str) -> None:
        super().__init__(f"{method}: {message}")
        self.method = method


def _is_api_error(e: BaseException) -> bool:
    try:
        from zabbix_utils.exceptions import APIRequestError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(e, APIRequestError)
