"""The `onepane` command: every API operation, as a table or as JSON.

Exit codes scripts can rely on: 0 done, 1 the operation failed, 2 invalid input, 3 not found,
4 conflict, 5 not authorised, 6 onepane unreachable.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import __version__
from .client import Client, JobFailed
from .errors import InvalidInput, OnepaneError

app = typer.Typer(help="onepane: one pane of glass over every cloud and data center.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
locations_app = typer.Typer(help="Locations: a provider account and region.", no_args_is_help=True)
instances_app = typer.Typer(help="Instances on every location.", no_args_is_help=True)
volumes_app = typer.Typer(help="Block volumes.", no_args_is_help=True)
networks_app = typer.Typer(help="Networks.", no_args_is_help=True)
images_app = typer.Typer(help="Images as each location sees them.", no_args_is_help=True)
jobs_app = typer.Typer(help="Asynchronous operations.", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens.", no_args_is_help=True)
keys_app = typer.Typer(help="Access keys for the EC2 query API (/ec2/, SigV4).", no_args_is_help=True)
deployments_app = typer.Typer(help="Replicated deployments and their traffic.",
                              no_args_is_help=True)
hosts_app = typer.Typer(help="The hypervisor hosts of a vm location of remote hosts.",
                        no_args_is_help=True)
addresses_app = typer.Typer(help="Elastic addresses: they stay while what answers behind them "
                            "moves.", no_args_is_help=True)
apps_app = typer.Typer(help="Applications: the systems of an imported OVF collection, as tiers "
                       "in their start order.", no_args_is_help=True)
for sub, name in [(addresses_app, "addresses"), (hosts_app, "hosts"), (apps_app, "apps"),
                  (locations_app, "locations"), (instances_app, "instances"),
                  (volumes_app, "volumes"), (networks_app, "networks"), (images_app, "images"),
                  (jobs_app, "jobs"), (tokens_app, "tokens"), (keys_app, "keys"),
                  (deployments_app, "deployments")]:
    app.add_typer(sub, name=name)

out = Console(width=None if sys.stdout.isatty() else 250)  # pipes get whole ids
err = Console(stderr=True)


class Output(StrEnum):
    table = "table"
    json = "json"


class Ctx:
    url: str = "http://127.0.0.1:8640"
    token: str | None = None
    output: Output = Output.table


ctx = Ctx()


@app.callback()
def main_options(
    url: Annotated[str, typer.Option(envvar="ONEPANE_URL", help="API base URL")] = ctx.url,
    token: Annotated[str | None, typer.Option(envvar="ONEPANE_TOKEN", help="API token")] = None,
    output: Annotated[Output, typer.Option("--output", "-o", help="table or json")] = Output.table,
) -> None:
    ctx.url, ctx.output = url, output
    ctx.token = token or _token_from_state()


def _token_from_state() -> str | None:
    path = Path(os.environ.get("ONEPANE_STATE_DIR", ".onepane")) / "admin.token"
    return path.read_text().strip() if path.is_file() else None


def client() -> Client:
    return Client(ctx.url, ctx.token)


def show(data: Any, columns: list[str] | None = None, title: str | None = None) -> None:
    if ctx.output == Output.json:
        print(json.dumps(data, indent=2, default=str))
        return
    rows = data if isinstance(data, list) else [data]
    if not rows:
        out.print("[dim](none)[/dim]")
        return
    cols = columns or list(rows[0].keys())
    table = Table(title=title, show_lines=False)
    for c in cols:
        table.add_column(header(c))
    for r in rows:
        table.add_row(*[_cell(r.get(c)) for c in cols])
    out.print(table)


UNITS = (("_ms", "ms"), ("_s", "s"), ("_bytes", "bytes"), ("_gb", "GB"), ("_pct", "%"),
         ("_percent", "%"))


def header(key: str) -> str:
    """A table's column for a field: its unit said in words (`downtime (ms)`, not
    `downtime_ms`); -o json keeps the field names."""
    for suffix, unit in UNITS:
        if key.endswith(suffix) and len(key) > len(suffix):
            return f"{key[: -len(suffix)].replace('_', ' ')} ({unit})"
    return key.replace("_", " ")


def said(message: str, data: dict[str, Any]) -> None:
    """What a command that answers nothing did: a line, or `data` with -o json (a script that
    deletes wants to know that it did)."""
    if ctx.output == Output.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        out.print(message)


ISO_TIME = re.compile(r"^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$")


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, str) and ISO_TIME.match(v):
        return human_time(v)
    if isinstance(v, dict):
        return ",".join(f"{k}={x}" for k, x in v.items())
    if isinstance(v, list):
        return ",".join(str(x) for x in v)
    return str(v)


def human_time(iso: str) -> str:
    """Tables show every time the same way: UTC, to the second, with `Z` (as the API writes)."""
    when = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def pairs(items: list[str] | None, what: str) -> dict[str, str]:
    outd = {}
    for item in items or []:
        if "=" not in item:
            raise typer.BadParameter(f"{what} {item!r} must be key=value")
        k, v = item.split("=", 1)
        outd[k] = v
    return outd


def finish(job: dict[str, Any], wait: bool, what: str) -> None:
    """Wait for a job with a spinner (table output) and show how it ended."""
    if wait:
        c = client()
        if ctx.output == Output.table and sys.stderr.isatty():
            with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                          console=err, transient=True) as progress:
                progress.add_task(f"{what} ({job['id']})", total=None)
                job = c.wait(job["id"])
        else:
            job = c.wait(job["id"])
    show(job, ["id", "kind", "target", "status", "attempts"])


# ---- up --------------------------------------------------------------------------------------

@app.command()
def up(
    config: Annotated[Path | None, typer.Option(help="onepane.toml")] = None,
    dev: Annotated[bool, typer.Option(help="no authentication; loopback only")] = False,
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option(help="API port (8640)")] = None,
    dns_port: Annotated[str | None, typer.Option(
        help="DNS port (8653); 0: any free port; off: no DNS")] = None,
    state_dir: Annotated[Path | None, typer.Option()] = None,
) -> None:
    """Start onepane: API, console, EC2 and OCCI front ends, DNS, inventory sync and jobs."""
    from .config import load_settings
    from .server import serve
    settings = load_settings(config, dev=dev or None, api_host=host, api_port=port,
                             dns_port=dns_port, state_dir=state_dir)
    serve(settings)


@app.command()
def down(
    config: Annotated[Path | None, typer.Option(help="onepane.toml")] = None,
    state_dir: Annotated[Path | None, typer.Option()] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
) -> None:
    """Stop onepane and what it runs on this machine: the server, every data plane, every
    instance at a process or VM location. Cloud servers keep running; specs and the inventory
    stay, so the next `onepane up` brings deployments back."""
    from .config import load_settings
    from .shutdown import execute, instances, plan
    settings = load_settings(config, state_dir=state_dir)
    _down_is_for_this_state(settings, config, state_dir)
    if not (settings.state_dir / "onepane.db").exists() and settings.database_url is None:
        raise InvalidInput(f"{settings.state_dir}: no onepane state here (use --state-dir)",
                           field="state-dir")
    todo = plan(settings)
    if ctx.output == Output.table:
        server = f"the server (pid {todo.server_pid})" if todo.server_pid else "no running server"
        err.print(f"This stops {server}, {len(todo.data_planes)} data planes and the instances at "
                  + (", ".join(f"{k} ({instances(v)})" for k, v in todo.locations.items())
                     or "no location")
                  + ".")
        if todo.left_running:
            err.print("Left running (cloud): " + ", ".join(
                f"{k} ({instances(v)})" for k, v in todo.left_running.items()))
    if not yes:
        if not sys.stdin.isatty():
            raise InvalidInput("onepane down asks first; add --yes to run it without a terminal",
                               field="yes")
        if not typer.confirm("Stop them?", default=False, err=True):
            raise typer.Exit(1)
    done = execute(settings, todo)
    show({**todo.as_dict(), "done": done} if ctx.output == Output.json else
         [{"done": line} for line in done] or [{"done": "nothing was running"}], ["done"])


def _down_is_for_this_state(settings: Any, config: Path | None, state_dir: Path | None) -> None:
    """`down` stops the onepane of a state directory on this machine, not the one ONEPANE_URL
    names: refuse rather than stop another onepane than the user has in mind."""
    import ipaddress
    from urllib.parse import urlsplit
    url = os.environ.get("ONEPANE_URL")
    if not url or config is not None or state_dir is not None:
        return
    u = urlsplit(url)
    try:
        local = u.hostname == "localhost" or ipaddress.ip_address(u.hostname or "").is_loopback
    except ValueError:
        local = False
    if local and (u.port or 80) == settings.api_port:
        return
    raise InvalidInput(f"ONEPANE_URL is {url}, but onepane down stops the onepane whose state "
                       f"is here ({settings.state_dir}, API port {settings.api_port}); run it "
                       "on that onepane's machine with its --state-dir or --config, or unset "
                       "ONEPANE_URL", field="ONEPANE_URL")


# ---- locations -------------------------------------------------------------------------------

LOC_COLS = ["name", "provider", "region", "driver", "status", "labels", "last_sync"]


@locations_app.command("list")
def locations_list() -> None:
    show(client().get("/v1/locations"), LOC_COLS)


@locations_app.command("show")
def locations_show(name: str) -> None:
    show(client().get(f"/v1/locations/{name}"))


@locations_app.command("add")
def locations_add(
    name: str,
    provider: Annotated[str, typer.Option(help="local, netns, vm, docker or cloud")],
    driver: Annotated[str | None, typer.Option(help="Libcloud driver, e.g. ec2, gce, openstack")] = None,
    region: Annotated[str, typer.Option()] = "local",
    key: Annotated[str | None, typer.Option(envvar="ONEPANE_CLOUD_KEY")] = None,
    secret: Annotated[str | None, typer.Option(
        envvar="ONEPANE_CLOUD_SECRET", help="visible to other users in `ps`: prefer the "
        "environment variable or --secret-file")] = None,
    secret_file: Annotated[Path | None, typer.Option(
        help="read the secret from this file, or from standard input with -")] = None,
    option: Annotated[list[str] | None, typer.Option(help="driver option key=value")] = None,
    label: Annotated[list[str] | None, typer.Option(help="key=value")] = None,
    host: Annotated[list[str] | None, typer.Option(
        help="docker: NAME=tcp://ADDRESS:2376, one per Docker Engine host")] = None,
    tls_dir: Annotated[Path | None, typer.Option(
        help="docker: onepane's client certificate, as DOCKER_CERT_PATH holds it (ca.pem, "
             "cert.pem, key.pem); stored encrypted with the location")] = None,
    ssh_key: Annotated[Path | None, typer.Option(
        help="docker, ssh:// hosts: onepane's private key (stored encrypted)")] = None,
    known_hosts: Annotated[Path | None, typer.Option(
        help="docker, ssh:// hosts: the hosts' keys, known_hosts lines")] = None,
) -> None:
    """Add a location. A docker location: --host for each Docker Engine host, and --tls-dir
    (tcp:// hosts) or --ssh-key with --known-hosts (ssh:// hosts) for what reaches them."""
    if secret_file is not None:
        try:
            secret = (sys.stdin.read() if str(secret_file) == "-" else secret_file.read_text()
                      ).strip()
        except OSError as exc:
            raise InvalidInput(f"cannot read {secret_file}: {exc.strerror}",
                               field="secret-file") from exc
    creds = {k: v for k, v in {"key": key, "secret": secret}.items() if v is not None}
    creds.update(_tls_files(tls_dir))
    for key_name, path in (("ssh_key", ssh_key), ("ssh_known_hosts", known_hosts)):
        if path is not None:
            try:
                creds[key_name] = path.read_text()
            except OSError as exc:
                raise InvalidInput(f"cannot read {path}: {exc.strerror}",
                                   field=key_name.replace("_", "-")) from exc
    opts: dict[str, Any] = {}
    for k, v in pairs(option, "option").items():
        opts[k] = _scalar(v)
    if host:
        opts["hosts"] = [{"name": k, "url": v} for k, v in pairs(host, "host").items()]
    body = {"name": name, "provider": provider, "driver": driver, "region": region,
            "credentials": creds, "options": opts, "labels": pairs(label, "label")}
    show(client().post("/v1/locations", body, idempotent_key=False), LOC_COLS)


def _tls_files(folder: Path | None) -> dict[str, str]:
    """ca.pem, cert.pem and key.pem of a folder (Docker's DOCKER_CERT_PATH layout) as a
    location's TLS credentials."""
    if folder is None:
        return {}
    out = {}
    for key, name in (("tls_ca", "ca.pem"), ("tls_cert", "cert.pem"), ("tls_key", "key.pem")):
        try:
            out[key] = (folder / name).read_text()
        except OSError as exc:
            raise InvalidInput(f"cannot read {folder / name}: {exc.strerror}",
                               field="tls-dir") from exc
    return out


def _scalar(v: str) -> Any:
    if v.lower() in ("true", "false"):
        return v.lower() == "true"
    try:
        return int(v)
    except ValueError:
        return v


@locations_app.command("label")
def locations_label(
    name: str,
    changes: Annotated[list[str], typer.Argument(help="key=value sets a label, key- removes it")],
) -> None:
    """Change a location's labels (placement policies read them)."""
    patch: dict[str, str | None] = {}
    for item in changes:
        if item.endswith("-") and "=" not in item:
            patch[item[:-1]] = None
        else:
            patch.update(pairs([item], "label"))
    show(client().request("PATCH", f"/v1/locations/{name}", json={"labels": patch}), LOC_COLS)


@locations_app.command("remove")
def locations_remove(name: str, force: bool = False) -> None:
    client().delete(f"/v1/locations/{name}", force=force)
    said(f"removed location {name}", {"location": name, "removed": True})


@locations_app.command("sizes")
def locations_sizes(name: str) -> None:
    show(client().get(f"/v1/locations/{name}/sizes"), ["id", "cpu", "memory_mb", "disk_gb"])


@locations_app.command("cut")
def locations_cut(name: str, mode: Annotated[str, typer.Option(help="silent or down")] = "silent") -> None:
    """Failure drill: cut a netns location off the network."""
    show(client().post(f"/v1/locations/{name}/cut", {"mode": mode}, idempotent_key=False))


@locations_app.command("restore")
def locations_restore(name: str) -> None:
    show(client().post(f"/v1/locations/{name}/restore", idempotent_key=False))


# ---- hosts -----------------------------------------------------------------------------------

ADDRESS_COLS = ["id", "public_ip", "instance", "deployment", "routed_to", "location", "why_not"]


@addresses_app.command("list")
def addresses_list() -> None:
    """Each address, what it is associated with, and which instance it reaches now."""
    show(client().get("/v1/addresses"), ADDRESS_COLS)


@addresses_app.command("allocate")
def addresses_allocate() -> None:
    """The next free address of onepane's pool."""
    show(client().post("/v1/addresses", {}, idempotent_key=False), ADDRESS_COLS)


@addresses_app.command("associate")
def addresses_associate(
        address: str,
        instance: Annotated[str | None, typer.Option(help="an instance id")] = None,
        deployment: Annotated[str | None, typer.Option(
            help="a deployment: the address follows its primary through failovers")] = None
) -> None:
    """Point an address at an instance, or at whatever serves a deployment."""
    show(client().post(f"/v1/addresses/{address}/associate",
                       {"instance": instance, "deployment": deployment}), ADDRESS_COLS)


@addresses_app.command("disassociate")
def addresses_disassociate(address: str) -> None:
    show(client().post(f"/v1/addresses/{address}/disassociate", {}), ADDRESS_COLS)


@addresses_app.command("release")
def addresses_release(address: str) -> None:
    """Give an address back (it must be associated with nothing)."""
    client().delete(f"/v1/addresses/{address}")
    said(f"released {address}", {"id": address, "released": True})


HOST_COLS = ["name", "state", "vms", "cpus", "committed_vcpus", "memory_mb", "committed_mb",
             "free_mb", "uri", "error"]


APP_COLS = ["id", "name", "collection", "tiers", "ready_at"]
TIER_COLS = ["order", "name", "image", "start_delay", "waiting_for_guest", "start_action",
             "stop_action", "cpus", "memory_mb", "disks", "ready_at"]


@apps_app.command("list")
def apps_list() -> None:
    """Every imported application, with how many tiers it has and where all are ready."""
    rows = client().get("/v1/catalog/apps")
    if ctx.output == Output.json:
        show(rows)
        return
    show([{**a, "tiers": len(a["tiers"])} for a in rows], APP_COLS)


@apps_app.command("show")
def apps_show(app_id: str) -> None:
    """An application's tiers in start order (its StartupSection)."""
    app_ = client().get(f"/v1/catalog/apps/{app_id}")
    if ctx.output == Output.json:
        show(app_)
        return
    show(app_["tiers"], TIER_COLS, title=f"{app_['name']} ({app_['id']}): start order")


@apps_app.command("export")
def apps_export(app_id: str, out: Annotated[Path, typer.Option("--out", "-o")],
                ovf_version: str = "1.0") -> None:
    """Download an application as one OVA: its systems in a VirtualSystemCollection, with the
    start order it was imported with."""
    _download(f"/v1/catalog/apps/{app_id}/export", {"ovf_version": ovf_version}, out)
    show({"app": app_id, "file": str(out), "bytes": out.stat().st_size})


@apps_app.command("delete")
def apps_delete(app_id: str) -> None:
    """Delete an imported application's images from the catalog and every location (refused,
    nothing removed, while a deployment or an instance still uses one of them)."""
    show(client().delete(f"/v1/catalog/apps/{app_id}"))


def _allow(rule: str) -> dict[str, Any]:
    """FROM:TO[:PORT[/PROTOCOL]] -> one rule of an application's network policy."""
    parts = rule.split(":")
    if len(parts) not in (2, 3) or not all(parts[:2]):
        raise typer.BadParameter(f"{rule!r}: use FROM:TO[:PORT[/tcp|udp]] (FROM a tier, "
                                 "'outside' or a CIDR)", param_hint="--allow")
    out: dict[str, Any] = {"from": parts[0], "to": parts[1]}
    if len(parts) == 3:
        port, _, proto = parts[2].partition("/")
        if not port.isdigit():
            raise typer.BadParameter(f"{rule!r}: the port must be a number", param_hint="--allow")
        out.update(port=int(port), **({"protocol": proto} if proto else {}))
    return out


def _placement(rules: list[str]) -> dict[str, Any]:
    """TIER:LABEL=VALUE[,VALUE...] (repeatable) -> tier -> the labels its locations must carry."""
    out: dict[str, Any] = {}
    for rule in rules:
        tier, _, label = rule.partition(":")
        key, _, value = label.partition("=")
        if not tier or not key or not value:
            raise typer.BadParameter(f"{rule!r}: use TIER:LABEL=VALUE (e.g. shop-db:country=de)",
                                     param_hint="--place")
        out.setdefault(tier, {"require": {}})["require"][key] = value
    return out


APP_DEP_COLS = ["tier", "deployment", "order", "primary", "where", "addresses", "groups"]


def _app_rows(app_: dict[str, Any]) -> list[dict[str, Any]]:
    return [{**t, "where": ", ".join(sorted({i["location"] for i in t["instances"]})),
             "addresses": ", ".join(a for i in t["instances"] for a in i["addresses"]),
             "groups": ", ".join(t["security_groups"])} for t in app_["tiers"]]


@apps_app.command("deploy")
def apps_deploy(app_id: str,
                name: Annotated[str, typer.Option(help="the deployed application's name")],
                at: Annotated[list[str], typer.Option(help="LOCATION[=COPIES]; repeatable")],
                allow: Annotated[list[str] | None, typer.Option(
                    help="FROM:TO\\[:PORT\\[/PROTO]]: FROM (a tier, 'outside' or a CIDR) may open "
                         "PORT on tier TO; what no rule allows is refused; repeatable")] = None,
                size: Annotated[str | None, typer.Option(help="every tier's size (default: "
                                                             "what fits each tier)")] = None,
                front: Annotated[str | None, typer.Option(help="the tier clients reach "
                                                              "(default: the last to start)")] = None,
                listen: str = "127.0.0.1:0",
                attempt_timeout: Annotated[float | None, typer.Option(
                    help="seconds one request may take at the front tier (slow guests, long "
                         "answers)")] = None,
                place: Annotated[list[str] | None, typer.Option(
                    help="TIER:LABEL=VALUE: the tier runs only at the --at locations carrying "
                         "that label (spreads the tiers); repeatable")] = None,
                keep_data: Annotated[list[str] | None, typer.Option(
                    help="TIER: its VMs' data disks outlive them — a replacement gets them "
                         "back (default: blank); repeatable")] = None) -> None:
    """Deploy an application as one: its tiers started in the collection's start order, each
    tier's rules in force where its VMs run, each tier where its --place rules allow;
    clients reach the front tier at the printed address."""
    replicas = {}
    for item in at:
        loc, _, n = item.partition("=")
        replicas[loc] = int(n) if n.isdigit() else 1
    body = {"app": app_id, "name": name, "replicas": replicas,
            "allow": [_allow(r) for r in allow or []], "listen": listen,
            **({"size": size} if size else {}), **({"front": front} if front else {}),
            **({"attempt_timeout": attempt_timeout} if attempt_timeout else {}),
            **({"placement": _placement(place)} if place else {}),
            **({"keep_data": keep_data} if keep_data else {})}
    app_ = client().post("/v1/applications", body)
    if ctx.output == Output.json:
        show(app_)
        return
    show(_app_rows(app_), APP_DEP_COLS, title=f"{name}: front tier {app_['front'].get('tier')} "
         f"on {app_['listen']}; tiers start in this order")


@apps_app.command("deployed")
def apps_deployed() -> None:
    """Every deployed application: its front address and where its tiers run."""
    rows = client().get("/v1/applications")
    if ctx.output == Output.json:
        show(rows)
        return
    show([{"name": a["name"], "app": a["app"], "listen": a["listen"],
           "front": (a["front"] or {}).get("tier"), "locations": ", ".join(a["locations"]),
           "tiers": len(a["tiers"])} for a in rows],
         ["name", "app", "front", "listen", "locations", "tiers"])


@apps_app.command("status")
def apps_status(name: str) -> None:
    """A deployed application's tiers (where each runs, its addresses) and its policy."""
    app_ = client().get(f"/v1/applications/{name}")
    if ctx.output == Output.json:
        show(app_)
        return
    show(_app_rows(app_), APP_DEP_COLS, title=f"{name} on {app_['listen']}")
    show(app_["policy"], ["from", "to", "protocol", "port"], title="allowed (all else refused)")


@apps_app.command("move")
def apps_move(name: str, to: Annotated[str, typer.Option(help="the location to move to")],
              bound: Annotated[float, typer.Option(help="seconds the whole move may take")
                               ] = 300.0) -> None:
    """Move a deployed application live: its policy in force at TO first, then every tier
    in start order; a failure part-way moves the moved tiers back."""
    _move_application(client(), name, to, bound)


def _move_application(c: Client, name: str, to: str, bound: float) -> None:
    started = c.post(f"/v1/applications/{name}/move", {"to": to, "bound_s": bound},
                     idempotent_key=False)
    job = c.wait(started["job"]["id"], timeout=bound + 90)  # JobFailed says why and where
    said(f"{name} runs at {to}: every tier moved live in {job['result']['seconds']} s",
         {"application": name, **job["result"]})


@apps_app.command("undeploy")
def apps_undeploy(name: str) -> None:
    """Remove a deployed application: its tiers' deployments (their VMs go) and groups."""
    client().delete(f"/v1/applications/{name}")
    said(f"{name} removed: its VMs go now", {"application": name, "deleted": True})


@hosts_app.command("list")
def hosts_list(location: str) -> None:
    """Each host: up, unreachable or in maintenance; its capacity and what is committed."""
    show(client().get(f"/v1/locations/{location}/hosts"), HOST_COLS)


@hosts_app.command("add")
def hosts_add(location: str, name: str,
              uri: Annotated[str, typer.Option(help="qemu+tls://HOST/system, qemu+tcp://..., "
                                                    "qemu+ssh://...")]) -> None:
    """Add a hypervisor host (it must answer over its URI)."""
    show(client().post(f"/v1/locations/{location}/hosts", {"name": name, "uri": uri},
                       idempotent_key=False))


@hosts_app.command("remove")
def hosts_remove(location: str, name: str) -> None:
    """Remove an empty host from the location."""
    client().delete(f"/v1/locations/{location}/hosts/{name}")
    said(f"removed host {name} from {location}", {"location": location, "host": name,
                                                  "removed": True})


@hosts_app.command("maintenance")
def hosts_maintenance(
        location: str, host: str,
        bound: Annotated[float, typer.Option(help="seconds each live move may take")] = 300,
        timeout: Annotated[float, typer.Option(help="seconds to wait for the host to empty")] = 1800,
) -> None:
    """Empty a host: nothing new goes there, and its running VMs move live to other hosts."""
    c = client()
    job = c.post(f"/v1/locations/{location}/hosts/{host}/maintenance", {"bound_s": bound},
                 idempotent_key=False)
    if ctx.output != Output.json:
        err.print(f"emptying {host} of {location} (job {job['id']}); each move is an event: "
                  "onepane events --kind host.")
    done = c.wait(job["id"], timeout)
    result = done.get("result") or {}
    if ctx.output == Output.json:
        show(done)
        return
    rows = []
    for e in c.get("/v1/events", kind="host.moved", location=location, limit=1000)["items"]:
        d = e.get("data") or {}
        if d.get("from") == host and d.get("instance") in (result.get("moved") or {}):
            sw = (d.get("phases") or {}).get("switchover") or {}
            rows.append({"instance": d["instance"], "to": d.get("to"), "ts": e["ts"],
                         "downtime_ms": sw.get("downtime_ms"), "total_ms": sw.get("total_ms")})
    show(rows, ["instance", "to", "ts", "downtime_ms", "total_ms"], title=f"moved off {host}")
    for inst, why in (result.get("failed") or {}).items():
        err.print(f"{inst} did not move: {escape(str(why))}")
    if result.get("still_running"):
        raise JobFailed(f"{host} still runs {', '.join(result['still_running'])}")


@hosts_app.command("activate")
def hosts_activate(location: str, host: str) -> None:
    """Let a host take VMs again after maintenance."""
    show(client().post(f"/v1/locations/{location}/hosts/{host}/activate", idempotent_key=False))


# ---- instances -------------------------------------------------------------------------------

INST_COLS = ["id", "name", "location", "provider", "state", "image", "size", "addresses", "ports"]


@instances_app.command("list")
def instances_list(
    location: Annotated[str | None, typer.Option()] = None,
    provider: Annotated[str | None, typer.Option()] = None,
    state: Annotated[str | None, typer.Option()] = None,
    name: Annotated[str | None, typer.Option(help="substring of the name")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="key=value")] = None,
    limit: Annotated[int, typer.Option(help="at most this many (0: all)")] = 0,
) -> None:
    """The one inventory: instances from every location."""
    items = []
    for item in client().pages("/v1/instances", location=location, provider=provider, state=state,
                               name=name, tag=tag, limit=500):
        items.append(item)
        if limit and len(items) >= limit:
            break
    show(items, INST_COLS)


@instances_app.command("show")
def instances_show(instance_id: str) -> None:
    show(client().get(f"/v1/instances/{instance_id}"))


@instances_app.command("console")
def instances_console(instance_id: str,
                      max_bytes: Annotated[int, typer.Option(help="how much of the end")] = 65536
                      ) -> None:
    """What the instance wrote to its console (a VM's serial port, a process's output)."""
    out = client().get(f"/v1/instances/{instance_id}/console", max_bytes=max_bytes)
    if ctx.output == Output.json:
        show(out)
    else:
        sys.stdout.write(out["output"])


@instances_app.command("create")
def instances_create(
    name: str,
    location: Annotated[str, typer.Option()],
    image: Annotated[str, typer.Option()],
    size: Annotated[str, typer.Option(
        help="a size of the location; for a catalog image, auto picks the smallest that gives "
             "its deployment option's CPUs and memory")],
    tag: Annotated[list[str] | None, typer.Option(help="key=value")] = None,
    network: Annotated[str | None, typer.Option()] = None,
    deployment_option: Annotated[str | None, typer.Option(
        help="a catalog image's OVF deployment option (default: the image's)")] = None,
    prop: Annotated[list[str] | None, typer.Option(
        "--property", help="a catalog image's OVF property, key=value")] = None,
    wait: Annotated[bool, typer.Option(help="wait until it is created")] = True,
) -> None:
    body: dict[str, Any] = {"name": name, "location": location, "image": image, "size": size,
                            "tags": pairs(tag, "tag"), "network": network}
    if deployment_option or prop:
        body |= {"deployment_option": deployment_option, "properties": pairs(prop, "property")}
    c = client()
    same = [i for i in c.get("/v1/instances", name=name, limit=100)["items"] if i["name"] == name]
    if same and ctx.output == Output.table:  # allowed (names are labels), but said
        where = ", ".join(f"{i['id']} at {i['location']}" for i in same[:5])
        err.print(f"[yellow]note:[/] {len(same)} other instance"
                  f"{'s are' if len(same) > 1 else ' is'} named {name} already ({where}); "
                  "ids tell them apart")
    job = c.post("/v1/instances", body)
    finish(job, wait, f"creating {name} at {location}")


def _action(instance_id: str, action: str, wait: bool) -> None:
    job = client().post(f"/v1/instances/{instance_id}/{action}")
    finish(job, wait, f"{action} {instance_id}")


@instances_app.command("start")
def instances_start(instance_id: str, wait: bool = True) -> None:
    _action(instance_id, "start", wait)


@instances_app.command("stop")
def instances_stop(instance_id: str, wait: bool = True) -> None:
    _action(instance_id, "stop", wait)


@instances_app.command("suspend")
def instances_suspend(instance_id: str, wait: bool = True) -> None:
    """Pause it with its memory kept (VM locations); `resume` (or `start`) goes on."""
    _action(instance_id, "suspend", wait)


@instances_app.command("resume")
def instances_resume(instance_id: str, wait: bool = True) -> None:
    _action(instance_id, "resume", wait)


@instances_app.command("reboot")
def instances_reboot(instance_id: str, wait: bool = True) -> None:
    _action(instance_id, "reboot", wait)


@instances_app.command("destroy")
def instances_destroy(instance_id: str, wait: bool = True) -> None:
    finish(client().delete(f"/v1/instances/{instance_id}"), wait, f"destroying {instance_id}")


# ---- volumes and networks --------------------------------------------------------------------

VOL_COLS = ["id", "name", "location", "size_gb", "state", "attached_to", "device"]


@volumes_app.command("list")
def volumes_list(location: Annotated[str | None, typer.Option()] = None) -> None:
    show(list(client().pages("/v1/volumes", location=location, limit=500)), VOL_COLS)


@volumes_app.command("create")
def volumes_create(name: str, location: Annotated[str, typer.Option()],
                   size_gb: Annotated[int, typer.Option()], wait: bool = True) -> None:
    job = client().post("/v1/volumes", {"name": name, "location": location, "size_gb": size_gb})
    finish(job, wait, f"creating volume {name}")


@volumes_app.command("attach")
def volumes_attach(volume_id: str, instance: Annotated[str, typer.Option()],
                   device: str = "/dev/sdh", wait: bool = True) -> None:
    job = client().post(f"/v1/volumes/{volume_id}/attach", {"instance": instance, "device": device})
    finish(job, wait, f"attaching {volume_id}")


@volumes_app.command("detach")
def volumes_detach(volume_id: str, wait: bool = True) -> None:
    finish(client().post(f"/v1/volumes/{volume_id}/detach"), wait, f"detaching {volume_id}")


@volumes_app.command("delete")
def volumes_delete(volume_id: str, wait: bool = True) -> None:
    finish(client().delete(f"/v1/volumes/{volume_id}"), wait, f"deleting {volume_id}")


@networks_app.command("list")
def networks_list(location: Annotated[str | None, typer.Option()] = None) -> None:
    show(list(client().pages("/v1/networks", location=location, limit=500)),
         ["id", "name", "location", "cidr", "state", "provider_id"])


@networks_app.command("create")
def networks_create(name: str, location: Annotated[str, typer.Option()],
                    cidr: Annotated[str, typer.Option()], wait: bool = True) -> None:
    job = client().post("/v1/networks", {"name": name, "location": location, "cidr": cidr})
    finish(job, wait, f"creating network {name}")


@networks_app.command("delete")
def networks_delete(network_id: str, wait: bool = True) -> None:
    """Refused while instances are on the network (exit 5)."""
    finish(client().delete(f"/v1/networks/{network_id}"), wait, f"deleting {network_id}")


# ---- images ----------------------------------------------------------------------------------

@images_app.command("list")
def images_list(location: Annotated[list[str] | None, typer.Option()] = None,
                name: Annotated[str | None, typer.Option()] = None, limit: int = 200) -> None:
    c = client()
    images = c.get("/v1/images", location=location, name=name, limit=limit)
    if c.unanswered:
        err.print(f"[yellow]warning:[/] not listed, no answer in time: {c.unanswered}")
    show(images, ["location", "id", "name"])


@images_app.command("upload")
def images_upload(location: str, path: Path) -> None:
    """Upload an app image (a directory or .tar.gz holding onepane-app.json)."""
    if path.is_dir():
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            tar.add(path, arcname=".")
        data = buf.getvalue()
    else:
        data = path.read_bytes()
    show(client().request("POST", f"/v1/locations/{location}/images", content=data,
                          headers={"Content-Type": "application/gzip"}))


@images_app.command("import")
def images_import(path: Path, name: Annotated[str, typer.Option()],
                  version: Annotated[str, typer.Option()] = "1",
                  deployment_option: Annotated[str | None, typer.Option(
                      help="the OVF deployment option whose CPUs, memory, disks and NICs the "
                           "image takes (default: the package's)")] = None) -> None:
    """Import an OVA (also gzip-compressed), an OVF descriptor or its folder (packed with the
    files it references), or a disk image (raw, qcow2, vmdk, vdi, vhdx, vhd) into the catalog."""
    if not path.exists():
        raise InvalidInput(f"{path}: no such file or folder", field="path")
    params = {"name": name, "version": version}
    if deployment_option:
        params["deployment_option"] = deployment_option
    with tempfile.TemporaryDirectory(prefix="onepane-ova-") as tmp:
        upload = _packed(path, Path(tmp))
        img = _upload(upload, params)
    for warning in img.get("warnings") or []:
        err.print(f"[yellow]warning:[/] {warning}")
    if img.get("reused") and ctx.output == Output.table:
        err.print(f"the catalog already holds this content as {img['name']} {img['version']}: "
                  f"kept {img['id']}")
    if img.get("appliance") and ctx.output == Output.table:
        err.print(f"appliance {img['appliance']['name']}: "
                  f"{len(img['appliance']['members'])} systems imported "
                  f"({', '.join(img['appliance']['members'])})")
    show(img, ["id", "name", "version", "os", "cpus", "memory_mb", "deployment_option", "source"])


UPLOAD_CHUNK = 1 << 20
SERVER_MIN_RATE = 20 * 2**20  # bytes/s the server inspects and stores at, at the least


def _upload(file: Path, params: dict[str, str]) -> Any:
    """Stream the file with a progress bar (bytes and rate, on stderr, for people). Time-outs
    follow progress: each write may take a minute (a stalled upload fails, a slow one goes
    on); the answer, which comes once the server has inspected and stored the file, may take
    as long as that takes at SERVER_MIN_RATE."""
    from rich import progress as bar
    size = file.stat().st_size
    timeout = httpx.Timeout(connect=10.0, write=60.0, pool=10.0,
                            read=max(120.0, size / SERVER_MIN_RATE))
    progress = bar.Progress("{task.description}", bar.BarColumn(), bar.DownloadColumn(),
                            bar.TransferSpeedColumn(), bar.TimeRemainingColumn(), console=err,
                            transient=True, disable=ctx.output == Output.json)

    def chunks() -> Iterator[bytes]:
        with file.open("rb") as f:
            while chunk := f.read(UPLOAD_CHUNK):
                progress.update(task, advance=len(chunk))
                yield chunk
        progress.update(task, description="checking")

    with progress:
        task = progress.add_task("uploading", total=size)
        return client().request("POST", "/v1/catalog", content=chunks(), params=params,
                                headers={"Content-Type": "application/octet-stream",
                                         "Content-Length": str(size)}, timeout=timeout)


def _packed(path: Path, tmp: Path) -> Path:
    """What to upload: an OVF folder or descriptor is packed with its files into one OVA."""
    # Imported here: the image inspector it pulls in (oslo.utils) was 40 % of every CLI
    # call's start-up, and only an import of a local OVF folder needs it.
    from .images import ova
    descriptor = path
    if path.is_dir():
        found = sorted(path.glob("*.ovf"))
        if len(found) != 1:
            raise InvalidInput(f"{path}: a folder to import holds exactly one .ovf descriptor "
                               f"(found {len(found)})", field="path")
        descriptor = found[0]
    else:
        with path.open("rb") as f:
            if not ova.looks_like_descriptor(f.read(4096)):
                return path
    out = tmp / f"{descriptor.stem}.ova"
    ova.pack_folder(descriptor, out)
    return out


@images_app.command("catalog")
def images_catalog() -> None:
    """Logical images, where each one is ready, and where it boots (`*`: ready, not bootable
    there; `onepane images show` says why)."""
    imgs = client().get("/v1/catalog")
    rows = [{**i, "replicas": {r["location"]: r["state"] + ("" if r.get("bootable") or
                                                            r["state"] != "ready" else "*")
                               for r in i["replicas"]}} for i in imgs]
    show(rows if ctx.output == Output.table else imgs,
         ["id", "name", "version", "os", "cpus", "memory_mb", "replicas"])


@images_app.command("show")
def images_show(image_id: str) -> None:
    """An image with its deployment options, properties and where it is ready."""
    img = client().get(f"/v1/catalog/{image_id}")
    if ctx.output == Output.json:
        show(img)
        return
    show({k: img.get(k) for k in ("id", "name", "version", "os", "cpus", "memory_mb",
                                   "deployment_option", "source")})
    if img.get("deployment_options"):
        show([{**o, "default": "yes" if o["id"] == img["deployment_option"] else ""}
              for o in img["deployment_options"]], ["id", "label", "description", "default"])
    if img.get("properties"):
        show(img["properties"], ["key", "type", "default", "user_configurable", "label"])
    if img.get("appliance"):
        show(img["appliance"], ["name", "collection", "members"])
    for warning in img.get("warnings") or []:
        err.print(f"[yellow]warning:[/] {warning}")
    show(_replica_rows(img), REPLICA_COLS)


@images_app.command("delete")
def images_delete(image_id: str) -> None:
    """Delete a catalog image: off every location holding a replica and off onepane's store
    (refused, nothing removed, while a deployment or an instance still uses it)."""
    client().delete(f"/v1/catalog/{image_id}")
    show({"deleted": image_id})


REPLICA_COLS = ["location", "state", "format", "provider_image_id", "boots", "error"]


def _replica_rows(img: dict[str, Any]) -> list[dict[str, Any]]:
    return [{**r, "boots": "yes" if r.get("bootable") else f"no: {r.get('not_bootable_because')}"}
            for r in img["replicas"]]


@images_app.command("replicate")
def images_replicate(image_id: str,
                     to: Annotated[list[str], typer.Option(help="LOC[,LOC...], repeatable")],
                     wait: bool = True) -> None:
    """Copy and register the image at each location, concurrently, with a bar per location."""
    c = client()
    # `--to a --to b` and `--to a,b` alike (a repeated option once kept only the last)
    locations = [loc for value in to for loc in value.split(",") if loc]
    jobs = c.post(f"/v1/catalog/{image_id}/replicate", {"to": locations})
    if not wait:
        show(jobs, JOB_COLS)
        return
    import time as _time
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[state]}"),
                  TimeElapsedColumn(), console=err, disable=ctx.output == Output.json) as bars:
        tasks = {loc: bars.add_task(loc, total=100, state="pending") for loc in locations}
        while True:
            img = c.get(f"/v1/catalog/{image_id}")
            reps = {r["location"]: r for r in img["replicas"]}
            for loc, task in tasks.items():
                r = reps.get(loc, {})
                bars.update(task, completed=r.get("progress", 0), state=r.get("state", "?"))
            if all(reps.get(loc, {}).get("state") in ("ready", "failed") for loc in tasks):
                break
            _time.sleep(0.2)
    show(_replica_rows(img) if ctx.output == Output.table else img, REPLICA_COLS)
    if any(r["state"] == "failed" for r in img["replicas"] if r["location"] in tasks):
        raise JobFailed("replication failed at " + ", ".join(
            r["location"] for r in img["replicas"] if r["state"] == "failed"))


@images_app.command("export")
def images_export(image_id: str, out: Annotated[Path, typer.Option("--out", "-o")],
                  format: Annotated[str, typer.Option(help="ova, or a disk format")] = "ova",
                  ovf_version: str = "1.0") -> None:
    """Download an image as an OVA (OVF 1.0 or 2.0) or as a disk in the format asked for."""
    _download(f"/v1/catalog/{image_id}/export", {"format": format, "ovf_version": ovf_version},
              out)
    show({"image": image_id, "file": str(out), "bytes": out.stat().st_size})


def _download(path: str, params: dict[str, str], out: Path) -> None:
    c = client()
    with c.http.stream("GET", path, params=params, timeout=None) as r:
        if r.status_code >= 400:
            r.read()
            raise c._error(r)
        with out.open("wb") as f:
            for chunk in r.iter_bytes(1024 * 1024):
                f.write(chunk)


# ---- jobs, events, sync, tokens --------------------------------------------------------------

JOB_COLS = ["id", "kind", "target", "location", "status", "attempts", "created_at"]


@jobs_app.command("list")
def jobs_list(status: Annotated[str | None, typer.Option()] = None, limit: int = 50) -> None:
    """The newest jobs, listed oldest first like every listing (the newest is the last line)."""
    newest_first = client().get("/v1/jobs", status=status, limit=limit)["items"]
    show(newest_first[::-1], JOB_COLS)


@jobs_app.command("show")
def jobs_show(job_id: str) -> None:
    show(client().get(f"/v1/jobs/{job_id}"))


@jobs_app.command("wait")
def jobs_wait(job_id: str, timeout: float = 300) -> None:
    show(client().wait(job_id, timeout), JOB_COLS)


@app.command()
def events(kind: Annotated[str | None, typer.Option(help="prefix, e.g. drift.")] = None,
           location: Annotated[str | None, typer.Option()] = None,
           limit: int = 50, follow: bool = False) -> None:
    """The event log (newest last); --follow streams new events."""
    c = client()
    page = c.get("/v1/events", kind=kind, location=location, limit=1000)
    items = page["items"]
    while page.get("next_cursor"):
        page = c.get("/v1/events", kind=kind, location=location, limit=1000,
                     after=page["next_cursor"])
        items += page["items"]
    show(items[-limit:] if limit > 0 else [],
         ["id", "ts", "severity", "kind", "location", "subject", "message"])
    if follow:
        sys.stdout.flush()
        follow_events(c, kind, location, items[-1]["id"] if items else 0)


def follow_events(c: Client, kind: str | None, location: str | None, last: int) -> None:
    """Print events as they come; when the stream breaks (onepane restarted, the network
    hiccuped), reconnect with backoff and first print what was missed, from the last id seen."""
    def emit(ev: dict[str, Any]) -> None:
        if location and ev.get("location") != location:
            return
        if ctx.output == Output.json:
            print(json.dumps(ev), flush=True)
        else:
            out.print(f"{human_time(ev['ts'])} {ev['severity']:7} {ev['kind']:20} {escape(ev['message'])}")

    backoff = 0.5
    while True:
        try:
            for ev in c.get("/v1/events", kind=kind, location=location, limit=1000,
                            after=last)["items"]:  # what happened while away
                emit(ev)
                last = max(last, ev["id"])
            with c.http.stream("GET", "/v1/events/stream",
                               params={"kind": kind} if kind else None, timeout=None) as r:
                r.raise_for_status()
                backoff = 0.5
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        ev = json.loads(line[6:])
                        if ev["id"] > last:
                            emit(ev)
                            last = ev["id"]
        except (httpx.HTTPError, OnepaneError) as exc:
            err.print(f"[dim]event stream interrupted ({escape(str(exc) or type(exc).__name__)})"
                      f"; reconnecting in {backoff:.1f} s[/dim]")
        time.sleep(backoff)
        backoff = min(backoff * 2, 5.0)


@app.command()
def sync() -> None:
    """Observe every location now."""
    result = client().post("/v1/sync", idempotent_key=False)
    show([{"location": k, "result": v} for k, v in result.items()], ["location", "result"])


@tokens_app.command("create")
def tokens_create(name: str, role: str = "operator") -> None:
    show(client().post("/v1/tokens", {"name": name, "role": role}, idempotent_key=False))


@tokens_app.command("list")
def tokens_list() -> None:
    """Every token's id, name and role (a token itself is shown only when it is created)."""
    show(client().get("/v1/tokens"), ["id", "name", "role", "created_at"])


@tokens_app.command("revoke")
def tokens_revoke(token_id: str) -> None:
    client().delete(f"/v1/tokens/{token_id}")
    said(f"revoked token {token_id}", {"token": token_id, "revoked": True})


@keys_app.command("create")
def keys_create(name: str, role: str = "operator") -> None:
    """Prints the key id and its secret (shown once), e.g. for `aws configure`."""
    show(client().post("/v1/access-keys", {"name": name, "role": role}, idempotent_key=False))


@keys_app.command("list")
def keys_list() -> None:
    show(client().get("/v1/access-keys"), ["access_key_id", "name", "role", "created_at"])


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    client().delete(f"/v1/access-keys/{key_id}")
    said(f"revoked access key {key_id}", {"access_key_id": key_id, "revoked": True})


# ---- deployments -----------------------------------------------------------------------------

DEP_COLS = ["name", "primary", "listen", "serving", "health", "availability", "error_budget",
            "dns"]


def _dns_cell(st: dict[str, Any]) -> str:
    """`shop.example.com. -> 10.0.0.1, 10.0.0.2`, or why it is not (yet) published."""
    dns = st.get("dns") or {}
    if not dns:
        return ""
    if dns.get("state") == "failing":
        return f"{dns['name']} FAILING: {dns.get('error')}"
    shown = ", ".join(dns.get("published") or []) or "nothing yet"
    return f"{dns['name']} -> {shown}" + (" (updating)" if dns.get("state") == "pending" else "")


def sla_text(sla: dict[str, Any]) -> str:
    """One wording of an SLA everywhere (the console's too): below it is said as such even
    during a warm-up after a restart, which only pauses the measuring."""
    if sla.get("violated"):
        return f"below SLA: {sla['availability']}% of {sla['target']}%"
    if sla.get("measuring"):
        return "measuring (warm-up)"
    return f"{sla['availability']}% of {sla['target']}%"


def _budget_cell(sla: dict[str, Any]) -> str:
    budget = sla.get("error_budget") or {}
    if sla.get("measuring") and not sla.get("violated"):
        return "measuring (warm-up)"
    if budget.get("overspent_s"):
        return (f"spent: {budget['used_down_s']} s down of {budget['allowed_down_s']} s "
                "allowed")
    return f"{budget.get('remaining_pct')}% left"


def _dep_row(d: dict[str, Any]) -> dict[str, Any]:
    st = d.get("status") or {}
    health = {loc: f"{v['healthy']}/{v['replicas']}" + (f" (want {v['desired']})" if v.get("desired")
                                                          not in (None, v["replicas"]) else "")
              for loc, v in (st.get("locations") or {}).items()}
    sla = st.get("sla") or {}
    return {**d, "serving": st.get("serving"), "health": health,
            "availability": sla_text(sla) if sla else "",
            "error_budget": _budget_cell(sla) if sla else "",
            "dns": _dns_cell(st)}


@deployments_app.command("apply")
def deployments_apply(
        file: Annotated[Path, typer.Option("--file", "-f", help="YAML or JSON spec; - reads "
                                           "standard input")],
        force: Annotated[bool, typer.Option(help="apply even if it would serve nowhere now")] = False,
) -> None:
    """Create or update a deployment from a spec file, and show the status of *this* spec."""
    c = client()
    body = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
    dep = c.request("POST", "/v1/deployments", content=body,
                    params={"force": "true"} if force else None,
                    headers={"Content-Type": "application/yaml"})
    deadline = time.monotonic() + 10  # until the reconciler has looked at this generation
    while (dep["status"].get("observed_generation") or 0) < dep["generation"] \
            and time.monotonic() < deadline:
        time.sleep(0.1)
        dep = c.get(f"/v1/deployments/{dep['name']}")
    show(_dep_row(dep) if ctx.output == Output.table else dep, DEP_COLS)


@deployments_app.command("wait")
def deployments_wait(name: str, timeout: Annotated[float, typer.Option(help="seconds")] = 120
                     ) -> None:
    """Wait until the deployment serves and every replica it wants is healthy (exit 1 if that
    takes longer than --timeout): what scripts do between `apply` and using the service."""
    c = client()
    deadline = time.monotonic() + timeout
    while True:
        dep = c.get(f"/v1/deployments/{name}")
        if _settled(dep):
            break
        if time.monotonic() > deadline:
            show(_dep_row(dep) if ctx.output == Output.table else dep, DEP_COLS)
            raise JobFailed(f"deployment {name} did not settle within {timeout:g}s")
        time.sleep(0.2)
    show(_dep_row(dep) if ctx.output == Output.table else dep, DEP_COLS)


def _until_serving(c: Client, dep: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
    """After a move or failover, return once the data plane sends traffic to the new primary
    (the API answers when the decision is stored; the reconciler applies it a moment later)."""
    deadline = time.monotonic() + timeout
    while (dep.get("status") or {}).get("serving") != [dep["primary"]] \
            and time.monotonic() < deadline:
        time.sleep(0.1)
        dep = c.get(f"/v1/deployments/{dep['name']}")
    return dep


def _settled(dep: dict[str, Any]) -> bool:
    st = dep.get("status") or {}
    where = st.get("locations") or {}
    return ((st.get("observed_generation") or 0) >= dep["generation"] and bool(st.get("serving"))
            and bool(where) and all(v["healthy"] >= (v.get("desired") or v["replicas"])
                                    for v in where.values()))


@deployments_app.command("list")
def deployments_list() -> None:
    deps = client().get("/v1/deployments")
    show([_dep_row(d) for d in deps] if ctx.output == Output.table else deps, DEP_COLS)


@deployments_app.command("show")
def deployments_show(name: str) -> None:
    dep = client().get(f"/v1/deployments/{name}")
    show(_dep_row(dep) if ctx.output == Output.table else dep, DEP_COLS)


@deployments_app.command("metrics")
def deployments_metrics(
    name: str,
    metric: Annotated[str | None, typer.Option("--name", help="rps, errors_per_s, p95_ms, up, "
                                               "check_ms, cpu_percent, memory_bytes")] = None,
    since: Annotated[float, typer.Option(help="seconds back")] = 600,
) -> None:
    """Stored metrics of a deployment: per series, its latest value, mean and max."""
    data = client().get(f"/v1/deployments/{name}/metrics", since=since, name=metric)
    if ctx.output == Output.json:
        show(data)
        return
    rows = []
    for sr in data["series"]:
        values = [p[1] for p in sr["points"]]
        unit, scale = METRIC_UNITS.get(sr["name"], ("", 1.0))
        def fmt(x: float, unit: str = unit, scale: float = scale) -> str:
            return f"{x / scale:,.2f} {unit}".rstrip()
        rows.append({"metric": sr["name"], "location": sr["location"], "instance": sr["instance"],
                     "points": len(values), "latest": fmt(values[-1]),
                     "mean": fmt(sum(values) / len(values)), "max": fmt(max(values))})
    show(rows, ["metric", "location", "instance", "points", "latest", "mean", "max"])


# What each stored series measures, and how people read it (JSON keeps the raw numbers).
METRIC_UNITS: dict[str, tuple[str, float]] = {
    "rps": ("req/s", 1.0), "errors_per_s": ("err/s", 1.0), "p95_ms": ("ms", 1.0),
    "check_ms": ("ms", 1.0), "cpu_percent": ("%", 1.0), "memory_bytes": ("MiB", 1024.0 ** 2),
    "up": ("", 1.0),
}


@deployments_app.command("delete")
def deployments_delete(name: str) -> None:
    client().delete(f"/v1/deployments/{name}")
    said(f"deleted deployment {name}: its replicas and data plane go now",
         {"deployment": name, "deleted": True})


@app.command()
def move(deployment: str, to: Annotated[str, typer.Option(help="the location to move to")],
         live: Annotated[bool, typer.Option(help="move the running VM itself, keeping its "
                                                  "address and connections")] = False,
         bound: Annotated[float, typer.Option(help="seconds a live move may take before it "
                                                   "is cancelled")] = 300.0) -> None:
    """Planned move: check the target is healthy, shift traffic there, drain the source.
    With --live, the running VM moves to TO and traffic follows once it runs there."""
    c = client()
    if live and _is_application(c, deployment):
        _move_application(c, deployment, to, bound)
        return
    if not live:
        dep = c.post(f"/v1/deployments/{deployment}/move", {"to": to}, idempotent_key=False)
        dep = _until_serving(c, dep)
        show(_dep_row(dep) if ctx.output == Output.table else dep, DEP_COLS)
        return
    started = c.post(f"/v1/deployments/{deployment}/move",
                     {"to": to, "live": True, "bound_s": bound}, idempotent_key=False)
    phases = []
    for job in started["jobs"]:
        finish_quietly = c.wait(job["id"], timeout=bound + 60)
        phases += [{"instance": finish_quietly["target"], **p}
                   for p in (finish_quietly.get("result") or {}).get("phases", [])]
    if ctx.output == Output.json:
        show({"deployment": deployment, "to": to, "phases": phases})
    else:
        show(phases, ["instance", "phase", "seconds", "disk_bytes", "memory_iterations",
                      "memory_bytes", "downtime_ms", "total_ms"])


def _is_application(c: Client, name: str) -> bool:
    """`onepane move NAME --live` moves a deployed application as one when NAME is one."""
    return any(a["name"] == name for a in c.get("/v1/applications"))


def status_report(c: Client) -> dict[str, Any]:
    """The server, locations, deployments and jobs at a glance, and what to do about anything
    that is not well (one call per part: this is what `onepane status` shows)."""
    locs = c.get("/v1/locations")
    deps = c.get("/v1/deployments")
    running = c.get("/v1/jobs", status="running", limit=1000)["items"]
    queued = c.get("/v1/jobs", status="queued", limit=1000)["items"]
    failed = c.get("/v1/jobs", status="failed", limit=20)["items"]
    nodes = c.get("/v1/nodes")
    todo = []
    if not any(n["role"] == "leader" for n in nodes):
        todo.append("no node leads: no failover, policy or sync happens (is any node's database "
                    "connection up?)")
    for n in nodes:
        if n["role"] == "down" and len(nodes) > 1:
            todo.append(f"node {n['name']} ({n['api_url']}) is down: its jobs were taken over")
    for loc in locs:
        if loc["status"] not in ("ok", "unknown"):
            todo.append(f"location {loc['name']} is {loc['status']}: {loc.get('status_detail')}"
                        f" (onepane locations show {loc['name']}; onepane sync)")
    for d in deps:
        st = d.get("status") or {}
        where = st.get("locations") or {}
        primary = d.get("primary")
        if not st:
            todo.append(f"deployment {d['name']} has no status yet: is its reconciler running?")
        elif not any(v.get("up") for v in where.values()):
            todo.append(f"deployment {d['name']} has no healthy replica anywhere (onepane "
                        f"events --kind health.; onepane deployments show {d['name']})")
        elif primary and not (where.get(primary) or {}).get("up"):
            todo.append(f"deployment {d['name']}: its primary {primary} is down (onepane "
                        f"failover {d['name']})")
        if (st.get("dns") or {}).get("state") == "failing":
            todo.append(f"deployment {d['name']}: its DNS records are not published: "
                        f"{st['dns'].get('error')} (onepane events --kind dns.; check the "
                        f"account {st['dns'].get('provider')!r} in onepane.toml)")
    broken = c.get("/v1/instances", state="error", limit=100)["items"]
    for inst in broken[:10]:  # each with what last happened to it: the reason, most often
        last = c.get("/v1/events", subject=inst["id"], before=2**53, limit=1)["items"]
        why = f": {last[-1]['message']}" if last else ""
        todo.append(f"instance {inst['name']} ({inst['id']}) at {inst['location']} is in error"
                    f"{why} (onepane instances start {inst['id']}, or destroy it)")
    if len(broken) > 10:
        todo.append(f"{len(broken) - 10} more instances are in error (onepane instances list "
                    "--state error)")
    if failed:
        todo.append(f"{len(failed)} recent jobs failed (onepane jobs list --status failed)")
    return {"server": {"url": str(c.http.base_url), "version": __version__},
            "nodes": [{"name": n["name"], "role": n["role"], "api_url": n["api_url"],
                       "heard": f"{n['heartbeat_age_s']} s ago",
                       "heartbeat_age_s": n["heartbeat_age_s"]} for n in nodes],
            "locations": [{"name": loc["name"], "provider": loc["provider"],
                           "status": loc["status"]} for loc in locs],
            "deployments": [{"name": d["name"], "primary": d.get("primary"),
                             "serving": (d.get("status") or {}).get("serving"),
                             "listen": d.get("listen"),
                             "dns": _dns_cell(d.get("status") or {})} for d in deps],
            "jobs": {"running": len(running), "queued": len(queued),
                     "recently_failed": len(failed)},
            "todo": todo or ["nothing: every location answers and every deployment serves"]}


@app.command()
def status() -> None:
    """Is onepane well? The server, locations, deployments, jobs, and what to do if not."""
    report = status_report(client())
    if ctx.output == Output.json:
        show(report)
        return
    out.print(f"onepane {report['server']['version']} at {report['server']['url']}")
    show(report["nodes"], ["name", "role", "api_url", "heard"], title="nodes")
    show(report["locations"], ["name", "provider", "status"], title="locations")
    show(report["deployments"], ["name", "primary", "serving", "listen", "dns"],
         title="deployments")
    jobs = report["jobs"]
    out.print(f"jobs: {jobs['running']} running, {jobs['queued']} queued, "
              f"{jobs['recently_failed']} failed recently")
    for line in report["todo"]:
        out.print(f"- {escape(line)}")


@app.command()
def failover(deployment: str) -> None:
    """Move traffic to the next healthy location now."""
    c = client()
    dep = _until_serving(c, c.post(f"/v1/deployments/{deployment}/failover", idempotent_key=False))
    show(_dep_row(dep) if ctx.output == Output.table else dep, DEP_COLS)


GLOBAL_VALUES = {"--url", "--token"}


def hoist_global_options(argv: list[str]) -> list[str]:
    """`-o json`, `--url` and `--token` work anywhere on the command line, as the README says:
    moved before the subcommand, where Typer reads them. `-o` is global only with `json` or
    `table` (`images export -o FILE` keeps its own); `--` ends the hoisting."""
    head: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest += argv[i:]
            break
        value = argv[i + 1] if i + 1 < len(argv) else None
        if arg in ("-o", "--output") and value in ("json", "table"):
            head += [arg, value]
            i += 2
            continue
        if arg.startswith("--output=") or arg in ("-ojson", "-otable"):
            head.append(arg)
        elif arg in GLOBAL_VALUES and value is not None:
            head += [arg, value]
            i += 2
            continue
        elif any(arg.startswith(f"{g}=") for g in GLOBAL_VALUES):
            head.append(arg)
        else:
            rest.append(arg)
        i += 1
    return head + rest


def main() -> None:
    if "--version" in sys.argv[1:2] or sys.argv[1:] == ["version"]:
        print(f"onepane {__version__}")
        return
    sys.argv[1:] = hoist_global_options(sys.argv[1:])
    try:
        app()
    except KeyboardInterrupt:  # Ctrl-C: stop quietly, the conventional way
        sys.exit(130)
    except OnepaneError as exc:
        where = f" [{exc.field}]" if exc.field else ""
        detail = exc.detail
        if exc.field and detail.startswith(f"{exc.field}: "):
            detail = detail[len(exc.field) + 2:]  # the field is named once
        err.print(f"[red]error[/red]{escape(where)}: {escape(detail)}")
        sys.exit(exc.exit_code)
    except OSError as exc:  # a local file the command was given: bad input, not a crash
        name = exc.filename or ""
        err.print(f"[red]error[/red]: {escape(str(name))}{': ' if name else ''}"
                  f"{escape(exc.strerror or str(exc))}")
        sys.exit(InvalidInput.exit_code)


if __name__ == "__main__":
    main()
