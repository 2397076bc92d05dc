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
