"""Make pOCCI 1.0.3 (Python 2 code, converted by 2to3 before this runs) work on Python 3.11
and speak onepane's authentication. Only what Python 3.11 rejects is changed, plus one option:
`-T/--token TOKEN` with auth type `token` sends `Authorization: Bearer TOKEN`. Each change is
an exact text replacement that must match once; a pOCCI that differs stops the script."""

from __future__ import annotations

import sys
from pathlib import Path

PATCHES: dict[str, list[tuple[str, str]]] = {
    "transport.py": [
        # a bearer token, for servers that take OAuth-style tokens (onepane does)
        ("""        elif self.authtype == 'x509':
            if 'cert' not in config:""",
         """        elif self.authtype == 'token':
            if not config.get('token'):
                raise occi.TransportError('A token is required for "token" authentication')
        elif self.authtype == 'x509':
            if 'cert' not in config:"""),
        ("""        # Keystone
        if 'token' in self.auth:""",
         """        if self.authtype == 'token':
            headers = ['Authorization: Bearer %s' % self.config['token']] + headers

        # Keystone
        if 'token' in self.auth:"""),
    ],
    # Python 3.11 takes global regex flags only at the very start of a pattern
    "render_text.py": [
        ("re.compile(r'^(?i)category:\\s*')", "re.compile(r'(?i)^category:\\s*')"),
        ("re.compile(r'^(?i)link:\\s*')", "re.compile(r'(?i)^link:\\s*')"),
        ("re.compile(r'^(?i)x-occi-attribute:\\s*')", "re.compile(r'(?i)^x-occi-attribute:\\s*')"),
        ("re.compile(r'^((?i)x-occi-location|location):\\s*(.*)')",
         "re.compile(r'(?i)^(x-occi-location|location):\\s*(.*)')"),
    ],
    "pOCCI.py": [
        ('"ha:c:e:f:k:lm:p:Ps::St:u:vV", ["help",',
         '"ha:c:e:f:k:lm:p:Ps::St:T:u:vV", ["help", "token=",'),
        ("""        elif opt in ["-u", "--user"]:""",
         """        elif opt in ["-T", "--token"]:
            occi_config["token"] = arg
        elif opt in ["-u", "--user"]:"""),
    ],
}


def main(package: Path) -> None:
    for name, changes in PATCHES.items():
        path = package / name
        text = path.read_text()
        for old, new in changes:
            if text.count(old) != 1:
                sys.exit(f"patch_pocci: {name}: expected text found {text.count(old)} times:\n{old}")
            text = text.replace(old, new)
        path.write_text(text)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
