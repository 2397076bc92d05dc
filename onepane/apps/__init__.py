"""App images shipped with onepane, installed in every process-based data center."""

from pathlib import Path

BUILTIN = Path(__file__).parent
BUILTIN_APPS = [BUILTIN / "httpecho"]
