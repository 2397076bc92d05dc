"""onepane.toml: a misspelt key is an error that names it (and what was probably meant)."""

from __future__ import annotations

from pathlib import Path

import pytest

from onepane.config import load_settings
from onepane.errors import InvalidInput


def test_a_misspelt_setting_is_refused_by_name(tmp_path: Path) -> None:
    cfg = tmp_path / "onepane.toml"
    cfg.write_text("api_prot = 9000\n")
    with pytest.raises(InvalidInput, match=r"api_prot: unknown setting; did you mean 'api_port'"):
        load_settings(cfg)


def test_a_location_is_named_by_name_not_position(tmp_path: Path) -> None:
    cfg = tmp_path / "onepane.toml"
    cfg.write_text('[locations.dc-a]\nprovider = "local"\n[locations.dc-b]\nprovider = "local"\n'
                   'regoin = "x"\n')
    with pytest.raises(InvalidInput, match=r"locations\.dc-b\.regoin: unknown setting; did you "
                                           r"mean 'region'") as exc:
        load_settings(cfg)
    assert exc.value.field == "locations.dc-b.regoin"


@pytest.mark.parametrize(("kind", "options", "named"), [
    ("cloud", '{ zone = "a", datacentre = "b" }', "options.datacentre"),  # Libcloud took it
    ("cloud", '{ driver_options = { ex_tenant_name = ["x"] } }', "options.driver_options"),
    ("local", "{ index = 3 }", "options.index"),
    ("netns", '{ index = 3, subnet = "x" }', "options.subnet"),
    ("vm", '{ index = 3, acel = "kvm" }', "acel"),
    ("sim", "{ instances = 5, change_per_minute = 3 }", "change_per_minute"),
])
def test_a_misspelt_option_of_any_provider_is_refused_by_name(
        tmp_path: Path, kind: str, options: str, named: str) -> None:
    """Issue 30: every kind of location checks its options whole, so a misspelt one is an
    error naming it rather than an option nobody reads."""
    from onepane.providers.registry import build_provider
    cfg = tmp_path / "onepane.toml"
    driver = 'driver = "dummy"\n' if kind == "cloud" else ""
    cfg.write_text(f'[locations.x]\nprovider = "{kind}"\n{driver}options = {options}\n')
    with pytest.raises(InvalidInput) as exc:
        loc = load_settings(cfg).locations[0]
        # vm and sim check theirs whole with their own models when they are built
        build_provider(loc.name, loc.provider, state_dir=tmp_path, region=loc.region,
                       driver=loc.driver, credentials={}, options=loc.options)
    assert named in str(exc.value.detail), exc.value.detail


def test_a_cloud_driver_gets_its_own_keywords_from_driver_options_only() -> None:
    from onepane.providers.cloud import make_driver
    driver = make_driver("ec2-compat", "us-east-1", {"key": "k", "secret": "s"},
                         {"host": "127.0.0.1", "port": 5055, "secure": False, "zone": "a",
                          "image_owner": "self", "driver_options": {"api_version": "2016-11-15"}})
    assert driver.connection.host == "127.0.0.1" and driver.api_version == "2016-11-15"
